"""The GPUs page: per host and GPU who holds it, its health, the lease history and
statistics; staff force-release from it. The Jobs page: heartbeat checks and runs.
The Recordings pages: uploaded `ptracker record` reports, one, or two side by side."""

from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from jobs import monitor, statistics
from jobs.api import get_lease_for_user
from jobs.models import GpuLease, HeartbeatCheck, LeaseRecord, Monitor, Recording, Run
from monitoring.models import GpuSample, Host
from monitoring.params import BadParameter, parse_id, whole_number

HISTORY_PAGE = 50


@dataclass
class HostGpus:
    host: Host
    gpus: list  # (GpuLease (unsaved while never leased), newest sample, issues)
    stats: dict


def host_rows(now, ends: dict) -> list[HostGpus]:
    """Every host with GPUs (in its inventory, or leased once), with its GPUs."""
    leased = {}
    for lease in GpuLease.objects.select_related("host", "owner"):
        leased.setdefault(lease.host_id, {})[lease.index] = lease
    hosts = [h for h in Host.objects.all() if h.pk in leased or (h.inventory or {}).get("gpus")]
    samples = {
        (s.host_id, s.index): s
        for s in GpuSample.objects.filter(host__in=hosts, ts=F("host__last_seen"))
    }
    stats = statistics.summaries(LeaseRecord.objects.filter(host__in=hosts), "host_id", now)
    empty = statistics.summary(LeaseRecord.objects.none(), now)
    rows = []
    for host in hosts:
        known = {g["index"]: g for g in (host.inventory or {}).get("gpus") or []}
        gpus = []
        for index in sorted(set(known) | set(leased.get(host.pk, {}))):
            gpu = known.get(index, {})
            lease = leased.get(host.pk, {}).get(index) or GpuLease(
                host=host, index=index, uuid=gpu.get("uuid") or "", name=gpu.get("name") or ""
            )
            issues = monitor.gpu_issues(lease, now, ends) if lease.pk else []
            gpus.append((lease, samples.get((host.pk, index)), issues))
        rows.append(HostGpus(host, gpus, stats.get(host.pk, empty)))
    return rows


@require_GET
@login_required
def gpus(request):
    now, error = timezone.now(), None
    history = LeaseRecord.objects.select_related("host", "gpu", "by")
    try:
        if request.GET.get("host"):
            history = history.filter(host_id=parse_id(request.GET["host"], "host"))
        number = whole_number(request.GET.get("page") or "1", "page", 1)
    except BadParameter as exc:
        history, number, error = history.none(), 1, str(exc)
    m = Monitor.current()
    state, monitor_issues = monitor.monitor_issues(m, now)
    context = {
        "hosts": host_rows(now, monitor.recent_ends(now)),
        "monitor": m,
        "monitor_state": state,
        "monitor_issues": monitor_issues,
        "running": m.is_running(now),
        "summary": statistics.summary(now=now),
        "hours": statistics.hours_per_user(now=now),
        "page": Paginator(history, HISTORY_PAGE).get_page(number),
        "may_force": request.user.has_perm("jobs.change_gpulease"),
        "host_id": request.GET.get("host", ""),
        "error": error,
        "now": now,
    }
    return render(request, "jobs/gpus.html", context, status=400 if error else 200)


@require_POST
@login_required
def force_release(request, lease_id: int):
    if not request.user.has_perm("jobs.change_gpulease"):
        raise PermissionDenied
    lease = get_lease_for_user(request.user, lease_id)
    reason = request.POST.get("reason", "").strip()[:200] or "from the GPUs page"
    lease.end("force_release", by=request.user, message=reason)
    return redirect("gpus")


BAD_STATES = {"late", "failed", "orphaned", "too_long", "too_short"}
RUNS_SHOWN = 50


@require_GET
@login_required
def jobs(request):
    """Heartbeat checks with their state and last run; one check's runs and durations."""
    checks = list(HeartbeatCheck.objects.all())
    last_runs = {}
    for run in Run.objects.filter(heartbeat__in=checks).order_by("heartbeat_id", "-started_at"):
        last_runs.setdefault(run.heartbeat_id, run)
    error, chosen = None, checks[0] if checks else None
    if request.GET.get("check"):
        try:
            chosen = get_object_or_404(HeartbeatCheck, pk=parse_id(request.GET["check"], "check"))
        except BadParameter as exc:
            chosen, error = None, str(exc)
    runs = list(chosen.runs.select_related("host")[:RUNS_SHOWN]) if chosen else []
    durations = [
        {"started": r.started_at.isoformat(), "duration": r.duration, "status": r.status}
        for r in reversed(runs)
        if r.duration is not None
    ]
    context = {
        "rows": [(c, last_runs.get(c.pk), c.state in BAD_STATES) for c in checks],
        "chosen": chosen,
        "runs": runs,
        "durations": durations,
        "error": error,
        "hub": request.build_absolute_uri("/").rstrip("/"),
    }
    return render(request, "jobs/jobs.html", context, status=400 if error else 200)


RECORDINGS_SHOWN = 200


def get_recording(pk: int) -> Recording:
    return get_object_or_404(Recording, pk=pk)


@require_GET
@login_required
def recordings(request):
    """Uploaded `ptracker record` reports, newest first; two ticked ones compare."""
    rows = Recording.objects.select_related("owner")[:RECORDINGS_SHOWN]
    return render(request, "jobs/recordings.html", {"recordings": rows})


@require_GET
@login_required
def recording(request, recording_id: int):
    return render(request, "jobs/recording.html", {"r": get_recording(recording_id)})


@require_GET
@login_required
def compare_recordings(request):
    """Two recordings side by side: ?a=ID&b=ID."""
    try:
        pair = [parse_id(request.GET.get(k, ""), k) for k in ("a", "b")]
    except BadParameter as exc:
        rows = Recording.objects.select_related("owner")[:RECORDINGS_SHOWN]
        context = {"recordings": rows, "error": f"{exc.field}: {exc}"}
        return render(request, "jobs/recordings.html", context, status=400)
    return render(
        request, "jobs/recording_compare.html", {"pair": [get_recording(p) for p in pair]}
    )
