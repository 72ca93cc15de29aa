"""Process history older than a tier's hot window is packed (raw samples after two hours,
1-minute rollups after a day, 1-hour rollups after a week), and every reader (process
table, charts, exports, rollups, process page) sees what it saw before packing."""

import csv
import io
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import ingest, process_store, rollups
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
    before = process_store.RAW.values(host.pk)
    assert len(before) == 2 * 122

    assert process_store.pack() == 2
    assert ProcessChunk.objects.filter(host=host).count() == 2
    assert [c.samples for c in ProcessChunk.objects.order_by("start")] == [120, 120]
    assert ProcessSample.objects.filter(host=host).count() == 4  # the recent ticks
    assert process_store.RAW.values(host.pk) == before
    assert process_store.pack() == 0  # nothing more to pack

    # A window inside a chunk, and one process of it.
    p11 = pk(host, 11)
    window = process_store.RAW.values(host.pk, hour + timedelta(minutes=5),
                                  hour + timedelta(minutes=7), [p11])  # fmt: skip
    assert [(r[0], r[1], r[2]) for r in window] == [
        (hour + timedelta(minutes=5), p11, 16.0),
        (hour + timedelta(minutes=6), p11, 17.0),
    ]


def test_the_process_table_shows_a_packed_moment_from_the_raw_tier(alice_client, api, host, hour):
    fill(host, hour, ticks=3)
    process_store.pack()
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
    process_store.pack()
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
    assert process_store.last_sample(process)[0].ts == recent
    ProcessSample.objects.filter(host=host).delete()  # only the packed hour is left
    assert process_store.last_sample(process)[0].ts == hour + timedelta(minutes=2)


def test_a_late_batch_for_a_packed_hour_is_merged_and_rolled_up_again(host, hour):
    fill(host, hour, ticks=3)
    rollups.roll_up()
    process_store.pack()
    late = proc(12, name="late", cpu_percent=99.0)
    ingest.store(host, batch(hour + timedelta(seconds=30), [late]), hooks=False)
    assert {r[1] for r in process_store.RAW.values(host.pk)} == {pk(host, p) for p in (10, 11, 12)}

    rollups.roll_up()
    minute = ProcessRollup.objects.get(
        host=host, resolution=Rollup.MINUTE, bucket=hour, process_id=pk(host, 12)
    )
    assert minute.cpu_avg == 99.0

    assert process_store.pack() == 1
    [chunk] = ProcessChunk.objects.filter(host=host)
    assert chunk.samples == 7 and not ProcessSample.objects.filter(host=host).exists()
    assert len(process_store.RAW.values(host.pk)) == 7  # nothing twice


def pk(host, pid: int) -> int:
    return Process.objects.get(host=host, pid=pid).pk


def test_an_export_reads_packed_and_recent_samples(api, host, hour):
    fill(host, hour, ticks=2, pids=(10,))
    recent = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    fill(host, recent, ticks=1, pids=(10,))
    process_store.pack()
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
    process_store.pack()
    rollups.roll_up()
    assert prune(now=hour + timedelta(hours=48, minutes=30))["process_chunks"] == 0  # not all
    assert prune(now=hour + timedelta(hours=49, minutes=1))["process_chunks"] == 1
    assert not ProcessChunk.objects.exists()


def test_a_damaged_chunk_is_skipped_with_a_log_line_and_loses_nothing_else(host, hour, caplog):
    fill(host, hour, ticks=2)
    fill(host, hour + timedelta(hours=1), ticks=2)
    process_store.pack()
    first = ProcessChunk.objects.order_by("start").first()
    ProcessChunk.objects.filter(pk=first.pk).update(data=b"not a chunk")
    with caplog.at_level(logging.ERROR, logger="monitoring.process_store"):
        rows = process_store.RAW.values(host.pk)
    assert {r[0] for r in rows} == {hour + timedelta(hours=1), hour + timedelta(hours=1, minutes=1)}
    assert f"chunk {first.pk} unreadable" in caplog.text


def three_days_back():
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=3)


