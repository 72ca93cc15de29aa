import logging
from datetime import datetime, timedelta

import psutil
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from monitoring import fleet, host_store, process_store, redaction, timeseries
from monitoring.fleet import FleetQuery
from monitoring.models import (
    ApiToken,
    Event,
    GpuSample,
    Host,
    Process,
    ProcessSample,
    Retention,
    Rollup,
    WatchedProcess,
)
from monitoring.params import BadParameter, parse_id, parse_offset, parse_time, whole_number
from monitoring.process_table import RESOLUTIONS, TIERS, select
from monitoring.programs import group_by_program
from monitoring.tasks import sampler_status

audit = logging.getLogger("ptracker.audit")  # who saw what secrets

PAGE_SIZE = 50
RUNS = 20  # runs of a program on the process page
VIEWS = ("table", "tree", "programs")  # of the process table
RANGES = [("live", "Live"), ("1h", "1 h"), ("6h", "6 h"), ("24h", "24 h"), ("7d", "7 d"),
          ("30d", "30 d")]  # fmt: skip


def get_host_for_user(user, host_id: int) -> Host:
    # Every signed-in user sees every host for now; per-team access would go here.
    return get_object_or_404(Host, pk=host_id)


def get_process_for_user(user, process_id: int) -> Process:
    return get_object_or_404(Process.objects.select_related("host", "watched"), pk=process_id)


def fleet_context(request) -> tuple[dict, int]:
    """The overview's context and status: a bad parameter shows its message, no hosts."""
    try:
        query = FleetQuery.parse(request.GET)
    except BadParameter as exc:
        return {"fleet": None, "query": FleetQuery(), "error": str(exc)}, 400
    return {"fleet": fleet.load(query, timezone.now()), "query": query, "error": None}, 200


@require_GET
@login_required
def overview(request):
    context, status = fleet_context(request)
    context.update(sorts=fleet.SORTS, views=fleet.VIEWS, defaults=FleetQuery())
    return render(request, "monitoring/overview.html", context, status=status)


@require_GET
@login_required
def fleet_partial(request):
    """The overview's hosts alone, for the page to swap in as hosts report."""
    context, status = fleet_context(request)
    return render(request, "monitoring/fleet.html", context, status=status)


def first_data(host: Host) -> datetime | None:
    """When the host's oldest stored data begins: hour rollups outlive raw samples."""
    oldest = [
        Rollup.objects.filter(host=host, resolution=Rollup.HOUR, series="host")
        .order_by("bucket")
        .values_list("bucket", flat=True)
        .first(),
        host_store.HOST.earliest(host.pk),  # rows or packed
    ]
    return min((t for t in oldest if t is not None), default=None)


def summaries(host: Host, now: datetime) -> list[dict]:
    """Average and peak CPU and memory for today, this week and this month (UTC).

    A period that holds the same data as a row above it (the week on a Monday, the
    month on the 1st, every period on a host's first day) is left out: it would
    repeat that row."""
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    periods = [
        ("Today", today),
        ("This week", today - timedelta(days=today.weekday())),
        ("This month", today.replace(day=1)),
    ]
    since = first_data(host) or now
    rows, shown = [], set()
    for label, start in periods:
        begins = max(start, since)
        if begins in shown:
            continue
        shown.add(begins)
        summary = timeseries.summarize(host, ["cpu_percent", "mem_used"], start, now)
        row = {"label": label}
        for metric, values in summary.items():
            row[f"{metric}_avg"] = values["avg"] if values else None
            row[f"{metric}_max"] = values["max"] if values else None
        rows.append(row)
    return rows


@require_GET
@login_required
def host_summary(request, host_id: int):
    """The summary table alone, which the host page reloads every minute."""
    host = get_host_for_user(request.user, host_id)
    context = {"summaries": summaries(host, timezone.now())}
    return render(request, "monitoring/summary_table.html", context)


