"""Raw process samples older than two hours are packed into one chunk per host and hour,
and every reader (process table, time series, exports, rollups, alerts) sees the same
samples as before packing."""

import csv
import io
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import ingest, raw_processes, rollups
from monitoring.models import Process, ProcessChunk, ProcessRollup, ProcessSample, Rollup
from monitoring.retention import prune
from tests.conftest import batch, proc, read_stream

pytestmark = pytest.mark.django_db


@pytest.fixture
def hour():
    """The start of the hour four hours ago: it and the next are old enough to pack."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)


def fill(host, start, ticks: int, step: int = 60, pids=(10, 11)):
    for i in range(ticks):
        rows = [proc(pid, name=f"p{pid}", cpu_percent=float(i + pid), rss=(i + 1) * 2**20)
                for pid in pids]  # fmt: skip
        ingest.store(host, batch(start + timedelta(seconds=step * i), rows), hooks=False)


def test_packing_moves_old_rows_into_one_chunk_an_hour_and_reads_the_same(host, hour):
    fill(host, hour, ticks=120)  # two hours, a tick a minute
    fill(host, timezone.now() - timedelta(minutes=10), ticks=2)  # recent: stays rows
    before = raw_processes.values(host.pk)
    assert len(before) == 2 * 122

    assert raw_processes.pack() == 2
    assert ProcessChunk.objects.filter(host=host).count() == 2
    assert [c.samples for c in ProcessChunk.objects.order_by("start")] == [120, 120]
    assert ProcessSample.objects.filter(host=host).count() == 4  # the recent ticks
    assert raw_processes.values(host.pk) == before
    assert raw_processes.pack() == 0  # nothing more to pack

    # A window inside a chunk, and one process of it.
    p11 = pk(host, 11)
    window = raw_processes.values(host.pk, hour + timedelta(minutes=5),
                                  hour + timedelta(minutes=7), [p11])  # fmt: skip
    assert [(r[0], r[1], r[2]) for r in window] == [
        (hour + timedelta(minutes=5), p11, 16.0),
        (hour + timedelta(minutes=6), p11, 17.0),
    ]


def test_the_process_table_shows_a_packed_moment_from_the_raw_tier(alice_client, api, host, hour):
    fill(host, hour, ticks=3)
    raw_processes.pack()
    at = hour + timedelta(minutes=1)
    response = api.get(f"/api/v1/hosts/{host.pk}/processes", {"at": at.isoformat()})
    assert response.status_code == 200
    body = response.json()
    assert body["tier"] == "raw"
    assert [(p["pid"], p["cpu_percent"]) for p in body["results"]] == [(11, 12.0), (10, 11.0)]
    page = alice_client.get(f"/hosts/{host.pk}/processes", {"at": at.isoformat(), "q": "p1[01]"})
    assert page.status_code == 200 and "p11" in page.content.decode()


def test_a_process_chart_spans_packed_hours_and_recent_rows(alice_client, host, hour):
    fill(host, hour, ticks=3)
    recent = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    fill(host, recent, ticks=1)
    raw_processes.pack()
    process = Process.objects.get(host=host, pid=10)
    response = alice_client.get(
        f"/api/v1/hosts/{host.pk}/timeseries",
        {
            "metric": f"process:{process.pk}:cpu_percent",
            "from": hour.isoformat(),
            "to": timezone.now().isoformat(),
        },  # fmt: skip
    )
    assert response.status_code == 200, response.content
    [series] = response.json()["series"]
    assert [v for _, v in series["points"] if v is not None] == [10.0, 11.0, 12.0, 10.0]
    assert raw_processes.last(process).ts == recent
    ProcessSample.objects.filter(host=host).delete()  # only the packed hour is left
    assert raw_processes.last(process).ts == hour + timedelta(minutes=2)


def test_a_late_batch_for_a_packed_hour_is_merged_and_rolled_up_again(host, hour):
    fill(host, hour, ticks=3)
    rollups.roll_up()
    raw_processes.pack()
    late = proc(12, name="late", cpu_percent=99.0)
    ingest.store(host, batch(hour + timedelta(seconds=30), [late]), hooks=False)
    assert {r[1] for r in raw_processes.values(host.pk)} == {pk(host, p) for p in (10, 11, 12)}

    rollups.roll_up()
    minute = ProcessRollup.objects.get(
        host=host, resolution=Rollup.MINUTE, bucket=hour, process_id=pk(host, 12)
    )
    assert minute.cpu_avg == 99.0

    assert raw_processes.pack() == 1
    [chunk] = ProcessChunk.objects.filter(host=host)
    assert chunk.samples == 7 and not ProcessSample.objects.filter(host=host).exists()
    assert len(raw_processes.values(host.pk)) == 7  # nothing twice


def pk(host, pid: int) -> int:
    return Process.objects.get(host=host, pid=pid).pk


def test_an_export_reads_packed_and_recent_samples(api, host, hour):
    fill(host, hour, ticks=2, pids=(10,))
    recent = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    fill(host, recent, ticks=1, pids=(10,))
    raw_processes.pack()
    response = api.get("/api/v1/export/process-samples", {"from": hour.isoformat()})
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(read_stream(response))))
    assert [(r["ts"], r["name"], r["cpu_percent"]) for r in rows] == [
        (hour.isoformat(), "p10", "10.0"),
        ((hour + timedelta(minutes=1)).isoformat(), "p10", "11.0"),
        (recent.isoformat(), "p10", "10.0"),
    ]


def test_retention_drops_chunks_wholly_older_than_raw_samples_are_kept(host, hour):
    fill(host, hour, ticks=2)
    raw_processes.pack()
    rollups.roll_up()
    assert prune(now=hour + timedelta(hours=48, minutes=30))["process_chunks"] == 0  # not all
    assert prune(now=hour + timedelta(hours=49, minutes=1))["process_chunks"] == 1
    assert not ProcessChunk.objects.exists()


def test_a_damaged_chunk_is_skipped_with_a_log_line_and_loses_nothing_else(host, hour, caplog):
    fill(host, hour, ticks=2)
    fill(host, hour + timedelta(hours=1), ticks=2)
    raw_processes.pack()
    first = ProcessChunk.objects.order_by("start").first()
    ProcessChunk.objects.filter(pk=first.pk).update(data=b"not a chunk")
    with caplog.at_level(logging.ERROR, logger="monitoring.raw_processes"):
        rows = raw_processes.values(host.pk)
    assert {r[0] for r in rows} == {hour + timedelta(hours=1), hour + timedelta(hours=1, minutes=1)}
    assert f"chunk {first.pk} unreadable" in caplog.text
