"""Time series of any host, GPU or process metric, at a resolution a chart can draw.

A request names metrics and a range. The source tier is the finest one that
retention still covers and that needs at most MAX_ROWS rows per series (raw samples),
or spans at most MAX_MINUTE_SPAN (1-minute rollups), else 1-hour rollups; its rows
are then averaged (or min/max'ed) into steps so that no series has more than
MAX_POINTS points. A process's rollups are its ProcessRollup rows: any process that
was ever in a bucket's top N has history for as long as that tier is kept.

Metric names: "cpu_percent" (host), "cpu:<n>" (core n, from raw samples only: per-core
values are not rolled up), "gpu:<index>:utilization", "process:<id>:rss".
Their labels and units are declared once, here, for the pages, the API and exports.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from monitoring import host_store, process_store
from monitoring.models import (
    GpuSample,
    Host,
    Retention,
    Rollup,
    RollupState,
)
from monitoring.params import BadParameter, parse_id, whole_number
from monitoring.rollups import Stats, floor

MAX_POINTS = 1000
MAX_ROWS = 12_000  # raw rows read per series: 16 h of 5-second samples
# Longer ranges read hours: 3 days of minutes is already 4,320 rows per series for
# some 860 points; a week would be 10,080 rows, where hours give 168 points.
MAX_MINUTE_SPAN = timedelta(days=3)
MAX_SERIES = 200  # per request; the host page asks for 8 + 4 per GPU
MAX_GPU_INDEX = 2**15 - 1  # GpuSample.index is a small integer
MAX_CORE = 4095


@dataclass(frozen=True)
class Metric:
    field: str
    label: str
    unit: str  # "%", "bytes", "bytes/s", "count" (whole numbers), "" (a ratio), "°C", "W"


HOST_METRICS = {
    m.field: m
    for m in [
        Metric("cpu_percent", "CPU", "%"),
        Metric("load1", "Load (1 min)", ""),
        Metric("mem_used", "Memory used", "bytes"),
        Metric("mem_available", "Memory available", "bytes"),
        Metric("swap_used", "Swap used", "bytes"),
        Metric("disk_read_bps", "Disk read", "bytes/s"),
        Metric("disk_write_bps", "Disk write", "bytes/s"),
        Metric("net_rx_bps", "Network in", "bytes/s"),
        Metric("net_tx_bps", "Network out", "bytes/s"),
        Metric("process_count", "Processes", "count"),
        Metric("thread_count", "Threads", "count"),
    ]
}
GPU_METRICS = {
    m.field: m
    for m in [
        Metric("utilization", "GPU utilization", "%"),
        Metric("memory_used", "GPU memory used", "bytes"),
        Metric("temperature", "GPU temperature", "°C"),
        Metric("power_w", "GPU power", "W"),
    ]
}
PROCESS_METRICS = {
    m.field: m
    for m in [
        Metric("cpu_percent", "CPU (of one core)", "%"),
        Metric("rss", "Resident memory", "bytes"),
        Metric("threads", "Threads", "count"),
        Metric("read_bps", "Disk read", "bytes/s"),
        Metric("write_bps", "Disk write", "bytes/s"),
        Metric("gpu_memory", "GPU memory", "bytes"),
    ]
}
AGGREGATES = {"avg": 0, "min": 1, "max": 2}
# A process metric's columns in ProcessRollup: (the line, the peak). No minimum is
# kept: min over a rollup tier is the lowest average.
PROCESS_ROLLUP_COLUMNS = {
    "cpu_percent": ("cpu_avg", "cpu_max"),
    "rss": ("rss_avg", "rss_max"),
    "threads": ("threads_max", "threads_max"),
    "read_bps": ("read_bps_avg", "read_bps_avg"),
    "write_bps": ("write_bps_avg", "write_bps_avg"),
    "gpu_memory": ("gpu_memory_max", "gpu_memory_max"),
}


@dataclass(frozen=True)
class Series:
    """A parsed metric name: where its rows live and which field to read."""

    name: str
    source: str  # host | core | gpu | process
    key: int | None  # core number, gpu index or Process id
    metric: Metric

    @property
    def rollup_series(self) -> str:
        # Cores read the host's rollup rows, which hold no per-core values: no rows.
        return "host" if self.source in ("host", "core") else f"{self.source}:{self.key}"


def parse_metric(name: str) -> Series:
    parts = name.split(":")
    try:
        if len(parts) == 1 and name in HOST_METRICS:
            return Series(name, "host", None, HOST_METRICS[name])
        if len(parts) == 2 and parts[0] == "cpu":
            core = whole_number(parts[1], "the core number", 0, MAX_CORE)
            return Series(name, "core", core, Metric("per_cpu", f"CPU {core}", "%"))
        if len(parts) == 3 and parts[0] == "gpu" and parts[2] in GPU_METRICS:
            index = whole_number(parts[1], "the GPU index", 0, MAX_GPU_INDEX)
            return Series(name, "gpu", index, GPU_METRICS[parts[2]])
        if len(parts) == 3 and parts[0] == "process" and parts[2] in PROCESS_METRICS:
            process_id = parse_id(parts[1], "the process id")
            return Series(name, "process", process_id, PROCESS_METRICS[parts[2]])
    except BadParameter as exc:
        raise BadParameter("metric", f"unknown metric {name[:60]!r}: {exc}") from None
    raise BadParameter(
        "metric",
        f"unknown metric {name[:60]!r}: use one of {', '.join(HOST_METRICS)}, cpu:<core>, "
        f"gpu:<index>:<{'|'.join(GPU_METRICS)}> or process:<id>:<{'|'.join(PROCESS_METRICS)}>",
    )


def choose_tier(host: Host, start: datetime, end: datetime, now: datetime) -> int:
    """Seconds per source row: the host's interval (raw), 60 or 3600."""
    policy = Retention.current()
    span = (end - start).total_seconds()
    interval = max(host.sample_interval, 1)
    if start >= now - timedelta(hours=policy.raw_hours) and span / interval <= MAX_ROWS:
        return 0  # raw
    if start >= now - timedelta(days=policy.minute_days) and end - start <= MAX_MINUTE_SPAN:
        return Rollup.MINUTE
    return Rollup.HOUR