@require_GET
@login_required
def host_detail(request, host_id: int):
    host = get_host_for_user(request.user, host_id)
    table = process_table(host, request.GET, request.user)
    sample = host.latest_sample()
    gpus = []
    if sample is not None:
        gpus = list(GpuSample.objects.filter(host=host, ts=sample.ts).order_by("index"))
    context = {
        "host": host,
        "sample": sample,
        "online": host.is_online(),
        "gpus": gpus,
        "ranges": RANGES,
        "summaries": summaries(host, timezone.now()),
        "events": Event.objects.filter(host=host).select_related("process")[:10],
        "sampler": sampler_status() if host.is_local else None,
        "table": table,
        "services": list(host.services.all()),
        "page_data": {
            "host": host.pk,
            "interval": host.sample_interval,
            "gpus": [g.index for g in gpus],
            "cores": len(sample.per_cpu) if sample else 0,
            "raw_hours": Retention.current().raw_hours,
            "timeseries": reverse("api-timeseries", args=[host.pk]),
            "processes": reverse("host-processes", args=[host.pk]),
            "summary": reverse("host-summary", args=[host.pk]),
        },
    }
    status = 400 if table["error"] else 200
    return render(request, "monitoring/host_detail.html", context, status=status)


def process_table(host: Host, params, reader) -> dict:
    """Context of the process table: the latest sample, or the moment `at` from the
    finest tier that holds it (`tier`, `label`), as `reader` (a user) may see it. A bad
    parameter leaves the table empty, with `error` saying what is wrong."""
    query = {k: params.get(k, "").strip() for k in ("q", "user", "pid")}
    sort = params.get("sort") or "-cpu"
    view = params.get("view") or "table"
    program = params.get("program", "").strip()
    context = {"at": params.get("at", ""), "sort": sort, "view": view, "host": host, **query}
    context["program"] = program
    rows, context["ts"], context["error"] = [], None, None
    context["tier"], context["label"] = "raw", ""
    try:
        if view not in VIEWS:
            raise BadParameter("view", f"view must be {', '.join(VIEWS[:-1])} or {VIEWS[-1]}")
        number = _page_number(params)
        at = parse_time(params["at"], "at") if params.get("at") else None
        selection = select(host, at=at, sort=sort, reader=reader, **query)
        rows, context["ts"] = selection.rows, selection.ts
        if program:
            rows = [r for r in rows if r.process.program == program]
        context["tier"], context["label"] = selection.tier, selection.label
    except BadParameter as exc:
        context["error"], number = str(exc), 1
    if view == "tree":
        context["tree"] = process_tree(list(rows))
    elif view == "programs":
        context["programs"] = program_groups(rows, sort, reader)
    else:
        context["page"] = Paginator(rows, PAGE_SIZE).get_page(number)
    return context


def program_groups(rows, sort: str, reader) -> list:
    """The rows of one moment grouped by program, each with the program as `reader` may
    see it (`shown`) and whether the table may be filtered to it by a link (`link`: not
    when the link itself would carry what redaction hides)."""
    groups = group_by_program(rows, sort)
    for group in groups:
        group.shown = redaction.cmdline_for(reader, group.program)
        group.link = group.shown == group.program
    return groups


def _page_number(params) -> int:
    # Past the last page shows the last (Paginator.get_page); only a non-number is bad.
    return whole_number(params["page"], "page", 1) if params.get("page") else 1


def process_tree(rows: list[ProcessSample]) -> list[dict]:
    """Depth-first rows with depth and subtree totals; parents not stored become roots."""
    by_pid = {r.process.pid: r for r in rows}
    children: dict[int | None, list[ProcessSample]] = {}
    for r in rows:
        parent = r.process.ppid if r.process.ppid in by_pid else None
        children.setdefault(parent, []).append(r)
    flat: list[dict] = []

    def visit(row: ProcessSample, depth: int) -> tuple[float, int]:
        entry = {"row": row, "depth": depth, "indent": depth * 1.2}
        flat.append(entry)
        cpu, rss = row.cpu_percent or 0.0, row.rss or 0
        for child in sorted(children.get(row.process.pid, []), key=lambda r: r.process.pid):
            child_cpu, child_rss = visit(child, depth + 1)
            cpu += child_cpu
            rss += child_rss
        entry["tree_cpu"], entry["tree_rss"] = cpu, rss
        return cpu, rss

    for root in sorted(children.get(None, []), key=lambda r: r.process.pid):
        visit(root, 0)
    return flat


