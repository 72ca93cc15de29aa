"""/debug/monitor/*: ptracker watching its own process tree, on demand.

Off unless PTRACKER_DEBUG_MONITOR=1, and then only for users with the permission
monitoring.view_process_internals (superusers have it). A session samples the tree
(the `ptracker run` supervisor, Daphne, the cluster and its workers) in a thread of
the web process that serves the requests; with several web processes each has its
own session.
"""

import functools
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import Http404, HttpResponse
from django.template.loader import render_to_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from monitoring.api.auth import ReadOnlyTokens
from monitoring.redaction import PROCESS_INTERNALS
from monitoring.sampling import TickLoop, tree_sampler

MAX_SAMPLES = 3600  # a session keeps at most this many snapshots (an hour at 1 s)
FIELDS = ("cpu_percent", "rss", "gpu_memory")


def tree_root() -> psutil.Process:
    """The top ptracker process above this one (the `ptracker run` supervisor)."""
    me = root = psutil.Process()
    for parent in me.parents():
        try:
            if "ptracker" not in " ".join(parent.cmdline()):
                break
        except psutil.Error:
            break
        root = parent
    return root


@dataclass
class Snapshot:
    ts: str
    processes: list[dict]
    totals: dict


class TreeMonitor:
    """Snapshots of ptracker's own tree, with rates from the sampling core."""

    def __init__(self) -> None:
        self.sampler = tree_sampler(tree_root().pid)

    def snapshot(self) -> Snapshot:
        return self.snapshot_of(self.sampler.sample())

    @staticmethod
    def snapshot_of(batch) -> Snapshot:
        rows = [
            {
                "pid": p.pid,
                "ppid": p.ppid,
                "name": p.name,
                "cmdline": p.cmdline[:300],
                "cpu_percent": p.cpu_percent,
                "rss": p.rss,
                "threads": p.threads,
                "gpu_memory": p.gpu_memory,
            }
            for p in batch.processes
        ]
        totals = {f: sum(r[f] or 0 for r in rows) for f in FIELDS}
        totals["processes"] = len(rows)
        return Snapshot(ts=batch.ts.isoformat(), processes=rows, totals=totals)


@dataclass
class Session:
    interval: float
    started: str
    stopped: str | None = None
    samples: list[Snapshot] = field(default_factory=list)


class Collector:
    """At most one collection session per web process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.session: Session | None = None
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, interval: float) -> Session:
        with self.lock:
            if self.running():
                raise ValueError("a session is already running; stop it first")
            self.session = Session(interval=interval, started=datetime.now(UTC).isoformat())
            self.stop_event = threading.Event()
            self.thread = threading.Thread(
                target=self._run, args=(self.session, self.stop_event), daemon=True
            )
            self.thread.start()
            return self.session

    def _run(self, session: Session, stop: threading.Event) -> None:
        monitor = TreeMonitor()

        def full(ticks: int) -> str | None:
            return "full" if len(session.samples) >= MAX_SAMPLES else None

        # The loop's first reading is the baseline for CPU %: the first snapshot has rates.
        def keep(batch) -> None:
            session.samples.append(monitor.snapshot_of(batch))

        TickLoop(monitor.sampler, keep, session.interval, stop).run(after_tick=full)
        session.stopped = datetime.now(UTC).isoformat()

    def stop(self) -> Session | None:
        with self.lock:
            if self.running():
                self.stop_event.set()
                self.thread.join(5)
            return self.session


collector = Collector()


def summary(session: Session) -> dict:
    """min/max/avg of the tree's totals and of each process over the session."""

    def stats(values):
        values = [v for v in values if v is not None]
        if not values:
            return None
        return {"min": min(values), "max": max(values), "avg": round(sum(values) / len(values), 2)}

    per_process: dict[int, dict] = {}
    for snap in session.samples:
        for row in snap.processes:
            entry = per_process.setdefault(
                row["pid"], {"pid": row["pid"], "name": row["name"], **{f: [] for f in FIELDS}}
            )
            for f in FIELDS:
                entry[f].append(row[f])
    return {
        "interval": session.interval,
        "started": session.started,
        "stopped": session.stopped,
        "samples": len(session.samples),
        "totals": {f: stats([s.totals[f] for s in session.samples]) for f in FIELDS},
        "processes": [
            {"pid": e["pid"], "name": e["name"], **{f: stats(e[f]) for f in FIELDS}}
            for e in per_process.values()
        ],
    }


