"""ptracker's own health (`GET /api/v1/monitoring/health`, `ptracker check`): each
issue turns its component from healthy to warning, then critical."""

import shutil
from collections import namedtuple
from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Channel, Delivery, Rule, Transition
from jobs import health
from jobs.models import HeartbeatCheck, Monitor, Run
from monitoring.models import Host, HostSample, Lease, Retention, Rollup, RollupState
from monitoring.tasks import sampler_lease_name
from ptracker.cli import main

pytestmark = pytest.mark.django_db
DiskUsage = namedtuple("DiskUsage", "total used free")


@pytest.fixture
def fine(db, monkeypatch):
    """A hub at work: its sampler holds its lease, the monitor checked, pruned lately,
    and half its disk free (the one boundary faked: this machine's disk is not ours)."""
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(100, 50, 50))
    now = timezone.now()
    Lease.objects.create(
        name=sampler_lease_name(), owner="me", renewed_at=now, expires_at=now + timedelta(minutes=1)
    )
    Monitor.objects.update_or_create(pk=1, defaults={"last_check": now})
    Retention.objects.update_or_create(pk=1, defaults={"pruned_at": now})
    return now


def status_of(name: str, readings=None) -> tuple[str, list[str]]:
    part = health.judge(readings or health.read())[name]
    return part.status, part.issues


def test_a_hub_at_work_is_healthy(fine, alice_api):
    answer = alice_api.get("/api/v1/monitoring/health").json()
    assert (answer["status"], answer["issues"]) == ("healthy", [])
    assert set(answer["components"]) >= {"monitor", "heartbeat", "database", "disk"}
    heartbeat = answer["components"]["heartbeat"]
    assert {"total_tasks", "active_count", "failure_rate", "timestamp"} <= set(heartbeat)
    assert answer["components"]["database"]["metrics"]["latency_ms"] < 1000


def test_a_stopped_sampler_is_a_warning_then_critical(fine):
    now = timezone.now()
    lease = Lease.objects.get()
    Lease.objects.filter(pk=lease.pk).update(expires_at=now - timedelta(seconds=30))
    assert status_of("sampler")[0] == "warning"
    Lease.objects.filter(pk=lease.pk).update(expires_at=now - timedelta(minutes=5))
    state, issues = status_of("sampler")
    assert state == "critical" and "the sampler stopped 5 min ago" in issues


def test_the_lease_monitor_not_checking_is_critical_and_stopped_a_warning(fine):
    Monitor.objects.filter(pk=1).update(last_check=timezone.now() - timedelta(minutes=10))
    assert status_of("monitor")[0] == "critical"
    Monitor.current().stop()
    assert status_of("monitor")[0] == "warning"


def test_rollups_behind_are_a_warning_then_critical(fine):
    host = Host.objects.create(name="web-1", machine_id="m-web-1")
    now = timezone.now()
    HostSample.objects.create(host=host, ts=now)
    state = RollupState.objects.create(
        host=host, resolution=Rollup.MINUTE, done_until=now - timedelta(minutes=2)
    )
    assert status_of("rollups")[0] == "healthy"
    RollupState.objects.filter(pk=state.pk).update(done_until=now - timedelta(minutes=20))
    assert status_of("rollups")[0] == "warning"
    RollupState.objects.filter(pk=state.pk).update(done_until=now - timedelta(hours=2))
    assert status_of("rollups") == ("critical", ["rollups lag 120 min behind"])


def test_pruning_is_recorded_and_a_late_prune_is_an_issue(fine):
    from monitoring import retention

    Retention.objects.update(pruned_at=None)
    retention.prune()
    assert Retention.current().pruned_at is not None
    assert status_of("rollups")[0] == "healthy"
    Retention.objects.update(pruned_at=timezone.now() - timedelta(hours=2))
    assert status_of("rollups")[0] == "warning"
    Retention.objects.update(pruned_at=timezone.now() - timedelta(hours=7))
    assert status_of("rollups")[0] == "critical"


def test_failed_notifications_are_a_warning_then_critical(fine):
    host = Host.objects.create(name="web-1", machine_id="m-web-1")
    rule = Rule.objects.create(name="r", metric="cpu_percent", threshold=90)
    channel = Channel.objects.create(name="hook", kind="webhook", config={"url": "http://x/"})
    transition = Transition.objects.create(
        rule=rule, host=host, subject="host", kind="firing", ts=timezone.now(), message="m"
    )
    Delivery.objects.create(transition=transition, channel=channel, status=Delivery.FAILED)
    assert status_of("notifications") == (
        "warning",
        ["1 alert notifications failed in the last day"],
    )
    for _ in range(9):
        Delivery.objects.create(transition=transition, channel=channel, status=Delivery.FAILED)
    assert status_of("notifications")[0] == "critical"


def test_a_stalled_sender_is_a_warning(fine):
    host = Host.objects.create(name="web-1", machine_id="m-web-1")
    rule = Rule.objects.create(name="r", metric="cpu_percent", threshold=90)
    channel = Channel.objects.create(name="hook", kind="webhook", config={"url": "http://x/"})
    transition = Transition.objects.create(
        rule=rule, host=host, subject="host", kind="firing", ts=timezone.now(), message="m"
    )
    Delivery.objects.create(
        transition=transition, channel=channel, next_try=timezone.now() - timedelta(hours=1)
    )
    assert status_of("notifications") == ("warning", ["1 alert notifications overdue"])


def test_many_failed_heartbeat_runs_are_a_warning(fine):
    check = HeartbeatCheck.objects.create(name="n", period=timedelta(hours=1))
    now = timezone.now()
    for status in ("success", "success", "fail"):
        Run.objects.create(
            heartbeat=check, status=status, started_at=now, last_ping=now, ended_at=now
        )
    state, issues = status_of("heartbeat")
    assert state == "warning" and issues == ["heartbeat failure rate 33% in the last day"]


def test_thresholds_of_what_cannot_be_made_slow_or_full_here(fine):
    # database latency, free disk and the queue read from the readings as taken
    readings = health.read()
    assert status_of("database", replace(readings, db_seconds=0.5))[0] == "warning"
    assert status_of("database", replace(readings, db_seconds=2.0))[0] == "critical"
    assert status_of("disk", readings)[0] == "healthy"
    assert status_of("disk", replace(readings, disk_free_percent=8.0))[0] == "warning"
    assert status_of("disk", replace(readings, disk_free_percent=1.0))[0] == "critical"
    assert status_of("queue", replace(readings, queue_depth=150))[0] == "warning"
    assert status_of("queue", replace(readings, queue_depth=5000))[0] == "critical"
    assert status_of("queue", replace(readings, queue_depth=None))[0] == "healthy"


def test_the_worst_component_is_the_hubs_status(fine):
    readings = replace(health.read(), disk_free_percent=1.0, db_seconds=0.5)
    answer = health.summary(readings)
    assert answer["status"] == "critical"
    assert len(answer["issues"]) == 2


def test_ptracker_check_is_a_nagios_plugin(fine, capsys):
    assert main(["check"]) == 0
    assert capsys.readouterr().out == "PTRACKER OK - healthy\n"
    Monitor.current().stop()
    assert main(["check"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("PTRACKER WARNING - 1 issue(s): the lease monitor is stopped")
    Lease.objects.update(expires_at=timezone.now() - timedelta(minutes=5))
    assert main(["check"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "PTRACKER CRITICAL - 2 issue(s): the sampler stopped 5 min ago"
    assert out[1:] == ["the sampler stopped 5 min ago", out[2]] and "lease monitor" in out[2]
