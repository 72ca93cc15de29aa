"""Open files, connections and environment of a running process: only with
monitoring.view_process_internals, and secret-looking values masked even then."""

import pytest

from tests.monitoring.conftest import grant, signed_in

pytestmark = pytest.mark.django_db


def test_staff_without_the_permission_get_403(carol, sleeper):
    assert signed_in(carol).get(f"/processes/{sleeper.pk}/live").status_code == 403


def test_the_process_page_offers_the_panels_only_with_the_permission(carol, sleeper):
    assert (
        'id="live-details"'
        not in signed_in(carol).get(f"/processes/{sleeper.pk}/").content.decode()
    )
    grant(carol, "view_process_internals")
    assert 'id="live-details"' in signed_in(carol).get(f"/processes/{sleeper.pk}/").content.decode()


def test_secret_looking_environment_values_are_masked_even_for_a_superuser(alice_client, sleeper):
    html = alice_client.get(f"/processes/{sleeper.pk}/live").content.decode()
    assert "<th>DB_PASSWORD</th><td><code>***</code>" in html
    assert "<th>GITHUB_TOKEN</th><td><code>***</code>" in html
    assert "postgres://ptracker:***@db.example.org/ptracker" in html
    assert "plain-value" in html
    assert not any(s in html for s in ("hunter2", "hunter3", "hunter4"))


def test_a_granted_staff_user_sees_the_panels(carol, sleeper):
    grant(carol, "view_process_internals")
    html = signed_in(carol).get(f"/processes/{sleeper.pk}/live").content.decode()
    assert "Open files" in html and "<th>HARMLESS</th>" in html


@pytest.fixture
def debug_monitor(settings):
    settings.PTRACKER_DEBUG_MONITOR = True


def test_the_debug_monitor_needs_the_permission_too(debug_monitor, carol):
    client = signed_in(carol)
    assert client.get("/debug/monitor/summary").status_code == 403
    grant(carol, "view_process_internals")
    # Let in: no session was started yet, which is a 409, not a 403.
    assert client.get("/debug/monitor/summary").status_code == 409
