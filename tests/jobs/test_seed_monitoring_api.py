"""The seed's /api/v1/monitoring/ endpoints for GPU locks and the monitor: each
answers with the fields seed 003 documents."""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import GpuLease, LeaseRecord, Monitor
from tests.jobs.conftest import client_of, holder

pytestmark = pytest.mark.django_db
URL = "/api/v1/monitoring/"

SEED_FIELDS = {
    "gpu-lock/status": {
        "lock_key",
        "is_locked",
        "lock_holder",
        "ttl_seconds",
        "timestamp",
        "health",
        "statistics",
        "recent_history",
        "lock_type",
        "lock_age",
    },
    "gpu-lock/health": {
        "overall_status",
        "issues_count",
        "total_attempts",
        "success_rate",
        "timeout_rate",
        "average_execution_time",
        "recent_success_rate",
        "lock_holder",
        "lock_age",
        "timestamp",
    },
    "monitor/status": {"monitor_status", "monitor_stats", "config", "is_running", "uptime"},
    "monitor/health": {"status", "issues", "metrics", "timestamp"},
    "timeout/status": {"timeout_stats", "action_history", "configured_actions", "timestamp"},
    "timeout/config": {
        "gpu_lock_timeout",
        "task_heartbeat_timeout",
        "monitor_check_interval",
        "auto_recovery_enabled",
        "max_retry_attempts",
        "timestamp",
    },
    "statistics": {"timestamp", "gpu_lock", "monitor", "timeout"},
}


@pytest.fixture
def busy_gpu(gpu_host, bob):
    """GPU 1 of gpu-box held by bob's whisper job for 153 s, GPU 0 by his warm-up since
    now, and one lease taken and given back."""
    now = timezone.now()
    GpuLease.release(GpuLease.acquire(gpu_host, 1, 60, holder(bob), now=now)[0])
    GpuLease.acquire(gpu_host, 1, 3000, holder(bob, job="warm-up"), now=now)  # GPU 0
    GpuLease.acquire(
        gpu_host,
        1,
        3000,
        holder(bob, job="faster_whisper.transcribe"),
        now=now - timedelta(seconds=153),
    )
    return GpuLease.objects.get(host=gpu_host, index=1)


@pytest.mark.parametrize("endpoint", sorted(SEED_FIELDS))
def test_each_seed_endpoint_answers_the_seeds_fields(busy_gpu, alice_api, endpoint):
    query = "?lock_key=gpu_lock:gpu-box:1" if endpoint == "gpu-lock/status" else ""
    response = alice_api.get(URL + endpoint + query)
    assert response.status_code == 200
    assert SEED_FIELDS[endpoint] <= set(response.json())


def test_a_locks_status_names_its_holder_ttl_and_age(busy_gpu, alice_api):
    status = alice_api.get(URL + "gpu-lock/status?lock_key=gpu_lock:gpu-box:1").json()
    assert status["is_locked"] is True
    assert status["lock_holder"] == "faster_whisper.transcribe"
    assert 3000 - 153 - 5 <= status["ttl_seconds"] <= 3000 - 153
    assert 153 <= status["lock_age"] < 160
    assert status["lock_type"] == "GPU_LOCK"
    assert set(status["health"]) == {"status", "last_check", "issues"}
    assert set(status["statistics"]) == {
        "total_attempts",
        "success_count",
        "timeout_count",
        "failure_count",
        "average_execution_time",
    }
    assert status["recent_history"][0]["action"] == "acquire"
    assert status["recent_history"][0]["task_name"] == "faster_whisper.transcribe"


def test_a_free_lock_has_no_holder(busy_gpu, alice_api):
    status = alice_api.get(URL + "gpu-lock/status?lock_key=gpu_lock:gpu-box:3").json()
    assert (status["is_locked"], status["lock_holder"], status["ttl_seconds"]) == (
        False,
        None,
        None,
    )


def test_the_seeds_short_lock_key_means_the_only_host_with_leases(busy_gpu, alice_api):
    status = alice_api.get(URL + "gpu-lock/status?lock_key=gpu_lock:1").json()
    assert status["lock_key"] == "gpu_lock:gpu-box:1"