@require_GET
@login_required
def host_processes(request, host_id: int):
    host = get_host_for_user(request.user, host_id)
    context = {"table": process_table(host, request.GET, request.user), "host": host}
    status = 400 if context["table"]["error"] else 200
    return render(request, "monitoring/process_table.html", context, status=status)


@require_GET
@login_required
def process_detail(request, process_id: int):
    process = get_process_for_user(request.user, process_id)
    runs = program_runs(process)
    context = {
        **process_facts_context(process),
        "runs": runs if len(runs) > 1 else [],
        "runs_program": process.program or (process.watched.name if process.watched else ""),
        "runs_data": [
            {
                "pid": r.pid,
                "started": r.create_time.timestamp() * 1000,
                "cpu_avg": r.cpu_avg,
                "rss_max": r.rss_max,
                "current": r.pk == process.pk,
            }
            for r in reversed(runs)  # oldest first, as a chart reads
        ]
        if len(runs) > 1
        else None,
        "export_to": process.last_seen + timedelta(seconds=1),
        "ranges": RANGES[1:],
        "page_data": {
            "host": process.host_id,
            "process": process.pk,
            "interval": process.host.sample_interval,
            "first_seen": process.first_seen.timestamp() * 1000,
            "last_seen": process.last_seen.timestamp() * 1000,
            # No GPU memory chart for a process that never held any.
            "gpu": process_store.used_gpu(process),
            "timeseries": reverse("api-timeseries", args=[process.host_id]),
        },
    }
    context["live_possible"] = process.exited_at is None and _local_and_alive(process)
    from appmetrics.summary import for_process  # an app of its own, beside monitoring

    context["app_metrics"] = for_process(process.host_id, process.pid, process.create_time)
    return render(request, "monitoring/process_detail.html", context)


def program_runs(process: Process, limit: int = RUNS) -> list[Process]:
    """The latest `limit` runs of the process's program on its host, newest first, this
    one among them, each with `cpu_avg` and `rss_max` (run_stats). A process without a
    program has its watch's runs, if any (index host, program, create_time)."""
    if process.program:
        runs = Process.objects.filter(host=process.host_id, program=process.program)
    elif process.watched_id:
        runs = Process.objects.filter(host=process.host_id, watched=process.watched_id)
    else:
        return [process]
    runs = list(runs.order_by("-create_time", "-pk")[:limit])
    if process.pk not in {r.pk for r in runs}:
        runs = sorted([*runs[: limit - 1], process], key=lambda r: r.create_time, reverse=True)
    for run in runs:
        run.cpu_avg, run.rss_max = run_stats(run)
    return runs


# The longest run whose statistics are read from a tier: longer ones read a coarser one.
RUN_SPAN = {0: timedelta(hours=6), Rollup.MINUTE: timedelta(days=3), Rollup.HOUR: None}


def run_stats(run: Process) -> tuple[float | None, int | None]:
    """(average CPU, peak RSS) of a run over the finest tier that holds it, reading
    no more than RUN_SPAN of that tier (None, None when no tier does)."""
    span = run.last_seen - run.first_seen
    for resolution, longest in RUN_SPAN.items():
        if longest is not None and span > longest:
            continue
        store = process_store.STORES[resolution]
        found = store.values(run.host_id, run.first_seen - timedelta(seconds=resolution),
                             run.last_seen + timedelta(seconds=1), [run.pk])  # fmt: skip
        if not found:
            continue
        samples = [store.as_sample(row) for row in found]
        weights = [row[2] if resolution else 1 for row in found]  # a rollup's sample count
        cpu = [(s["cpu_percent"], w) for s, w in zip(samples, weights, strict=True)
               if s["cpu_percent"] is not None]  # fmt: skip
        rss = [s["rss"] for s in samples if s["rss"] is not None]
        total = sum(w for _, w in cpu)
        average = sum(v * w for v, w in cpu) / total if total else None
        return average, max(rss, default=None)
    return None, None


@require_GET
@login_required
def process_facts(request, process_id: int):
    """The facts of the process page, reloaded by the page every interval while it runs."""
    process = get_process_for_user(request.user, process_id)
    context = process_facts_context(process)
    return render(request, "monitoring/process_facts.html", context)


