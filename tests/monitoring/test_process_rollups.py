"""Process history in the 1-minute and 1-hour tiers (ProcessRollup): the rows equal
the raw samples' statistics, keep the top N, GPU users and watched processes, are
replaced when late data re-rolls a bucket, expire with their tier, and an upgrade
carries the watched processes' old Rollup series over."""

import statistics
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from monitoring import ingest, retention, rollups
from monitoring.models import (
    Process,
    ProcessRollup,
    ProcessSample,
    Rollup,
    RollupState,
    WatchedProcess,
)
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db
MiB = 2**20


def push(host, ts, *rows) -> None:
    ingest.store(host, batch(ts, rows), hooks=False)


def kept(resolution: int, bucket) -> set[int]:
    """The pids with a ProcessRollup row in one bucket."""
    rows = ProcessRollup.objects.filter(resolution=resolution, bucket=bucket)
    return set(rows.values_list("process__pid", flat=True))


def raw_stats(pid: int, start, end) -> dict:
    """What a ProcessRollup row of `pid` over [start, end) must say, from the raw rows."""
    rows = list(
        ProcessSample.objects.filter(process__pid=pid, ts__gte=start, ts__lt=end).order_by("ts")
    )

    def values(field):
        return [getattr(r, field) for r in rows if getattr(r, field) is not None]

    return {
        "samples": len(rows),
        "cpu_avg": pytest.approx(statistics.fmean(values("cpu_percent"))),
        "cpu_max": max(values("cpu_percent")),
        "rss_avg": pytest.approx(statistics.fmean(values("rss")), abs=1),
        "rss_max": max(values("rss")),
        "rss_last": values("rss")[-1],
        "threads_max": max(values("threads")),
        "read_bps_avg": pytest.approx(statistics.fmean(values("read_bps"))),
        "write_bps_avg": pytest.approx(statistics.fmean(values("write_bps"))),
        "gpu_memory_max": max(values("gpu_memory"), default=None),
    }


FIELDS = [
    "samples",
    "cpu_avg",
    "cpu_max",
    "rss_avg",
    "rss_max",
    "rss_last",
    "threads_max",
    "read_bps_avg",
    "write_bps_avg",
    "gpu_memory_max",
]


def row_of(pid: int, resolution: int, bucket) -> dict:
    row = ProcessRollup.objects.get(process__pid=pid, resolution=resolution, bucket=bucket)
    return {field: getattr(row, field) for field in FIELDS}


def test_minute_rows_equal_the_raw_statistics_also_of_a_process_there_part_of_the_minute(host):
    for i in range(12):  # every 5 s over minute 0
        rows = [
            proc(
                1,
                cpu_percent=float((i * 37) % 100),
                rss=(100 + (i * 13) % 7) * MiB,
                threads=4 + i % 3,
                read_bps=float(i * 1000),
                write_bps=float(i % 4),
                gpu_memory=(i % 5) * MiB,
            )
        ]
        if 3 <= i <= 7:  # the second process lives 25 s of the minute
            rows.append(proc(2, cpu_percent=None if i == 3 else 80.0 + i, rss=(50 + i) * MiB))
        push(host, T0 + timedelta(seconds=5 * i), *rows)
    rollups.roll_up_host(host, Rollup.MINUTE, now=T0 + timedelta(minutes=5))

    assert row_of(1, 60, T0) == raw_stats(1, T0, T0 + timedelta(minutes=1))
    assert row_of(2, 60, T0) == raw_stats(2, T0, T0 + timedelta(minutes=1))
    second = ProcessRollup.objects.get(process__pid=2)
    # Its means are over the samples it was in (cpu: 4 values, the first is None),
    # not diluted by the 7 it missed.
    assert second.samples == 5
    assert second.cpu_avg == pytest.approx(statistics.fmean([84.0, 85.0, 86.0, 87.0]))
    assert second.rss_last == 57 * MiB


