"""1-minute rollups from raw samples, 1-hour rollups from 1-minute ones.

Each host has a watermark per resolution (RollupState.done_until). One step rolls
up whole buckets after the watermark and moves it, in one transaction: a crash
rolls back both, and a bucket rolled up twice is overwritten (upsert), never added
to, so nothing is ever counted twice.

Besides the Rollup series (host, GPUs, watched processes), each bucket gets
ProcessRollup rows: one per process of the bucket's top N by average CPU and by
peak RSS (PTRACKER_ROLLUP_TOP_N), every GPU user and every watched process, from
all the process samples of the bucket (hours from the minute rows). A bucket rolled
up again has its ProcessRollup rows deleted and written anew in the same
transaction, so a process that left the top N with late data leaves the bucket.
"""

import heapq
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from monitoring import background, host_store, process_store
from monitoring.models import (
    GpuSample,
    Host,
    Process,
    ProcessRollup,
    Rollup,
    RollupState,
)

HOST_METRICS = [
    "cpu_percent",
    "load1",
    "mem_used",
    "mem_available",
    "swap_used",
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
    "process_count",
    "thread_count",
]
GPU_METRICS = ["utilization", "memory_used", "temperature", "power_w"]
PROCESS_METRICS = ["cpu_percent", "rss", "threads", "read_bps", "write_bps", "gpu_memory"]

# Buckets this close to now wait: a late sample of the bucket could still arrive.
GRACE = timedelta(seconds=30)
# Buckets per transaction: short transactions keep SQLite's writer lock brief.
MINUTE_STEP = timedelta(hours=1)
HOUR_STEP = timedelta(days=1)


def floor(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, ts.tzinfo)


class Stats:
    """avg/min/max/last of one metric over one bucket, fed in time order."""

    __slots__ = ("total", "n", "low", "high", "last")

    def __init__(self) -> None:
        self.total, self.n, self.low, self.high, self.last = 0.0, 0, None, None, None

    def add(self, value, weight: int = 1, low=None, high=None) -> None:
        if value is None:
            return
        self.total += value * weight
        self.n += weight
        low = value if low is None else low
        high = value if high is None else high
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        self.last = value

    def result(self, rows: int) -> list | None:
        """[avg, min, max, last], plus the number of values when fewer than `rows`."""
        if not self.n:
            return None
        values = [round(self.total / self.n, 4), self.low, self.high, self.last]
        return values if self.n == rows else [*values, self.n]


def _rollup_rows(host, resolution, groups: dict) -> list[Rollup]:
    """groups: (series, bucket) -> (count, {metric: Stats})"""
    rows = []
    for (series, bucket), (count, stats) in groups.items():
        values = {m: s.result(count) for m, s in stats.items() if s.n}
        rows.append(
            Rollup(
                host=host,
                resolution=resolution,
                series=series,
                bucket=bucket,
                count=count,
                values=values,
            )
        )
    return rows


def _upsert(rows: list[Rollup]) -> None:
    Rollup.objects.bulk_create(
        rows,
        batch_size=500,
        update_conflicts=True,
        unique_fields=["host", "resolution", "series", "bucket"],
        update_fields=["count", "values"],
    )


def _new_groups():
    return defaultdict(lambda: [0, defaultdict(Stats)])


def _bigger(a, b):
    return b if a is None else a if b is None else max(a, b)


class ProcessStats:
    """One process over one bucket, fed raw samples (weight 1) or minute rows (weight:
    their samples) in time order. Means count only the samples that had the value,
    so a process present for part of the bucket is not diluted."""

    __slots__ = (
        "samples",
        "sums",
        "counts",
        "cpu_max",
        "rss_max",
        "rss_last",
        "threads_max",
        "gpu_max",
        "watched",
    )

    def __init__(self) -> None:
        self.samples = 0
        self.sums = [0.0, 0.0, 0.0, 0.0]  # cpu, rss, read, write
        self.counts = [0, 0, 0, 0]
        self.cpu_max = self.rss_max = self.rss_last = self.threads_max = self.gpu_max = None
        self.watched = False

    def add(self, weight, means, cpu_max, rss_max, rss_last, threads_max, gpu_max) -> None:
        """means: (cpu, rss, read, write), each None when missing."""
        self.samples += weight
        for i, value in enumerate(means):
            if value is not None:
                self.sums[i] += value * weight
                self.counts[i] += weight
        self.cpu_max = _bigger(self.cpu_max, cpu_max)
        self.rss_max = _bigger(self.rss_max, rss_max)
        self.threads_max = _bigger(self.threads_max, threads_max)
        self.gpu_max = _bigger(self.gpu_max, gpu_max)
        if rss_last is not None:
            self.rss_last = rss_last

    def mean(self, i: int) -> float | None:
        return self.sums[i] / self.counts[i] if self.counts[i] else None

    def row(self, host: Host, resolution: int, bucket: datetime, process_id: int):
        rss = self.mean(1)
        return ProcessRollup(
            host=host,
            resolution=resolution,
            bucket=bucket,
            process_id=process_id,
            samples=self.samples,
            cpu_avg=self.mean(0),
            cpu_max=self.cpu_max,
            rss_avg=None if rss is None else round(rss),
            rss_max=self.rss_max,
            rss_last=self.rss_last,
            threads_max=self.threads_max,
            read_bps_avg=self.mean(2),
            write_bps_avg=self.mean(3),
            gpu_memory_max=self.gpu_max,
        )


