"""Background tasks, run by the web process's Runner or a django-q2 cluster (see
monitoring.background).

The sampler. django-q2's scheduler is minute-grained, so sampling every few seconds
needs a loop that lives inside one task. The loop holds a Lease (one per machine), so
only one sampler runs however many workers or clusters start it. It samples for one
shift (PTRACKER_SAMPLER_SHIFT, 5 minutes by default), then hands the lease straight
to a fresh task it enqueues, which reads the counters once on start and so goes on
without a gap. Bounded shifts keep every task under the cluster's timeout (a hung
read ends in a killed worker and a replaced loop, not a stuck one), let workers
recycle, and mean no task stays unacknowledged long enough for the broker to
deliver it twice.

A dead loop (killed worker, lost task) leaves its lease to expire; the minute
schedule `ensure_sampler` then starts a new one.

The puller (monitoring.pull) is a loop of the same kind, one per hub (a lease
named "puller"), while some host has a pull URL: every interval it fetches the
batches waiting on those hosts' agents.

Stopping: django-q2 workers ignore SIGINT and the cluster waits for running tasks
before it exits, so the loop listens for SIGINT/SIGTERM itself while it runs, ends
its tick, releases the lease and returns. In a Runner thread, the Runner's stop
event does the same.
"""

import logging
import os
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from monitoring import background, host_store, ingest, process_store, pull, retention, rollups
from monitoring.collectors.system import local_machine_id
from monitoring.models import Event, Host, Lease, WatchedProcess
from monitoring.patterns import PatternError, compile_pattern
from monitoring.sampling import Batch, Sampler, StopSignals, TickLoop, Watch

log = logging.getLogger(__name__)

SAMPLER_TASK = "monitoring.tasks.run_sampler"
PULLER_TASK = "monitoring.tasks.run_puller"
PULLER_LEASE = "puller"  # one for all hub processes: they share the hosts

# Command lines, exe and user of the processes seen, kept from one shift's Sampler to
# the next in this worker, so a new shift does not read them all again.
PROCESS_STATIC: dict = {}


def sampler_lease_name() -> str:
    return f"sampler:{local_machine_id()}"


def lease_ttl(interval: int) -> float:
    return max(3 * interval, 15)


def load_watches(host: Host) -> list[Watch]:
    watches = []
    for w in WatchedProcess.objects.filter(enabled=True).prefetch_related("hosts"):
        hosts = list(w.hosts.all())
        if hosts and host not in hosts:
            continue
        try:
            watches.append(Watch(id=w.id, field=w.field, regex=compile_pattern(w.pattern)))
        except PatternError as exc:  # saved before patterns were checked with RE2
            log.warning("watch %r skipped: %s", w.name, exc)
    return watches


def run_sampler(
    token: str | None = None,
    shift: float | None = None,
    stop: threading.Event | None = None,
    hand_over: bool = True,
) -> str:
    """Sample this machine every PTRACKER_SAMPLE_INTERVAL seconds for one shift."""
    interval = settings.PTRACKER_SAMPLE_INTERVAL
    shift = settings.PTRACKER_SAMPLER_SHIFT if shift is None else shift
    stop = stop or threading.Event()
    name = sampler_lease_name()
    owner = token or Lease.new_owner()
    ttl = lease_ttl(interval)
    if not Lease.acquire(name, owner, ttl):
        return "another sampler holds the lease"
    host = Host.local()
    if host.sample_interval != interval:
        Host.objects.filter(pk=host.pk).update(sample_interval=interval)
        host.sample_interval = interval
    if token is None:
        Event.record(host, "sampler_started", f"sampling every {interval} s", subject="sampler")
    sampler = Sampler(
        top_n=settings.PTRACKER_TOP_N, watches=load_watches(host), static=PROCESS_STATIC
    )
    sampler.service_patterns = tuple(host.service_patterns.split())

    def store(batch: Batch) -> None:
        try:
            ingest.store(host, batch)
        except Exception:
            close_old_connections()  # a broken connection is replaced on next use
            raise

    def after_tick(ticks: int) -> str | None:
        if not Lease.renew(name, owner, ttl, ticks=ticks, pid=os.getpid()):
            log.warning("sampler lease taken by another sampler; this one stops")
            return "lease lost"
        sampler.watches = load_watches(host)
        return None

    loop = TickLoop(sampler, store, interval, stop)
    ended_by = loop.run(until=time.monotonic() + shift, after_tick=after_tick)
    end_shift(name, owner, ttl, ended_by, hand_over and not stop.is_set(), SAMPLER_TASK)
    return f"{loop.ticks} samples, {ended_by}"


