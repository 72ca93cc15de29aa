"""What an admin manages: watched processes, retention, hosts."""

import pytest

from monitoring.models import Retention, WatchedProcess

pytestmark = pytest.mark.django_db


def test_it_adds_a_watched_process(alice_client):
    response = alice_client.post(
        "/admin/monitoring/watchedprocess/add/",
        {"name": "nginx", "pattern": "^nginx", "field": "name", "enabled": "on"},
    )
    assert response.status_code == 302
    assert WatchedProcess.objects.get().pattern == "^nginx"


def test_it_rejects_a_bad_regular_expression(alice_client):
    response = alice_client.post(
        "/admin/monitoring/watchedprocess/add/",
        {"name": "broken", "pattern": "nginx(", "field": "name", "enabled": "on"},
    )
    assert response.status_code == 200
    assert "Not a valid regular expression" in response.content.decode()
    assert not WatchedProcess.objects.exists()


def test_it_edits_retention(alice_client):
    Retention.current()
    response = alice_client.post(
        "/admin/monitoring/retention/1/change/",
        {"raw_hours": 24, "minute_days": 14, "hour_days": 365, "event_days": 30},
    )
    assert response.status_code == 302
    assert str(Retention.current()) == "raw 24 h, 1-minute 14 d, 1-hour 365 d, events 30 d"


def test_retention_cannot_be_deleted_or_duplicated(alice_client):
    Retention.current()
    assert alice_client.get("/admin/monitoring/retention/add/").status_code == 403
    assert alice_client.get("/admin/monitoring/retention/1/delete/").status_code == 403


def test_a_plain_user_cannot_reach_the_admin(client, bob):
    client.force_login(bob)
    response = client.get("/admin/monitoring/watchedprocess/")
    assert response.status_code == 302 and "/admin/login/" in response.url