def test_a_process_at_the_top_for_one_minute_only_is_kept_for_that_minute(host, settings):
    settings.PTRACKER_ROLLUP_TOP_N = 2
    for i in range(24):  # minutes 0 and 1
        spike = i >= 12
        push(
            host,
            T0 + timedelta(seconds=5 * i),
            proc(1, cpu_percent=50.0, rss=1000 * MiB),
            proc(2, cpu_percent=40.0, rss=900 * MiB),
            proc(3, cpu_percent=90.0 if spike else 1.0, rss=10 * MiB),
            proc(4, cpu_percent=0.5, rss=5 * MiB),
        )
    rollups.roll_up_host(host, Rollup.MINUTE, now=T0 + timedelta(minutes=5))
    assert kept(60, T0) == {1, 2}
    assert kept(60, T0 + timedelta(minutes=1)) == {1, 2, 3}  # top 2 CPU: 3, 1; top 2 RSS: 1, 2


def test_gpu_users_and_watched_processes_are_kept_beyond_n_in_both_tiers(host, settings):
    settings.PTRACKER_ROLLUP_TOP_N = 1
    watch = WatchedProcess.objects.create(name="cron", pattern="cron")
    for i in range(120):  # every 30 s for an hour, and one sample in the next
        push(
            host,
            T0 + timedelta(seconds=30 * i),
            proc(1, cpu_percent=90.0, rss=1000 * MiB),
            proc(2, cpu_percent=1.0, rss=10 * MiB, gpu_memory=300 * MiB),
            proc(3, cpu_percent=0.5, rss=5 * MiB, watched_id=watch.pk),
            proc(4, cpu_percent=2.0, rss=20 * MiB),
        )
    push(host, T0 + timedelta(hours=1, minutes=1), proc(1))
    now = T0 + timedelta(hours=1, minutes=5)
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    rollups.roll_up_host(host, Rollup.HOUR, now=now)
    for minute in range(60):
        assert kept(60, T0 + timedelta(minutes=minute)) == {1, 2, 3}
    assert kept(3600, T0) == {1, 2, 3}
    assert ProcessRollup.objects.get(resolution=3600, process__pid=2).gpu_memory_max == 300 * MiB
    # The watched process also keeps its Rollup series, in both tiers.
    watched = Process.objects.get(pid=3)
    series = Rollup.objects.filter(series=f"process:{watched.pk}")
    assert series.filter(resolution=60).count() == 60 and series.filter(resolution=3600).exists()
    assert not Rollup.objects.filter(series__startswith="process:").exclude(
        series=f"process:{watched.pk}"
    )


def test_hour_rows_equal_the_raw_statistics_over_the_hour(host):
    for i in range(180):  # every 30 s for 90 minutes
        rows = [
            proc(
                1,
                cpu_percent=float((i * 37) % 100),
                rss=(100 + (i * 13) % 11) * MiB + i,
                threads=4 + i % 5,
                read_bps=float(i * 10),
                write_bps=float(i % 7),
            )
        ]
        if 20 <= i < 80:  # the second process runs from 03:10 to 03:40
            rows.append(proc(2, cpu_percent=float(i % 9), rss=(200 + i) * MiB, gpu_memory=i))
        push(host, T0 + timedelta(seconds=30 * i), *rows)
    now = T0 + timedelta(minutes=100)
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    rollups.roll_up_host(host, Rollup.HOUR, now=now)
    hour = T0 + timedelta(hours=1)
    assert row_of(1, 3600, T0) == raw_stats(1, T0, hour)
    assert row_of(2, 3600, T0) == raw_stats(2, T0, hour)
    assert row_of(1, 3600, T0)["samples"] == 120
    # 04:00 to 05:00 is not over at 04:40: no hour row yet.
    assert not ProcessRollup.objects.filter(resolution=3600, bucket=hour).exists()


def test_late_data_rolls_a_bucket_up_again_and_replaces_its_rows(host, settings):
    settings.PTRACKER_ROLLUP_TOP_N = 1
    for i in range(6):  # 03:00:00 to 03:00:25
        push(
            host,
            T0 + timedelta(seconds=5 * i),
            proc(1, cpu_percent=50.0, rss=100 * MiB),
            proc(2, cpu_percent=40.0, rss=50 * MiB),
        )
    now = T0 + timedelta(minutes=65)
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    rollups.roll_up_host(host, Rollup.HOUR, now=now)
    assert kept(60, T0) == kept(3600, T0) == {1}
    assert RollupState.objects.get(resolution=3600).done_until == T0 + timedelta(hours=1)

    for i in range(6, 12):  # an agent's backlog: 03:00:30 to 03:00:55, behind the watermarks
        push(host, T0 + timedelta(seconds=5 * i), proc(2, cpu_percent=100.0, rss=500 * MiB))
    assert RollupState.objects.get(resolution=60).done_until == T0
    rollups.roll_up_host(host, Rollup.MINUTE, now=now)
    rollups.roll_up_host(host, Rollup.HOUR, now=now)

    # Process 2 now leads by CPU (70 on average) and by RSS: process 1 left both tiers.
    assert kept(60, T0) == kept(3600, T0) == {2}
    assert ProcessRollup.objects.count() == 2
    assert row_of(2, 60, T0) == raw_stats(2, T0, T0 + timedelta(minutes=1))
    assert row_of(2, 3600, T0)["samples"] == 12


