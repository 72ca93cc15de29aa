"""ALLOWED_HOSTS follows how ptracker was started; a foreign Host header gets 400."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from ptracker.cli import address
from tests.ptracker.test_cli import free_port, ptracker, read_until

SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({"
    "'hosts': s.ALLOWED_HOSTS, 'origins': s.CSRF_TRUSTED_ORIGINS, 'https': s.PTRACKER_HTTPS}))"
)
LOCAL = ["localhost", "127.0.0.1", "[::1]"]
CLEAN = {  # none of the settings under test from the environment running the tests
    name: ""
    for name in (
        "PTRACKER_BIND",
        "PTRACKER_ALLOWED_HOSTS",
        "ALLOWED_HOSTS",
        "PTRACKER_PUBLIC_URL",
        "PTRACKER_HTTPS",
        "CSRF_TRUSTED_ORIGINS",
    )
}


def derived(tmp_path, **env) -> dict:
    """The settings a ptracker process started with this environment ends up with."""
    result = ptracker(
        "manage",
        "shell",
        "--no-imports",
        "-c",
        SHOW,
        env={**CLEAN, "PTRACKER_DATA_DIR": str(tmp_path), **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_a_foreign_host_header_gets_400(client):
    assert client.get("/login/", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.django_db
def test_localhost_is_served_on_any_port(client):
    assert client.get("/login/", headers={"Host": "localhost:8123"}).status_code == 200


def test_with_nothing_set_only_this_machines_loopback_names_are_allowed(tmp_path):
    assert derived(tmp_path) == {"hosts": LOCAL, "origins": [], "https": False}


def test_the_bind_address_is_allowed(tmp_path):
    assert derived(tmp_path, PTRACKER_BIND="10.1.2.3")["hosts"] == [*LOCAL, "10.1.2.3"]
    assert derived(tmp_path, PTRACKER_BIND="fd00::7")["hosts"] == [*LOCAL, "[fd00::7]"]


def test_every_interface_allows_the_machines_name(tmp_path):
    hosts = derived(tmp_path, PTRACKER_BIND="0.0.0.0")["hosts"]
    assert hosts[:3] == LOCAL
    assert socket.gethostname().lower() in hosts
    assert "0.0.0.0" not in hosts


def test_an_explicit_list_replaces_the_defaults(tmp_path):
    hosts = "mon.example.com, .lab.example.org,::1"
    expected = ["mon.example.com", ".lab.example.org", "[::1]"]
    assert derived(tmp_path, PTRACKER_ALLOWED_HOSTS=hosts)["hosts"] == expected
    assert derived(tmp_path, ALLOWED_HOSTS=hosts)["hosts"] == expected  # the old name


def test_a_public_https_url_adds_its_host_and_origin_and_turns_https_on(tmp_path):
    settings = derived(tmp_path, PTRACKER_PUBLIC_URL="https://Mon.Example.com:443/")
    assert settings == {
        "hosts": [*LOCAL, "mon.example.com"],
        "origins": ["https://mon.example.com"],
        "https": True,
    }


def test_a_public_http_url_keeps_its_port_and_plain_http(tmp_path):
    settings = derived(tmp_path, PTRACKER_PUBLIC_URL="http://10.0.0.5:8000")
    assert settings["origins"] == ["http://10.0.0.5:8000"]
    assert settings["https"] is False


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PTRACKER_ALLOWED_HOSTS", "https://mon.example.com"),
        ("PTRACKER_ALLOWED_HOSTS", "mon.example.com:8000"),
        ("ALLOWED_HOSTS", "mon example.com"),
        ("PTRACKER_PUBLIC_URL", "mon.example.com"),
        ("PTRACKER_PUBLIC_URL", "https://mon.example.com/ptracker/"),
        ("PTRACKER_PUBLIC_URL", "ftp://mon.example.com"),
        ("PTRACKER_PUBLIC_URL", "https://mon.example.com:http"),
    ],
)
def test_run_refuses_a_bad_name_or_address(tmp_path, name, value):
    result = ptracker("run", env={**CLEAN, "PTRACKER_DATA_DIR": str(tmp_path), name: value})
    assert result.returncode == 2
    assert f"{name}" in result.stderr and repr(value.split(",")[0]) in result.stderr
    assert "Traceback" not in result.stderr


def test_the_banner_names_the_machine_when_bound_to_every_interface():
    assert address("0.0.0.0", 8000) == f"http://{socket.gethostname()}:8000/"
    assert address("::1", 8000) == "http://[::1]:8000/"


def status(port: int, bind: str, host: str) -> int:
    connection = http.client.HTTPConnection(bind, port, timeout=10)
    try:
        connection.request("GET", "/login/", headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.slow
def test_run_passes_its_bind_address_on_to_the_web_server(tmp_path):
    port = free_port()
    env = {**os.environ, **CLEAN, "PTRACKER_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    run = subprocess.Popen(
        [sys.executable, "-m", "ptracker", "run", "--bind", "127.0.0.2", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until(run, rf"ptracker is running at http://127\.0\.0\.2:{port}/", timeout=90)
        assert status(port, "127.0.0.2", f"127.0.0.2:{port}") == 200
        assert status(port, "127.0.0.2", f"localhost:{port}") == 200
        assert status(port, "127.0.0.2", f"127.0.0.3:{port}") == 400
        assert status(port, "127.0.0.2", "evil.example") == 400
    finally:
        run.send_signal(signal.SIGTERM)
        try:
            run.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate()
