"""Tokens made in the admin and on /account/tokens/: for whom, and where the secret goes."""

import pytest
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import Client, RequestFactory

from monitoring.models import ApiToken
from tests.monitoring.conftest import grant

pytestmark = pytest.mark.django_db

ADD = "/admin/monitoring/apitoken/add/"


@pytest.fixture
def carol_client(carol) -> Client:
    grant(carol, "add_apitoken", "view_apitoken")
    client = Client()
    client.force_login(carol)
    return client


def new_secret(response) -> str:
    return response.content.decode().split('<code id="new-token">')[1].split("<")[0]


def test_a_staff_user_cannot_make_a_token_for_the_superuser(carol_client, alice):
    response = carol_client.post(ADD, {"name": "mine now", "user": alice.pk})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_staff_user_is_offered_only_themselves(carol_client, carol, alice):
    form = carol_client.get(ADD).content.decode()
    assert f'value="{carol.pk}"' in form and f'value="{alice.pk}"' not in form


def test_a_staff_user_makes_a_token_for_themselves(carol_client, carol):
    response = carol_client.post(ADD, {"name": "ci", "user": carol.pk})
    assert ApiToken.find(new_secret(response)).user == carol


def test_a_staff_user_lists_only_their_own_tokens(carol_client, carol, alice):
    ApiToken.issue(alice, "alices-grafana")
    ApiToken.issue(carol, "carols-ci")
    listing = carol_client.get("/admin/monitoring/apitoken/").content.decode()
    assert "carols-ci" in listing and "alices-grafana" not in listing


def test_a_superuser_makes_a_token_for_someone_else(alice_client, bob):
    response = alice_client.post(ADD, {"name": "bobs", "user": bob.pk, "read_only": "on"})
    assert ApiToken.find(new_secret(response)).user == bob


def assert_kept_out_of_cookies_and_caches(response, secret: str) -> None:
    """Not in any Set-Cookie, not in the messages cookie once decoded, and no-store."""
    assert ApiToken.find(secret) is not None
    assert all(secret not in morsel.OutputString() for morsel in response.cookies.values())
    if "messages" in response.cookies:
        request = RequestFactory().get("/")
        request.COOKIES["messages"] = response.cookies["messages"].value
        assert all(secret not in str(message) for message in CookieStorage(request))
    assert "no-store" in response["Cache-Control"]


def test_the_admin_shows_a_new_secret_in_its_answer_only(alice_client, alice):
    response = alice_client.post(ADD, {"name": "grafana", "user": alice.pk})
    assert response.status_code == 200
    assert_kept_out_of_cookies_and_caches(response, new_secret(response))


def test_the_tokens_page_shows_a_new_secret_in_its_answer_only(client, bob):
    client.force_login(bob)
    response = client.post("/account/tokens/", {"name": "laptop", "access": "read"})
    secret = response.content.decode().split('<code class="cmdline">')[1].split("<")[0]
    assert_kept_out_of_cookies_and_caches(response, secret)


def test_the_tokens_page_is_never_cached(client, bob):
    client.force_login(bob)
    assert "no-store" in client.get("/account/tokens/")["Cache-Control"]


def test_a_gpu_leases_token_made_in_the_admin_may_take_leases(alice_client, bob):
    response = alice_client.post(
        ADD, {"name": "batch", "user": bob.pk, "read_only": "on", "scope": ApiToken.JOBS}
    )
    token = ApiToken.find(new_secret(response))
    assert (token.scope, token.read_only) == (ApiToken.JOBS, False)
    assert (
        "(batch jobs only: GPU leases, heartbeats, recordings, app metrics)"
        in response.content.decode()
    )