def test_retention_prunes_process_rollups_per_tier_and_keeps_their_processes(host):
    now = T0 + timedelta(days=400)
    RollupState.objects.create(host=host, resolution=60, done_until=now)
    process = Process.objects.create(
        host=host,
        pid=5,
        create_time=now - timedelta(days=40),
        name="batch-job",
        first_seen=now - timedelta(days=40),
        last_seen=now - timedelta(days=3),  # its raw samples are long gone
    )
    for resolution, days in ((60, 29), (60, 31), (3600, 364), (3600, 366)):
        ProcessRollup.objects.create(
            host=host,
            process=process,
            resolution=resolution,
            bucket=now - timedelta(days=days),
            samples=12,
        )
    counts = retention.prune(now=now, batch=1)
    assert counts["process_minute_rollups"] == 1 and counts["process_hour_rollups"] == 1
    ages = sorted((r.resolution, (now - r.bucket).days) for r in ProcessRollup.objects.all())
    assert ages == [(60, 29), (3600, 364)]
    assert Process.objects.filter(pk=process.pk).exists()  # its rollups name it


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_carries_watched_process_series_over(host):
    before, after = (
        ("monitoring", "0011_process_history"),
        ("monitoring", "0012_fill_process_rollups"),
    )
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([before])
    try:
        apps = executor.loader.project_state([before]).apps
        OldProcess = apps.get_model("monitoring", "Process")
        OldRollup = apps.get_model("monitoring", "Rollup")
        process = OldProcess.objects.create(
            host_id=host.pk, pid=7, create_time=T0, name="train.py", first_seen=T0, last_seen=T0
        )
        minute = {
            "cpu_percent": [20.5, 1.0, 90.0, 3.0, 11],  # missing from one sample of 12
            "rss": [1.5 * MiB, MiB, 3 * MiB, 2 * MiB],
            "threads": [4.5, 4, 6, 5],
            "read_bps": [100.0, 0.0, 400.0, 50.0],
            "write_bps": [10.0, 0.0, 40.0, 5.0],
        }
        hour = {**minute, "gpu_memory": [MiB, 0, 2 * MiB, MiB]}
        for resolution, values, count in ((60, minute, 12), (3600, hour, 720)):
            OldRollup.objects.create(
                host_id=host.pk,
                resolution=resolution,
                series=f"process:{process.pk}",
                bucket=T0,
                count=count,
                values=values,
            )
        OldRollup.objects.create(  # a process forgotten since: skipped
            host_id=host.pk,
            resolution=60,
            series=f"process:{process.pk + 1000}",
            bucket=T0,
            count=12,
            values=minute,
        )
        OldRollup.objects.create(
            host_id=host.pk, resolution=60, series="host", bucket=T0, count=12, values={}
        )

        executor = MigrationExecutor(connection)
        executor.migrate([after])
        rows = {r.resolution: r for r in ProcessRollup.objects.filter(process_id=process.pk)}
        assert ProcessRollup.objects.count() == 2 and set(rows) == {60, 3600}
        m, h = rows[60], rows[3600]
        assert (m.host_id, m.bucket, m.samples, h.samples) == (host.pk, T0, 12, 720)
        assert (m.cpu_avg, m.cpu_max, h.cpu_avg) == (20.5, 90.0, 20.5)
        assert (m.rss_avg, m.rss_max, m.rss_last) == (1.5 * MiB, 3 * MiB, 2 * MiB)
        assert (m.threads_max, m.read_bps_avg, m.write_bps_avg) == (6, 100.0, 10.0)
        assert (m.gpu_memory_max, h.gpu_memory_max) == (None, 2 * MiB)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
