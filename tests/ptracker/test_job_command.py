"""`ptracker job -- command` and `heartbeat()` end to end: a real hub (Daphne on the
test database), real child processes, and a Python in which Django cannot be imported.
"""

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from jobs import monitor
from jobs.models import HeartbeatCheck, Run
from monitoring.models import ApiToken, Event
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
WITHOUT_DJANGO = "import sys; sys.modules['django'] = None\n"


@pytest.fixture
def hub(live_server_url, bob):
    """The hub's address, a check named "nightly", bob's jobs token in the environment."""
    HeartbeatCheck.objects.create(name="nightly", period=timedelta(days=1))
    secret = ApiToken.issue(bob, "cron", scope=ApiToken.JOBS)[1]
    env = {**os.environ, "PTRACKER_HUB": live_server_url, "PTRACKER_TOKEN": secret}
    env.pop("PTRACKER_TOKEN_FILE", None)
    env.pop("PTRACKER_PING_URL", None)
    return env


def job_command(*args: str) -> list[str]:
    code = WITHOUT_DJANGO + "from ptracker.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "job", *args]


def child(code: str) -> list[str]:
    return ["--", sys.executable, "-c", textwrap.dedent(code)]


def run(env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        job_command(*args), env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_successful_command_is_a_timed_run_and_its_output_still_shows(hub):
    code = "import sys, time; print('copying'); print('warn', file=sys.stderr); time.sleep(0.5)"
    done = run(hub, "--check", "nightly", *child(code))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "copying\n" and "warn" in done.stderr
    run_ = Run.objects.get()
    assert (run_.status, run_.exit_status) == ("success", None)
    assert run_.duration >= 0.5
    assert "copying" in run_.log and "warn" in run_.log
    assert run_.pid and run_.process_started and run_.hostname  # the wrapper, watched
    assert HeartbeatCheck.objects.get().state == "up"


def test_a_failing_command_fails_the_run_with_its_exit_status_and_last_lines(hub):
    code = "import sys\nfor i in range(100): print(f'line {i}')\nsys.exit(3)"
    done = run(hub, "--check", "nightly", "--lines", "5", *child(code))
    assert done.returncode == 3
    run_ = Run.objects.get()
    assert (run_.status, run_.exit_status) == ("fail", 3)
    assert run_.log.splitlines() == [f"line {i}" for i in range(95, 100)]
    assert HeartbeatCheck.objects.get().state == "failed"


def test_a_killed_command_fails_the_run_with_128_plus_the_signal(hub, tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    wrapper = subprocess.Popen(job_command("--check", "nightly", *child(code)), env=hub)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the command to start")
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert wrapper.wait(30) == 128 + signal.SIGKILL
    run_ = Run.objects.get()
    assert (run_.status, run_.exit_status) == ("fail", 128 + signal.SIGKILL)


def test_a_killed_wrapper_leaves_an_orphaned_run(hub, tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    wrapper = subprocess.Popen(job_command("--check", "nightly", *child(code)), env=hub)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the command to start")
    wait_until(lambda: Run.objects.exists(), 30, "the start ping")
    wrapper.kill()
    wrapper.wait(30)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    monitor.check()
    assert Run.objects.get().status == "orphaned"
    assert Event.objects.filter(kind="heartbeat_orphaned").exists()


def test_the_ping_url_needs_no_token(hub):
    check = HeartbeatCheck.objects.get()
    env = {**hub, "PTRACKER_PING_URL": f"{hub['PTRACKER_HUB']}/ping/{check.slug}"}
    env.pop("PTRACKER_TOKEN")
    assert run(env, *child("pass")).returncode == 0
    assert Run.objects.get().status == "success"


def test_an_unknown_check_still_runs_the_command_and_says_so(hub):
    done = run(hub, "--check", "nobody", *child("print('ran')"))
    assert (done.returncode, done.stdout) == (0, "ran\n")
    assert "no heartbeat check named 'nobody'" in done.stderr
    assert not Run.objects.exists()


def test_python_code_reports_progress_and_an_exception_fails_the_run(hub, tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        WITHOUT_DJANGO
        + textwrap.dedent(
            """
            from ptracker.client import heartbeat
            with heartbeat("nightly", run_id="py") as beat:
                beat.ping(progress=0.5)
                raise RuntimeError("out of memory")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=hub, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "out of memory" in done.stderr
    run_ = Run.objects.get(run_id="py")
    assert (run_.status, run_.exit_status, run_.progress) == ("fail", 1, 0.5)
    assert "RuntimeError: out of memory" in run_.log
