"""The lease monitor: the minute check (the seed's "monitor") and GPU health.

Each check, while the Monitor is enabled (or when asked for by hand):
1. frees leases whose TTL ran out (`expire`);
2. frees leases whose holder process is gone (`holder_gone`). On the machine the
   check runs on, which is the hub's, it asks the kernel whether the pid lives and
   started when the holder said. For other hosts it goes by what their samples told
   the hub: the holder's Process row marked exited, or a later process with the same
   pid (a pid is reused only after its process died). Anything else, such as a
   holder on a host whose agent is down, is left to the TTL;
3. reads the GPUs' samples: a free GPU busy for BUSY_WINDOW is "used without a
   lease", a GPU held and idle for Monitor.idle_minutes is "held but idle". Each
   flag is an event when it appears and stays on the lease until it no longer holds.
4. evaluates the task heartbeats (jobs.heartbeats.evaluate): runs whose process is
   gone (by the same rules as a lease holder) are orphaned, runs past the check's
   longest duration are too long, checks with nothing since period/cron + grace late.
Each step is a conditional update, so two checks at once (two clusters) do each
thing once.
"""

import time
from dataclasses import dataclass, field
from datetime import timedelta

import psutil
from django.db.models import Count, F, Max, Min
from django.utils import timezone

from jobs import heartbeats
from jobs.models import GpuLease, LeaseRecord, Monitor, Run
from monitoring.collectors.system import local_machine_id
from monitoring.models import Event, GpuSample, Process, Retention
from monitoring.retention import delete_in_batches

HEALTH_STATES = ["healthy", "warning", "critical"]
BUSY_WINDOW = timedelta(minutes=2)
START_TOLERANCE = 1.0  # seconds: two reads of a start time agree to the clock tick
RECENT = timedelta(minutes=15)  # how long a release by the check shows in health


@dataclass
class Outcome:
    checked: list[str] = field(default_factory=list)  # lock keys
    actions: list[dict] = field(default_factory=list)


def check(now=None, leases=None) -> Outcome:
    """One check of every lease (or of `leases`), whether or not the monitor runs."""
    started = time.monotonic()
    now = now or timezone.now()
    monitor = Monitor.current()
    rows = list(leases if leases is not None else GpuLease.objects.select_related("host", "owner"))
    outcome = Outcome(checked=[lease.key for lease in rows])
    here = local_machine_id()
    for lease in rows:
        if not lease.is_held:
            continue
        if lease.expires_at <= now:
            action, why = "expire", f"TTL ran out at {lease.expires_at:%H:%M:%S} UTC"
        else:
            action, why = "holder_gone", holder_gone(lease, here)
        if why and lease.end(action, now, message=why):
            outcome.actions.append(
                {
                    "action": action,
                    "lock_key": lease.key,
                    "holder": lease.holder_text(),
                    "reason": why,
                }
            )
    if leases is None:
        outcome.actions += heartbeats.evaluate(now, lambda run: run_gone(run, here))
    pks = [lease.pk for lease in rows]
    fresh = GpuLease.objects.filter(pk__in=pks).select_related("host", "owner")
    outcome.actions += flag(list(fresh), monitor, now)
    cutoff = now - timedelta(days=Retention.current().event_days)
    delete_in_batches(LeaseRecord.objects.filter(ts__lt=cutoff))
    Monitor.objects.filter(pk=monitor.pk).update(
        last_check=now,
        checks=F("checks") + 1,
        check_seconds=F("check_seconds") + (time.monotonic() - started),
    )
    return outcome


def holder_gone(lease: GpuLease, here: str) -> str:
    """Why the holder process is known to be gone; "" while it lives or is unknown."""
    return process_gone(lease.host, lease.pid, lease.process_started, here)


def run_gone(run: Run, here: str) -> str:
    """Why a heartbeat run's process is known to be gone (its host must be known)."""
    if run.host is None:
        return ""
    return process_gone(run.host, run.pid, run.process_started, here)


def process_gone(host, pid: int | None, process_started, here: str) -> str:
    """Why the process (host, pid, start time) is known to be gone; "" while it lives
    or is unknown."""
    if pid is None or process_started is None:
        return ""
    started = process_started.timestamp()
    if host.machine_id == here:
        try:
            now_started = psutil.Process(pid).create_time()
        except psutil.NoSuchProcess:
            return f"pid {pid} is gone"
        except psutil.Error:
            return ""
        if abs(now_started - started) > START_TOLERANCE:
            return f"pid {pid} is another process now"
        return ""
    runs = Process.objects.filter(host=host, pid=pid)
    window = timedelta(seconds=START_TOLERANCE)
    exited = runs.filter(
        create_time__range=(process_started - window, process_started + window),
        exited_at__isnull=False,
    ).first()
    if exited:
        return f"pid {pid} exited at {exited.exited_at:%H:%M:%S} UTC"
    if runs.filter(create_time__gt=process_started + window).exists():
        return f"pid {pid} is another process now"
    return ""


