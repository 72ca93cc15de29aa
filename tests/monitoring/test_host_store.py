"""Raw host samples older than the hot window are packed, one chunk per host and hour,
and every reader of them (charts, exports, the process table's ?at=, rollups, ingest's
duplicate check, retention) answers as it did from rows."""

import csv
import gzip
import io
import json
import logging
import random
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from monitoring import chunks, host_store, ingest, process_store, rollups
from monitoring.models import Host, HostChunk, HostSample, Rollup
from monitoring.retention import prune
from tests.conftest import batch, proc, read_stream

pytestmark = pytest.mark.django_db

BASE = 1_790_000_000_000_000  # microseconds since the epoch
GIB = 2**30

DISKS = [
    {"mount": "/", "device": "/dev/nvme0n1p2", "fstype": "ext4", "total": 983 * GIB,
     "used": 412 * GIB + 123_456, "percent": 41.9},
    {"mount": "/boot/efi", "device": "/dev/nvme0n1p1", "fstype": "vfat", "total": 535_805_952,
     "used": 6_369_280, "percent": 1.2},
]  # fmt: skip
NETS = [
    {"name": "enp5s0", "rx_bps": 18234.0, "tx_bps": 2051.0},
    {"name": "lo", "rx_bps": None, "tx_bps": None},
]


def host_row(tick: int, key: int = 1, **more) -> tuple:
    """A host sample as HOST's fields, as the sampler stores it."""
    values = {
        "cpu_percent": 12.34,
        "load1": 0.52,
        "load5": 0.61,
        "load15": 0.7,
        "mem_total": 64 * GIB,
        "mem_used": 21 * GIB + 4096 * tick,
        "mem_available": 40 * GIB,
        "swap_total": 0,
        "swap_used": 0,
        "disk_read_bps": 40960.0,
        "disk_write_bps": 1_234_567.0,
        "net_rx_bps": 18234.0,
        "net_tx_bps": 2051.0,
        "process_count": 412,
        "thread_count": 1893,
        "other_cpu_percent": 3.07,
        "other_rss": 5 * GIB,
        "uptime": 86_400.125 + 5 * tick,
        "per_cpu": [12.3, 0.0, 100.0, 7.5],
        "disks": DISKS,
        "nets": NETS,
        "batch_id": uuid.uuid4().hex,
    }
    values.update(more)
    return (BASE + tick * 5_000_000, key, *(values[name] for name in chunks.HOST.fields))


# -- the codec ------------------------------------------------------------------------


def test_host_samples_come_back_as_they_went_in():
    rows = [
        # The first sample after a start: no rates, no per-core CPU yet, no batch id.
        host_row(
            0,
            cpu_percent=None,
            disk_read_bps=None,
            disk_write_bps=None,
            net_rx_bps=None,
            net_tx_bps=None,
            other_cpu_percent=None,
            per_cpu=[None] * 4,
            batch_id=None,
        ),  # fmt: skip
        host_row(1, per_cpu=[], disks=[], nets=[], uptime=None, batch_id=""),
        host_row(2, per_cpu=[round(i * 0.7 % 100, 1) for i in range(256)]),  # many cores
        host_row(3, mem_total=2**50, swap_total=16 * GIB, swap_used=1),
        host_row(4, disks=[{"mount": "/x", "odd": [True, False, None, 1.5, "s"]}]),
    ]
    chunk = chunks.decode(chunks.encode(rows, chunks.HOST))
    assert list(chunk.rows()) == rows
    assert chunk.statuses.count(None) == 1  # None and "" stay apart
    # Some fields only, as charts read them.
    assert list(chunk.rows(columns=["per_cpu", "load5"]))[1] == (rows[1][0], 1, [], 0.61)