def choose_step(span: float, tier_seconds: int) -> int:
    step = max(tier_seconds, math.ceil(span / MAX_POINTS))
    if tier_seconds:
        step = math.ceil(step / tier_seconds) * tier_seconds
    return step


def _raw_rows(host: Host, series: list[Series], start, end):
    """(ts, series name, value) of the raw samples, one query per source; the cores
    are read from the host's samples, with its own metrics."""
    by_source: dict[tuple, list[Series]] = {}
    for s in series:
        key = ("host", None) if s.source == "core" else (s.source, s.key)
        by_source.setdefault(key, []).append(s)
    for (source, key), group in by_source.items():
        fields = list(dict.fromkeys(s.metric.field for s in group))
        if source in ("process", "host"):
            # Rows and packed chunks alike (raw samples older than the hot window).
            store = process_store.RAW if source == "process" else host_store.HOST
            ids = [key] if source == "process" else None
            found = store.values(host.pk, start, end, ids, columns=fields)
            rows = ((r[0], *r[2:]) for r in found)
        else:
            qs = GpuSample.objects.filter(host=host, index=key, ts__gte=start, ts__lt=end)
            rows = qs.order_by("ts").values_list("ts", *fields).iterator(chunk_size=5000)
        for ts, *values in rows:
            row = dict(zip(fields, values, strict=True))
            for s in group:
                value = row[s.metric.field]
                if s.source == "core":
                    value = value[s.key] if s.key < len(value or ()) else None
                yield ts, s.name, value, value, value, 1


def _process_rollup_rows(host: Host, series: list[Series], start, end, resolution: int):
    """(bucket, series name, avg, low, high, n) from the processes' ProcessRollup rows,
    in bucket order."""
    by_process: dict[int, list[Series]] = {}
    for s in series:
        by_process.setdefault(s.key, []).append(s)
    store = process_store.STORES[resolution]
    found = store.values(host.pk, floor(start, resolution), end, list(by_process))
    for values in found:
        row = dict(zip(store.fields, values, strict=True))
        bucket, process_id, samples = values[0], values[1], row["samples"]
        for s in by_process[process_id]:
            line, peak = PROCESS_ROLLUP_COLUMNS[s.metric.field]
            yield bucket, s.name, row[line], None, row[peak], samples


def _rollup_rows(host: Host, series: list[Series], start, end, resolution: int):
    processes = [s for s in series if s.source == "process"]
    # Buckets rolled up before ProcessRollup existed hold watched processes only, as
    # JSON Rollup rows: read those up to each process's first ProcessRollup bucket.
    first: dict[str, datetime] = {}
    for row in _process_rollup_rows(host, processes, start, end, resolution):
        first.setdefault(row[1], row[0])
        yield row
    names = {}
    for s in series:
        names.setdefault(s.rollup_series, []).append(s)
    rows = (
        Rollup.objects.filter(
            host=host,
            resolution=resolution,
            series__in=list(names),
            bucket__gte=floor(start, resolution),
            bucket__lt=end,
        )
        .order_by("bucket")
        .values_list("bucket", "series", "count", "values")
    )
    for bucket, name, count, values in rows.iterator(chunk_size=5000):
        for s in names[name]:
            if s.source == "process" and s.name in first and bucket >= first[s.name]:
                continue
            stats = values.get(s.metric.field)
            if stats:
                n = stats[4] if len(stats) > 4 else count
                yield bucket, s.name, stats[0], stats[1], stats[2], n


