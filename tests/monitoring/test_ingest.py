"""monitoring.ingest.store: one batch in, the right rows and events out."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring import ingest
from monitoring.models import Event, GpuSample, HostSample, Process, ProcessSample, WatchedProcess
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db


def test_it_stores_host_gpu_and_process_rows(host):
    b = batch(T0, [proc(10), proc(11, gpu_memory=3 * 2**30)], net_rx_bps=1500.0)
    b.gpus = [
        {
            "index": 0,
            "uuid": "GPU-1",
            "name": "H100",
            "utilization": 97.0,
            "memory_used": 3 * 2**30,
            "memory_total": 80 * 2**30,
            "temperature": 61.0,
            "power_w": 412.5,
        }
    ]
    ingest.store(host, b)
    sample = HostSample.objects.get(host=host)
    assert (sample.ts, sample.cpu_percent, sample.net_rx_bps) == (T0, 10.0, 1500.0)
    assert sample.mem_percent == 25.0
    gpu = GpuSample.objects.get(host=host)
    assert (gpu.utilization, gpu.power_w, gpu.memory_percent) == (97.0, 412.5, 3.75)
    rows = {s.process.pid: s for s in ProcessSample.objects.select_related("process")}
    assert set(rows) == {10, 11}
    assert rows[11].gpu_memory == 3 * 2**30
    assert rows[10].process.cmdline == "/usr/bin/proc10 --serve"
    host.refresh_from_db()
    assert host.last_seen == T0


def test_it_keeps_one_identity_per_pid_and_create_time(host):
    ingest.store(host, batch(T0, [proc(10, create_time=1000.5)]))
    ingest.store(host, batch(T0 + timedelta(seconds=5), [proc(10, create_time=1000.5)]))
    # pid 10 reused by a new process
    ingest.store(host, batch(T0 + timedelta(seconds=10), [proc(10, create_time=2000.25)]))
    identities = list(Process.objects.order_by("create_time"))
    assert [(p.pid, p.create_time.timestamp()) for p in identities] == [(10, 1000.5), (10, 2000.25)]
    assert identities[0].last_seen == T0 + timedelta(seconds=5)
    assert identities[0].samples.count() == 2
    assert identities[1].samples.count() == 1


def test_a_backlogs_older_batch_leaves_a_process_last_seen_where_it_was(host):
    newest = T0 + timedelta(seconds=60)
    ingest.store(host, batch(newest, [proc(10, create_time=1000.5)]))
    ingest.store(host, batch(T0 + timedelta(seconds=5), [proc(10, create_time=1000.5)]))
    ingest.store(host, batch(T0, [proc(10, create_time=1000.5)]))
    process = Process.objects.get()
    assert process.last_seen == newest
    assert process.samples.count() == 3


def test_moving_last_seen_writes_no_index_entry_on_postgresql(host):
    """Every batch moves last_seen for each running process: on PostgreSQL those updates
    must be heap-only (no indexed column changes), or a fleet's hub writes an entry in
    every index of the table for each process every few seconds."""
    if connection.vendor != "postgresql":
        pytest.skip("heap-only updates are PostgreSQL's")

    def updates() -> tuple[int, int]:
        # The backend's counts not yet reported, from this transaction and maybe others.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), "
                "pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
                [Process._meta.db_table] * 2,
            )
            return cursor.fetchone()

    running = [proc(n) for n in (10, 11, 12)]
    ingest.store(host, batch(T0, running))
    before = updates()
    for tick in (1, 2):
        ingest.store(host, batch(T0 + timedelta(seconds=5 * tick), running))
    after = updates()
    assert (after[0] - before[0], after[1] - before[1]) == (6, 6)


def test_a_process_that_execs_another_program_keeps_its_identity_with_the_new_command(host):
    ingest.store(host, batch(T0, [proc(10, name="sh", cmdline="sh -c 'exec server'")]))
    later = T0 + timedelta(seconds=5)
    ingest.store(host, batch(later, [proc(10, name="server", cmdline="server --port 80")]))
    process = Process.objects.get()
    assert (process.name, process.cmdline, process.last_seen) == (
        "server",
        "server --port 80",
        later,
    )
    assert process.samples.count() == 2


def test_a_failed_write_stores_nothing_of_the_batch(host):
    bad = batch(T0, [proc(10)], mem_total=None)
    bad.processes.append(proc(11, status="x" * 12))
    bad.host["process_count"] = -1  # violates the unsigned constraint: the insert fails
    with pytest.raises(Exception):  # noqa: B017  (IntegrityError on PostgreSQL and SQLite)
        ingest.store(host, bad)
    assert not HostSample.objects.exists()
    assert not Process.objects.exists()


def test_it_stores_a_tick_in_a_bounded_number_of_queries(host):
    ingest.store(host, batch(T0, [proc(pid) for pid in range(1, 51)]))
    later = batch(T0 + timedelta(seconds=5), [proc(pid) for pid in range(1, 51)] + [proc(99)])
    with CaptureQueriesContext(connection) as queries:
        ingest.store(host, later)
    # 10, plus one because T0 is long past: an old batch may reopen the rollups.
    assert len(queries) <= 11
    assert ProcessSample.objects.filter(ts=later.ts).count() == 51


@pytest.fixture
def nginx_watch(db):
    return WatchedProcess.objects.create(name="nginx", pattern="^nginx$")


def nginx(pid: int, create_time: float, watch):
    return proc(pid, create_time=create_time, name="nginx", watched_id=watch.id)


def test_it_records_a_watched_process_starting(host, nginx_watch):
    ingest.store(host, batch(T0, []))
    started_at = (T0 + timedelta(seconds=3)).timestamp()
    ingest.store(
        host,
        batch(T0 + timedelta(seconds=5), [nginx(80, started_at, nginx_watch)], [nginx_watch.id]),
    )
    event = Event.objects.get(kind="process_started")
    assert event.message == "nginx started (pid 80)"
    assert event.process.pid == 80


def test_a_process_running_before_we_looked_is_not_reported_as_started(host, nginx_watch):
    ingest.store(host, batch(T0, []))
    long_ago = (T0 - timedelta(days=3)).timestamp()
    ingest.store(host, batch(T0 + timedelta(seconds=5), [nginx(80, long_ago, nginx_watch)]))
    assert not Event.objects.filter(kind="process_started").exists()


def test_it_records_a_watched_process_exiting_while_others_still_run(host, nginx_watch):
    ct = (T0 - timedelta(hours=1)).timestamp()
    both = [nginx(80, ct, nginx_watch), nginx(81, ct, nginx_watch)]
    ingest.store(host, batch(T0, both, [nginx_watch.id]))
    ingest.store(host, batch(T0 + timedelta(seconds=5), both[:1], [nginx_watch.id]))
    event = Event.objects.get()
    assert (event.kind, event.process.pid) == ("process_exited", 81)
    assert Process.objects.get(pid=81).exited_at == T0


def test_it_records_a_watched_process_vanishing(host, nginx_watch):
    ct = (T0 - timedelta(hours=1)).timestamp()
    ingest.store(host, batch(T0, [nginx(80, ct, nginx_watch)], [nginx_watch.id]))
    ingest.store(host, batch(T0 + timedelta(seconds=5), []))
    event = Event.objects.get()
    assert event.kind == "process_vanished"
    assert event.get_kind_display() == "no matching process any more"
    assert "no process matches watch 'nginx'" in event.message
    # Reported once, not again on every later batch.
    ingest.store(host, batch(T0 + timedelta(seconds=10), []))
    assert Event.objects.count() == 1


def test_each_exit_of_one_watch_is_its_own_event(host, nginx_watch):
    ct = (T0 - timedelta(hours=1)).timestamp()
    master = nginx(1, ct, nginx_watch)
    ts = T0
    for worker_pid in (100, 101, 102):  # workers recycled one after another
        worker = nginx(worker_pid, ct, nginx_watch)
        ingest.store(host, batch(ts, [master, worker], [nginx_watch.id]))
        ts += timedelta(seconds=5)
    ingest.store(host, batch(ts, [master], [nginx_watch.id]))
    exits = Event.objects.filter(kind="process_exited").order_by("ts")
    assert [(e.process.pid, e.count) for e in exits] == [(100, 1), (101, 1), (102, 1)]


def test_a_disabled_watch_reports_no_exits(host, nginx_watch):
    ct = (T0 - timedelta(hours=1)).timestamp()
    ingest.store(host, batch(T0, [nginx(80, ct, nginx_watch)], [nginx_watch.id]))
    WatchedProcess.objects.filter(pk=nginx_watch.pk).update(enabled=False)
    ingest.store(host, batch(T0 + timedelta(seconds=5), []))
    assert not Event.objects.exists()


def test_a_failing_after_ingest_hook_loses_nothing(host, settings, caplog):
    from monitoring.ingest import after_ingest_hooks

    settings.PTRACKER_AFTER_INGEST = ["tests.monitoring.test_ingest.broken_hook"]
    after_ingest_hooks.cache_clear()
    try:
        sample = ingest.store(host, batch(T0, [proc(1)]))
    finally:
        after_ingest_hooks.cache_clear()
    assert HostSample.objects.get() == sample
    assert "after-ingest hook broken_hook failed" in caplog.text


def broken_hook(host, sample):
    raise RuntimeError("bug in a hook")
