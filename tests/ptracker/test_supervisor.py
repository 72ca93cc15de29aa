"""The cluster install's supervisor: it sleeps until a child exits or it is told to stop."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
# Stand-ins for the children. The cluster stops on SIGINT as django-q2 does (it
# installs its own handler): Python leaves SIGINT ignored when it starts ignored, as
# it is for every command a non-interactive shell puts in the background (`nohup make
# test &`). Their last step, ignoring SIGUSR2, tells the test they are set up.
READY = "signal.signal(signal.SIGUSR2, signal.SIG_IGN); time.sleep(120)"
SLEEPER = ["-c", f"import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); {READY}"]
STUBBORN = [
    "-c",
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    f"signal.signal(signal.SIGTERM, signal.SIG_IGN); {READY}",
]


def supervisor(web: list[str] = SLEEPER, cluster: list[str] = SLEEPER) -> subprocess.Popen:
    """`ptracker run`'s last step (cli.supervise) with stand-ins for the two children."""
    commands = {"web": (web, ()), "cluster": (cluster, ())}
    code = f"from ptracker.cli import supervise; supervise({commands!r})"
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 10
    while len(psutil.Process(process.pid).children()) < 2 or "supervisor" not in " ".join(
        psutil.Process(process.pid).cmdline()
    ):
        assert time.monotonic() < deadline, "the supervisor did not start"
        time.sleep(0.05)
    return process


def wait_ready(pid: int, deadline_s: float = 10.0) -> None:
    """Until a stand-in child has set its signals up (it then ignores SIGUSR2)."""
    bit = 1 << (signal.SIGUSR2 - 1)
    give_up = time.monotonic() + deadline_s
    while True:
        status = Path(f"/proc/{pid}/status").read_text()
        if int(re.search(r"SigIgn:\s+([0-9a-f]+)", status)[1], 16) & bit:
            return
        assert time.monotonic() < give_up, f"pid {pid} did not set its signals up"
        time.sleep(0.01)


def wakeups(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", status))


@pytest.fixture
def supervised():
    started = []

    def start(**commands) -> tuple[subprocess.Popen, list[psutil.Process]]:
        process = supervisor(**commands)
        children = psutil.Process(process.pid).children()
        started.append((process, children))
        for child in children:
            wait_ready(child.pid)
        return process, children

    yield start
    for process, children in started:
        for child in children:
            if child.is_running():
                child.kill()
        if process.poll() is None:
            process.kill()
        process.communicate()


def gone(process: psutil.Process) -> bool:
    return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE


def test_it_sleeps_without_waking_while_nothing_happens(supervised):
    process, _ = supervised()
    time.sleep(0.5)  # past start-up
    before = wakeups(process.pid)
    time.sleep(2)
    assert wakeups(process.pid) - before <= 1


def test_a_child_that_dies_stops_everything_within_a_second(supervised):
    process, (web, cluster) = supervised()
    died = time.monotonic()
    web.kill()
    output = process.communicate(timeout=5)[0]
    assert time.monotonic() - died < 1.0
    assert process.returncode == 1
    assert f"ptracker: web exited with status -{signal.SIGKILL}" in output
    assert gone(cluster)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_both_children_and_leaves_nothing(supervised, sig):
    process, children = supervised()
    started = time.monotonic()
    process.send_signal(sig)
    output = process.communicate(timeout=10)[0]
    assert time.monotonic() - started < 2
    assert process.returncode == 0
    assert "ptracker: stopping…" in output
    assert output.splitlines()[-1] == "ptracker: stopped"
    assert all(gone(child) for child in children)


@pytest.mark.slow
def test_a_child_that_ignores_its_stop_signal_is_killed(supervised):
    process, (web, _) = supervised(web=STUBBORN)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=20)[0]
    assert "ptracker: web did not stop in 8 s, killing it" in output
    assert process.returncode == 0
    assert gone(web)
