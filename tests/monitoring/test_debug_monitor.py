"""/debug/monitor/*: off by default; on, admins watch ptracker's own process tree."""

import os
import time

import pytest
from django.test import Client

from monitoring.debug_monitor import collector
from monitoring.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def on(settings):
    settings.PTRACKER_DEBUG_MONITOR = True
    yield
    collector.stop()
    collector.session = None  # the next test starts with no session, as a fresh process


@pytest.fixture
def admin_api(alice):
    secret = ApiToken.issue(alice, "curl", read_only=False)[1]
    return Client(headers={"Authorization": f"Bearer {secret}"})


def test_it_does_not_exist_unless_enabled(alice_client):
    for path in ("snapshot", "summary", "report"):
        assert alice_client.get(f"/debug/monitor/{path}").status_code == 404
    assert alice_client.post("/debug/monitor/start").status_code == 404


def test_it_is_for_admins_only(on, client, bob):
    assert client.get("/debug/monitor/snapshot").status_code == 401
    client.force_login(bob)
    assert client.get("/debug/monitor/snapshot").status_code == 403


def test_a_snapshot_lists_this_process_with_cpu_and_memory(on, alice_client):
    body = alice_client.get("/debug/monitor/snapshot").json()
    mine = [p for p in body["processes"] if p["pid"] == os.getpid()]
    assert mine and mine[0]["rss"] > 0 and mine[0]["cpu_percent"] is not None
    assert body["totals"]["processes"] == len(body["processes"])
    assert body["totals"]["rss"] == sum(p["rss"] for p in body["processes"])


def test_a_session_collects_and_summarises(on, admin_api):
    assert admin_api.post("/debug/monitor/start?interval=0.2").status_code == 200
    assert admin_api.post("/debug/monitor/start").status_code == 409  # one at a time
    time.sleep(1.3)
    running = admin_api.get("/debug/monitor/summary").json()
    assert running["stopped"] is None and running["samples"] >= 3
    summary = admin_api.post("/debug/monitor/stop").json()
    assert summary["stopped"] is not None and summary["samples"] >= running["samples"]
    total = summary["totals"]["rss"]
    assert 0 < total["min"] <= total["avg"] <= total["max"]
    assert any(p["pid"] == os.getpid() for p in summary["processes"])


def test_the_report_is_self_contained_html_or_json(on, admin_api):
    admin_api.post("/debug/monitor/start?interval=0.2")
    time.sleep(0.7)
    admin_api.post("/debug/monitor/stop")
    html = admin_api.get("/debug/monitor/report").content.decode()
    assert "Chart.js v4" in html and "<script src=" not in html  # Chart.js inside, no fetches
    assert "ptracker process report" in html
    body = admin_api.get("/debug/monitor/report?format=json").json()
    assert len(body["samples"]) == body["summary"]["samples"] >= 2
    assert admin_api.get("/debug/monitor/report?format=pdf").status_code == 400


def test_bad_intervals_are_400(on, admin_api):
    assert admin_api.post("/debug/monitor/start?interval=fast").status_code == 400
    assert admin_api.post("/debug/monitor/start?interval=0").status_code == 400


def test_a_session_post_needs_the_csrf_token(on, alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.post("/debug/monitor/start").status_code == 403


def test_read_only_tokens_cannot_start_sessions(on, alice):
    secret = ApiToken.issue(alice, "viewer")[1]
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    assert client.get("/debug/monitor/snapshot").status_code == 200
    assert client.post("/debug/monitor/start").status_code == 403