def enabled(view):
    """404 unless PTRACKER_DEBUG_MONITOR is on: off, the endpoints do not even exist."""

    @functools.wraps(view)  # keeps DRF's csrf_exempt mark: DRF checks CSRF for sessions
    def wrapped(request, *args, **kwargs):
        if not settings.PTRACKER_DEBUG_MONITOR:
            raise Http404("not found")
        return view(request, *args, **kwargs)

    return wrapped


class SeesProcessInternals(BasePermission):
    def has_permission(self, request, view) -> bool:
        return request.user.has_perm(PROCESS_INTERNALS)


# DRF views: a session (CSRF checked) or an API token (curl) of a permitted user.
internals_only = permission_classes([SeesProcessInternals, ReadOnlyTokens])


@enabled
@extend_schema(tags=["debug monitor"], responses={200: OpenApiTypes.OBJECT})
@api_view(["GET"])
@internals_only
def snapshot_view(request):
    monitor = TreeMonitor()
    monitor.snapshot()
    time.sleep(0.2)  # two readings make a CPU %
    return Response(asdict(monitor.snapshot()))


@enabled
@extend_schema(
    tags=["debug monitor"],
    parameters=[OpenApiParameter("interval", OpenApiTypes.FLOAT, description="seconds, 0.1–60")],
    request=None,
    responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
)
@api_view(["POST"])
@internals_only
def start_view(request):
    try:
        interval = float(request.query_params.get("interval", request.data.get("interval", 1)))
    except (TypeError, ValueError):
        return Response({"interval": ["a number of seconds"]}, status=400)
    if not 0.1 <= interval <= 60:
        return Response({"interval": ["from 0.1 to 60 seconds"]}, status=400)
    try:
        session = collector.start(interval)
    except ValueError as exc:
        return Response({"error": str(exc)}, status=409)
    return Response({"started": session.started, "interval": interval})


@enabled
@extend_schema(
    tags=["debug monitor"],
    request=None,
    responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT},
)
@api_view(["POST"])
@internals_only
def stop_view(request):
    session = collector.stop()
    if session is None:
        return Response({"error": "no session was started"}, status=409)
    return Response(summary(session))


@enabled
@extend_schema(
    tags=["debug monitor"], responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT}
)
@api_view(["GET"])
@internals_only
def summary_view(request):
    if collector.session is None:
        return Response({"error": "no session was started"}, status=409)
    return Response(summary(collector.session))


@enabled
@extend_schema(
    tags=["debug monitor"],
    parameters=[OpenApiParameter("format", OpenApiTypes.STR, enum=["html", "json"])],
    responses={
        (200, "text/html"): OpenApiTypes.STR,
        (200, "application/json"): OpenApiTypes.OBJECT,
    },
)
@api_view(["GET"])
@internals_only
def report_view(request):
    session = collector.session
    if session is None:
        return Response({"error": "no session was started"}, status=409)
    fmt = request.query_params.get("format", "html")
    data = {"summary": summary(session), "samples": [asdict(s) for s in session.samples]}
    if fmt == "json":
        return Response(data)
    if fmt != "html":
        return Response({"format": ["html or json"]}, status=400)
    # Self-contained: Chart.js goes inside the file, so a saved report opens offline.
    # Its scripts carry the response's CSP nonce (they are inline).
    chart_js = Path(finders.find("vendor/chart.js/chart.umd.min.js")).read_text()
    html = render_to_string(
        "monitoring/debug_report.html",
        {
            "data": data,
            "chart_js": chart_js,
            "summary": data["summary"],
            "nonce": request.csp_nonce,
        },
    )
    response = HttpResponse(html)
    response["Content-Disposition"] = 'inline; filename="ptracker-monitor-report.html"'
    return response
