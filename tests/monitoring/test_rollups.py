"""Rollups equal the raw rows' statistics, and a crash never counts anything twice."""

import statistics
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection

from monitoring import rollups, timeseries
from monitoring.models import (
    GpuSample,
    HostSample,
    Process,
    ProcessSample,
    Rollup,
    RollupState,
    WatchedProcess,
)
from tests.conftest import T0

pytestmark = pytest.mark.django_db


def seed(host, minutes: int = 3, every: int = 5) -> list[HostSample]:
    """Raw samples every `every` seconds from T0 with known, varied values."""
    rows = []
    for i in range(minutes * 60 // every):
        rows.append(
            HostSample(
                host=host,
                ts=T0 + timedelta(seconds=i * every),
                cpu_percent=float((i * 37) % 100),
                load1=i / 10,
                mem_total=1000,
                mem_used=500 + i,
                mem_available=500 - i,
                net_rx_bps=None if i % 7 == 0 else float(i * 100),
                process_count=100 + i % 3,
            )
        )
    return HostSample.objects.bulk_create(rows)


def expected(rows, field):
    values = [getattr(r, field) for r in rows if getattr(r, field) is not None]
    stats = [round(statistics.fmean(values), 4), min(values), max(values), values[-1]]
    return stats if len(values) == len(rows) else [*stats, len(values)]


def test_minute_rollups_equal_the_raw_statistics(host):
    raw = seed(host)
    rollups.roll_up_host(host, Rollup.MINUTE, now=T0 + timedelta(minutes=10))
    minute = list(Rollup.objects.filter(resolution=60, series="host").order_by("bucket"))
    assert [r.bucket for r in minute] == [T0 + timedelta(minutes=m) for m in range(3)]
    for m, rollup in enumerate(minute):
        rows = [
            r
            for r in raw
            if r.ts - T0 < timedelta(minutes=m + 1) and r.ts - T0 >= timedelta(minutes=m)
        ]
        assert rollup.count == len(rows) == 12
        for field in ("cpu_percent", "load1", "mem_used", "net_rx_bps", "process_count"):
            assert rollup.values[field] == pytest.approx(expected(rows, field)), field


def test_hour_rollups_equal_the_raw_statistics(host):
    raw = seed(host, minutes=90, every=10)
    now = T0 + timedelta(minutes=100)
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    rollups.roll_up_host(host, Rollup.HOUR, now=now)
    first_hour = [r for r in raw if r.ts < T0 + timedelta(hours=1)]
    hour = Rollup.objects.get(resolution=3600, series="host", bucket=T0)
    assert hour.count == len(first_hour) == 360
    for field in ("cpu_percent", "mem_used", "net_rx_bps"):
        assert hour.values[field] == pytest.approx(expected(first_hour, field), rel=1e-6), field
    # The second hour is not over at `now` (04:40): it is not rolled up yet.
    assert not Rollup.objects.filter(resolution=3600, bucket=T0 + timedelta(hours=1)).exists()


def test_recent_buckets_wait_for_late_samples(host):
    seed(host, minutes=3)
    rollups.roll_up_host(host, Rollup.MINUTE, now=T0 + timedelta(minutes=2, seconds=10))
    assert Rollup.objects.filter(resolution=60).count() == 1  # minute 1 is within the grace
    assert RollupState.objects.get(resolution=60).done_until == T0 + timedelta(minutes=1)


def test_running_again_adds_nothing(host):
    seed(host)
    now = T0 + timedelta(minutes=10)
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    before = list(Rollup.objects.values_list("bucket", "count", "values").order_by("bucket"))
    assert rollups.roll_up_host(host, Rollup.MINUTE, now=now) == 0
    # Even with the watermark lost (a restore from backup), buckets are replaced, not added to.
    RollupState.objects.all().delete()
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    after = list(Rollup.objects.values_list("bucket", "count", "values").order_by("bucket"))
    assert after == before


def test_a_crash_between_writing_rollups_and_the_watermark_loses_and_doubles_nothing(host):
    seed(host)
    now = T0 + timedelta(minutes=10)

    def crash_on_watermark(execute, sql, params, many, context):
        if "monitoring_rollupstate" in sql and not sql.lstrip().upper().startswith("SELECT"):
            raise DatabaseError("disk I/O error")  # the process dies mid-step
        return execute(sql, params, many, context)

    with connection.execute_wrapper(crash_on_watermark), pytest.raises(DatabaseError):
        rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    assert not Rollup.objects.exists()  # rolled back with the watermark
    assert not RollupState.objects.exists()
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    assert sum(Rollup.objects.filter(series="host").values_list("count", flat=True)) == 36


def test_a_gap_in_history_is_skipped(host):
    seed(host, minutes=1)
    HostSample.objects.create(host=host, ts=T0 + timedelta(days=2), cpu_percent=50.0)
    rollups.roll_up_host(host, Rollup.MINUTE, now=T0 + timedelta(days=2, minutes=5))
    buckets = list(Rollup.objects.values_list("bucket", flat=True).order_by("bucket"))
    assert buckets == [T0, T0 + timedelta(days=2)]


def test_gpus_and_watched_processes_get_their_own_series(host):
    watch = WatchedProcess.objects.create(name="trainer", pattern="train")
    watched = Process.objects.create(
        host=host,
        pid=7,
        create_time=T0,
        name="train.py",
        watched=watch,
        first_seen=T0,
        last_seen=T0,
    )
    unwatched = Process.objects.create(
        host=host, pid=8, create_time=T0, name="bash", first_seen=T0, last_seen=T0
    )
    for i in range(12):
        ts = T0 + timedelta(seconds=5 * i)
        HostSample.objects.create(host=host, ts=ts, cpu_percent=1.0)
        GpuSample.objects.create(host=host, ts=ts, index=1, utilization=float(i), memory_used=i)
        for p in (watched, unwatched):
            ProcessSample.objects.create(ts=ts, host=host, process=p, cpu_percent=float(i), rss=i)
    rollups.roll_up_host(host, Rollup.MINUTE, now=T0 + timedelta(minutes=5))
    series = set(Rollup.objects.values_list("series", flat=True))
    assert series == {"host", "gpu:1", f"process:{watched.pk}"}
    gpu = Rollup.objects.get(series="gpu:1")
    assert gpu.values["utilization"] == [5.5, 0.0, 11.0, 11.0]


def test_a_summary_over_hours_minutes_and_raw_rows_equals_the_raw_statistics(host):
    """The host page's today/week/month summaries read hour rollups, then minute
    rollups, then raw rows past the watermarks: together they must count each sample
    once, as the raw rows alone do."""
    raw = seed(host, minutes=150, every=10)
    start, end = T0, T0 + timedelta(minutes=150)
    want = {
        field: {
            "avg": pytest.approx(statistics.fmean(getattr(r, field) for r in raw)),
            "min": min(getattr(r, field) for r in raw),
            "max": max(getattr(r, field) for r in raw),
        }
        for field in ("cpu_percent", "mem_used")
    }
    assert timeseries.summarize(host, ["cpu_percent", "mem_used"], start, end) == want
    now = T0 + timedelta(minutes=130)  # hours 0-1 rolled up, minutes to 2:09, raw after
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    rollups.roll_up_host(host, Rollup.HOUR, now=now)
    assert Rollup.objects.filter(resolution=Rollup.HOUR).count() == 2
    assert timeseries.summarize(host, ["cpu_percent", "mem_used"], start, end) == want