def test_values_keep_the_precision_the_host_layout_declares():
    # CPU and load to 0.01, rates to 1 B/s, uptime to 1 ms, a core to 0.1 %, an
    # interface's rates to 1 B/s; integers and text exactly.
    nets = [{"name": "eth0", "rx_bps": 2.5, "tx_bps": 99.4}]
    row = host_row(0, cpu_percent=12.3456, disk_read_bps=10.6, uptime=5.00049,
                   per_cpu=[33.33], nets=nets)  # fmt: skip
    [back] = chunks.decode(chunks.encode([row], chunks.HOST)).rows()
    named = dict(zip(("ts", "host_id", *chunks.HOST.fields), back, strict=True))
    assert (named["cpu_percent"], named["disk_read_bps"], named["uptime"]) == (12.35, 11.0, 5.0)
    assert named["per_cpu"] == [33.3]
    assert named["nets"] == [{"name": "eth0", "rx_bps": 2.0, "tx_bps": 99.0}]


def test_an_hour_of_a_busy_host_packs_below_the_target():
    # 720 samples of a 32-core host with noisy cores, two disks and interfaces and a
    # random batch id each: far below the 120 B a raw host sample may cost (issue 14).
    rng = random.Random(3)
    rows = []
    for tick in range(720):
        nets = [dict(NETS[0], rx_bps=float(rng.randint(0, 2**20)),
                     tx_bps=float(rng.randint(0, 2**18))), NETS[1]]  # fmt: skip
        rows.append(host_row(
            tick,
            cpu_percent=round(rng.uniform(0, 100), 2),
            per_cpu=[round(max(0.0, rng.gauss(20, 10)), 1) for _ in range(32)],
            disk_read_bps=float(rng.randint(0, 2**22)),
            disk_write_bps=float(rng.randint(0, 2**22)),
            nets=nets,
        ))  # fmt: skip
    blob = chunks.encode(rows, chunks.HOST)
    assert len(blob) / len(rows) < 100
    assert list(chunks.decode(blob).rows()) == rows


def test_the_host_layout_holds_every_column_of_a_host_sample():
    # A column added to HostSample and not to chunks.HOST would be lost when packed.
    columns = {f.name for f in HostSample._meta.concrete_fields} - {"id", "host", "ts"}
    assert set(chunks.HOST.fields) == columns


def test_a_value_no_column_holds_is_refused():
    with pytest.raises(ValueError):
        chunks.encode([host_row(0, load1=float("nan"))], chunks.HOST)


# -- the store --------------------------------------------------------------------------


@pytest.fixture
def hour():
    """The start of the hour four hours ago: it and the next are old enough to pack."""
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)


def fill(host, start, ticks: int, step: int = 60, **fields):
    for i in range(ticks):
        b = batch(
            start + timedelta(seconds=step * i),
            [proc(10, name="p10", cpu_percent=float(i))],
            cpu_percent=float(10 + i),
            mem_used=(2 + i) * GIB,
            per_cpu=[float(i), 50.5],
            disks=DISKS,
            nets=NETS,
            disk_read_bps=None if i == 0 else 4096.0 * i,
            uptime=1000.5 + step * i,
            **fields,
        )
        b.id = f"b-{start.isoformat()}-{i}"
        ingest.store(host, b, hooks=False)


def report_now(host, **fields) -> None:
    """A sample of now: the host is not silent, its old hours may all be packed."""
    ingest.store(host, batch(timezone.now().replace(microsecond=0), **fields), hooks=False)


def answers(client, api, host, start, end) -> dict:
    """What a chart, an export and the process table say about [start, end)."""
    chart = client.get(
        f"/api/v1/hosts/{host.pk}/timeseries",
        {
            "metric": ["cpu_percent", "mem_used", "cpu:0", "disk_read_bps"],
            "from": start.isoformat(),
            "to": end.isoformat(),
        },  # fmt: skip
    )
    assert chart.status_code == 200, chart.content
    export = api.get(
        "/api/v1/export/host-samples",
        {"host": host.pk, "from": start.isoformat(), "to": end.isoformat()},
    )
    assert export.status_code == 200
    at = api.get(
        f"/api/v1/hosts/{host.pk}/processes",
        {"at": (start + timedelta(minutes=1, seconds=20)).isoformat()},
    )
    assert at.status_code == 200
    body = at.json()
    return {
        "chart": chart.json()["series"],
        "export": list(csv.DictReader(io.StringIO(read_stream(export)))),
        "at": (body["tier"], body["ts"], [(p["pid"], p["cpu_percent"]) for p in body["results"]]),
    }