def test_packed_minute_rollups_answer_pages_charts_and_exports_as_rows_did(api, host):
    start = three_days_back()
    fill(host, start, ticks=10, step=30, pids=(10, 11, 12))
    rollups.roll_up()
    prune()  # the raw samples are past 48 h: the 1-minute tier answers
    at = start + timedelta(minutes=2)
    p11 = pk(host, 11)

    def answers():
        table = api.get(f"/api/v1/hosts/{host.pk}/processes", {"at": at.isoformat()}).json()
        chart = api.get(
            f"/api/v1/hosts/{host.pk}/timeseries",
            {
                "metric": f"process:{p11}:cpu_percent",
                "from": start.isoformat(),
                "to": (start + timedelta(minutes=5)).isoformat(),
            },  # fmt: skip
        ).json()
        query = {"from": start.isoformat(), "tier": "minute", "host": host.pk}
        export = api.get("/api/v1/export/process-samples", query)
        return table, chart, read_stream(export)

    before = answers()
    assert before[0]["tier"] == "minute" and len(before[0]["results"]) == 3
    assert process_store.pack() >= 1
    assert ProcessChunk.objects.filter(host=host, resolution=Rollup.MINUTE).exists()
    assert not ProcessRollup.objects.filter(host=host, resolution=Rollup.MINUTE).exists()
    assert answers() == before
    # The identity stays as long as its 1-minute history (rows or packed) is kept.
    assert Process.objects.get(pk=p11).history_tier == Rollup.HOUR
    prune()
    assert Process.objects.filter(pk=p11).exists()


def test_a_late_batch_redoes_a_packed_minute_without_keeping_the_old_entries(host):
    start = process_store.MINUTE.chunk_start(timezone.now() - timedelta(days=1)) - timedelta(
        hours=6
    )
    fill(host, start, ticks=2, step=20, pids=(10, 11))  # both in the first minute
    rollups.roll_up()
    process_store.pack()
    assert ProcessChunk.objects.filter(host=host, resolution=Rollup.MINUTE).exists()
    before = process_store.MINUTE.values(host.pk, start, start + timedelta(minutes=1))
    assert {r[1] for r in before} == {pk(host, 10), pk(host, 11)}

    late = proc(13, name="late", cpu_percent=300.0)
    ingest.store(host, batch(start + timedelta(seconds=50), [late]), hooks=False)
    rollups.roll_up()
    after = process_store.MINUTE.values(host.pk, start, start + timedelta(minutes=1))
    cpu = process_store.MINUTE.fields.index("cpu_avg")
    assert sorted((r[1], r[cpu]) for r in after) == [
        (pk(host, 10), 10.5),  # two raw samples (packed): 10 and 11 % in this fill
        (pk(host, 11), 11.5),
        (pk(host, 13), 300.0),
    ]
    process_store.pack()
    again = process_store.MINUTE.values(host.pk, start, start + timedelta(minutes=1))
    assert sorted(again) == sorted(after)  # merged once, nothing twice


def test_a_gpu_user_is_known_from_its_packed_hour_rollups(alice_client, host):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=9)
    gpu = proc(20, name="train", gpu_memory=2**30, cpu_percent=90.0)
    ingest.store(host, batch(start, [gpu]), hooks=False)
    rollups.roll_up()
    process_store.pack()
    assert ProcessChunk.objects.filter(host=host, resolution=Rollup.HOUR).exists()
    assert not ProcessRollup.objects.filter(host=host).exists()
    process = Process.objects.get(pid=20)
    assert process_store.used_gpu(process)
    idle = Process.objects.create(
        host=host, pid=21, create_time=start, name="idle", first_seen=start, last_seen=start
    )
    assert not process_store.used_gpu(idle)
    prune()  # its raw samples go: the page shows its last minute, packed
    page = alice_client.get(f"/processes/{process.pk}/").content.decode()
    assert "Last kept (1-minute averages, peaks" in page


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_notes_which_identities_have_rollups_and_packs_old_rows_later(host):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from tests.conftest import T0

    before, after = (
        ("monitoring", "0013_fill_process_program"),
        ("monitoring", "0014_process_chunks"),
    )
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([before])
    try:
        apps = executor.loader.project_state([before]).apps
        OldProcess = apps.get_model("monitoring", "Process")
        OldRollup = apps.get_model("monitoring", "ProcessRollup")
        made = {}
        for pid, resolutions in ((1, ()), (2, (60,)), (3, (60, 3600))):
            made[pid] = OldProcess.objects.create(
                host_id=host.pk, pid=pid, create_time=T0, name=f"p{pid}", first_seen=T0,
                last_seen=T0,
            )  # fmt: skip
            for resolution in resolutions:
                OldRollup.objects.create(host_id=host.pk, process=made[pid],
                                         resolution=resolution, bucket=T0, samples=1)  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate([after])
        tiers = dict(Process.objects.filter(host=host).values_list("pid", "history_tier"))
        assert tiers == {1: 0, 2: Rollup.MINUTE, 3: Rollup.HOUR}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    # The rows stored before the upgrade are packed by the next runs, history intact.
    assert process_store.pack() >= 1
    assert {r[1] for r in process_store.HOUR.values(host.pk)} == {made[3].pk}
    left = ProcessRollup.objects.filter(host=host).values_list("resolution", flat=True)
    assert set(left) == {Rollup.MINUTE}  # minutes wait for an hour rollup to read them
