"""/gpus/: who holds which GPU, health, history and statistics; force release."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs import monitor
from jobs.models import GpuLease, LeaseRecord
from monitoring.models import GpuSample, Host
from tests.jobs.conftest import gpu_readings, holder

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_needs_a_login(client):
    response = client.get("/gpus/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_navigation_links_the_page(bob):
    assert 'href="/gpus/"' in signed_in(bob).get("/").content.decode()


def test_every_gpu_of_a_host_shows_free_or_its_holder(gpu_host, bob):
    now = timezone.now()
    GpuLease.acquire(gpu_host, 1, 3600, holder(bob, job="train.py"), now=now - timedelta(minutes=5))
    html = signed_in(bob).get("/gpus/").content.decode()
    rows = html.split('data-gpu="')[1:]
    assert len(rows) == 4
    assert 'data-field="user">bob' in rows[0] and 'data-field="job">train.py' in rows[0]
    assert 'data-field="ttl">55 min' in rows[0]
    assert 'data-field="user">free' in rows[1]


def test_a_gpu_busy_without_a_lease_shows_the_reason(gpu_host, bob):
    GpuLease.release(GpuLease.acquire(gpu_host, 1, 60, holder(bob))[0])
    GpuSample.objects.filter(host=gpu_host).delete()
    gpu_readings(gpu_host, 3, [90, 90, 90])
    monitor.check()
    html = signed_in(bob).get("/gpus/").content.decode()
    assert "used without a lease since" in html.split('data-gpu="3"')[1]


def test_history_and_statistics_show_holds_and_hours(gpu_host, bob):
    now = timezone.now()
    handle, _ = GpuLease.acquire(gpu_host, 1, 3600, holder(bob), now=now - timedelta(hours=2))
    GpuLease.release(handle, now=now)
    html = signed_in(bob).get("/gpus/").content.decode()
    history = html[html.index('id="lease-history"') :]
    assert "released" in history and "2 h" in history
    hours = html[html.index('id="hours-per-user"') : html.index('id="lease-history"')]
    assert '<th>bob</th><td class="n">2.0 h</td>' in hours


def test_staff_with_the_permission_force_release_from_the_page(gpu_host, bob, alice):
    _, (lease,) = GpuLease.acquire(gpu_host, 1, 3600, holder(bob))
    page = signed_in(alice).get("/gpus/").content.decode()
    assert f"/gpus/{lease.pk}/force-release" in page
    response = signed_in(alice).post(f"/gpus/{lease.pk}/force-release", {"reason": "stuck"})
    assert response.status_code == 302
    assert LeaseRecord.objects.get(action="force_release").by == alice


def test_a_user_without_the_permission_cannot_force_release(gpu_host, bob):
    _, (lease,) = GpuLease.acquire(gpu_host, 1, 3600, holder(bob))
    assert "/force-release" not in signed_in(bob).get("/gpus/").content.decode()
    assert signed_in(bob).post(f"/gpus/{lease.pk}/force-release").status_code == 403
    assert GpuLease.objects.get(pk=lease.pk).is_held


def test_a_bad_host_filter_is_a_400_that_says_why(gpu_host, bob):
    response = signed_in(bob).get("/gpus/?host=x")
    assert response.status_code == 400
    assert "host must be a whole number" in response.content.decode()


def test_each_host_shows_its_own_statistics_and_more_hosts_cost_no_more_queries(gpu_host, bob):
    def gpu_box(name: str) -> Host:
        gpus = [{"index": 0, "uuid": f"GPU-{name}", "name": "H100"}]
        return Host.objects.create(name=name, hostname=name, machine_id=f"m-{name}",
                                   inventory={"gpus": gpus})  # fmt: skip

    def stats(html: str, host: Host) -> str:
        section = html.split(f'data-host="{host.pk}"')[1].split("</section>")[0]
        return section.split('data-field="stats">')[1].split(";")[0]

    now = timezone.now()
    handle, _ = GpuLease.acquire(gpu_host, 1, 3600, holder(bob), now=now - timedelta(hours=2))
    GpuLease.release(handle, now=now)
    other = gpu_box("gpu-2")
    handle, _ = GpuLease.acquire(other, 1, 3600, holder(bob), now=now - timedelta(hours=1))
    GpuLease.release(handle, now=now)
    assert GpuLease.acquire(other, 1, 3600, holder(bob), now=now)
    LeaseRecord.of_request(other, "refused", holder(bob), 1, now, attempt="second")
    client = signed_in(bob)
    client.get("/gpus/")  # the session's first request reads more (session, user)
    with CaptureQueriesContext(connection) as two:
        html = client.get("/gpus/").content.decode()
    assert stats(html, gpu_host) == "1 requests: 1 granted, 0 refused, 0 gave up waiting"
    assert stats(html, other) == "3 requests: 2 granted, 1 refused, 0 gave up waiting"
    for n in range(3, 8):
        gpu_box(f"gpu-{n}")
    with CaptureQueriesContext(connection) as seven:
        html = client.get("/gpus/").content.decode()
    assert html.count('class="gpu-host"') == 7
    assert len(seven) == len(two)
