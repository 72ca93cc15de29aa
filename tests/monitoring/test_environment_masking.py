"""A running process's environment, on its page and in the admin: secrets masked by
their name (*TOKEN*, *SECRET*, *PASSWORD*, *KEY*) or by their look, unless a user with
view_process_internals asks to reveal them (a POST, logged, for that answer only)."""

import logging

import pytest
from django.test import Client

from monitoring.redaction import CREDENTIAL_VALUE
from tests.monitoring.conftest import grant, signed_in

pytestmark = pytest.mark.django_db

ENV = {
    "SERVICE_TOKEN": "hunter2",
    "APP_SECRET": "hunter3",
    "SMTP_PASSWORD": "hunter4",
    "STRIPE_KEY": "hunter5",
    "DEPLOY_HOOK": "ghp_hunter6abcdef",  # a GitHub token under a harmless name
    "UPLOAD_ID": "AKIAIOSFODNN7HUNTER7",  # an AWS access key id
    "BLOB": "aHVudGVyOCBpcyBhIHNlY3JldCBrZXkgMTIzNDU2Nzg5MA",  # long, random-looking
    "LANG": "pt_BR.UTF-8",
    "HARMLESS": "plain-value",
}
SECRET_VALUES = ("hunter2", "hunter3", "hunter4", "hunter5", "hunter6", "HUNTER7", "aHVudGVyOC")


@pytest.fixture
def sleeper_env():
    return ENV


def assert_masked(html: str) -> None:
    for name in ENV:
        if name not in ("LANG", "HARMLESS"):
            assert f"<th>{name}</th><td><code>***</code>" in html
    assert "<th>LANG</th><td><code>pt_BR.UTF-8</code>" in html
    assert "plain-value" in html
    assert not any(secret in html for secret in SECRET_VALUES)


def assert_revealed(html: str) -> None:
    assert all(secret in html for secret in SECRET_VALUES)
    assert "your reveal was logged" in html


@pytest.mark.parametrize(
    "value", ["/usr/local/bin:/usr/bin", "xterm-256color", "/home/ana/runs/experiment_2024_v2"]
)
def test_ordinary_values_do_not_look_like_credentials(value):
    assert CREDENTIAL_VALUE.search(value) is None


def test_the_process_page_panel_masks_secrets(alice_client, sleeper):
    html = alice_client.get(f"/processes/{sleeper.pk}/live").content.decode()
    assert_masked(html)
    assert 'name="reveal"' in html


def test_a_reveal_shows_them_for_that_answer_only_and_is_logged(alice_client, sleeper, caplog):
    with caplog.at_level(logging.WARNING, logger="ptracker.audit"):
        html = alice_client.post(f"/processes/{sleeper.pk}/live", {"reveal": "1"})
    assert_revealed(html.content.decode())
    assert f"alice revealed the environment of process {sleeper.pk}" in caplog.text
    assert_masked(alice_client.get(f"/processes/{sleeper.pk}/live").content.decode())


def test_a_reveal_needs_the_csrf_token(alice, sleeper):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/processes/{sleeper.pk}/live", {"reveal": "1"}).status_code == 403


def test_a_reveal_needs_the_permission(carol, sleeper):
    response = signed_in(carol).post(f"/processes/{sleeper.pk}/live", {"reveal": "1"})
    assert response.status_code == 403
    assert not any(secret in response.content.decode() for secret in SECRET_VALUES)


def test_the_admin_links_the_live_panel(alice_client, sleeper):
    html = alice_client.get(f"/admin/monitoring/process/{sleeper.pk}/change/").content.decode()
    assert f"/admin/monitoring/process/{sleeper.pk}/environment/" in html


def test_the_admin_environment_view_masks_secrets(alice_client, sleeper):
    html = alice_client.get(f"/admin/monitoring/process/{sleeper.pk}/environment/")
    assert html.status_code == 200
    assert_masked(html.content.decode())


def test_the_admin_environment_view_reveals_on_a_post(alice_client, sleeper):
    url = f"/admin/monitoring/process/{sleeper.pk}/environment/"
    assert_revealed(alice_client.post(url, {"reveal": "1"}).content.decode())


def test_the_admin_environment_view_needs_the_permission(carol, sleeper):
    url = f"/admin/monitoring/process/{sleeper.pk}/environment/"
    assert signed_in(carol).get(url).status_code == 403
    grant(carol, "view_process_internals")
    assert_masked(signed_in(carol).get(url).content.decode())