def test_a_bad_lock_key_is_a_400(busy_gpu, alice_api):
    assert alice_api.get(URL + "gpu-lock/status?lock_key=gpu_lock:gpu-box:9").status_code == 400
    assert alice_api.get(URL + "gpu-lock/status?lock_key=lock0").status_code == 400


def test_the_lock_health_sums_up_attempts(busy_gpu, alice_api):
    health = alice_api.get(URL + "gpu-lock/health").json()
    assert health["total_attempts"] == 3
    assert health["success_rate"] == 1.0
    assert health["lock_holder"] == "faster_whisper.transcribe"


def test_staff_stop_and_start_the_monitor(gpu_host, alice_api):
    stopped = alice_api.post(URL + "monitor/stop")
    assert stopped.json() == {"message": "the monitor stopped", "success": True}
    status = alice_api.get(URL + "monitor/status").json()
    assert status["config"]["enabled"] is False and status["is_running"] is False
    assert alice_api.post(URL + "monitor/start").json()["success"] is True
    assert Monitor.current().enabled


def test_a_user_who_is_not_staff_cannot_stop_the_monitor(gpu_host, bob):
    assert client_of(bob).post(URL + "monitor/stop").status_code == 403
    assert Monitor.current().enabled


def test_a_stopped_monitor_is_a_warning_in_its_health(gpu_host, alice_api):
    Monitor.current().stop()
    health = alice_api.get(URL + "monitor/health").json()
    assert health["status"] == "warning"
    assert "stopped" in health["issues"][0]


def test_a_timeout_check_frees_a_dead_holders_lock_at_once(local_gpu_host, bob, alice_api):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    GpuLease.acquire(local_gpu_host, 1, 3600, holder(bob, pid=child.pid))
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    answer = alice_api.post(URL + "timeout/check").json()
    assert answer["timeouts_detected"] == 1
    assert answer["actions_taken"][0]["action"] == "holder_gone"
    timeouts = alice_api.get(URL + "timeout/status").json()
    assert timeouts["timeout_stats"]["total_timeouts_detected"] == 1
    assert timeouts["action_history"][0]["action"] == "holder_gone"


def test_staff_release_a_lock_by_its_key(busy_gpu, alice_api):
    body = {"lock_key": "gpu_lock:gpu-box:1", "task_name": "manual"}
    answer = alice_api.post(URL + "lock/release", body, content_type="application/json")
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True,
        "message": "lock gpu_lock:gpu-box:1 released",
        "lock_key": "gpu_lock:gpu-box:1",
        "task_name": "manual",
    }
    assert LeaseRecord.objects.get(action="force_release").by.username == "alice"
    again = alice_api.post(URL + "lock/release", body, content_type="application/json")
    assert again.status_code == 409 and again.json()["success"] is False


def test_a_user_who_is_not_staff_cannot_release_a_lock(busy_gpu, bob):
    body = {"lock_key": "gpu_lock:gpu-box:1"}
    answer = client_of(bob).post(URL + "lock/release", body, content_type="application/json")
    assert answer.status_code == 403


def test_the_statistics_count_gpu_hours_per_user(busy_gpu, alice_api):
    stats = alice_api.get(URL + "statistics").json()
    assert stats["gpu_lock"]["total_attempts"] == 3
    assert stats["hours_per_user"]["bob"] == pytest.approx(153 / 3600, abs=0.005)


def test_the_schema_documents_the_seed_endpoints(alice_api):
    schema = alice_api.get("/api/schema/", headers={"Accept": "application/json"}).json()
    for endpoint in [
        *SEED_FIELDS,
        "monitor/start",
        "monitor/stop",
        "timeout/check",
        "lock/release",
    ]:
        assert f"/api/v1/monitoring/{endpoint}" in schema["paths"]
    for action in ("acquire", "renew", "release"):
        assert f"/api/v1/gpu-leases/{action}" in schema["paths"]
