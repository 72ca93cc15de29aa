"""Sign-in throttling (django-axes): per account and per address, on both login pages."""

import pytest
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.test import AsyncClient, Client

from monitoring.models import ApiToken

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed sign-ins"


def sign_in(username: str, password: str, address: str = "10.0.0.1", path: str = "/login/"):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


def fail(times: int, username: str = "alice", address: str = "10.0.0.1", path: str = "/login/"):
    for _ in range(times):
        sign_in(username, "wrong", address, path)


def test_the_right_password_signs_in(alice):
    response = sign_in("alice", "alice-password")
    assert response.status_code == 302 and response.url == "/"


def test_after_five_failures_even_the_right_password_is_refused(alice):
    fail(5)
    response = sign_in("alice", "alice-password")
    assert response.status_code == 429
    assert LOCKED in response.content.decode() and "15 minutes" in response.content.decode()
    assert "_auth_user_id" not in response.client.session


def test_four_failures_do_not_lock(alice):
    fail(3)
    response = sign_in("alice", "wrong")
    assert response.status_code == 200 and "didn't match" in response.content.decode()
    assert sign_in("alice", "alice-password").status_code == 302


def test_an_account_stays_locked_from_another_address(alice):
    for i in range(5):
        fail(1, address=f"10.0.1.{i}")
    assert sign_in("alice", "alice-password", address="10.9.9.9").status_code == 429


def test_one_address_guessing_at_several_accounts_is_locked(alice, bob):
    for name in ("alice", "bob", "root", "admin", "carol"):
        fail(1, username=name)
    assert sign_in("bob", "bob-password").status_code == 429
    # The accounts themselves are not locked: bob signs in from elsewhere.
    assert sign_in("bob", "bob-password", address="10.0.0.2").status_code == 302


def test_the_admin_login_is_throttled_too(alice):
    fail(5, path="/admin/login/")
    response = sign_in("alice", "alice-password", path="/admin/login/")
    assert response.status_code == 429 and LOCKED in response.content.decode()


def test_a_superuser_sees_the_lockout_in_the_admin_and_clears_it(alice, bob, alice_client):
    fail(5, username="bob", address="10.0.0.7")
    listing = alice_client.get("/admin/axes/accessattempt/").content.decode()
    assert "bob" in listing and "10.0.0.7" in listing
    ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = alice_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302 and not AccessAttempt.objects.exists()
    assert sign_in("bob", "bob-password", address="10.0.0.7").status_code == 302


def test_api_tokens_are_not_throttled(alice):
    fail(5)
    secret = ApiToken.issue(alice, "ci")[1]
    api = Client(REMOTE_ADDR="10.0.0.1", headers={"Authorization": f"Bearer {secret}"})
    assert api.get("/api/v1/hosts/").status_code == 200


def test_the_lockout_holds_under_asgi(alice):
    async def attempts() -> tuple[list[int], str]:
        client = AsyncClient()
        codes = []
        for password in ["wrong"] * 5 + ["alice-password"]:
            response = await client.post("/login/", {"username": "alice", "password": password})
            codes.append(response.status_code)
        return codes, response.content.decode()

    codes, page = async_to_sync(attempts)()
    assert codes[:4] == [200] * 4 and codes[5] == 429 and LOCKED in page