def process_facts_context(process: Process) -> dict:
    parent = (
        Process.objects.filter(
            host=process.host_id, pid=process.ppid, last_seen__gte=process.create_time
        )
        .order_by("-create_time")
        .first()
        if process.ppid
        else None
    )
    children = Process.objects.filter(
        host=process.host_id, ppid=process.pid, create_time__gte=process.create_time
    ).order_by("create_time")[:50]
    # Once its raw samples are gone, its latest rollup (a minute's, or an hour's).
    last, resolution = process_store.last_sample(process)
    return {
        "process": process,
        "parent": parent,
        "children": children,
        "last": last,
        "last_kept": {r: TIERS[t] for t, r in RESOLUTIONS.items()}.get(resolution, ""),
        # Only watched processes get an exit time; others may just have left the top N.
        "polled": process.exited_at is None,
        "in_latest": process.last_seen == process.host.last_seen,
    }


def _local_and_alive(process: Process) -> bool:
    return process.host.is_local and _running(process) is not None


@require_POST
@login_required
def watch_process(request, process_id: int):
    """ "Watch this": a watch of the process's program, then its admin page to edit."""
    if not request.user.has_perm("monitoring.add_watchedprocess"):
        raise PermissionDenied
    process = get_process_for_user(request.user, process_id)
    try:
        watch, created = WatchedProcess.for_process(process)
    except ValidationError as exc:
        return HttpResponseBadRequest(" ".join(exc.messages))
    messages.success(
        request,
        f"Now watching {watch.name} on {process.host.name}; adjust it here."
        if created
        else f"{watch.name} was watched already: here it is.",
    )
    return redirect("admin:monitoring_watchedprocess_change", watch.pk)


def _running(process: Process) -> psutil.Process | None:
    """The live process if it is this identity, on this machine, still running."""
    try:
        live = psutil.Process(process.pid)
        if abs(live.create_time() - process.create_time.timestamp()) > 0.01:
            return None  # the pid was reused
        return live
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(redaction.PROCESS_INTERNALS, raise_exception=True)
def process_live(request, process_id: int):
    """Open files, connections and environment of a running local process. Secret-looking
    environment values are masked; a POST with `reveal` shows them for that answer only,
    and is logged with the user's name."""
    process = get_process_for_user(request.user, process_id)
    if not process.host.is_local:
        raise Http404("live details exist only for processes of this machine")
    context = live_details(request, process, reverse("process-live", args=[process.pk]))
    return render(request, "monitoring/process_live.html", context)


def live_details(request, process: Process, reveal_url: str) -> dict:
    """The live panel's context (this page's and the admin's): a POST with `reveal`
    unmasks the environment. Callers check view_process_internals."""
    reveal = request.method == "POST" and "reveal" in request.POST
    if reveal:
        audit.warning(
            "%s revealed the environment of process %s (pid %s) on %s",
            request.user.get_username(),
            process.pk,
            process.pid,
            process.host.name,
        )
    live = _running(process)
    info = {"running": live is not None}
    if live is not None:
        for name, read in (
            ("open_files", lambda: [f.path for f in live.open_files()]),
            ("connections", lambda: [_connection(c) for c in live.net_connections()]),
            ("environ", lambda: redaction.environment(live.environ().items(), reveal)),
        ):
            try:
                info[name] = read()
            except (psutil.AccessDenied, psutil.NoSuchProcess, OSError) as exc:
                info[name + "_error"] = type(exc).__name__
    masked = any(v == redaction.MASK for _, v in info.get("environ", []))
    return {
        "process": process,
        "info": info,
        "revealed": reveal,
        "masked": masked,
        "reveal_url": reveal_url,
    }


def _connection(c) -> dict:
    return {
        "type": "tcp" if c.type == 1 else "udp" if c.type == 2 else str(c.type),
        "local": f"{c.laddr.ip}:{c.laddr.port}" if c.laddr else "",
        "remote": f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else "",
        "status": c.status,
    }