def flag(leases: list[GpuLease], monitor: Monitor, now) -> list[dict]:
    """Mark GPUs used without a lease and leases held while the GPU idles."""
    hosts = {lease.host_id for lease in leases}
    recent = _utilization(hosts, now - BUSY_WINDOW, Min)
    idle_window = timedelta(minutes=monitor.idle_minutes)
    long_held = {
        lease.host_id
        for lease in leases
        if lease.is_held and lease.acquired_at <= now - idle_window
    }
    held = _utilization(long_held, now - idle_window, Max)
    actions = []
    for lease in leases:
        gpu = (lease.host_id, lease.index)
        low, n = recent.get(gpu, (None, 0))
        busy = not lease.is_held and n >= 2 and low >= monitor.busy_percent
        if busy and _set(lease, "unleased_use_since", now, handle=""):
            message = (
                f"GPU {lease.index} of {lease.host.name} is busy (at least "
                f"{monitor.busy_percent} % for {BUSY_WINDOW.seconds // 60} min) without a lease"
            )
            _event(lease, "gpu_used_unleased", message, now)
            actions.append({"action": "flag_unleased_use", "lock_key": lease.key})
        elif not busy and lease.unleased_use_since:
            GpuLease.objects.filter(pk=lease.pk).update(unleased_use_since=None)
        high, n = held.get(gpu, (None, 0))
        idle = lease.host_id in long_held and n >= 2 and high < monitor.busy_percent
        since = now - idle_window
        if idle and _set(lease, "idle_since", since, handle=lease.handle):
            message = (
                f"GPU {lease.index} of {lease.host.name} is held by {lease.holder_text()} "
                f"but idle for {monitor.idle_minutes} min"
            )
            _event(lease, "gpu_lease_idle", message, now)
            actions.append({"action": "flag_idle", "lock_key": lease.key})
        elif not idle and lease.idle_since:
            GpuLease.objects.filter(pk=lease.pk).update(idle_since=None)
    return actions


def _utilization(hosts: set, since, aggregate) -> dict:
    """(host id, GPU index) -> (aggregate of utilization since `since`, readings)."""
    if not hosts:
        return {}
    rows = (
        GpuSample.objects.filter(host_id__in=hosts, ts__gte=since)
        .values("host_id", "index")
        .annotate(value=aggregate("utilization"), n=Count("utilization"))
    )
    return {(r["host_id"], r["index"]): (r["value"], r["n"]) for r in rows}


def _set(lease: GpuLease, flag_field: str, value, handle: str) -> bool:
    """Raise a flag once: True for the check that raised it."""
    return bool(
        GpuLease.objects.filter(
            pk=lease.pk, handle=handle, **{f"{flag_field}__isnull": True}
        ).update(**{flag_field: value})
    )


def _event(lease: GpuLease, kind: str, message: str, now) -> None:
    Event.record(lease.host, kind, message, ts=now, data={"gpu": lease.index, "job": lease.job})


def scheduled_check() -> str:
    """The minute schedule: a check while the monitor runs."""
    if not Monitor.current().enabled:
        return "monitor stopped"
    outcome = check()
    return f"{len(outcome.checked)} GPU leases checked, {len(outcome.actions)} actions"


# --- health -------------------------------------------------------------------------


def gpu_issues(lease: GpuLease, now, recent_ends: dict) -> list[str]:
    """What is wrong with one GPU now, in words."""
    issues = []
    if lease.is_held and lease.expires_at <= now:
        ago = int((now - lease.expires_at).total_seconds())
        holder = lease.holder_text()
        issues.append(f"lease of {holder} expired {ago} s ago (the next check frees it)")
    if lease.unleased_use_since:
        issues.append(f"used without a lease since {lease.unleased_use_since:%H:%M} UTC")
    if lease.idle_since:
        minutes = int((now - lease.idle_since).total_seconds() // 60)
        issues.append(f"held by {lease.holder_text()} but idle for {minutes} min")
    for record in recent_ends.get(lease.pk, []):
        if lease.is_held and record.ts <= lease.acquired_at:
            continue  # taken again since: no longer this GPU's story
        issues.append(
            f"{record.get_action_display()} at {record.ts:%H:%M} UTC: lease of "
            f"{record.user or 'someone'}{f': {record.job}' if record.job else ''}"
            f"{f' ({record.message})' if record.message else ''}"
        )
    return issues


def recent_ends(now, leases=None) -> dict:
    """GPU lease id -> its releases by the check (expired, holder gone) since RECENT."""
    records = LeaseRecord.objects.filter(
        action__in=("expire", "holder_gone"), ts__gte=now - RECENT
    ).order_by("-ts")
    if leases is not None:
        records = records.filter(gpu__in=leases)
    ends: dict = {}
    for record in records:
        ends.setdefault(record.gpu_id, []).append(record)
    return ends


def monitor_issues(monitor: Monitor, now) -> tuple[str, list[str]]:
    """The monitor's own state: (healthy | warning | critical, issues)."""
    if not monitor.enabled:
        return "warning", ["the lease monitor is stopped: expired leases are not freed"]
    if monitor.last_check is None:
        if (now - monitor.started_at).total_seconds() > 2 * Monitor.INTERVAL + 15:
            return "critical", ["the lease monitor has never checked: is the scheduler running?"]
        return "healthy", []
    if not monitor.is_running(now):
        ago = int((now - monitor.last_check).total_seconds())
        return "critical", [f"no lease check for {ago} s: is the scheduler running?"]
    return "healthy", []


def health(leases: list[GpuLease], monitor: Monitor, now) -> dict:
    """{"status", "issues", "last_check", "gpus": {lease id: issues}} over `leases`."""
    status, issues = monitor_issues(monitor, now)
    ends = recent_ends(now, [lease.pk for lease in leases])
    gpus = {lease.pk: gpu_issues(lease, now, ends) for lease in leases}
    for lease in leases:
        issues += [f"{lease.key}: {issue}" for issue in gpus[lease.pk]]
    if status == "healthy" and issues:
        status = "warning"
    return {"status": status, "issues": issues, "last_check": monitor.last_check, "gpus": gpus}
