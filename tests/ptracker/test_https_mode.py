"""PTRACKER_HTTPS=1: behind a TLS-terminating proxy, HSTS, Secure cookies, a redirect
of plain HTTP, and a clean `check --deploy`, seen on a real Daphne in that mode."""

import http.client
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.parse
from http.cookies import SimpleCookie

import pytest

from tests.ptracker.test_cli import free_port, ptracker

pytestmark = pytest.mark.slow

PASSWORD = "a-long-test-password"


@pytest.fixture(scope="module")
def https_env(tmp_path_factory) -> dict:
    return {
        "PTRACKER_DATA_DIR": str(tmp_path_factory.mktemp("https")),
        "PTRACKER_HTTPS": "1",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PTRACKER_PUBLIC_URL": "",
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }


@pytest.fixture(scope="module")
def server(https_env):
    """Daphne, as `ptracker run` starts it, on a migrated SQLite database with a user."""
    for command in (
        ["migrate"],
        ["createsuperuser", "--noinput", "--username", "carol", "--email", "c@example.org"],
    ):
        result = ptracker("manage", *command, env=https_env)
        assert result.returncode == 0, result.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-p", str(port), "ptracker.asgi:application"],
        env={**env, **https_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            request(port, "GET", "/login/")
            break
        except OSError:
            time.sleep(0.2)
    yield port
    daphne.terminate()
    daphne.wait(timeout=10)


def request(port: int, method: str, path: str, headers=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(
        method, path, body=body, headers={"Host": f"127.0.0.1:{port}", **(headers or {})}
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def via_proxy(port: int, method: str, path: str, headers=None, body=None):
    """As the TLS-terminating proxy passes a browser's https request on."""
    return request(port, method, path, {"X-Forwarded-Proto": "https", **(headers or {})}, body)


def cookies(response) -> SimpleCookie:
    jar = SimpleCookie()
    for value in response.headers.get_all("Set-Cookie") or []:
        jar.load(value)
    return jar


def test_plain_http_is_redirected_to_https(server):
    response = request(server, "GET", "/login/?next=/")
    assert response.status == 301
    assert response.headers["Location"] == f"https://127.0.0.1:{server}/login/?next=/"


def test_an_https_response_carries_hsts(server):
    response = via_proxy(server, "GET", "/login/")
    assert response.status == 200
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_the_session_and_csrf_cookies_are_secure(server):
    csrf = cookies(via_proxy(server, "GET", "/login/"))["csrftoken"]
    assert csrf["secure"] is True
    form = urllib.parse.urlencode(
        {"username": "carol", "password": PASSWORD, "csrfmiddlewaretoken": csrf.value}
    )
    logged_in = via_proxy(
        server,
        "POST",
        "/login/",
        {
            "Cookie": f"csrftoken={csrf.value}",
            "Origin": f"https://127.0.0.1:{server}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        form,
    )
    assert logged_in.status == 302, "the login was refused"
    session = cookies(logged_in)["sessionid"]
    assert session["secure"] is True and session["httponly"] is True


def deploy_check(env: dict) -> subprocess.CompletedProcess:
    return ptracker("manage", "check", "--deploy", "--fail-level", "WARNING", env=env)


def test_check_deploy_is_clean_in_https_mode(https_env):
    result = deploy_check(https_env)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_warns_without_https_mode(https_env):
    result = deploy_check({**https_env, "PTRACKER_HTTPS": "0"})
    assert result.returncode == 1
    found = set(re.findall(r"security\.W\d+", result.stderr))
    assert found >= {"security.W004", "security.W008", "security.W012", "security.W016"}
