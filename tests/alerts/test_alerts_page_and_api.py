"""/alerts/ and /api/v1/alerts/…: what fires now, paged and filtered history, and
acknowledging, with the API's authentication rules."""

import json
from datetime import timedelta

import pytest
from django.test import Client

from alerts.models import AlertState, Rule, Transition
from monitoring import ingest
from monitoring.models import ApiToken, Host
from tests.conftest import T0, batch

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(host):
    """60 firing/resolved pairs of `busy` (critical) on gpu-box, one of `disk` elsewhere."""
    busy = Rule.objects.create(name="busy", metric="cpu_percent", threshold=90,
                               for_seconds=0, severity="critical")  # fmt: skip
    for i in range(60):
        ingest.store(host, batch(T0 + timedelta(seconds=10 * i), [], cpu_percent=95.0))
        ingest.store(host, batch(T0 + timedelta(seconds=10 * i + 5), [], cpu_percent=5.0))
    other = Host.objects.create(name="db-box", hostname="db-box", machine_id="m-db")
    disk = Rule.objects.create(name="disk", metric="cpu_percent", threshold=50, for_seconds=0)
    ingest.store(other, batch(T0, [], cpu_percent=70.0))
    return busy, disk, other


def rows_on_page(html: str) -> int:
    return html.count('<tr class="alert-firing"') + html.count('<tr class="alert-resolved"')


def test_the_page_shows_fifty_transitions_a_page(alice_client, history):
    first = alice_client.get("/alerts/").content.decode()
    assert "page 1 of 3" in first and "lasted 5 s" in first
    # The "now" table has db-box's firing state: one row more on the first page.
    assert rows_on_page(first) == 51
    third = alice_client.get("/alerts/?page=3").content.decode()
    assert rows_on_page(third) == 121 - 100 + 1


def test_the_page_filters_by_rule_host_severity_and_state(alice_client, history):
    busy, disk, other = history
    html = alice_client.get(f"/alerts/?rule={disk.pk}").content.decode()
    assert "page 1 of" not in html and "[FIRING] disk on db-box" in html
    html = alice_client.get(f"/alerts/?host={other.pk}&state=resolved").content.decode()
    assert "no alert matches" in html
    html = alice_client.get("/alerts/?severity=critical&state=firing").content.decode()
    assert "page 1 of 2" in html and "[FIRING] disk" not in html.split("<h2>History")[1]


def test_a_bad_filter_is_a_400_naming_it(alice_client, history):
    response = alice_client.get("/alerts/?state=pending")
    assert response.status_code == 400
    assert "state must be one of firing, reminder, resolved" in response.content.decode()


def test_pending_shows_as_a_state_on_the_page(alice_client, host):
    Rule.objects.create(name="slow", metric="cpu_percent", threshold=90, for_seconds=600)
    ingest.store(host, batch(T0, [], cpu_percent=97.0))
    html = alice_client.get("/alerts/").content.decode()
    assert 'class="alert-pending"' in html and "97 %" in html
    assert not Transition.objects.exists()


def test_the_api_lists_rules_states_and_history(api, history):
    busy, disk, other = history
    rules = api.get("/api/v1/alerts/rules/").json()
    assert [(r["name"], r["recovery_seconds"], r["unit"]) for r in rules] == [
        ("busy", 0, "%"),
        ("disk", 0, "%"),
    ]
    (state,) = api.get("/api/v1/alerts/states/").json()
    assert (state["rule_name"], state["host"], state["state"]) == ("disk", "db-box", "firing")
    page = api.get("/api/v1/alerts/history/").json()
    assert page["count"] == 121 and len(page["results"]) == 50
    assert page["results"][0]["state"] in ("firing", "resolved")


def test_the_api_filters_history(api, history):
    busy, disk, other = history
    page = api.get(f"/api/v1/alerts/history/?rule={busy.pk}&state=resolved").json()
    assert page["count"] == 60
    assert page["results"][0]["duration_seconds"] == 5.0
    since = (T0 + timedelta(seconds=500)).isoformat()
    page = api.get("/api/v1/alerts/history/", {"host": other.pk, "from": since}).json()
    assert page["count"] == 0
    bad = api.get("/api/v1/alerts/history/?state=pending")
    assert bad.status_code == 400 and list(bad.json()) == ["state"]


def test_anonymous_requests_are_refused(history):
    assert Client().get("/api/v1/alerts/history/").status_code == 401
    state = AlertState.objects.get(state="firing")
    assert Client().post(f"/api/v1/alerts/states/{state.pk}/acknowledge").status_code == 401


def test_a_read_only_token_cannot_acknowledge(api, history):
    state = AlertState.objects.get(state="firing")
    response = api.post(f"/api/v1/alerts/states/{state.pk}/acknowledge")
    assert response.status_code == 403
    state.refresh_from_db()
    assert state.acknowledged_at is None


def test_a_read_write_token_acknowledges_a_firing_alert(alice, history):
    secret = ApiToken.issue(alice, "ops", read_only=False)[1]
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    state = AlertState.objects.get(state="firing")
    answer = client.post(f"/api/v1/alerts/states/{state.pk}/acknowledge")
    assert answer.status_code == 200 and answer.json()["acknowledged_by"] == "alice"
    state.refresh_from_db()
    assert state.acknowledged_by == alice
    ok = AlertState.objects.get(rule__name="busy", host__name="gpu-box")
    assert client.post(f"/api/v1/alerts/states/{ok.pk}/acknowledge").status_code == 404


def test_a_session_needs_its_csrf_token_to_acknowledge(alice, history):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    state = AlertState.objects.get(state="firing")
    assert client.post(f"/api/v1/alerts/states/{state.pk}/acknowledge").status_code == 403
    assert json.loads(client.get("/api/v1/alerts/states/").content)[0]["acknowledged_at"] is None


def test_an_empty_id_filter_is_any_on_the_page_and_a_400_in_the_api(alice_client, api, history):
    assert alice_client.get("/alerts/", {"rule": "", "host": ""}).status_code == 200
    answer = api.get("/api/v1/alerts/history/", {"rule": ""})
    assert answer.status_code == 400 and "rule" in answer.json()
