"""Overview and host pages: the healthchecks checklist, and what a user sees."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Event, Host
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db


@pytest.fixture
def sampled_host(host):
    b = batch(
        timezone.now(),
        [
            proc(10, name="trainer", cpu_percent=97.5, rss=3 * 2**30),
            proc(11, name="redis-server", cpu_percent=2.0, rss=2**20),
        ],
        disks=[
            {
                "mount": "/",
                "device": "/dev/vda",
                "fstype": "ext4",
                "total": 2**40,
                "used": 2**39,
                "percent": 50.0,
            }
        ],
        nets=[{"name": "eth0", "rx_bps": 2048.0, "tx_bps": 1024.0}],
    )
    ingest.store(host, b)
    return host


def test_overview_works(alice_client, sampled_host):
    response = alice_client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "gpu-box" in html and "10.0 %" in html  # cpu
    assert 'class="dot up"' in html


def test_overview_shows_an_offline_host(alice_client, host):
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() - timedelta(minutes=5))
    html = alice_client.get("/").content.decode()
    assert 'class="dot down"' in html and "no samples yet" in html


def test_overview_requires_login(client, sampled_host):
    response = client.get("/")
    assert response.status_code == 302
    assert response.url == "/login/?next=/"


def test_overview_rejects_post(alice_client):
    assert alice_client.post("/").status_code == 405


def test_overview_query_count_does_not_grow_with_hosts(alice_client, host):
    def queries():
        with CaptureQueriesContext(connection) as ctx:
            alice_client.get("/")
        return len(ctx)

    one = queries()
    for i in range(5):
        other = Host.objects.create(name=f"h{i}", machine_id=f"m{i}")
        ingest.store(other, batch(timezone.now(), [proc(1)]))
    html = alice_client.get("/").content.decode()
    assert html.count('class="card host-card"') == 6
    assert html.count('<span data-field="cpu">10.0 %</span>') == 5
    assert queries() == one


def test_host_page_shows_current_numbers_and_top_processes(alice_client, sampled_host):
    response = alice_client.get(f"/hosts/{sampled_host.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "trainer",
        "redis-server",
        "97.5 %",
        "3.0 GiB",
        "/dev/vda",
        "512.0 GiB",
        "eth0",
        "2.0 KiB/s",
        "No NVIDIA GPU found.",
    ):
        assert text in html, text
    assert html.index("trainer") < html.index("redis-server")


def test_host_page_lists_gpus(alice_client, host):
    b = batch(timezone.now(), [])
    b.gpus = [
        {
            "index": 0,
            "uuid": "GPU-x",
            "name": "NVIDIA H100 80GB HBM3",
            "utilization": 87.0,
            "memory_used": 40 * 2**30,
            "memory_total": 80 * 2**30,
            "temperature": 64.0,
            "power_w": 512.3,
        }
    ]
    ingest.store(host, b)
    html = alice_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "NVIDIA H100 80GB HBM3" in html and "40.0 GiB / 80.0 GiB" in html and "512 W" in html
    assert "No NVIDIA GPU found." not in html


def test_host_page_shows_events(alice_client, sampled_host):
    Event.record(sampled_host, "process_vanished", "nginx exited (pid 80) and no process matches")
    html = alice_client.get(f"/hosts/{sampled_host.pk}/").content.decode()
    assert "no matching process any more" in html and "nginx exited (pid 80)" in html


def test_host_page_requires_login(client, sampled_host):
    response = client.get(f"/hosts/{sampled_host.pk}/")
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_host_page_rejects_post(alice_client, sampled_host):
    assert alice_client.post(f"/hosts/{sampled_host.pk}/").status_code == 405


def test_host_page_handles_a_bad_id(alice_client):
    assert alice_client.get("/hosts/999/").status_code == 404
    assert alice_client.get("/hosts/abc/").status_code == 404


def test_a_plain_user_sees_the_dashboard_but_not_the_admin(client, bob, sampled_host):
    client.force_login(bob)
    assert client.get("/").status_code == 200
    assert client.get("/admin/").status_code == 302


def test_local_host_page_warns_when_the_sampler_is_down(alice_client):
    local = Host.local()
    html = alice_client.get(f"/hosts/{local.pk}/").content.decode()
    assert 'id="sampler-down"' in html


def test_login_page_logs_in(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "alice-password"})
    assert response.status_code == 302 and response.url == "/"
    assert client.get("/").status_code == 200


def test_host_page_shows_the_inventory(alice_client, host):
    b = batch(timezone.now(), [])
    b.inventory = {
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-27-amd64",
        "arch": "x86_64",
        "cpu_model": "AMD EPYC 9454",
        "cpu_count": 96,
        "mem_total": 2**40,
    }
    ingest.store(host, b)
    html = alice_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "Debian GNU/Linux 12 (bookworm), kernel 6.1.0-27-amd64 (x86_64)" in html
    assert "96 × AMD EPYC 9454" in html and "1.0 TiB memory" in html


def test_host_page_query_count_does_not_grow_with_processes_or_events(alice_client, host):
    def queries(n: int) -> int:
        ingest.store(host, batch(timezone.now(), [proc(pid) for pid in range(1, n + 1)]))
        for i in range(n):
            Event.record(host, "process_exited", f"job {i} exited")
        with CaptureQueriesContext(connection) as ctx:
            assert alice_client.get(f"/hosts/{host.pk}/").status_code == 200
        return len(ctx)

    queries(1)  # first request: rows made on first use (retention settings)
    assert queries(3) == queries(40)
