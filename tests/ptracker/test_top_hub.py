"""`ptracker top --hub URL --host NAME`: a host of a real hub (Daphne on the test
database), read with a read-only API token, drawn as the local view is."""

import os
import subprocess
import sys

import pytest
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken
from tests.conftest import batch, proc
from tests.ptracker.test_record import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def top(*args: str, token: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PTRACKER_TOKEN": token, "COLUMNS": "80"}
    env.pop("PTRACKER_TOKEN_FILE", None)
    code = "import sys; sys.modules['django'] = None\nfrom ptracker.cli import main\n"
    code += "sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, "top", *args], env=env, capture_output=True, text=True
    )


def test_top_shows_a_host_of_the_hub(live_server_url, host, alice):
    ingest.store(
        host,
        batch(
            timezone.now(),
            [proc(10, name="trainer", cpu_percent=97.0), proc(11, name="loader", ppid=10)],
        ),
    )
    token = ApiToken.issue(alice, "top")[1]
    shown = top("--hub", live_server_url, "--host", "gpu-box", "--once", token=token)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("CPU [")
    table = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [row[1] for row in table[:2]] == ["trainer", "loader"]
    assert "q quit" in lines[-1]


def test_an_unknown_host_or_a_bad_token_is_a_clear_message(live_server_url, host, alice):
    token = ApiToken.issue(alice, "top")[1]
    missing = top("--hub", live_server_url, "--host", "nope", "--once", token=token)
    assert missing.returncode == 2 and "no host named 'nope' (hosts: gpu-box)" in missing.stderr
    refused = top("--hub", live_server_url, "--host", "gpu-box", "--once", token="pt_bad")
    assert refused.returncode == 2 and "refused the token" in refused.stderr
    assert "Traceback" not in missing.stderr + refused.stderr
