"""Heartbeat checks in the REST API (/api/v1/heartbeats/) and the seed's heartbeat
endpoints under /api/v1/monitoring/ with their documented fields."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from jobs import heartbeats
from jobs.models import HeartbeatCheck, Run
from monitoring.models import ApiToken
from tests.jobs.conftest import client_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def check(db) -> HeartbeatCheck:
    return HeartbeatCheck.objects.create(name="nightly", period=timedelta(days=1))


def test_a_jobs_token_makes_a_check_and_gets_its_ping_url(bob_job):
    answer = bob_job.post(
        "/api/v1/heartbeats/",
        {"name": "backup", "cron": "30 2 * * *", "tz": "Europe/Berlin", "grace": 600},
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.content
    body = answer.json()
    check = HeartbeatCheck.objects.get(name="backup")
    assert body["ping_url"].endswith(f"/ping/{check.slug}")
    assert (body["state"], body["grace"], body["period"]) == ("new", 600.0, None)
    assert check.owner.username == "bob"


def test_a_check_needs_a_period_or_a_cron_and_a_real_time_zone(bob_job):
    post = lambda body: bob_job.post("/api/v1/heartbeats/", body, content_type="application/json")  # noqa: E731
    assert post({"name": "a"}).status_code == 400
    assert post({"name": "a", "period": 60, "cron": "* * * * *"}).status_code == 400
    assert post({"name": "a", "cron": "every day"}).status_code == 400
    assert post({"name": "a", "cron": "0 3 * * *", "tz": "Mars/Olympus"}).status_code == 400
    assert post({"name": "a", "period": -5}).status_code == 400
    never = post({"name": "a", "cron": "0 0 31 2 *"})  # February 31st: valid, never fires
    assert never.status_code == 400 and "never fires" in str(never.json())
    assert not HeartbeatCheck.objects.exists()


def test_checks_are_found_by_name_changed_and_deleted(alice_api, check):
    found = alice_api.get("/api/v1/heartbeats/", {"name": "nightly"}).json()
    rows = found["results"] if isinstance(found, dict) else found
    assert [r["slug"] for r in rows] == [check.slug]
    changed = alice_api.patch(
        f"/api/v1/heartbeats/{check.pk}", {"max_duration": 3600}, content_type="application/json"
    )
    assert changed.status_code == 200 and changed.json()["max_duration"] == 3600.0
    assert alice_api.delete(f"/api/v1/heartbeats/{check.pk}").status_code == 204
    assert not HeartbeatCheck.objects.exists()


def test_a_read_only_token_reads_but_does_not_make_checks(bob, check):
    reader = client_of(bob, read_only=True)
    assert reader.get("/api/v1/heartbeats/").status_code == 200
    made = reader.post(
        "/api/v1/heartbeats/", {"name": "x", "period": 60}, content_type="application/json"
    )
    assert made.status_code == 403


def test_without_a_token_the_api_refuses_but_pings_need_none(check):
    assert Client().get("/api/v1/heartbeats/").status_code == 401
    assert Client().get(f"/ping/{check.slug}").status_code == 200


def test_a_checks_runs_come_newest_first(alice_api, check):
    now = timezone.now()
    heartbeats.ping(check, "start", now, run_id="one")
    heartbeats.ping(check, "success", now + timedelta(seconds=9), run_id="one")
    heartbeats.ping(check, "start", now + timedelta(seconds=20), run_id="two")
    runs = alice_api.get(f"/api/v1/heartbeats/{check.pk}/runs").json()
    assert [(r["run_id"], r["status"], r["duration"]) for r in runs] == [
        ("two", "running", None),
        ("one", "success", 9.0),
    ]


def test_seed_task_fields_while_running_and_after(bob_job, check):
    started = bob_job.post(
        "/api/v1/monitoring/heartbeat/task/extract-001/start",
        {"task_name": "nightly"},
        content_type="application/json",
    )
    assert started.json() == {"message": "heartbeat of task extract-001 started", "success": True}
    Client().get(f"/ping/{check.slug}/progress", {"rid": "extract-001", "progress": "0.65"})
    task = bob_job.get("/api/v1/monitoring/heartbeat/task/extract-001").json()
    assert {
        k: task[k] for k in ("task_id", "heartbeat_exists", "is_registered", "status", "is_running")
    } == {
        "task_id": "extract-001",
        "heartbeat_exists": True,
        "is_registered": True,
        "status": "running",
        "is_running": True,
    }
    data = task["heartbeat_data"]
    assert set(data) >= {"task_name", "start_time", "last_update", "gpu_lock", "progress"}
    assert (data["task_name"], data["progress"]) == ("nightly", 0.65)
    assert task["last_update"] == data["last_update"]
    Client().get(f"/ping/{check.slug}/0", {"rid": "extract-001"})
    done = bob_job.get("/api/v1/monitoring/heartbeat/task/extract-001").json()
    assert (done["status"], done["heartbeat_exists"], done["heartbeat_data"]) == (
        "completed",
        False,
        None,
    )


def test_seed_start_makes_an_unknown_check_and_delete_stops_the_run(bob_job):
    bob_job.post("/api/v1/monitoring/heartbeat/task/asr-002/start")
    assert HeartbeatCheck.objects.filter(name="asr-002").exists()
    stopped = bob_job.delete("/api/v1/monitoring/heartbeat/task/asr-002")
    assert stopped.json()["success"] is True
    assert Run.objects.get().status == "stopped"
    again = bob_job.delete("/api/v1/monitoring/heartbeat/task/asr-002")
    assert again.status_code == 404 and again.json()["success"] is False


def test_an_unknown_task_is_not_registered(alice_api):
    task = alice_api.get("/api/v1/monitoring/heartbeat/task/nobody").json()
    assert (task["heartbeat_exists"], task["is_registered"], task["heartbeat_data"]) == (
        False,
        False,
        None,
    )


def test_seed_all_tasks_and_cleanup(alice_api, check):
    now = timezone.now()
    heartbeats.ping(check, "start", now, run_id="live")
    heartbeats.ping(check, "start", now, run_id="zombie")
    Run.objects.filter(run_id="zombie").update(status="orphaned", ended_at=now)
    heartbeats.ping(check, "fail", now, run_id="broke", exit_status=2)
    answer = alice_api.get("/api/v1/monitoring/heartbeat/all").json()
    assert set(answer) == {
        "active_tasks",
        "dead_tasks",
        "orphaned_tasks",
        "statistics",
        "timestamp",
    }
    assert answer["active_tasks"]["live"]["task_name"] == "nightly"
    assert answer["active_tasks"]["live"]["status"] == "running"
    assert [t["task_id"] for t in answer["dead_tasks"]] == ["broke"]
    assert answer["orphaned_tasks"] == [
        {"task_id": "zombie", "last_update": now.timestamp().__round__(3), "timeout": True}
    ]
    stats = answer["statistics"]
    assert (
        stats["total_tasks"],
        stats["active_count"],
        stats["dead_count"],
        stats["orphaned_count"],
    ) == (3, 1, 1, 1)
    assert stats["average_heartbeat_interval"] == 86400.0
    cleaned = alice_api.post("/api/v1/monitoring/heartbeat/cleanup").json()
    assert (cleaned["success"], cleaned["cleaned_dead_tasks"]) == (True, 1)
    assert not Run.objects.filter(run_id="zombie").exists()


def test_seed_monitor_and_statistics_count_the_tasks(alice_api, check):
    heartbeats.ping(check, "start", run_id="a")
    status = alice_api.get("/api/v1/monitoring/monitor/status").json()
    assert status["monitor_stats"]["tasks_monitored"] == 1
    assert status["monitor_stats"]["tasks_recovered"] == 0
    assert status["config"]["heartbeat_timeout"] == 3600
    config = alice_api.get("/api/v1/monitoring/timeout/config").json()
    assert config["task_heartbeat_timeout"] == 3600
    stats = alice_api.get("/api/v1/monitoring/statistics").json()
    assert stats["heartbeat"] == {
        "active_tasks": 1,
        "dead_tasks": 0,
        "orphaned_tasks": 0,
        "average_interval": 86400.0,
    }
    assert stats["timeout"]["tasks_recovered"] == 0
    health = alice_api.get("/api/v1/monitoring/monitor/health").json()
    assert health["metrics"]["task_monitoring_coverage"] == "0%"  # it named no process


def test_the_schema_documents_the_heartbeat_endpoints(alice_client):
    schema = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json")
    text = schema.content.decode()
    for url in (
        "/api/v1/heartbeats/",
        "/api/v1/monitoring/heartbeat/all",
        "/api/v1/monitoring/heartbeat/task/{tid}/start",
    ):
        assert url in text


def test_a_jobs_token_reaches_heartbeats(bob):
    token = client_of(bob, ApiToken.JOBS)
    assert token.get("/api/v1/heartbeats/").status_code == 200
    assert token.get("/api/v1/monitoring/heartbeat/all").status_code == 200
