"""Real child processes, and a recorded /proc, for the collector tests."""

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from monitoring import sampling
from tests.fakes.procfs import FakeClock, copy_of


def wait_for_cmdline(pid: int, cmdline: list[str], deadline_s: float = 10.0) -> None:
    """Wait until the kernel shows `cmdline` for pid.

    Popen returns as soon as exec has begun: the new program's name is already set
    while its /proc/<pid>/cmdline can still read empty for a moment.
    """
    give_up = time.monotonic() + deadline_s
    while psutil.Process(pid).cmdline() != cmdline:
        if time.monotonic() > give_up:
            raise AssertionError(f"pid {pid} never showed the command line {cmdline}")
        time.sleep(0.005)


@pytest.fixture
def start_child():
    """Start a real child (`sleep 600` unless told), once its command line is readable.

    Every child started is killed and reaped after the test.
    """
    children = []

    def start(argv=("sleep", "600"), **popen_args) -> subprocess.Popen:
        child = subprocess.Popen(list(argv), **popen_args)
        children.append(child)
        wait_for_cmdline(child.pid, list(argv))
        return child

    yield start
    for child in children:
        child.kill()
        child.wait()
        if child.stdin:
            child.stdin.close()


@pytest.fixture
def moments(tmp_path) -> tuple[Path, Path]:
    """Writable copies of the two recorded moments of tests/data/proc."""
    return copy_of("t0", tmp_path), copy_of("t1", tmp_path)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The sampler's clock, moved by the test: rates over recorded moments are exact."""
    fake = FakeClock()
    monkeypatch.setattr(sampling, "time", fake)
    return fake