def test_packing_moves_old_samples_into_a_chunk_an_hour_and_reads_the_same(
    alice_client, api, host, hour
):
    fill(host, hour, ticks=120)  # two hours, a sample a minute
    recent = timezone.now().replace(microsecond=0) - timedelta(minutes=10)
    fill(host, recent, ticks=2)  # stays rows
    end = timezone.now()
    before = answers(alice_client, api, host, hour, end)
    values = host_store.HOST.values(host.pk)
    assert len(before["export"]) == 122 and before["at"][0] == "raw"

    assert host_store.pack() == 2
    assert [c.samples for c in HostChunk.objects.order_by("start")] == [60, 60]
    assert HostSample.objects.filter(host=host).count() == 2
    assert host_store.HOST.values(host.pk) == values
    assert answers(alice_client, api, host, hour, end) == before
    assert host_store.pack() == 0  # nothing more to pack
    # The newest sample is a row: the pages and the API read it from there.
    assert Host.objects.get(pk=host.pk).latest_sample().ts == recent + timedelta(minutes=1)


def test_a_silent_hosts_last_hour_stays_rows(host, hour):
    fill(host, hour, ticks=90)  # stopped reporting 2.5 hours ago
    assert host_store.pack() == 1  # the first hour only
    last = Host.objects.get(pk=host.pk).latest_sample()
    assert last is not None and last.ts == hour + timedelta(minutes=89)


def test_the_oldest_sample_is_found_in_a_chunk(alice_client, host, hour):
    fill(host, hour + timedelta(minutes=7), ticks=2)
    report_now(host)
    host_store.pack()
    assert HostSample.objects.count() == 1
    assert host_store.HOST.earliest(host.pk) == hour + timedelta(minutes=7)
    assert host_store.oldest() == hour + timedelta(minutes=7)
    # The process table at a packed moment, and before it (no raw samples: rollups).
    moment = process_store_moment(host, hour + timedelta(minutes=8, seconds=3))
    assert moment.ts == hour + timedelta(minutes=8) and moment.tier == "raw"


def process_store_moment(host, at):
    from monitoring.process_table import moment

    return moment(host, at)


def test_a_late_batch_for_a_packed_hour_rolls_up_with_the_packed_samples(host, hour):
    fill(host, hour, ticks=3)  # 10, 11, 12 % at minutes 0, 1, 2
    report_now(host)
    rollups.roll_up()
    host_store.pack()
    assert HostSample.objects.filter(host=host, ts__lt=hour + timedelta(hours=1)).count() == 0

    late = batch(hour + timedelta(seconds=30), cpu_percent=40.0)
    late.id = "late-one"
    ingest.store(host, late, hooks=False)
    rollups.roll_up()
    minute = Rollup.objects.get(host=host, resolution=Rollup.MINUTE, series="host", bucket=hour)
    assert minute.count == 2 and minute.values["cpu_percent"][:3] == [25.0, 10.0, 40.0]
    hourly = Rollup.objects.get(host=host, resolution=Rollup.HOUR, series="host", bucket=hour)
    assert hourly.count == 4 and hourly.values["cpu_percent"][0] == 18.25

    assert host_store.pack() == 1  # merged into the hour's chunk
    [chunk] = HostChunk.objects.filter(host=host)
    assert chunk.samples == 4 and HostSample.objects.filter(host=host).count() == 1
    assert host_store.HOST.has_batch(host.pk, "late-one", late.ts)


def test_a_resent_batch_of_a_packed_hour_is_stored_once_and_a_new_one_is_stored(host):
    out = StringIO()
    call_command("addhost", "web-1", stdout=out)
    remote, secret = Host.objects.get(name="web-1"), out.getvalue().strip()
    agent = Client(headers={"Authorization": f"Bearer {secret}"})
    old = timezone.now().replace(microsecond=0) - timedelta(hours=5)
    sent = [wire(old + timedelta(seconds=5 * i), cpu=float(i)) for i in range(3)]
    assert push(agent, sent).json()["stored"] == 3
    assert push(agent, [wire(timezone.now(), cpu=1.0)]).json()["stored"] == 1
    assert host_store.pack() == 1
    assert HostSample.objects.filter(host=remote).count() == 1  # the newest

    again = push(agent, [*sent, wire(old + timedelta(seconds=2), cpu=99.0)]).json()
    assert (again["stored"], again["duplicates"]) == (1, 3)
    found = host_store.HOST.values(
        remote.pk, old, old + timedelta(minutes=1), columns=["cpu_percent"]
    )
    assert [r[2] for r in found] == [0.0, 99.0, 1.0, 2.0]  # each once, the backfill too


