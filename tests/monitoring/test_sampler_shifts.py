"""Consecutive sampler shifts in one worker: what one shift read, the next one reuses."""

import subprocess
from collections import Counter

import psutil
import pytest

from monitoring.models import Process, WatchedProcess
from monitoring.tasks import run_sampler
from tests.monitoring.collectors.conftest import wait_for_cmdline

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def one_second(settings):
    settings.PTRACKER_SAMPLE_INTERVAL = 1


@pytest.fixture
def sleeper():
    child = subprocess.Popen(["sleep", "601"])
    wait_for_cmdline(child.pid, ["sleep", "601"])
    yield child
    child.kill()
    child.wait()


def test_a_new_shift_does_not_read_known_command_lines_again(sleeper, monkeypatch):
    # A watch on command lines needs every process's, so each is read once per identity.
    WatchedProcess.objects.create(name="sleeper", pattern=r"^sleep 601$", field="cmdline")
    reads = Counter()
    read = psutil.Process.cmdline

    def counted(proc):
        reads[proc.pid] += 1
        return read(proc)

    monkeypatch.setattr(psutil.Process, "cmdline", counted)
    run_sampler(shift=3, hand_over=False)
    first_shift = reads[sleeper.pid]
    reads.clear()
    run_sampler(shift=3, hand_over=False)

    assert first_shift == 1
    assert reads[sleeper.pid] == 0
    stored = Process.objects.get(pid=sleeper.pid)
    assert stored.cmdline == "sleep 601" and stored.watched is not None
