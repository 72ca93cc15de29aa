"""The lease monitor's minute check: expiry, vanished holders, idle and unleased GPUs."""

import os
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Schedule

from jobs import monitor
from jobs.models import GpuLease, Holder, LeaseRecord, Monitor
from monitoring.models import Event, GpuSample, Process
from ptracker.serve import schedules
from tests.jobs.conftest import gpu_readings, holder

pytestmark = pytest.mark.django_db


@pytest.fixture
def sleeper():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child
    child.kill()
    child.wait()


def test_a_holder_killed_with_kill_9_is_released_with_an_event(local_gpu_host, bob, sleeper):
    handle, (lease,) = GpuLease.acquire(local_gpu_host, 1, 3600, holder(bob, pid=sleeper.pid))
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    outcome = monitor.check()
    assert [a["action"] for a in outcome.actions] == ["holder_gone"]
    assert not GpuLease.objects.get(pk=lease.pk).is_held
    record = LeaseRecord.objects.get(action="holder_gone")
    assert record.pid == sleeper.pid and "is gone" in record.message
    event = Event.objects.get(kind="gpu_lease_holder_gone")
    assert "bob: train.py" in event.message and event.host == local_gpu_host


def test_a_living_holder_keeps_its_lease(local_gpu_host, bob, sleeper):
    GpuLease.acquire(local_gpu_host, 1, 3600, holder(bob, pid=sleeper.pid))
    assert monitor.check().actions == []
    assert GpuLease.objects.filter(handle__gt="").count() == 1


def test_a_reused_pid_does_not_keep_a_dead_holders_lease(local_gpu_host, bob, sleeper):
    alive = holder(bob, pid=sleeper.pid)
    earlier = replace(alive, process_started=alive.process_started - timedelta(minutes=5))
    GpuLease.acquire(local_gpu_host, 1, 3600, earlier)  # that pid's previous process
    monitor.check()
    assert "another process" in LeaseRecord.objects.get(action="holder_gone").message


def test_a_lease_past_its_ttl_expires_with_an_event(gpu_host, bob):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 2, 60, holder(bob), now=now - timedelta(minutes=2))
    outcome = monitor.check(now=now)
    assert [a["action"] for a in outcome.actions] == ["expire", "expire"]
    assert GpuLease.objects.filter(handle="").count() == 4
    assert Event.objects.filter(kind="gpu_lease_expired").count() == 2
    assert LeaseRecord.objects.filter(action="expire").first().held == 120.0


def remote_holder(host, user, pid: int, exited: bool = False) -> Holder:
    """A holder on a host of the fleet, as that host's samples told the hub about it."""
    now = timezone.now()
    process = Process.objects.create(
        host=host,
        pid=pid,
        create_time=now - timedelta(hours=1),
        name="python",
        first_seen=now,
        last_seen=now,
        exited_at=now if exited else None,
    )
    return Holder(user, "bob", "train.py", pid, process.create_time)


def test_a_remote_holder_its_samples_saw_exit_is_released(gpu_host, bob):
    GpuLease.acquire(gpu_host, 1, 3600, remote_holder(gpu_host, bob, 4242, exited=True))
    monitor.check()
    assert "exited at" in LeaseRecord.objects.get(action="holder_gone").message


def test_a_remote_holder_whose_pid_went_to_a_later_process_is_released(gpu_host, bob):
    GpuLease.acquire(gpu_host, 1, 3600, remote_holder(gpu_host, bob, 4242))
    now = timezone.now()
    Process.objects.create(
        host=gpu_host, pid=4242, create_time=now, name="bash", first_seen=now, last_seen=now
    )
    monitor.check()
    assert LeaseRecord.objects.filter(action="holder_gone").count() == 1


def test_a_remote_holder_nothing_is_known_of_is_left_to_its_ttl(gpu_host, bob):
    GpuLease.acquire(gpu_host, 1, 3600, remote_holder(gpu_host, bob, 4242))
    assert monitor.check().actions == []