def end_shift(name: str, owner: str, ttl: float, ended_by: str, hand_over: bool, task: str):
    """Hand the lease of a loop whose shift is over to a fresh task, or let it go."""
    if ended_by == "shift over" and hand_over:
        successor = Lease.new_owner()
        if Lease.hand_over(name, owner, successor, ttl):
            background.enqueue(task, task_name=f"{label(task)}-{successor[:8]}", token=successor)
    elif ended_by != "lease lost":
        Lease.release(name, owner)


def run_puller(
    token: str | None = None,
    shift: float | None = None,
    stop: threading.Event | None = None,
    hand_over: bool = True,
) -> str:
    """Pull the hosts that have a pull URL every PTRACKER_SAMPLE_INTERVAL seconds (at
    once while a backlog comes in full pages) for one shift, or until none is left."""
    interval = settings.PTRACKER_SAMPLE_INTERVAL
    shift = settings.PTRACKER_SAMPLER_SHIFT if shift is None else shift
    stop = stop or threading.Event()
    owner = token or Lease.new_owner()
    ttl = lease_ttl(interval) + 2 * pull.TIMEOUT  # a round may wait for two answers
    if not Lease.acquire(PULLER_LEASE, owner, ttl):
        return "another puller holds the lease"
    until, rounds, ended_by = time.monotonic() + shift, 0, None
    with StopSignals(stop):
        while ended_by is None:
            started = time.monotonic()
            try:
                more = pull.pull_round()
            except Exception:
                log.exception("a pull round failed")
                close_old_connections()  # a broken connection is replaced on next use
                more = False
            rounds += 1
            wait = 0.0 if more else max(0.0, interval - (time.monotonic() - started))
            if more is None:
                ended_by = "no host to pull"
            elif not Lease.renew(PULLER_LEASE, owner, ttl, rounds=rounds, pid=os.getpid()):
                log.warning("puller lease taken by another puller; this one stops")
                ended_by = "lease lost"
            elif time.monotonic() + wait > until:
                ended_by = "shift over"
            elif stop.wait(wait):
                ended_by = "stop requested"
    end_shift(PULLER_LEASE, owner, ttl, ended_by, hand_over and not stop.is_set(), PULLER_TASK)
    return f"{rounds} rounds, {ended_by}"


def label(task: str) -> str:
    """A loop's name in the queue and in messages: "sampler" for …run_sampler."""
    return task.rpartition(".run_")[2]


def ensure_running(lease_name: str, task: str) -> str:
    lease = Lease.objects.filter(name=lease_name).first()
    if lease and lease.expires_at > timezone.now():
        return f"{label(task)} alive"
    background.enqueue(task, task_name=label(task))
    return f"{label(task)} started"


def ensure_sampler() -> str:
    """Minute schedule: start a sampler if none holds a live lease."""
    return ensure_running(sampler_lease_name(), SAMPLER_TASK)


def ensure_puller() -> str:
    """Minute schedule: start a puller if a host has a pull URL and none holds a live lease."""
    if not Host.objects.filter(enabled=True).exclude(pull_url="").exists():
        return "no host to pull"
    return ensure_running(PULLER_LEASE, PULLER_TASK)


def check_hosts(now=None) -> str:
    """Minute schedule: a host_down event for each host that went silent."""
    now = now or timezone.now()
    down = []
    for host in Host.objects.filter(enabled=True, down_since__isnull=True, last_seen__isnull=False):
        if now - host.last_seen <= host.offline_after():
            continue
        # Conditional update: with several clusters, one of them reports it.
        if Host.objects.filter(pk=host.pk, down_since__isnull=True).update(down_since=now):
            Event.record(
                host,
                "host_down",
                f"{host.name} stopped reporting (last sample {host.last_seen:%H:%M:%S} UTC)",
                ts=now,
                data={"last_seen": host.last_seen.isoformat()},
            )
            down.append(host.name)
    return f"down: {', '.join(down)}" if down else "all hosts reporting"


def roll_up() -> str:
    """Roll up (host series, processes, app metrics), then pack the raw samples the
    rollups have long read."""
    from appmetrics import rollups as app_rollups  # an app of its own, beside monitoring

    written = rollups.roll_up()
    now = timezone.now()
    apps = app_rollups.roll_up(now)
    app_hours = app_rollups.roll_up_hours(now)
    processes = process_store.pack()
    hosts = host_store.pack(budget=10.0)  # with the 20 s of processes: half a minute at most
    return (
        f"{written} rollup rows written, {apps} app-metric minutes, {app_hours} hours, "
        f"{processes} process chunks, {hosts} host chunks packed"
    )


def prune() -> str:
    counts = retention.prune()
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def sampler_status() -> dict:
    lease = Lease.objects.filter(name=sampler_lease_name()).first()
    now = timezone.now()
    alive = bool(lease and lease.expires_at > now and lease.owner)
    return {
        "alive": alive,
        "renewed_at": lease.renewed_at if lease else None,
        "stale_for": (now - lease.expires_at) if lease and not alive else timedelta(0),
    }
