"""Services on the hub: the host's units, failed/recovered events, the alert rule."""

from datetime import timedelta

import pytest

from alerts.evaluation import evaluate_scheduled
from alerts.models import Rule, Transition
from monitoring import ingest
from monitoring.models import Event, Service
from tests.conftest import T0, batch

pytestmark = pytest.mark.django_db


def unit(name: str, state: str = "active", sub: str = "running", **extra) -> dict:
    values = {"restarts": 0, "memory": 2**20, "cpu_percent": 0.5, "main_pid": 100, **extra}
    return {"unit": name, "description": name, "active_state": state, "sub_state": sub, **values}


def store(host, seconds: int, units: list[dict] | None):
    b = batch(T0 + timedelta(seconds=seconds))
    b.services = units
    return ingest.store(host, b)


def test_units_are_kept_per_host_as_last_read(host):
    store(host, 0, [unit("nginx.service"), unit("backup.service", "failed", "failed")])
    store(host, 5, None)  # not read this tick: nothing changes
    assert list(Service.objects.values_list("unit", "active_state")) == [
        ("backup.service", "failed"),
        ("nginx.service", "active"),
    ]
    assert Service.objects.get(unit="nginx.service").since == T0


def test_a_unit_that_fails_and_comes_back_gives_two_events(host):
    store(host, 0, [unit("nginx.service")])
    store(host, 5, [unit("nginx.service", "failed", "failed", restarts=5)])
    store(host, 10, [unit("nginx.service", "active", "running", restarts=5)])
    events = list(Event.objects.order_by("ts").values_list("kind", "message"))
    assert events == [
        ("service_failed", "nginx.service failed on gpu-box after 5 restarts"),
        ("service_recovered", "nginx.service on gpu-box is no longer failed (active)"),
    ]
    assert Service.objects.get().since == T0 + timedelta(seconds=10)


def test_a_failed_unit_that_drops_off_the_list_has_recovered(host):
    store(host, 0, [unit("backup.service", "failed", "failed")])
    store(host, 5, [])
    assert not Service.objects.exists()
    assert Event.objects.order_by("ts").last().kind == "service_recovered"


def test_the_service_rule_fires_for_an_inactive_unit_and_resolves(host):
    Rule.objects.create(name="units", metric="service_inactive", for_seconds=0)
    store(host, 0, [unit("nginx.service", "failed", "failed")])
    evaluate_scheduled(now=T0 + timedelta(seconds=1))
    firing = Transition.objects.get()
    assert (firing.kind, firing.subject) == ("firing", "unit:nginx.service")
    store(host, 5, [unit("nginx.service")])
    evaluate_scheduled(now=T0 + timedelta(seconds=6))
    assert list(Transition.objects.order_by("ts").values_list("kind", flat=True)) == [
        "firing",
        "resolved",
    ]


def test_the_host_page_lists_its_units(alice_client, host):
    store(host, 0, [unit("backup.service", "failed", "failed", restarts=3)])
    page = alice_client.get(f"/hosts/{host.pk}/").content.decode()
    assert 'id="services"' in page and "backup.service" in page and ">3<" in page
