"""The process collector against real processes: this test run and `sleep` children.

psutil is the boundary we do not own: where a test needs it to refuse something, a
small psutil.Process subclass does what psutil does for another user's process.
"""

import os
import subprocess

import psutil

from monitoring.collectors import processes
from monitoring.sampling import Sampler
from tests.monitoring.collectors.conftest import wait_for_cmdline

ME = os.getpid()


class IoCountersDenied(psutil.Process):
    """/proc/<pid>/io is readable only by the process's owner (and root)."""

    def io_counters(self):
        raise psutil.AccessDenied(self.pid)


class NameDenied(psutil.Process):
    def name(self):
        raise psutil.AccessDenied(self.pid)


def test_it_finds_this_process_by_pid_and_create_time():
    mine = [r for r in processes.collect() if r.pid == ME]
    assert len(mine) == 1
    assert mine[0].create_time == psutil.Process(ME).create_time()
    assert mine[0].name == psutil.Process(ME).name()


def test_a_new_identity_comes_with_its_command_line_exe_and_user():
    me = psutil.Process(ME)
    reading = processes.read_process(me, known={})
    assert reading.cmdline == tuple(me.cmdline())
    assert reading.exe == me.exe()
    assert reading.username == me.username()


def test_a_known_identity_is_read_without_its_static_fields():
    me = psutil.Process(ME)
    reading = processes.read_process(me, known={(ME, me.create_time()): me.name()})
    assert (reading.cmdline, reading.exe, reading.username) == (None, None, None)
    assert reading.name == me.name()


def test_counters_and_memory_of_this_process_are_non_negative():
    reading = processes.read_process(psutil.Process(ME), known={})
    assert reading.cpu_seconds >= 0
    assert 0 < reading.rss <= reading.vms
    assert reading.threads >= 1


def test_it_reads_a_child_with_its_parent_and_command_line(start_child):
    child = start_child()
    reading = processes.read_process(psutil.Process(child.pid), known={})
    assert (reading.name, reading.ppid, reading.cmdline) == ("sleep", ME, ("sleep", "600"))


def test_a_process_that_exits_before_it_is_read_gives_none(start_child):
    child = start_child()
    listed = psutil.Process(child.pid)
    child.kill()
    child.wait()  # reaped: the pid is gone, not a zombie
    assert processes.read_process(listed, known={}) is None


def test_collect_leaves_out_a_process_that_exited_and_returns_the_others(start_child):
    alive, dying = start_child(), start_child()
    listed = [psutil.Process(ME), psutil.Process(dying.pid), psutil.Process(alive.pid)]
    dying.kill()
    dying.wait()
    assert sorted(r.pid for r in processes.collect(procs=listed)) == sorted([ME, alive.pid])


def test_access_denied_on_io_counters_leaves_only_the_io_fields_unknown():
    reading = processes.read_process(IoCountersDenied(ME), known={})
    assert (reading.read_bytes, reading.write_bytes) == (None, None)
    assert reading.create_time == psutil.Process(ME).create_time()
    assert reading.name == psutil.Process(ME).name()
    assert reading.cmdline == tuple(psutil.Process(ME).cmdline())
    for value in (reading.ppid, reading.status, reading.cpu_seconds, reading.rss, reading.threads):
        assert value is not None


def test_a_process_whose_name_is_denied_gives_no_reading():
    assert processes.read_process(NameDenied(ME), known={}) is None


def test_the_sampler_shows_the_new_command_line_after_a_process_execs(start_child):
    # exec keeps pid and create_time, so the identity stays while the program changes:
    # think of a container entrypoint script ending in `exec server`.
    child = start_child(("sh", "-c", "read go; exec sleep 600"), stdin=subprocess.PIPE)
    sampler = Sampler(top_n=100_000)  # store every process
    before = {r.pid: r for r in sampler.sample().processes}[child.pid]
    child.stdin.write(b"go\n")
    child.stdin.flush()
    wait_for_cmdline(child.pid, ["sleep", "600"])
    after = {r.pid: r for r in sampler.sample().processes}[child.pid]
    assert (before.name, before.cmdline) == ("sh", "sh -c read go; exec sleep 600")
    assert after.create_time == before.create_time
    assert (after.name, after.cmdline) == ("sleep", "sleep 600")
