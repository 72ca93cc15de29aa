"""Task heartbeats: what a ping does to a check and its runs, and what the minute check
makes of them (late, orphaned, too long).

A ping names its check by the secret slug and, optionally, its run (`rid`, chosen by
the client, so that runs of one check may overlap). "start" opens a run; "success" and
"fail" (or an exit status: 0 is success) close the open run of that id, or record a
run of no measured duration when none was open; "progress" only updates the run.
"""

from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from jobs.models import HeartbeatCheck, Run
from monitoring.collectors.system import local_machine_id
from monitoring.models import Host

ACTIONS = ["start", "success", "fail", "progress"]


def find_run_host(hostname: str, machine_id: str) -> Host | None:
    if machine_id and machine_id == local_machine_id():
        return Host.local()
    if machine_id and (host := Host.objects.filter(machine_id=machine_id).first()):
        return host
    if hostname:
        return (
            Host.objects.filter(hostname=hostname).first()
            or Host.objects.filter(name=hostname).first()
        )
    return None


def open_run(check: HeartbeatCheck, run_id: str) -> Run | None:
    return check.runs.filter(status="running", run_id=run_id).order_by("-started_at").first()


def ping(
    check: HeartbeatCheck,
    action: str,
    now=None,
    *,
    run_id: str = "",
    exit_status: int | None = None,
    log: str = "",
    progress: float | None = None,
    hostname: str = "",
    machine_id: str = "",
    pid: int | None = None,
    process_started: datetime | None = None,
) -> Run:
    """Record one ping; the run it concerns."""
    now = now or timezone.now()
    if action == "success" and exit_status not in (None, 0):
        action = "fail"
    log = log[-HeartbeatCheck.LOG_LIMIT :]
    with transaction.atomic():
        HeartbeatCheck.objects.filter(pk=check.pk).update(last_ping=now)
        check.last_ping = now
        run = open_run(check, run_id)
        if action == "start" or run is None:
            run = Run.objects.create(
                heartbeat=check,
                run_id=run_id[:64],
                started_at=now,
                last_ping=now,
                hostname=hostname[:255],
                host=find_run_host(hostname, machine_id),
                pid=pid,
                process_started=process_started,
            )
        fields = {"last_ping": now}
        if progress is not None:
            fields["progress"] = min(max(progress, 0.0), 1.0)
        if log:
            fields["log"] = log
        if action in ("success", "fail"):
            fields.update(status=action, ended_at=now, exit_status=exit_status)
            if action == "success":
                fields["progress"] = 1.0
        Run.objects.filter(pk=run.pk).update(**fields)
        for name, value in fields.items():
            setattr(run, name, value)
    if action == "start":
        check.set_state("running", now, "started", run)
    elif action == "fail":
        why = f"exit status {exit_status}" if exit_status is not None else "failed"
        check.set_state("failed", now, why, run)
    elif action == "success":
        state, why = ended_state(check, run)
        check.set_state(state, now, why, run)
    if action != "progress" and run.pk % 20 == 0:
        check.prune()  # now and then, on the write path
    return run


def ended_state(check: HeartbeatCheck, run: Run) -> tuple[str, str]:
    """The state a successful run leaves its check in, and why."""
    took = timedelta(seconds=run.duration or 0)
    if check.max_duration and took > check.max_duration:
        return "too_long", f"ran {took.total_seconds():.0f} s, limit {check.max_duration}"
    if check.min_duration and run.duration is not None and took < check.min_duration:
        return "too_short", f"ran {took.total_seconds():.0f} s, at least {check.min_duration}"
    if check.runs.filter(status="running").exclude(pk=run.pk).exists():
        return "running", "a run ended, others still run"
    return "up", "run succeeded"


def evaluate(now=None, process_gone=None) -> list[dict]:
    """The minute check of every heartbeat: orphaned runs, runs too long, late checks.
    `process_gone(run)` says why a run's process is known to be gone ("" if it is not);
    jobs.monitor passes the one it uses for lease holders."""
    now = now or timezone.now()
    actions = []
    running = Run.objects.filter(status="running").select_related("heartbeat", "host")
    for run in running:
        check = run.heartbeat
        why = process_gone(run) if process_gone and run.pid and run.process_started else ""
        if why:
            if Run.objects.filter(pk=run.pk, status="running").update(
                status="orphaned", ended_at=now
            ):
                run.status, run.ended_at = "orphaned", now
                check.set_state("orphaned", now, f"orphaned: {why}", run)
                actions.append({"action": "orphaned", "check": check.name, "reason": why})
            continue
        limit = check.max_duration
        too_long = limit and not run.too_long and now - run.started_at > limit
        if too_long and Run.objects.filter(pk=run.pk, too_long=False).update(too_long=True):
            check.set_state("too_long", now, f"still running after {limit}", run)
            actions.append({"action": "too_long", "check": check.name, "reason": str(limit)})
    for check in HeartbeatCheck.objects.exclude(state__in=["new", "late"]):
        due = check.due()
        why = f"no ping since {check.last_ping:%Y-%m-%d %H:%M} UTC"
        if due is not None and now > due and check.set_state("late", now, why):
            actions.append({"action": "late", "check": check.name, "reason": f"due {due}"})
    return actions


def epoch_time(value) -> datetime | None:
    """A process start time sent as seconds since the epoch."""
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(float(value), UTC)
