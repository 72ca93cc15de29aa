"""ptracker's own health: is the hub doing its work? `GET /api/v1/monitoring/health`
and `ptracker check` (a Nagios plugin: exit 0 healthy, 1 warning, 2 critical).

`read()` takes the readings (the only part that touches the database, the disk and
the queue); `judge()` turns readings into issues, a pure function of them and the
thresholds below. Each component is healthy, warning or critical; the worst is the
hub's status.
"""

import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Max, Min
from django.utils import timezone

from jobs import monitor
from jobs.models import Monitor, Run
from monitoring import background, host_store
from monitoring.models import HostSample, Retention, Rollup, RollupState
from monitoring.tasks import sampler_status

LEVELS = ["healthy", "warning", "critical"]

SAMPLER_GRACE = timedelta(minutes=2)
"""A sampler whose lease lapsed is a warning for this long (a restart, a hand-over
between clusters), then critical: no sample of the hub's machine is taken."""

QUEUE_WARNING, QUEUE_CRITICAL = 100, 1000
"""Tasks waiting in the django-q2 queue (cluster install only): the minute schedules
alone put a handful there, so hundreds mean the workers do not keep up."""

DB_WARNING, DB_CRITICAL = 0.2, 1.0
"""Seconds a trivial query (SELECT 1) takes: a healthy local database answers in well
under a millisecond; a second means every page and every ingest crawls."""

ROLLUP_WARNING, ROLLUP_CRITICAL = timedelta(minutes=10), timedelta(hours=1)
"""How far the 1-minute rollups lag behind now. They run every minute; an hour behind,
charts over a day show holes and raw samples cannot be pruned."""

PRUNE_WARNING, PRUNE_CRITICAL = timedelta(hours=1), timedelta(hours=6)
"""Time since pruning last finished. It runs every 15 minutes; without it the database
grows without bound."""

DISK_WARNING, DISK_CRITICAL = 10.0, 3.0
"""Free space in the data directory, percent of the file system: SQLite and the
process chunks live there, and a full disk stops every write."""

DELIVERY_WARNING, DELIVERY_CRITICAL = 1, 10
"""Alert notifications that failed for good in the last day: one is a channel to look
at; ten means alerts are not reaching anyone."""

DELIVERY_WINDOW = timedelta(days=1)
DELIVERY_STUCK = timedelta(minutes=10)  # a pending delivery this overdue: the sender stalls

HEARTBEAT_FAILURE_WARNING = 0.1
"""Share of heartbeat runs that ended in the last day failed or orphaned (the seed's
"heartbeat failure rate too high")."""


@dataclass
class Readings:
    now: datetime
    sampler_alive: bool
    sampler_stale_for: timedelta | None  # None: the sampler never ran here
    queue_depth: int | None  # None: no django-q2 cluster (tasks run in the web process)
    db_seconds: float
    rollup_lag: timedelta | None  # None: nothing to roll up yet
    pruned_at: datetime | None
    oldest_sample: datetime | None
    disk_free_percent: float
    deliveries_failed: int
    deliveries_stuck: int
    monitor_state: str
    monitor_issues: list[str]
    runs_ended: int
    runs_failed: int
    runs_active: int
    runs_total: int


@dataclass
class Component:
    status: str = "healthy"
    issues: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)

    def flag(self, level: str, issue: str) -> None:
        self.issues.append(issue)
        if LEVELS.index(level) > LEVELS.index(self.status):
            self.status = level


def level(value, warning, critical, above: bool = True) -> str | None:
    """The level `value` reaches: above the thresholds (or below, for `above=False`)."""
    if above:
        return "critical" if value > critical else "warning" if value > warning else None
    return "critical" if value < critical else "warning" if value < warning else None


def minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:.0f} min"


