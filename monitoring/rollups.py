"""1-minute rollups from raw samples, 1-hour rollups from 1-minute ones.

Each host has a watermark per resolution (RollupState.done_until). One step rolls
up whole buckets after the watermark and moves it, in one transaction: a crash
rolls back both, and a bucket rolled up twice is overwritten (upsert), never added
to, so nothing is ever counted twice.
"""

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from monitoring.models import GpuSample, Host, HostSample, ProcessSample, Rollup, RollupState

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


def minute_groups(host: Host, start: datetime, end: datetime) -> dict:
    groups = _new_groups()

    def feed(series, ts, row, metrics):
        group = groups[(series, floor(ts, 60))]
        group[0] += 1
        for metric in metrics:
            group[1][metric].add(row[metric])

    samples = HostSample.objects.filter(host=host, ts__gte=start, ts__lt=end).order_by("ts")
    for row in samples.values("ts", *HOST_METRICS).iterator(chunk_size=2000):
        feed("host", row["ts"], row, HOST_METRICS)
    gpus = GpuSample.objects.filter(host=host, ts__gte=start, ts__lt=end).order_by("ts")
    for row in gpus.values("ts", "index", *GPU_METRICS).iterator(chunk_size=2000):
        feed(f"gpu:{row['index']}", row["ts"], row, GPU_METRICS)
    # Watched processes only: the top-N of the moment are kept raw and expire.
    procs = ProcessSample.objects.filter(
        host=host, ts__gte=start, ts__lt=end, process__watched__isnull=False
    ).order_by("ts")
    for row in procs.values("ts", "process_id", *PROCESS_METRICS).iterator(chunk_size=2000):
        feed(f"process:{row['process_id']}", row["ts"], row, PROCESS_METRICS)
    return groups


def hour_groups(host: Host, start: datetime, end: datetime) -> dict:
    groups = _new_groups()
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
    return groups


def _first_data(host: Host, resolution: int) -> datetime | None:
    if resolution == Rollup.MINUTE:
        first = HostSample.objects.filter(host=host).order_by("ts").values_list("ts").first()
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
        row = HostSample.objects.filter(host=host, ts__gte=after).order_by("ts").values_list("ts")
    else:
        row = (
            Rollup.objects.filter(host=host, resolution=Rollup.MINUTE, bucket__gte=after)
            .order_by("bucket")
            .values_list("bucket")
        )
    first = row.first()
    return floor(first[0], resolution) if first else None


def reopen(host: Host, ts: datetime) -> None:
    """A sample at `ts` arrived behind the watermarks: move them back so its buckets
    are rolled up again (upserts: the redone buckets replace the old ones)."""
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
            rows = _rollup_rows(host, resolution, grouper(host, start, end))
            _upsert(rows)
            RollupState.objects.update_or_create(
                host=host, resolution=resolution, defaults={"done_until": end}
            )
        written += len(rows)
        start = end
    return written


def roll_up(now: datetime | None = None) -> int:
    written = 0
    for host in Host.objects.all():
        written += roll_up_host(host, Rollup.MINUTE, now)
        written += roll_up_host(host, Rollup.HOUR, now)
    return written
