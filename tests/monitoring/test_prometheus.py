"""/metrics: Prometheus text format, the right series, and who may read it."""

import json
import re
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from monitoring import ingest
from monitoring.models import ApiToken, WatchedProcess
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "ptracker-dashboard.json"


@pytest.fixture
def sampled(host):
    watch = WatchedProcess.objects.create(name="trainer", pattern="train")
    b = batch(
        timezone.now(),
        [
            proc(7, name="train.py", cpu_percent=99.5, rss=2**30, watched_id=watch.id),
            proc(8, name="bash"),
        ],
        disks=[
            {
                "mount": "/",
                "device": "/dev/vda",
                "fstype": "ext4",
                "total": 100,
                "used": 40,
                "percent": 40.0,
            }
        ],
    )
    b.gpus = [
        {
            "index": 0,
            "name": "NVIDIA H100",
            "utilization": 97.0,
            "memory_used": 2**34,
            "memory_total": 80 * 2**30,
            "temperature": 66.0,
            "power_w": 612.0,
        }
    ]
    ingest.store(host, b)
    return host


def scrape(client) -> dict:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"] == CONTENT_TYPE_LATEST
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_it_exposes_host_gpu_filesystem_and_watched_process_series(alice_client, sampled):
    samples = scrape(alice_client)
    host = (("host", "gpu-box"),)
    assert samples[("ptracker_host_up", host)] == 1.0
    assert samples[("ptracker_host_cpu_percent", host)] == 10.0
    assert samples[("ptracker_host_memory_used_bytes", host)] == 2 * 2**30
    fs = (("device", "/dev/vda"), ("host", "gpu-box"), ("mount", "/"))
    assert samples[("ptracker_filesystem_used_bytes", fs)] == 40.0
    gpu = (("gpu", "0"), ("host", "gpu-box"), ("name", "NVIDIA H100"))
    assert samples[("ptracker_gpu_power_watts", gpu)] == 612.0
    process = (("host", "gpu-box"), ("name", "train.py"), ("pid", "7"), ("watch", "trainer"))
    assert samples[("ptracker_process_cpu_percent", process)] == 99.5
    # Unwatched processes get no series: their label sets would never end.
    assert not any(
        name.startswith("ptracker_process") and ("pid", "8") in labels for name, labels in samples
    )


def test_a_token_may_scrape(alice, sampled):
    secret = ApiToken.issue(alice, "prometheus")[1]
    assert scrape(Client(headers={"Authorization": f"Bearer {secret}"}))


def test_an_allowed_address_may_scrape(settings, sampled):
    import ipaddress

    settings.PTRACKER_METRICS_ALLOW = [ipaddress.ip_network("127.0.0.0/8")]
    assert scrape(Client(REMOTE_ADDR="127.0.0.1"))


def test_anyone_else_gets_401(settings, sampled):
    import ipaddress

    settings.PTRACKER_METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    response = Client(REMOTE_ADDR="192.0.2.7").get("/metrics")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    bad = Client(headers={"Authorization": "Bearer pt_wrong"}).get("/metrics")
    assert bad.status_code == 401


def test_the_grafana_dashboard_uses_only_series_we_expose(alice_client, sampled):
    text = alice_client.get("/metrics").content.decode()
    exposed = {family.name for family in text_string_to_metric_families(text)}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"ptracker_[a-z0-9_]+", e)}
    assert used and used <= exposed, used - exposed
    assert (
        dashboard["templating"]["list"][1]["query"]["query"]
        == "label_values(ptracker_host_up, host)"
    )
