"""/api/v1/gpu-leases/: acquire, renew, release, force-release, list, and token scopes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import GpuLease, LeaseRecord
from monitoring.collectors.system import local_machine_id
from monitoring.models import ApiToken, Event
from tests.jobs.conftest import client_of, holder

pytestmark = pytest.mark.django_db
URL = "/api/v1/gpu-leases/"


def acquire(client, **body):
    return client.post(
        URL + "acquire", {"host": "gpu-box", **body}, content_type="application/json"
    )


def post(client, action: str, **body):
    return client.post(URL + action, body, content_type="application/json")


def test_a_jobs_token_takes_a_free_gpu(gpu_host, bob_job):
    response = acquire(bob_job, count=2, ttl=120, job="train.py", pid=4242, process_started=1e9)
    assert response.status_code == 200
    answer = response.json()
    assert [g["index"] for g in answer["gpus"]] == [0, 1]
    assert answer["gpus"][0]["lock_key"] == "gpu_lock:gpu-box:0"
    assert answer["gpus"][0]["uuid"].startswith("GPU-")
    assert answer["ttl"] == 120 and len(answer["lease"]) == 32
    lease = GpuLease.objects.get(host=gpu_host, index=0)
    assert (lease.user, lease.job, lease.pid) == ("bob", "train.py", 4242)


def test_the_host_is_found_by_machine_id_then_hostname(local_gpu_host, gpu_host, bob_job):
    by_id = post(bob_job, "acquire", machine_id=local_machine_id(), hostname="elsewhere")
    assert by_id.json()["host"] == local_gpu_host.name
    by_name = post(bob_job, "acquire", machine_id="unknown", hostname="gpu-box")
    assert by_name.json()["host"] == "gpu-box"


def test_an_unknown_host_is_a_400_naming_host(gpu_host, bob_job):
    response = post(bob_job, "acquire", hostname="nowhere")
    assert response.status_code == 400
    assert "host" in response.json()


def test_asking_for_more_gpus_than_the_host_has_is_a_400(gpu_host, bob_job):
    response = acquire(bob_job, count=5)
    assert response.status_code == 400
    assert response.json() == {"count": ["gpu-box has 4 GPUs"]}


def test_a_pid_without_its_start_time_is_a_400(gpu_host, bob_job):
    assert acquire(bob_job, pid=4242).status_code == 400


def test_no_free_gpu_without_waiting_is_refused_and_names_the_holders(gpu_host, bob, carol_job):
    GpuLease.acquire(gpu_host, 4, 600, holder(bob, job="big-train"))
    response = acquire(carol_job)
    assert response.status_code == 409
    answer = response.json()
    assert (answer["state"], answer["free"], answer["total"]) == ("refused", 0, 4)
    assert answer["holders"][0]["job"] == "big-train"
    assert LeaseRecord.objects.filter(action="refused", user="carol").count() == 1


def test_a_wait_is_one_attempt_until_it_is_granted(gpu_host, bob, carol_job):
    handle, _ = GpuLease.acquire(gpu_host, 4, 600, holder(bob))
    first = acquire(carol_job, wait=600).json()
    assert first["state"] == "waiting" and first["retry_after"] > 0
    again = acquire(carol_job, wait=600, attempt=first["attempt"]).json()
    assert again["state"] == "waiting"
    LeaseRecord.objects.filter(action="wait").update(ts=timezone.now() - timedelta(seconds=30))
    GpuLease.release(handle)
    granted = acquire(carol_job, wait=600, attempt=first["attempt"])
    assert granted.status_code == 200
    assert granted.json()["waited"] >= 30
    assert LeaseRecord.objects.filter(action="wait").count() == 1


def test_a_wait_that_runs_out_is_a_timeout(gpu_host, bob, carol_job):
    GpuLease.acquire(gpu_host, 4, 600, holder(bob))
    first = acquire(carol_job, wait=10).json()
    LeaseRecord.objects.filter(action="wait").update(ts=timezone.now() - timedelta(seconds=11))
    late = acquire(carol_job, wait=10, attempt=first["attempt"])
    assert late.status_code == 409 and late.json()["state"] == "timeout"
    assert LeaseRecord.objects.filter(action="timeout", user="carol").count() == 1


def test_the_holder_renews_its_lease(gpu_host, bob_job):
    handle = acquire(bob_job, ttl=60).json()["lease"]
    response = post(bob_job, "renew", lease=handle, ttl=3600)
    assert response.status_code == 200
    left = GpuLease.objects.get(handle=handle).ttl_left()
    assert 3590 < left <= 3600


def test_someone_else_cannot_renew_or_release_a_lease(gpu_host, bob_job, carol_job):
    handle = acquire(bob_job).json()["lease"]
    assert post(carol_job, "renew", lease=handle).status_code == 403
    refused = post(carol_job, "release", lease=handle)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this lease is held by bob"
    assert GpuLease.objects.filter(handle=handle).exists()


def test_a_released_lease_frees_its_gpus_and_is_gone(gpu_host, bob_job):
    handle = acquire(bob_job, count=2).json()["lease"]
    response = post(bob_job, "release", lease=handle)
    assert response.status_code == 200
    assert [g["is_locked"] for g in response.json()["gpus"]] == [False, False]
    assert post(bob_job, "renew", lease=handle).status_code == 404
    assert post(bob_job, "release", lease=handle).status_code == 404


def test_staff_force_release_a_gpu_and_it_is_recorded(gpu_host, bob_job, alice_api):
    acquire(bob_job, job="stuck")
    lease = GpuLease.objects.get(host=gpu_host, index=0)
    response = post(alice_api, f"{lease.pk}/force-release", reason="stuck since Friday")
    assert response.status_code == 200 and response.json()["is_locked"] is False
    record = LeaseRecord.objects.get(action="force_release")
    assert (record.by.username, record.job, record.message) == (
        "alice",
        "stuck",
        "stuck since Friday",
    )
    assert "force-released by alice" in Event.objects.get(kind="gpu_lease_force_released").message
    assert post(alice_api, f"{lease.pk}/force-release").status_code == 409


def test_a_user_who_is_not_staff_cannot_force_release(gpu_host, bob, carol):
    handle, (lease,) = GpuLease.acquire(gpu_host, 1, 600, holder(bob))
    assert post(client_of(carol), f"{lease.pk}/force-release").status_code == 403
    assert GpuLease.objects.get(pk=lease.pk).handle == handle


def test_a_read_only_token_of_staff_cannot_force_release(gpu_host, bob, alice):
    _, (lease,) = GpuLease.acquire(gpu_host, 1, 600, holder(bob))
    read_only = client_of(alice, read_only=True)
    assert post(read_only, f"{lease.pk}/force-release").status_code == 403


def test_the_list_shows_holders_but_never_the_lease_handle(gpu_host, bob_job):
    handle = acquire(bob_job, job="train.py").json()["lease"]
    response = bob_job.get(URL)
    assert response.status_code == 200
    assert response.json()[0]["job"] == "train.py"
    assert handle not in response.content.decode()


def test_one_gpu_shows_its_history(gpu_host, bob_job, alice_api):
    handle = acquire(bob_job).json()["lease"]
    post(bob_job, "release", lease=handle)
    lease = GpuLease.objects.get(host=gpu_host, index=0)
    history = alice_api.get(f"{URL}{lease.pk}/").json()["history"]
    assert [h["action"] for h in history] == ["release", "acquire"]


def test_a_jobs_token_reaches_nothing_else_of_the_api(gpu_host, bob_job):
    assert bob_job.get("/api/v1/hosts/").status_code == 403
    assert bob_job.get("/api/v1/monitoring/statistics").status_code == 403
    assert bob_job.get("/metrics").status_code == 401


def test_a_read_only_token_cannot_take_a_lease(gpu_host, bob):
    assert acquire(client_of(bob, read_only=True)).status_code == 403


def test_a_jobs_token_is_made_on_the_tokens_page(client, bob):
    client.force_login(bob)
    page = client.post("/account/tokens/", {"name": "training", "access": "jobs"})
    assert (
        "batch jobs only: GPU leases, heartbeats, recordings, app metrics" in page.content.decode()
    )
    token = ApiToken.objects.get(name="training")
    assert (token.scope, token.read_only) == (ApiToken.JOBS, False)
