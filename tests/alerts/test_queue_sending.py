"""A notification queued while ptracker idles goes out at once, from the web process."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ

from alerts.models import Delivery, Transition
from monitoring import ingest
from monitoring.background import Runner
from tests.conftest import batch

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_firing_alert_is_delivered_within_a_second_by_the_runner(host, cpu_rule, receiver):
    runner = Runner({})  # no schedules: the minute retry never comes into it
    runner.start()
    try:
        now = timezone.now()
        for seconds in (90, 60):
            ingest.store(host, batch(now - timedelta(seconds=seconds), [], cpu_percent=95.0))
        stored = time.monotonic()
        ingest.store(host, batch(now - timedelta(seconds=30), [], cpu_percent=95.0))  # fires
        receiver.wait_for(1, timeout=5)
        delay = time.monotonic() - stored
    finally:
        runner.shutdown(5)
    assert Transition.objects.filter(kind="firing").count() == 1
    assert receiver.json()["state"] == "firing"
    assert delay < 1.0
    assert Delivery.objects.get().status == Delivery.SENT
    assert not OrmQ.objects.exists()  # sent from this process, not queued for a cluster
