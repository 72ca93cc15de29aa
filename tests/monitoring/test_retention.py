"""Pruning keeps exactly what the Retention row says, in bounded batches."""

from datetime import timedelta

import pytest

from monitoring import retention, rollups
from monitoring.models import (
    Event,
    HostSample,
    Process,
    ProcessSample,
    Retention,
    Rollup,
    RollupState,
    WatchedProcess,
)
from tests.conftest import T0

pytestmark = pytest.mark.django_db
NOW = T0 + timedelta(days=400)


def make_rollup(host, resolution, age):
    return Rollup.objects.create(
        host=host, resolution=resolution, series="host", bucket=NOW - age, count=1, values={}
    )


def test_it_keeps_rollups_and_events_as_long_as_retention_says(host):
    make_rollup(host, 60, timedelta(days=29))
    make_rollup(host, 60, timedelta(days=31))
    make_rollup(host, 3600, timedelta(days=364))
    make_rollup(host, 3600, timedelta(days=366))
    Event.objects.create(
        host=host, kind="process_exited", message="old", ts=NOW - timedelta(days=91)
    )
    Event.objects.create(
        host=host, kind="process_exited", message="new", ts=NOW - timedelta(days=89)
    )
    counts = retention.prune(now=NOW)
    assert counts["minute_rollups"] == 1 and counts["hour_rollups"] == 1 and counts["events"] == 1
    ages = sorted((r.resolution, (NOW - r.bucket).days) for r in Rollup.objects.all())
    assert ages == [(60, 29), (3600, 364)]
    assert list(Event.objects.values_list("message", flat=True)) == ["new"]


def test_it_follows_retention_edited_in_the_admin(host):
    Retention.objects.update_or_create(pk=1, defaults={"minute_days": 7})
    make_rollup(host, 60, timedelta(days=8))
    make_rollup(host, 60, timedelta(days=6))
    retention.prune(now=NOW)
    assert [(NOW - b).days for b in Rollup.objects.values_list("bucket", flat=True)] == [6]


def test_it_deletes_raw_samples_past_retention_in_batches(host):
    HostSample.objects.bulk_create(
        HostSample(host=host, ts=NOW - timedelta(hours=h)) for h in range(0, 60)
    )
    RollupState.objects.create(host=host, resolution=60, done_until=NOW)
    counts = retention.prune(now=NOW, batch=5)
    assert counts["host_samples"] == 60 - 49  # hours 49..59 are past 48 h
    oldest = HostSample.objects.order_by("ts").first()
    assert NOW - oldest.ts == timedelta(hours=48)


def test_it_never_deletes_raw_samples_that_are_not_rolled_up(host):
    HostSample.objects.bulk_create(
        HostSample(host=host, ts=NOW - timedelta(hours=h)) for h in (50, 55, 60)
    )
    RollupState.objects.create(host=host, resolution=60, done_until=NOW - timedelta(hours=56))
    retention.prune(now=NOW)
    assert HostSample.objects.count() == 2  # 60 h old is rolled up and goes; 50 and 55 stay
    rollups.roll_up_host(host, Rollup.MINUTE, now=NOW)
    retention.prune(now=NOW)
    assert HostSample.objects.count() == 0


def test_it_forgets_processes_whose_samples_are_gone(host):
    RollupState.objects.create(host=host, resolution=60, done_until=NOW)
    watch = WatchedProcess.objects.create(name="db", pattern="postgres")
    old = NOW - timedelta(days=3)

    def process(pid, last_seen, watched=None):
        return Process.objects.create(
            host=host,
            pid=pid,
            create_time=old,
            name=f"p{pid}",
            first_seen=old,
            last_seen=last_seen,
            watched=watched,
        )

    gone = process(1, old)
    recent = process(2, NOW)
    watched = process(3, old, watch)  # its rollups still name it
    ProcessSample.objects.create(ts=old, host=host, process=gone)
    ProcessSample.objects.create(ts=NOW, host=host, process=recent)
    Event.objects.create(
        host=host, process=gone, kind="process_exited", message="p1 exited", ts=NOW
    )
    retention.prune(now=NOW)
    assert set(Process.objects.values_list("pid", flat=True)) == {recent.pid, watched.pid}
    assert Event.objects.get().process is None  # the event stays, unlinked


def test_it_keeps_minute_rollups_not_yet_in_an_hour(host):
    make_rollup(host, 60, timedelta(days=40))
    make_rollup(host, 60, timedelta(days=35))
    RollupState.objects.create(host=host, resolution=3600, done_until=NOW - timedelta(days=38))
    retention.prune(now=NOW)
    assert [(NOW - b).days for b in Rollup.objects.values_list("bucket", flat=True)] == [35]