def judge(r: Readings) -> dict[str, Component]:
    """The components' states and issues, from the readings alone."""
    parts = {name: Component() for name in
             ("sampler", "queue", "database", "rollups", "disk", "notifications", "monitor",
              "heartbeat")}  # fmt: skip
    sampler = parts["sampler"]
    if not r.sampler_alive:
        if r.sampler_stale_for is None:
            sampler.flag("warning", "the sampler never ran on this hub")
        else:
            late = "critical" if r.sampler_stale_for > SAMPLER_GRACE else "warning"
            sampler.flag(late, f"the sampler stopped {minutes(r.sampler_stale_for)} ago")
    if r.queue_depth is not None:
        parts["queue"].metrics["depth"] = r.queue_depth
        if found := level(r.queue_depth, QUEUE_WARNING, QUEUE_CRITICAL):
            parts["queue"].flag(found, f"{r.queue_depth} tasks wait in the queue")
    parts["database"].metrics["latency_ms"] = round(r.db_seconds * 1000, 2)
    if found := level(r.db_seconds, DB_WARNING, DB_CRITICAL):
        parts["database"].flag(
            found, f"the database took {r.db_seconds * 1000:.0f} ms for SELECT 1"
        )
    rollups = parts["rollups"]
    if r.rollup_lag is not None:
        rollups.metrics["rollup_lag_seconds"] = round(r.rollup_lag.total_seconds())
        if found := level(r.rollup_lag, ROLLUP_WARNING, ROLLUP_CRITICAL):
            rollups.flag(found, f"rollups lag {minutes(r.rollup_lag)} behind")
    if r.pruned_at is not None:
        since = r.now - r.pruned_at
        rollups.metrics["pruned_seconds_ago"] = round(since.total_seconds())
        if found := level(since, PRUNE_WARNING, PRUNE_CRITICAL):
            rollups.flag(found, f"history was last pruned {minutes(since)} ago")
    elif r.oldest_sample is not None and r.now - r.oldest_sample > PRUNE_CRITICAL:
        rollups.flag("warning", "history was never pruned")
    parts["disk"].metrics["free_percent"] = round(r.disk_free_percent, 1)
    if found := level(r.disk_free_percent, DISK_WARNING, DISK_CRITICAL, above=False):
        parts["disk"].flag(found, f"{r.disk_free_percent:.1f} % free in the data directory")
    notes = parts["notifications"]
    if r.deliveries_failed >= DELIVERY_WARNING:
        bad = "critical" if r.deliveries_failed >= DELIVERY_CRITICAL else "warning"
        notes.flag(bad, f"{r.deliveries_failed} alert notifications failed in the last day")
    if r.deliveries_stuck:
        notes.flag("warning", f"{r.deliveries_stuck} alert notifications overdue")
    if r.monitor_state != "healthy":
        for issue in r.monitor_issues or ["the GPU lease monitor is not running"]:
            parts["monitor"].flag(r.monitor_state, issue)
    beat = parts["heartbeat"]
    rate = r.runs_failed / r.runs_ended if r.runs_ended else 0.0
    beat.metrics.update(total_tasks=r.runs_total, active_count=r.runs_active, failure_rate=rate)
    if rate > HEARTBEAT_FAILURE_WARNING:
        beat.flag("warning", f"heartbeat failure rate {rate:.0%} in the last day")
    return parts


def queue_depth() -> int | None:
    if not settings.PTRACKER_REDIS_URL or background.Runner.current is not None:
        return None  # no cluster: the web process runs the tasks itself, unqueued
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size()
    except Exception:  # noqa: BLE001 - an unreachable broker is itself the finding
        return QUEUE_CRITICAL + 1


def read(now=None) -> Readings:
    from alerts.models import Delivery

    now = now or timezone.now()
    sampler = sampler_status()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    db_seconds = time.perf_counter() - started
    done = RollupState.objects.filter(resolution=Rollup.MINUTE).aggregate(m=Min("done_until"))["m"]
    newest = HostSample.objects.aggregate(m=Max("ts"))["m"]
    usage = shutil.disk_usage(settings.DATA_DIR)
    m = Monitor.current()
    state, issues = monitor.monitor_issues(m, now)
    ended = Run.objects.filter(ended_at__gte=now - DELIVERY_WINDOW)
    return Readings(
        now=now,
        sampler_alive=sampler["alive"],
        sampler_stale_for=sampler["stale_for"] if sampler["renewed_at"] else None,
        queue_depth=queue_depth(),
        db_seconds=db_seconds,
        rollup_lag=(newest - done) if done and newest and newest > done else None,
        pruned_at=Retention.current().pruned_at,
        oldest_sample=host_store.oldest(),
        disk_free_percent=100 * usage.free / usage.total,
        deliveries_failed=Delivery.objects.filter(
            status=Delivery.FAILED, transition__ts__gte=now - DELIVERY_WINDOW
        ).count(),
        deliveries_stuck=Delivery.objects.filter(
            status=Delivery.PENDING, next_try__lt=now - DELIVERY_STUCK
        ).count(),
        monitor_state=state,
        monitor_issues=issues,
        runs_ended=ended.count(),
        runs_failed=ended.filter(status__in=["fail", "orphaned"]).count(),
        runs_active=Run.objects.filter(status="running").count(),
        runs_total=Run.objects.count(),
    )


def summary(readings: Readings) -> dict:
    """The seed's answer: status, issues, components (each with its own), timestamp."""
    parts = judge(readings)
    stamp = round(readings.now.timestamp(), 3)
    status = max((p.status for p in parts.values()), key=LEVELS.index)
    return {
        "status": status,
        "issues": [issue for p in parts.values() for issue in p.issues],
        "components": {
            name: {"status": p.status, "issues": p.issues, "metrics": p.metrics, "timestamp": stamp}
            | (p.metrics if name == "heartbeat" else {})
            for name, p in parts.items()
        },
        "timestamp": stamp,
    }
