"""The admin: start and stop the lease monitor, force-release GPUs, read the history."""

import pytest

from jobs.models import GpuLease, HeartbeatCheck, LeaseRecord, Monitor
from tests.jobs.conftest import holder

pytestmark = pytest.mark.django_db


def test_the_monitor_is_stopped_and_started_from_the_admin(alice_client):
    page = alice_client.get("/admin/jobs/monitor/")
    assert "lease monitor (running)" in page.content.decode()
    pk = Monitor.current().pk
    action = {"action": "stop", "_selected_action": [pk]}
    alice_client.post("/admin/jobs/monitor/", action)
    assert not Monitor.current().enabled
    alice_client.post("/admin/jobs/monitor/", {**action, "action": "start"})
    assert Monitor.current().enabled


def test_the_admin_force_releases_the_selected_gpus_on_record(alice_client, alice, gpu_host, bob):
    _, leases = GpuLease.acquire(gpu_host, 2, 600, holder(bob))
    selected = [lease.pk for lease in leases]
    body = {"action": "force_release", "_selected_action": selected}
    alice_client.post("/admin/jobs/gpulease/", body)
    assert not GpuLease.objects.exclude(handle="").exists()
    records = LeaseRecord.objects.filter(action="force_release")
    assert [r.by for r in records] == [alice, alice]


def test_lease_history_cannot_be_added_or_changed_in_the_admin(alice_client, gpu_host, bob):
    GpuLease.acquire(gpu_host, 1, 600, holder(bob))
    record = LeaseRecord.objects.get()
    assert alice_client.get("/admin/jobs/leaserecord/add/").status_code == 403
    change = alice_client.get(f"/admin/jobs/leaserecord/{record.pk}/change/")
    assert 'name="_save"' not in change.content.decode()


@pytest.mark.parametrize(
    "schedule, error",
    [
        ({"cron": "0 0 31 2 *"}, "never fires"),  # February 31st
        ({"cron": "61 * * * *"}, "is no cron expression"),
        ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "no time zone"),
        ({"cron": "0 3 * * *", "period": "1 00:00:00"}, "not both"),
        ({}, "not both"),
    ],
)
def test_the_admin_refuses_a_schedule_the_api_refuses(alice_client, schedule, error):
    form = {"name": "nightly", "tz": "UTC", "grace": "01:00:00", "cron": "", "period": ""}
    page = alice_client.post("/admin/jobs/heartbeatcheck/add/", {**form, **schedule})
    assert page.status_code == 200 and error in page.content.decode()  # the form again
    assert not HeartbeatCheck.objects.exists()


def test_the_admin_saves_a_cron_check(alice_client):
    form = {"name": "nightly", "cron": "0 3 * * *", "tz": "Europe/Berlin", "grace": "01:00:00"}
    assert alice_client.post("/admin/jobs/heartbeatcheck/add/", form).status_code == 302
    assert HeartbeatCheck.objects.get().cron == "0 3 * * *"