def kept_processes(stats: dict[int, ProcessStats], n: int) -> set[int]:
    """Of one bucket's processes, those that get a row: the top n by average CPU and
    by peak RSS, GPU users and watched processes."""
    keep = {pid for pid, s in stats.items() if s.watched or s.gpu_max}
    with_cpu = [pid for pid, s in stats.items() if s.counts[0]]
    keep.update(heapq.nlargest(n, with_cpu, key=lambda pid: stats[pid].mean(0)))
    with_rss = [pid for pid, s in stats.items() if s.rss_max is not None]
    keep.update(heapq.nlargest(n, with_rss, key=lambda pid: stats[pid].rss_max))
    return keep


def process_rollup_rows(host: Host, resolution: int, processes: dict) -> list[ProcessRollup]:
    """processes: bucket -> {process id: ProcessStats}"""
    n = settings.PTRACKER_ROLLUP_TOP_N
    rows = []
    for bucket, stats in processes.items():
        for pid in sorted(kept_processes(stats, n)):
            rows.append(stats[pid].row(host, resolution, bucket, pid))
    return rows


def _new_processes():
    return defaultdict(lambda: defaultdict(ProcessStats))


def minute_groups(host: Host, start: datetime, end: datetime) -> tuple[dict, dict]:
    """(Rollup groups, ProcessRollup stats) of the minutes in [start, end)."""
    groups = _new_groups()
    processes = _new_processes()

    def feed(series, ts, row, metrics):
        group = groups[(series, floor(ts, 60))]
        group[0] += 1
        for metric in metrics:
            group[1][metric].add(row[metric])

    # Rows and packed chunks alike (a late batch may reopen a packed hour).
    for row in host_store.HOST.named(host.pk, start, end, HOST_METRICS):
        feed("host", row["ts"], row, HOST_METRICS)
    gpus = GpuSample.objects.filter(host=host, ts__gte=start, ts__lt=end).order_by("ts")
    for row in gpus.values("ts", "index", *GPU_METRICS).iterator(chunk_size=2000):
        feed(f"gpu:{row['index']}", row["ts"], row, GPU_METRICS)
    # Every process sample: all feed ProcessRollup; watched ones also their Rollup series.
    # Raw rows and packed chunks alike (a late batch may reopen a packed hour).
    procs = process_store.RAW.values(host.pk, start, end)
    watched = _watched({r[1] for r in procs})
    at = [process_store.RAW.fields.index(m) for m in PROCESS_METRICS]
    for row in procs:
        ts, pid = row[0], row[1]
        cpu, rss, threads, read, write, gpu = (row[i] for i in at)
        stats = processes[floor(ts, 60)][pid]
        stats.add(1, (cpu, rss, read, write), cpu, rss, rss, threads, gpu)
        if pid in watched:
            stats.watched = True
            feed(
                f"process:{pid}",
                ts,
                dict(zip(process_store.RAW.fields, row, strict=True)),
                PROCESS_METRICS,
            )
    return groups, processes


def hour_groups(host: Host, start: datetime, end: datetime) -> tuple[dict, dict]:
    """(Rollup groups, ProcessRollup stats) of the hours in [start, end), from minutes."""
    groups = _new_groups()
    processes = _new_processes()
    minutes = Rollup.objects.filter(
        host=host, resolution=Rollup.MINUTE, bucket__gte=start, bucket__lt=end
    ).order_by("bucket")
    for r in minutes.iterator(chunk_size=2000):
        group = groups[(r.series, floor(r.bucket, 3600))]
        group[0] += r.count
        for metric, (avg, low, high, last, *n) in r.values.items():
            stats = group[1][metric]
            # Weight by the number of values so the hour's mean is the mean of its raw
            # values, also for a metric that was missing (None) in some samples.
            stats.add(avg, weight=n[0] if n else r.count, low=low, high=high)
            stats.last = last
    # Rows and packed chunks alike (late data may reopen an hour whose minutes are packed).
    minutes = process_store.MINUTE.values(host.pk, start, end)
    watched = _watched({r[1] for r in minutes})
    at = {name: i for i, name in enumerate(process_store.MINUTE.fields)}
    means = [at[c] for c in ("cpu_avg", "rss_avg", "read_bps_avg", "write_bps_avg")]
    peaks = [at[c] for c in ("cpu_max", "rss_max", "rss_last", "threads_max", "gpu_memory_max")]
    for row in minutes:
        bucket, pid = row[0], row[1]
        stats = processes[floor(bucket, 3600)][pid]
        stats.add(row[at["samples"]], [row[i] for i in means], *(row[i] for i in peaks))
        stats.watched = stats.watched or pid in watched
    return groups, processes


