"""host_down when a host goes silent, host_up when it reports again."""

from datetime import timedelta

import pytest

from monitoring import ingest
from monitoring.models import Event, Host
from monitoring.tasks import check_hosts
from tests.conftest import T0, batch

pytestmark = pytest.mark.django_db


def test_a_silent_host_is_reported_down_once(host):
    ingest.store(host, batch(T0, []))
    assert check_hosts(now=T0 + timedelta(seconds=10)) == "all hosts reporting"
    assert check_hosts(now=T0 + timedelta(seconds=16)) == "down: gpu-box"
    assert check_hosts(now=T0 + timedelta(minutes=5)) == "all hosts reporting"
    event = Event.objects.get()
    assert event.kind == "host_down"
    assert event.message == "gpu-box stopped reporting (last sample 03:00:00 UTC)"
    assert Host.objects.get().down_since == T0 + timedelta(seconds=16)


def test_a_down_host_that_reports_again_is_up(host):
    ingest.store(host, batch(T0, []))
    check_hosts(now=T0 + timedelta(minutes=1))
    ingest.store(host, batch(T0 + timedelta(minutes=7), []))
    up = Event.objects.get(kind="host_up")
    assert up.message == "gpu-box is reporting again after 7 min without samples"
    assert Host.objects.get().down_since is None
    ingest.store(host, batch(T0 + timedelta(minutes=7, seconds=5), []))
    assert Event.objects.filter(kind="host_up").count() == 1


def test_a_gap_nobody_saw_is_still_reported_when_samples_resume(host):
    # ptracker itself was stopped: no check ran, but the gap is visible on return.
    ingest.store(host, batch(T0, []))
    ingest.store(host, batch(T0 + timedelta(hours=3), []))
    assert (
        Event.objects.get().message == "gpu-box is reporting again after 3 h 0 min without samples"
    )


def test_disabled_and_never_seen_hosts_are_not_reported(host):
    Host.objects.create(name="new", machine_id="m-new")
    ingest.store(host, batch(T0, []))
    Host.objects.filter(pk=host.pk).update(enabled=False)
    assert check_hosts(now=T0 + timedelta(hours=1)) == "all hosts reporting"