def _rows(host: Host, series: list[Series], start, end, tier: int):
    """Rows of `tier` up to its watermark, then the finer tiers for the newest part
    (the last minutes are never rolled up yet, and a chart must still reach now)."""
    if not tier:
        yield from _raw_rows(host, series, start, end)
        return
    state = RollupState.objects.filter(host=host, resolution=tier).first()
    done = min(state.done_until, end) if state else start
    if done > start:
        yield from _rollup_rows(host, series, start, done, tier)
    if done < end:
        finer = Rollup.MINUTE if tier == Rollup.HOUR else 0
        yield from _rows(host, series, max(start, done), end, finer)


def query(
    host: Host,
    metrics: list[str],
    start: datetime,
    end: datetime,
    agg: str = "avg",
    step: int | None = None,
    now: datetime | None = None,
) -> dict:
    """{"resolution", "step", "series": [{"metric", "label", "unit", "points"}]}.

    points are [epoch milliseconds, value] at the start of each step; a step with no
    data after one with data gives a [ms, None] point so charts draw a gap.
    """
    now = now or timezone.now()
    metrics = list(dict.fromkeys(metrics))
    if not metrics:
        raise BadParameter("metric", "name at least one metric")
    if len(metrics) > MAX_SERIES:
        raise BadParameter("metric", f"at most {MAX_SERIES} metrics at once")
    if agg not in AGGREGATES:
        raise BadParameter("agg", f"agg must be one of {', '.join(AGGREGATES)}, got {agg[:40]!r}")
    if end <= start:
        raise BadParameter("to", "the range is empty or inverted: `to` must be after `from`")
    parsed = [parse_metric(m) for m in metrics]
    span = (end - start).total_seconds()
    tier = choose_tier(host, start, end, now)
    if step is not None:
        if step < 1:
            raise BadParameter("step", "step must be a positive number of seconds")
        if span / step > MAX_POINTS * 10:
            raise BadParameter(
                "step",
                f"step {step} s gives {int(span / step)} points per series; "
                f"at most {MAX_POINTS * 10} can be asked for",
            )
        # A step coarser than a rollup lets the cheaper tier answer.
        for coarser in (Rollup.MINUTE, Rollup.HOUR):
            if step >= coarser and step % coarser == 0 and tier < coarser:
                tier = coarser
    else:
        step = choose_step(span, tier or max(host.sample_interval, 1))
    rows = _rows(host, parsed, start, end, tier)
    buckets: dict[str, dict[int, Stats]] = {s.name: {} for s in parsed}
    origin = int(start.timestamp())
    for ts, name, avg, low, high, n in rows:
        if avg is None:
            continue
        slot = origin + (int(ts.timestamp()) - origin) // step * step
        stats = buckets[name].get(slot)
        if stats is None:
            stats = buckets[name][slot] = Stats()
        stats.add(avg, weight=n, low=low, high=high)
    index = AGGREGATES[agg]
    series = []
    for s in parsed:
        points = []
        previous = None
        for slot in sorted(buckets[s.name]):
            if previous is not None and slot - previous > step:
                points.append([(previous + step) * 1000, None])
            value = buckets[s.name][slot].result(0)[index]
            points.append([slot * 1000, round(value, 4) if value is not None else None])
            previous = slot
        series.append(
            {"metric": s.name, "label": s.metric.label, "unit": s.metric.unit, "points": points}
        )
    return {"resolution": tier or host.sample_interval, "step": step, "series": series}


def summarize(host: Host, metrics: list[str], start: datetime, end: datetime) -> dict:
    """{metric: {"avg", "min", "max"} or None} over [start, end) in one pass.

    Reads hour rollups up to their watermark, then minutes, then raw samples, so a
    month costs some 700 rows per metric. Buckets are whole hours: give a start on
    an hour boundary for an exact answer.
    """
    parsed = [parse_metric(m) for m in metrics]
    stats = {s.name: Stats() for s in parsed}
    for _, name, avg, low, high, n in _rows(host, parsed, start, end, Rollup.HOUR):
        stats[name].add(avg, weight=n, low=low, high=high)
    summary = {}
    for name, s in stats.items():
        result = s.result(0)
        summary[name] = dict(zip(AGGREGATES, result[:3], strict=True)) if result else None
    return summary
