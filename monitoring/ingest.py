"""Store one Batch for one host: one transaction, a handful of queries.

The one write path for the local sampler and (later) agent pushes. It is stateless:
which watched processes were running before is read from the database, so a
restart of the sampler or a different hub process changes nothing.
"""

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from monitoring.models import Event, GpuSample, Host, HostSample, Process, ProcessSample
from monitoring.sampling import Batch, ProcessRow

log = logging.getLogger(__name__)

# Called with no arguments after each stored batch commits. The live feed of this
# process sets it (monitoring.live), to send a sample stored here at once instead of
# at its next poll; where nobody serves the feed it stays None.
announce: Callable[[], None] | None = None

HOST_FIELDS = {
    f.name for f in HostSample._meta.concrete_fields if f.name not in ("id", "host", "ts")
}


def ctime(epoch: float) -> datetime:
    """A process create_time as stored: millisecond precision round-trips in every DB."""
    return datetime.fromtimestamp(round(epoch, 3), UTC)


def store(host: Host, batch: Batch) -> HostSample:
    previous_seen = host.last_seen
    with transaction.atomic():
        sample = HostSample.objects.create(
            host=host, ts=batch.ts, **{k: v for k, v in batch.host.items() if k in HOST_FIELDS}
        )
        GpuSample.objects.bulk_create(
            GpuSample(host=host, ts=batch.ts, **gpu) for gpu in batch.gpus
        )
        processes = _identities(host, batch)
        ProcessSample.objects.bulk_create(
            _process_sample(host, batch.ts, processes[_key(row)], row) for row in batch.processes
        )
        _lifecycle(host, batch, processes, previous_seen)
        update = {"last_seen": batch.ts}
        if _back_up(host, batch.ts, previous_seen):
            update["down_since"] = None
        if batch.inventory and batch.inventory != host.inventory:
            update["inventory"] = batch.inventory
        Host.objects.filter(pk=host.pk).update(**update)
    for name, value in update.items():
        setattr(host, name, value)
    if announce is not None:
        transaction.on_commit(announce)
    for hook in after_ingest_hooks():
        try:
            hook(host, sample)
        except Exception:  # the sample is stored; a failing hook must not say otherwise
            log.exception("after-ingest hook %s failed", getattr(hook, "__qualname__", hook))
    return sample


@functools.cache
def after_ingest_hooks() -> list:
    """PTRACKER_AFTER_INGEST: functions called with (host, sample) after each stored
    batch. The alerts app evaluates its rules this way, so monitoring never imports it."""
    return [import_string(path) for path in settings.PTRACKER_AFTER_INGEST]


def _back_up(host: Host, ts: datetime, previous_seen: datetime | None) -> bool:
    """A host_up event when a host reports after being down (or silent that long)."""
    silent = previous_seen is not None and ts - previous_seen > host.offline_after()
    if host.down_since is None and not silent:
        return False
    gap = ts - previous_seen if previous_seen else None
    Event.record(
        host,
        "host_up",
        f"{host.name} is reporting again"
        + (f" after {_human(gap)} without samples" if gap else ""),
        ts=ts,
        data={"silent_seconds": gap.total_seconds() if gap else None},
    )
    return True


def _human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _key(row: ProcessRow) -> tuple[int, datetime]:
    return (row.pid, ctime(row.create_time))


def _identities(host: Host, batch: Batch) -> dict[tuple[int, datetime], Process]:
    """The Process row of every stored row: found, refreshed or created (2–3 queries)."""
    rows = {_key(r): r for r in batch.processes}
    known = {
        (p.pid, p.create_time): p
        for p in Process.objects.filter(host=host, pid__in={pid for pid, _ in rows})
        if (p.pid, p.create_time) in rows
    }
    if known:
        Process.objects.filter(pk__in=[p.pk for p in known.values()]).update(last_seen=batch.ts)
    for key, process in known.items():
        row = rows[key]
        # A watch added or removed since the identity was first stored, or a process
        # that exec'd another program (same pid and create time, new name and command).
        changed = {
            "watched_id": row.watched_id,
            "name": row.name[:255],
            "exe": row.exe,
            "cmdline": row.cmdline,
            "username": row.username[:100],
        }
        changed = {f: v for f, v in changed.items() if getattr(process, f) != v}
        if changed:
            for f, v in changed.items():
                setattr(process, f, v)
            process.save(update_fields=[f.removesuffix("_id") for f in changed])
    new = [
        Process(
            host=host,
            pid=row.pid,
            create_time=key[1],
            ppid=row.ppid,
            name=row.name[:255],
            exe=row.exe,
            cmdline=row.cmdline,
            username=row.username[:100],
            watched_id=row.watched_id,
            first_seen=batch.ts,
            last_seen=batch.ts,
        )
        for key, row in rows.items()
        if key not in known
    ]
    created = Process.objects.bulk_create(
        new,
        update_conflicts=True,
        unique_fields=["host", "pid", "create_time"],
        update_fields=["last_seen"],
    )
    for process in created:
        process._created = True
        known[(process.pid, process.create_time)] = process
    return known


def _process_sample(host: Host, ts: datetime, process: Process, row: ProcessRow):
    return ProcessSample(
        ts=ts,
        host=host,
        process=process,
        cpu_percent=row.cpu_percent,
        rss=row.rss,
        vms=row.vms,
        mem_percent=row.mem_percent,
        threads=row.threads,
        read_bps=row.read_bps,
        write_bps=row.write_bps,
        gpu_memory=row.gpu_memory,
        status=row.status[:12],
    )


def _lifecycle(host, batch: Batch, processes: dict, previous_seen: datetime | None) -> None:
    """Events for watched processes: started, exited, and vanished (watch now empty)."""
    if previous_seen is not None:
        # Started since the previous batch; older ones were running before we watched.
        since = previous_seen - timedelta(seconds=1)
        started = [
            p
            for p in processes.values()
            if getattr(p, "_created", False) and p.watched_id and p.create_time >= since
        ]
        for process in started:
            Event.record(
                host,
                "process_started",
                f"{process.name} started (pid {process.pid})",
                ts=batch.ts,
                process=process,
                data={"pid": process.pid, "cmdline": process.cmdline[:500]},
            )
    running_ids = [p.pk for p in processes.values()]
    gone = (
        Process.objects.filter(
            host=host, watched__isnull=False, watched__enabled=True, exited_at__isnull=True
        )
        .exclude(pk__in=running_ids)
        .select_related("watched")
    )
    for process in gone:
        process.exited_at = process.last_seen
        process.save(update_fields=["exited_at"])
        watch = process.watched
        if watch.id in batch.watched_running:
            kind, message = "process_exited", f"{process.name} exited (pid {process.pid})"
        else:
            kind = "process_vanished"
            message = (
                f"{process.name} exited (pid {process.pid}) and no process matches "
                f"watch {watch.name!r} any more"
            )
        Event.record(
            host,
            kind,
            message,
            ts=batch.ts,
            process=process,
            subject=f"watch:{watch.id}:{kind}",
            data={
                "pid": process.pid,
                "watch": watch.name,
                "last_seen": process.last_seen.isoformat(),
            },
        )
