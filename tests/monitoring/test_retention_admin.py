"""The retention row in the admin: a staff flag alone changes nothing."""

import pytest
from django.test import Client

from monitoring.models import Retention
from tests.monitoring.conftest import grant

pytestmark = pytest.mark.django_db

ADD = "/admin/monitoring/retention/add/"
ZERO_DAYS = {"raw_hours": 1, "minute_days": 0, "hour_days": 0, "event_days": 0}


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_staff_without_permission_cannot_create_it_on_a_fresh_install(carol):
    client = signed_in(carol)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, ZERO_DAYS).status_code == 403
    assert not Retention.objects.exists()


def test_staff_without_permission_cannot_change_it(carol):
    Retention.current()
    assert (
        signed_in(carol).post("/admin/monitoring/retention/1/change/", ZERO_DAYS).status_code == 403
    )
    assert Retention.current().minute_days == 30


def test_the_add_permission_creates_the_first_row_only(carol):
    grant(carol, "add_retention")
    client = signed_in(carol)
    assert client.post(ADD, ZERO_DAYS).status_code == 302
    assert Retention.objects.count() == 1
    assert client.get(ADD).status_code == 403
