"""The `ptracker` command: start-up checks, first login, and `ptracker run` end to end."""

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time

import psutil
import pytest
from django.contrib.auth.models import User

from ptracker.cli import first_login
from tests.conftest import REDIS_URL, epoch, free_port, log_in, reachable_redis


def ptracker(*args, env=None, timeout=60) -> subprocess.CompletedProcess:
    """`ptracker ARGS` on SQLite in the given data dir, whatever database the suite uses."""
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "ptracker", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "PTRACKER_SAMPLE_INTERVAL",
            "0",
            "PTRACKER_SAMPLE_INTERVAL must be a whole number from 1 to 60 seconds, got '0'.",
        ),
        ("PTRACKER_SAMPLE_INTERVAL", "5s", "got '5s'"),
        (
            "DATABASE_URL",
            "mysql://root@localhost/x",
            "DATABASE_URL must be sqlite:// or postgres://",
        ),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        ("DEBUG", "maybe", "DEBUG must be true or false"),
        ("PTRACKER_REDIS_URL", "localhost:6379", "PTRACKER_REDIS_URL must start with redis://"),
    ],
)
def test_run_refuses_a_bad_setting_with_a_clear_message(tmp_path, name, value, message):
    result = ptracker("run", env={"PTRACKER_DATA_DIR": str(tmp_path), name: value})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ptracker.sqlite3").exists()  # stopped before touching anything


def test_run_reports_an_unreachable_database(tmp_path):
    result = ptracker(
        "run",
        "--port",
        str(free_port()),
        env={"PTRACKER_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://u@127.0.0.1:1/x"},
    )
    assert result.returncode == 2
    assert "ptracker: cannot set up the database: connection failed" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ptracker("run", "--port", str(port), env={"PTRACKER_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr
    assert not (tmp_path / "ptracker.sqlite3").exists()


def test_run_takes_the_port_with_the_address(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = ptracker("run", "--bind", f"127.0.0.1:{port}",
                          env={"PTRACKER_DATA_DIR": str(tmp_path)})  # fmt: skip
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in result.stderr


@pytest.mark.django_db
def test_first_start_creates_an_admin_with_a_random_password(tmp_path):
    message = first_login(tmp_path)
    password = (tmp_path / "initial-admin-password").read_text().strip()
    assert f"log in as admin, password {password}" in message
    assert len(password) >= 16
    assert stat.S_IMODE((tmp_path / "initial-admin-password").stat().st_mode) == 0o600
    assert User.objects.get(username="admin").check_password(password)
    # Second start: same admin, no new password, the file is pointed to.
    assert first_login(tmp_path) == (
        f"log in as admin with the password in {tmp_path / 'initial-admin-password'}"
    )
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_the_password_file_goes_once_the_password_is_changed(tmp_path):
    first_login(tmp_path)
    admin = User.objects.get(username="admin")
    admin.set_password("a-new-long-password")
    admin.save()
    assert first_login(tmp_path).startswith("log in with your account")
    assert not (tmp_path / "initial-admin-password").exists()


@pytest.mark.django_db
def test_an_existing_superuser_gets_no_generated_password(tmp_path, alice):
    assert first_login(tmp_path).startswith("log in with your account")
    assert not (tmp_path / "initial-admin-password").exists()
    assert not User.objects.filter(username="admin").exists()


# --- end to end ------------------------------------------------------------------


def read_until(process: subprocess.Popen, pattern: str, timeout: float) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no {pattern!r} in output:\n{''.join(lines)}")


@pytest.fixture(params=["in-process", "redis"])
def broker(request) -> dict:
    """Where background work runs: threads of the web process (default), or a django-q2
    cluster with Redis as its broker, when a Redis server answers."""
    if request.param == "in-process":
        yield {}
        return
    url = reachable_redis()  # flushed: no stale tasks from earlier runs
    if url is None:
        pytest.skip(f"no Redis server answers at {REDIS_URL}")
    yield {"PTRACKER_REDIS_URL": url}
    reachable_redis()


@pytest.mark.slow
def test_run_collects_serves_and_stops_cleanly(tmp_path, e2e_database, broker):
    env_extra, query = e2e_database
    port = free_port()
    env = {
        **os.environ,
        **env_extra,
        **broker,
        "PTRACKER_DATA_DIR": str(tmp_path),
        "PTRACKER_SAMPLE_INTERVAL": "1",
        "PTRACKER_SAMPLER_SHIFT": "10",  # the shortest allowed: see a handover in this test
        "PYTHONUNBUFFERED": "1",
    }
    run = subprocess.Popen(
        [sys.executable, "-m", "ptracker", "run", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        read_until(run, r"ptracker is running at", timeout=90)
        banner = read_until(run, r"log in as admin", timeout=5)[-1]
        password = re.search(r"password (\S+)", banner).group(1)
        # The banner comes as soon as the port is open, before the sampler has started.
        deadline = time.monotonic() + 30
        while not query("SELECT count(*) FROM monitoring_hostsample")[0][0]:
            assert time.monotonic() < deadline, "no sample stored 30 s after the banner"
            time.sleep(0.2)
        time.sleep(14)
        children = psutil.Process(run.pid).children(recursive=True)
        if broker:
            assert len(children) >= 4  # the web process, the cluster, its sentinel, workers…
        else:
            assert children == []  # one process: the web server, sampling in a thread

        times = [row[0] for row in query("SELECT ts FROM monitoring_hostsample ORDER BY ts")]
        assert len(times) >= 12, times
        parsed = [epoch(t) for t in times]
        gaps = [b - a for a, b in zip(parsed, parsed[1:], strict=False)]
        assert max(gaps) <= 2.05, gaps  # never more than two intervals, handover included
        if broker:  # in one process a handover leaves no task row, only the gapless samples
            handovers = query(
                "SELECT count(*) FROM django_q_task WHERE func = 'monitoring.tasks.run_sampler'"
            )[0][0]
            assert handovers >= 1

        opener = log_in(f"http://127.0.0.1:{port}", password)
        html = opener.open(f"http://127.0.0.1:{port}/").read().decode()
        assert socket.gethostname() in html and 'class="dot up"' in html

        started = time.monotonic()
        run.send_signal(signal.SIGTERM)
        rest = run.communicate(timeout=15)[0]
        assert time.monotonic() - started < 10
        assert run.returncode == 0, rest
        assert "ptracker: stopped" in rest
        assert "did not stop" not in rest
        left = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert left == []
        lease = query("SELECT owner FROM monitoring_lease")
        assert lease == [("",)]  # released, not left to expire
    finally:
        if run.poll() is None:  # the test failed midway: leave nothing running
            for child in psutil.Process(run.pid).children(recursive=True):
                child.kill()
            run.kill()
