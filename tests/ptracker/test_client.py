"""`ptracker gpu -- command` and `gpu_lease()` end to end: a real hub (Daphne on the
test database), real child processes, and a Python in which Django cannot be imported.
"""

import getpass
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jobs.models import GpuLease, LeaseRecord
from monitoring.models import ApiToken, Host
from ptracker import client
from tests.conftest import wait_until
from tests.jobs.conftest import holder, sample_host

pytestmark = pytest.mark.django_db(transaction=True)
WITHOUT_DJANGO = "import sys; sys.modules['django'] = None\n"


@pytest.fixture
def hub(live_server_url, bob):
    """The hub's address, this machine as a host of it with four GPUs, and bob's
    jobs token in the environment the commands run with."""
    sample_host(Host.local(), [0, 0, 0, 0])
    secret = ApiToken.issue(bob, "training", scope=ApiToken.JOBS)[1]
    env = {**os.environ, "PTRACKER_HUB": live_server_url, "PTRACKER_TOKEN": secret}
    env.pop("PTRACKER_TOKEN_FILE", None)
    return env


def gpu_command(*args: str) -> list[str]:
    code = WITHOUT_DJANGO + "from ptracker.cli import main\nsys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "gpu", *args]


def child(code: str) -> list[str]:
    return ["--", sys.executable, "-c", textwrap.dedent(code)]


def run(env, *args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        gpu_command(*args), env=env, capture_output=True, text=True, timeout=timeout
    )


def held() -> list[GpuLease]:
    return list(GpuLease.objects.exclude(handle=""))


def test_the_command_sees_its_gpu_and_the_lease_is_released_after(hub):
    done = run(hub, "--ttl", "1m", *child("import os; print(os.environ['CUDA_VISIBLE_DEVICES'])"))
    assert done.returncode == 0, done.stderr
    gpu0 = GpuLease.objects.get(index=0)
    assert done.stdout.strip() == gpu0.uuid  # UUIDs: CUDA may number GPUs otherwise
    assert held() == []
    record = LeaseRecord.objects.get(action="acquire")
    assert (record.user, record.job) == (getpass.getuser(), "python")
    assert record.pid and record.process_started  # the wrapper: the monitor watches it
    assert LeaseRecord.objects.filter(action="release").count() == 1


def test_the_commands_exit_status_is_passed_through(hub):
    assert run(hub, *child("import sys; sys.exit(3)")).returncode == 3
    assert held() == []


def test_a_command_killed_with_kill_9_frees_the_gpu(hub, tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    wrapper = subprocess.Popen(gpu_command(*child(code)), env=hub, stderr=subprocess.PIPE)
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), 30, "the command to start")
    assert len(held()) == 1
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert wrapper.wait(30) == 128 + signal.SIGKILL
    assert held() == []


def test_sigterm_to_the_wrapper_stops_the_command_and_frees_the_gpu(hub, tmp_path):
    ready = tmp_path / "ready"
    code = f"""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(42))
        open({str(ready)!r}, 'w').write('1')
        time.sleep(60)
    """
    wrapper = subprocess.Popen(gpu_command(*child(code)), env=hub)
    wait_until(ready.exists, 30, "the command to start")
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(30) == 42  # the command's own answer to SIGTERM
    assert held() == []


def test_no_wait_fails_at_once_naming_the_holders(hub, alice):
    GpuLease.acquire(Host.local(), 4, 600, holder(alice, job="big-train"))
    done = run(hub, "--no-wait", *child("print('ran')"))
    assert done.returncode == client.NO_GPU
    assert "ran" not in done.stdout
    assert "0 of the 1 GPUs asked for are free" in done.stderr
    assert "GPU 0: alice: big-train" in done.stderr


def test_a_waiting_command_starts_when_a_gpu_comes_free(hub, alice):
    handle, _ = GpuLease.acquire(Host.local(), 4, 600, holder(alice))
    wrapper = subprocess.Popen(
        gpu_command(*child("print('ran')")),
        env=hub,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: LeaseRecord.objects.filter(action="wait").exists(), 30, "a wait")
    GpuLease.release(handle)
    out, err = wrapper.communicate(timeout=30)
    assert wrapper.returncode == 0 and out.strip() == "ran"
    assert "waiting for 1 free GPUs" in err
    assert LeaseRecord.objects.get(action="acquire", owner__username="bob").waited > 0


def test_the_lease_is_renewed_while_the_command_runs(hub):
    done = run(hub, "--ttl", "6s", *child("import time; time.sleep(7)"))
    assert done.returncode == 0, done.stderr
    assert LeaseRecord.objects.filter(action="renew").count() >= 2
    assert not LeaseRecord.objects.filter(action="expire").exists()


def test_without_a_token_nothing_runs(hub):
    env = {k: v for k, v in hub.items() if k != "PTRACKER_TOKEN"}
    done = run(env, *child("print('ran')"))
    assert done.returncode == client.USAGE
    assert "no API token" in done.stderr and "ran" not in done.stdout


def test_a_token_is_never_taken_from_the_command_line(hub):
    done = run(hub, "--token", "pt_secret", *child("print('ran')"))
    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr or "--token" in done.stderr


def test_python_code_holds_gpus_in_a_with_block(hub, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        WITHOUT_DJANGO
        + textwrap.dedent("""
            import os
            from ptracker.client import gpu_lease
            with gpu_lease(count=2, ttl="1m") as gpus:
                print([g.index for g in gpus], os.environ["CUDA_VISIBLE_DEVICES"].count(","))
            print("after", os.environ.get("CUDA_VISIBLE_DEVICES"))
        """)
    )
    env = {k: v for k, v in hub.items() if k != "CUDA_VISIBLE_DEVICES"}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[0, 1] 1", "after None"]
    assert LeaseRecord.objects.get(action="acquire", gpu__index=0).job == "train.py"
    assert held() == []


def test_an_exception_in_the_with_block_releases_the_lease(hub, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        WITHOUT_DJANGO
        + "from ptracker.client import gpu_lease\n"
        + "with gpu_lease(ttl=60):\n    raise RuntimeError('out of memory')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], env=hub, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "RuntimeError: out of memory" in done.stderr
    assert LeaseRecord.objects.filter(action="release").count() == 1
    assert held() == []


def test_durations_read_like_people_write_them():
    assert [client.parse_duration(t) for t in ("90", "90s", "15m", "2h", "1d", "1h30m")] == [
        90,
        90,
        900,
        7200,
        86400,
        5400,
    ]
    with pytest.raises(ValueError):
        client.parse_duration("soon")


def test_plain_http_to_another_host_is_refused():
    with pytest.raises(client.LeaseError, match="clear text"):
        client.Hub("http://gpu-hub.example.org:8000", token="pt_x")


def test_a_wait_that_runs_out_fails_and_runs_nothing(hub, alice):
    GpuLease.acquire(Host.local(), 4, 600, holder(alice))
    started = time.monotonic()
    done = run(hub, "--wait", "3s", *child("print('ran')"))
    assert done.returncode == client.NO_GPU
    assert "gave up after waiting" in done.stderr
    assert time.monotonic() - started >= 3
    assert LeaseRecord.objects.filter(action="timeout").count() == 1