def _watched(process_ids: set[int]) -> set[int]:
    found = Process.objects.filter(pk__in=process_ids, watched__isnull=False)
    return set(found.values_list("pk", flat=True))


def _first_data(host: Host, resolution: int) -> datetime | None:
    if resolution == Rollup.MINUTE:
        first = host_store.HOST.earliest(host.pk)
        first = (first,) if first else None
    else:
        first = (
            Rollup.objects.filter(host=host, resolution=Rollup.MINUTE)
            .order_by("bucket")
            .values_list("bucket")
            .first()
        )
    return floor(first[0], resolution) if first else None


def _next_data(host: Host, resolution: int, after: datetime) -> datetime | None:
    """Skip a gap (ptracker was stopped) in one query instead of bucket by bucket."""
    if resolution == Rollup.MINUTE:
        first = host_store.HOST.earliest(host.pk, after)
    else:
        first = (
            Rollup.objects.filter(host=host, resolution=Rollup.MINUTE, bucket__gte=after)
            .order_by("bucket")
            .values_list("bucket", flat=True)
            .first()
        )
    return floor(first, resolution) if first else None


def reopen(host: Host, ts: datetime) -> None:
    """A sample at `ts` arrived behind the watermarks: move them back so its buckets
    are rolled up again (upserts, and ProcessRollup rows deleted and written anew:
    the redone buckets replace the old ones)."""
    minute, hour = floor(ts, Rollup.MINUTE), floor(ts, Rollup.HOUR)
    RollupState.objects.filter(
        Q(resolution=Rollup.MINUTE, done_until__gt=minute)
        | Q(resolution=Rollup.HOUR, done_until__gt=hour),
        host=host,
    ).update(
        done_until=Case(When(resolution=Rollup.MINUTE, then=Value(minute)), default=Value(hour))
    )


def roll_up_host(host: Host, resolution: int, now: datetime | None = None) -> int:
    """Roll up every complete bucket after the watermark; returns buckets written."""
    now = now or timezone.now()
    if resolution == Rollup.MINUTE:
        limit = floor(now - GRACE, 60)
        step, grouper = MINUTE_STEP, minute_groups
    else:
        minute_state = RollupState.objects.filter(host=host, resolution=Rollup.MINUTE).first()
        if minute_state is None:
            return 0
        limit = floor(minute_state.done_until, 3600)
        step, grouper = HOUR_STEP, hour_groups
    state = RollupState.objects.filter(host=host, resolution=resolution).first()
    start = state.done_until if state else _first_data(host, resolution)
    written = 0
    while start is not None and start < limit:
        start = max(start, _next_data(host, resolution, start) or limit)
        end = min(start + step, limit)
        if start >= end:
            end = limit
        with transaction.atomic():
            groups, processes = grouper(host, start, end)
            rows = _rollup_rows(host, resolution, groups)
            _upsert(rows)
            process_rows = process_rollup_rows(host, resolution, processes)
            _replace_process_rollups(host, resolution, {b for _, b in groups} | set(processes))
            ProcessRollup.objects.bulk_create(process_rows, batch_size=1000)
            _note_history_tier(resolution, process_rows)
            RollupState.objects.update_or_create(
                host=host, resolution=resolution, defaults={"done_until": end}
            )
        written += len(rows) + len(process_rows)
        start = end
    return written


def _replace_process_rollups(host: Host, resolution: int, buckets: set[datetime]) -> None:
    """Delete the ProcessRollup rows (and packed entries) of the buckets about to be
    written: a bucket rolled up again (late data) keeps only the processes its new top
    N selects. Only buckets that have data now: one whose raw samples are already
    pruned keeps its rows."""
    if buckets:
        ProcessRollup.objects.filter(
            host=host, resolution=resolution, bucket__in=sorted(buckets)
        ).delete()
        process_store.STORES[resolution].drop(host.pk, buckets)


def _note_history_tier(resolution: int, rows: list[ProcessRollup]) -> None:
    """Retention keeps an identity as long as the longest tier holding it."""
    ids = {row.process_id for row in rows}
    Process.objects.filter(pk__in=ids, history_tier__lt=resolution).update(history_tier=resolution)


def roll_up(now: datetime | None = None) -> int:
    written = 0
    for host in Host.objects.all():
        written += roll_up_host(host, Rollup.MINUTE, now)
        written += roll_up_host(host, Rollup.HOUR, now)
        background.pace()
    return written
