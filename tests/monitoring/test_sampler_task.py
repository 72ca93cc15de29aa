"""The sampler loop: one per machine, every interval, replaced when dead, stops on signals."""

import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from monitoring.models import Event, Host, HostSample, Lease
from monitoring.tasks import SAMPLER_TASK, ensure_sampler, run_sampler, sampler_lease_name

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_second(settings):
    settings.PTRACKER_SAMPLE_INTERVAL = 1


def queued_samplers() -> list[dict]:
    return [t.task for t in OrmQ.objects.all() if t.task["func"] == SAMPLER_TASK]


def in_thread(**kwargs) -> tuple[threading.Thread, threading.Event, list]:
    stop, result = threading.Event(), []
    thread = threading.Thread(
        target=lambda: result.append(run_sampler(stop=stop, hand_over=False, **kwargs))
    )
    thread.start()
    return thread, stop, result


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_it_samples_this_machine_every_interval():
    result = run_sampler(shift=4.5, hand_over=False)
    samples = list(HostSample.objects.order_by("ts"))
    assert result == f"{len(samples)} samples, shift over"
    assert len(samples) >= 3
    gaps = [(b.ts - a.ts).total_seconds() for a, b in zip(samples, samples[1:], strict=False)]
    assert all(0.5 <= gap <= 1.5 for gap in gaps), gaps
    # Primed before the first tick: even the first stored sample has rates.
    assert samples[0].cpu_percent is not None
    host = Host.objects.get()
    assert host.is_local and host.last_seen == samples[-1].ts
    assert Event.objects.filter(kind="sampler_started").count() == 1


def test_it_releases_the_lease_when_its_shift_ends_without_successor():
    run_sampler(shift=1.5, hand_over=False)
    lease = Lease.objects.get(name=sampler_lease_name())
    assert lease.owner == "" and lease.expires_at <= timezone.now()


def test_a_second_sampler_returns_at_once_while_one_runs():
    thread, stop, result = in_thread(shift=30)
    wait_for(lambda: HostSample.objects.exists())
    started = time.monotonic()
    assert run_sampler(shift=30) == "another sampler holds the lease"
    assert time.monotonic() - started < 1
    stop.set()
    thread.join(5)
    assert result[0].endswith("stop requested")


def test_ensure_sampler_leaves_a_live_sampler_alone():
    Lease.acquire(sampler_lease_name(), "someone", ttl=15)
    assert ensure_sampler() == "sampler alive"
    assert queued_samplers() == []


def test_ensure_sampler_replaces_a_dead_one():
    # A worker killed mid-shift leaves its lease behind, unrenewed.
    Lease.objects.create(
        name=sampler_lease_name(), owner="dead", expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert ensure_sampler() == "sampler started"
    assert len(queued_samplers()) == 1
    # 3 s: priming, then a first tick at least half an interval later, on a boundary.
    assert run_sampler(shift=3, hand_over=False).endswith("shift over")
    assert HostSample.objects.exists()


def test_a_shift_hands_the_lease_to_the_task_it_queues():
    run_sampler(shift=1.5)
    lease = Lease.objects.get(name=sampler_lease_name())
    (task,) = queued_samplers()
    assert task["kwargs"]["token"] == lease.owner
    assert lease.expires_at > timezone.now()
    # Nobody else can take it in between...
    assert run_sampler(shift=1.5) == "another sampler holds the lease"
    # ...but the successor can, and goes on sampling.
    before = HostSample.objects.count()
    assert run_sampler(token=task["kwargs"]["token"], shift=3.5, hand_over=False).endswith(
        "shift over"
    )
    assert HostSample.objects.count() > before
    assert Event.objects.filter(kind="sampler_started").count() == 1  # a handover is no restart


def test_a_sampler_that_lost_its_lease_stops():
    thread, stop, result = in_thread(shift=30)
    wait_for(lambda: HostSample.objects.exists())
    Lease.objects.filter(name=sampler_lease_name()).update(owner="usurper")
    thread.join(5)
    assert not thread.is_alive()
    assert result[0].endswith("lease lost")
    assert Lease.objects.get(name=sampler_lease_name()).owner == "usurper"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_it_stops_cleanly_on_a_signal_and_restores_the_handler(sig):
    before = signal.getsignal(sig)
    timer = threading.Timer(2.5, os.kill, (os.getpid(), sig))
    timer.start()
    started = time.monotonic()
    result = run_sampler(shift=30)
    assert result.endswith("stop requested")
    assert time.monotonic() - started < 5
    assert signal.getsignal(sig) is before
    assert Lease.objects.get(name=sampler_lease_name()).owner == ""
    assert queued_samplers() == []  # a stopped sampler queues no successor


def test_a_failed_write_loses_that_sample_only(caplog):
    from django.db import OperationalError, connection

    failures = []

    def disk_full_once(execute, sql, params, many, context):
        if 'INSERT INTO "monitoring_hostsample"' in sql and not failures:
            failures.append(sql)
            raise OperationalError("database or disk is full")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(disk_full_once):
        result = run_sampler(shift=4.5, hand_over=False)
    assert failures
    stored = HostSample.objects.count()
    assert stored >= 2
    assert result == f"{stored} samples, shift over"
    assert "sample not stored" in caplog.text and "database or disk is full" in caplog.text


@pytest.mark.skipif(
    "sqlite" not in __import__("django.conf").conf.settings.DATABASES["default"]["ENGINE"],
    reason="SQLite's whole-database write lock; PostgreSQL locks rows",
)
def test_a_sample_waits_for_a_locked_database_instead_of_failing(tmp_path):
    import sqlite3

    from django.conf import settings as django_settings
    from django.db import connection

    from monitoring import ingest
    from monitoring.sampling import Sampler

    host = Host.local()
    connection.close()
    other = sqlite3.connect(
        django_settings.DATABASES["default"]["NAME"], isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock…
    threading.Timer(1.5, other.execute, ("COMMIT",)).start()  # …for 1.5 s
    started = time.monotonic()
    ingest.store(host, Sampler().sample())
    assert time.monotonic() - started >= 1.0
    assert HostSample.objects.filter(host=host).count() == 1