def wire(ts, cpu: float) -> dict:
    b = batch(ts, cpu_percent=cpu)
    b.id = uuid.uuid4().hex
    return b.to_dict()


def push(client: Client, batches: list[dict]):
    body = gzip.compress(json.dumps({"host": "web-1", "batches": batches}).encode())
    return client.post("/api/v1/ingest", body, content_type="application/json",
                       headers={"Content-Encoding": "gzip"})  # fmt: skip


def test_retention_drops_host_chunks_whole(host, hour):
    fill(host, hour, ticks=2)
    report_now(host)
    rollups.roll_up()
    host_store.pack()
    assert prune(now=hour + timedelta(hours=48, minutes=30))["host_chunks"] == 0  # not all
    assert HostChunk.objects.count() == 1
    assert prune(now=hour + timedelta(hours=49, minutes=1))["host_chunks"] == 1
    assert not HostChunk.objects.exists()


def test_a_damaged_chunk_is_skipped_with_a_log_line_and_loses_nothing_else(host, hour, caplog):
    fill(host, hour, ticks=2)
    fill(host, hour + timedelta(hours=1), ticks=2)
    report_now(host)
    host_store.pack()
    first = HostChunk.objects.order_by("start").first()
    HostChunk.objects.filter(pk=first.pk).update(data=b"not a chunk")
    with caplog.at_level(logging.ERROR, logger="monitoring.process_store"):
        found = host_store.HOST.values(host.pk, end=hour + timedelta(hours=2))
    assert [r[0] for r in found] == [
        hour + timedelta(hours=1),
        hour + timedelta(hours=1, minutes=1),
    ]
    assert f"host samples of chunk {first.pk} unreadable" in caplog.text


def test_a_trend_alert_reads_packed_samples(host, hour):
    from alerts.evaluation import trend_values
    from alerts.models import Rule

    fill(host, hour, ticks=3)  # 1 GiB more a minute
    rule = Rule(metric="memory_growth", window_minutes=600)
    [(subject, growth)] = trend_values(rule, host, timezone.now())
    assert subject == "host" and growth == pytest.approx(60 * 1024)  # MiB an hour
    report_now(host, mem_used=None)
    host_store.pack()
    assert HostChunk.objects.exists()
    assert trend_values(rule, host, timezone.now()) == [("host", growth)]


def test_process_history_is_untouched_by_host_packing(host, hour):
    fill(host, hour, ticks=2)
    report_now(host)
    host_store.pack()
    assert len(process_store.RAW.values(host.pk)) == 2 and HostChunk.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_an_upgrade_keeps_host_samples_as_rows_and_packs_them_later(host, hour):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = ("monitoring", "0016_retention_pruned_at"), ("monitoring", "0017_host_chunks")
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    executor.migrate([before])
    try:
        apps = executor.loader.project_state([before]).apps
        OldSample = apps.get_model("monitoring", "HostSample")
        for i in range(3):
            OldSample.objects.create(host_id=host.pk, ts=hour + timedelta(minutes=i),
                                     cpu_percent=float(i), per_cpu=[1.5, 2.5],
                                     disks=DISKS, nets=NETS, batch_id=f"old-{i}")  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate([after])
        assert HostSample.objects.filter(host=host).count() == 3
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(leaves)
    rows = host_store.HOST.values(host.pk)
    report_now(host)
    assert host_store.pack() == 1  # the next rollup run packs them, history intact
    assert host_store.HOST.values(host.pk, end=hour + timedelta(hours=1)) == rows
    assert host_store.is_stored(host, "old-1", hour + timedelta(minutes=1))