def filter_events(rows, params, offset: timedelta = timedelta(0)):
    """Events of a `kind`, a `host` and a time range (`from`, `to`): the page's and the
    API's filters. Raises BadParameter naming the parameter at fault."""
    kind = params.get("kind")
    if kind:
        if kind not in dict(Event.KINDS):
            raise BadParameter(
                "kind", f"unknown kind {kind[:40]!r}: use one of " + ", ".join(dict(Event.KINDS))
            )
        rows = rows.filter(kind=kind)
    if params.get("host"):
        rows = rows.filter(host_id=parse_id(params["host"], "host"))
    if params.get("from"):
        rows = rows.filter(ts__gte=parse_time(params["from"], "from", offset))
    if params.get("to"):
        rows = rows.filter(ts__lt=parse_time(params["to"], "to", offset))
    return rows


@require_GET
@login_required
def events(request):
    rows, error = Event.objects.select_related("host", "process"), None
    try:
        rows = filter_events(rows, request.GET, parse_offset(request.GET.get("tz")))
        number = _page_number(request.GET)
    except BadParameter as exc:
        rows, number, error = rows.none(), 1, str(exc)
    page = Paginator(rows.order_by("-ts", "-id"), PAGE_SIZE).get_page(number)
    context = {
        "page": page,
        "error": error,
        "kinds": Event.KINDS,
        "hosts": Host.objects.all(),
        "kind": request.GET.get("kind", ""),
        "host_id": request.GET.get("host", ""),
        "from": request.GET.get("from", ""),
        "to": request.GET.get("to", ""),
    }
    return render(request, "monitoring/events.html", context, status=400 if error else 200)


@never_cache  # the page may show a new token's secret: no cache may keep it
@login_required
def tokens(request):
    """A user's own API tokens: make one (its secret shown once, in the answer to the
    POST itself, never in a cookie or a redirect), revoke one."""
    secret = error = None
    if request.method == "POST" and "revoke" in request.POST:
        try:
            pk = parse_id(request.POST["revoke"], "revoke")
        except BadParameter as exc:
            error = str(exc)
        else:
            ApiToken.objects.filter(user=request.user, pk=pk, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            return redirect("tokens")
    elif request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name or len(name) > 100 or "\x00" in name:
            error = "Give the token a name of 1 to 100 characters (what it is for)."
        else:
            access = request.POST.get("access", "read")
            scope = ApiToken.JOBS if access == "jobs" else ApiToken.API
            secret = ApiToken.issue(request.user, name, access != "write", scope)[1]
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    context = {
        "tokens": ApiToken.objects.filter(user=request.user).order_by("-created"),
        "secret": secret,
        "error": error,
    }
    return render(request, "monitoring/tokens.html", context, status=400 if error else 200)


def parse_labels(text: str) -> dict[str, str]:
    """`env=prod, team=ml` → {"env": "prod", "team": "ml"}; ValueError naming the bad part."""
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"labels are KEY=VALUE, separated by commas; {part!r} is not")
        labels[key.strip()] = value.strip()
    return labels


@login_required
def add_server(request):
    """A host for another machine and its agent token, with the lines to run there.

    The token is on this response only (never in a cookie or a message), so the
    page must not be cached."""
    if not request.user.has_perm("monitoring.add_host"):
        raise PermissionDenied
    context: dict = {"name": "", "labels": ""}
    status = 200
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        context.update(name=name, labels=request.POST.get("labels", ""))
        try:
            labels = parse_labels(context["labels"])
            if not name or len(name) > 100:
                raise ValueError("give the server a name of 1 to 100 characters")
            if Host.objects.filter(name=name).exists():
                raise ValueError(f"a host named {name!r} exists already")
        except ValueError as exc:
            context["error"], status = str(exc), 400
        else:
            host, secret = Host.add_remote(name, labels)
            context.update(host=host, secret=secret, hub=request.build_absolute_uri("/"))
    elif request.method != "GET":
        return HttpResponseNotAllowed(["GET", "POST"])
    response = render(request, "monitoring/add_server.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def locked_out(request, *_) -> HttpResponse:
    """django-axes' answer to a sign-in while the account or address is locked out
    (AXES_LOCKOUT_CALLABLE; axes passes further arguments that differ by version)."""
    context = {
        "limit": settings.AXES_FAILURE_LIMIT,
        "minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
    }
    return render(request, "registration/locked_out.html", context, status=429)