def test_a_stopped_monitor_does_not_check_until_started(gpu_host, bob):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 1, 60, holder(bob), now=now - timedelta(minutes=2))
    Monitor.current().stop()
    assert monitor.scheduled_check() == "monitor stopped"
    assert GpuLease.objects.filter(handle__gt="").count() == 1
    Monitor.current().start()
    monitor.scheduled_check()
    assert GpuLease.objects.filter(handle__gt="").count() == 0
    assert Monitor.current().checks == 1


def test_a_free_gpu_in_use_is_flagged_once(gpu_host, bob):
    GpuLease.release(GpuLease.acquire(gpu_host, 1, 60, holder(bob))[0])  # leases are used here
    GpuSample.objects.filter(host=gpu_host).delete()  # the sample that made the host: idle
    gpu_readings(gpu_host, 2, [80, 90, 95])
    monitor.check()
    monitor.check()
    lease = GpuLease.objects.get(host=gpu_host, index=2)
    assert lease.unleased_use_since is not None
    assert Event.objects.filter(kind="gpu_used_unleased").count() == 1
    health = monitor.health([lease], Monitor.current(), timezone.now())
    assert health["status"] == "warning"
    assert "used without a lease" in health["gpus"][lease.pk][0]


def test_a_gpu_held_but_idle_is_flagged_with_the_minutes(gpu_host, bob):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 1, 7200, holder(bob), now=now - timedelta(minutes=45))
    gpu_readings(gpu_host, 0, [0, 1, 0], end=now - timedelta(minutes=20))
    gpu_readings(gpu_host, 0, [2, 0])
    monitor.check(now=now)
    lease = GpuLease.objects.get(host=gpu_host, index=0)
    assert lease.idle_since == now - timedelta(minutes=30)
    assert "idle for 30 min" in Event.objects.get(kind="gpu_lease_idle").message
    issues = monitor.gpu_issues(lease, now + timedelta(minutes=5), {})
    assert issues == ["held by bob: train.py but idle for 35 min"]


def test_a_held_gpu_that_works_is_not_idle(gpu_host, bob):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 1, 7200, holder(bob), now=now - timedelta(minutes=45))
    gpu_readings(gpu_host, 0, [0, 0, 70, 0])
    monitor.check(now=now)
    assert GpuLease.objects.get(host=gpu_host, index=0).idle_since is None


def test_gpus_of_a_host_where_nobody_leases_are_not_flagged(gpu_host):
    GpuSample.objects.filter(host=gpu_host).delete()
    gpu_readings(gpu_host, 2, [80, 90, 95])
    monitor.check()
    assert not Event.objects.filter(kind="gpu_used_unleased").exists()


def test_the_check_runs_every_minute_in_both_installs(db):
    assert schedules()["ptracker: check GPU leases"] == ("jobs.monitor.scheduled_check", 1)
    row = Schedule.objects.get(name="ptracker: check GPU leases")  # made by migrate
    assert (row.func, row.minutes) == ("jobs.monitor.scheduled_check", 1)


def test_a_monitor_that_stopped_checking_is_critical(gpu_host):
    m = Monitor.current()
    Monitor.objects.filter(pk=m.pk).update(last_check=timezone.now() - timedelta(minutes=10))
    state, issues = monitor.monitor_issues(Monitor.current(), timezone.now())
    assert state == "critical" and "no lease check for" in issues[0]


def test_a_release_by_the_check_stops_being_an_issue_once_the_gpu_is_taken_again(gpu_host, bob):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 1, 60, holder(bob), now=now - timedelta(minutes=2))
    monitor.check(now=now)
    lease = GpuLease.objects.get(host=gpu_host, index=0)
    assert "expired at" in monitor.health([lease], Monitor.current(), now)["gpus"][lease.pk][0]
    GpuLease.acquire(gpu_host, 1, 600, holder(bob), now=now + timedelta(seconds=1))
    lease.refresh_from_db()
    assert monitor.health([lease], Monitor.current(), now)["gpus"][lease.pk] == []
