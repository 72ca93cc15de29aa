"""The Linux fast path: one read of /proc/<pid>/stat per process, psutil for the rest.

Run on copies of a recorded /proc tree (tests/fakes/procfs.py), changed file by file
to stage pid reuse, exec, exits and unreadable files.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from monitoring import sampling
from monitoring.collectors import processes
from monitoring.sampling import Sampler
from tests.fakes.procfs import (
    ONLY_PROCESSES,
    FakeClock,
    copy_of,
    pid_of,
    procfs,
    rewrite_stat,
    stat_fields,
)

NOBODY = 65534


def rows_at(sampler: Sampler, root: Path, clock: FakeClock) -> dict[int, sampling.ProcessRow]:
    clock.now += 1.0
    with procfs(root):
        return {r.pid: r for r in sampler.sample().processes}


def store_all() -> Sampler:
    return Sampler(top_n=1_000_000, collectors=ONLY_PROCESSES)


def test_every_recorded_process_reads_as_psutil_reads_it(moments):
    t0, _ = moments
    with procfs(t0):
        fast = {r.pid: r for r in processes.collect()}
        slow = {r.pid: r for r in processes.collect({}, psutil.process_iter())}
        exact = {pid: processes.exact_memory(r) for pid, r in fast.items()}
    assert fast.keys() == slow.keys() and len(fast) > 30
    for pid, s in slow.items():
        f = fast[pid]
        assert (f.create_time, f.ppid, f.status, f.cpu_seconds, f.vms, f.threads) == (
            s.create_time,
            s.ppid,
            s.status,
            s.cpu_seconds,
            s.vms,
            s.threads,
        )
        assert processes.full_name(f.name, s.cmdline) == s.name
        assert not f.detailed and f.read_bytes is None and f.cmdline is None
        # stat's RSS is the kernel's running estimate; statm's, psutil's, is exact.
        assert abs(f.rss - s.rss) <= f.rss_slack
        assert (exact[pid].rss, exact[pid].rss_slack) == (s.rss, 0)


def test_the_rss_slack_covers_a_recorded_machine_of_two_cpus(moments):
    t0, _ = moments
    with procfs(t0):
        readings = processes.collect()
        worst = max(abs(processes.exact_memory(r).rss - r.rss) for r in readings)
    assert processes.boot_time_and_cpus(str(t0))[1] == 2
    assert 0 < worst <= readings[0].rss_slack == processes.rss_slack(2)


def bump_statm_rss(root: Path, pid: int, pages: int) -> None:
    size, rss, *rest = (root / str(pid) / "statm").read_text().split()
    (root / str(pid) / "statm").write_text(" ".join([size, str(int(rss) + pages), *rest]) + "\n")


def test_an_exact_rss_is_reused_only_while_the_process_touches_no_memory(moments, clock):
    """Near the top-N cut the RSS must be exact (statm), but on a machine of many
    alike idle processes that is most of them: a reading is reused while the stat
    line's memory, CPU time and fault count stay put, and for a minute at most."""
    t0, _ = moments
    sampler = Sampler(top_n=10, collectors=ONLY_PROCESSES)
    with procfs(t0):
        readings = processes.collect()
    # The smallest process with memory: well past the 10th, inside the slack of it.
    small = min((r for r in readings if r.rss), key=lambda r: r.rss)
    _, fields = stat_fields(t0, small.pid)
    page = os.sysconf("SC_PAGE_SIZE")

    def others() -> int:
        clock.now += 1.0
        with procfs(t0):
            batch = sampler.sample()
        assert small.pid not in {r.pid for r in batch.processes}
        return batch.host["other_rss"]

    first = others()
    bump_statm_rss(t0, small.pid, 10)
    assert others() == first  # nothing in stat moved: the exact reading is reused
    rewrite_stat(t0, small.pid, f7=int(fields[7]) + 1)  # one more minor fault
    assert others() == first + 10 * page
    bump_statm_rss(t0, small.pid, 10)
    clock.now += sampling.EXACT_RSS_MAX_AGE
    assert others() == first + 20 * page  # a minute on, read again regardless


def test_a_name_with_spaces_and_parentheses_is_read_whole(moments):
    t0, _ = moments
    pid = pid_of(t0, "write('a) b (c) d')")
    with procfs(t0):
        [reading] = [r for r in processes.collect() if r.pid == pid]
    assert reading.name == "a) b (c) d"
    assert reading.status == "sleeping" and reading.threads == 1


def test_a_cut_name_is_made_whole_from_the_command_line_only_when_it_fits(moments, clock):
    t0, _ = moments
    whole, other = pid_of(t0, "-sleeper 600"), pid_of(t0, "other-name 600")
    rows = rows_at(store_all(), t0, clock)
    assert rows[whole].name == "long-program-name-sleeper"
    assert rows[other].name == "long-program-na"  # argv[0] is not the program's name


def test_a_reused_pid_starts_without_rate(moments, clock):
    t0, t1 = moments
    busy, steady = pid_of(t0, "< 0.09"), pid_of(t0, "< 0.03")
    _, fields = stat_fields(t1, busy)
    rewrite_stat(t1, busy, f19=int(fields[19]) + 50)  # same pid, started later
    sampler = store_all()
    before = rows_at(sampler, t0, clock)
    after = rows_at(sampler, t1, clock)
    assert after[busy].create_time == before[busy].create_time + 50 / processes.CLOCK_TICKS
    assert after[busy].cpu_percent is None
    assert after[steady].cpu_percent > 0


def test_an_exec_gives_the_new_name_and_command_line(moments, clock):
    t0, t1 = moments
    pid = pid_of(t0, "sleep 601")
    rewrite_stat(t1, pid, comm="bash")
    (t1 / str(pid) / "cmdline").write_bytes(b"bash\0-l\0")
    sampler = store_all()
    before = rows_at(sampler, t0, clock)
    after = rows_at(sampler, t1, clock)
    assert (before[pid].name, before[pid].cmdline) == ("sleep", "sleep 601")
    assert after[pid].create_time == before[pid].create_time
    assert (after[pid].name, after[pid].cmdline) == ("bash", "bash -l")


def test_a_command_line_is_read_once_per_identity_and_program(moments, clock):
    t0, t1 = moments
    pid = pid_of(t0, "sleep 601")
    (t1 / str(pid) / "cmdline").write_bytes(b"rewritten\0")  # comm unchanged: no exec
    sampler = store_all()
    rows_at(sampler, t0, clock)
    assert rows_at(sampler, t1, clock)[pid].cmdline == "sleep 601"


def test_a_process_listed_but_gone_before_its_stat_is_read_is_left_out(moments):
    _, t1 = moments
    gone = pid_of(t1, "sleep 602")
    (t1 / str(gone) / "stat").unlink()  # the kernel's view of a pid being reaped
    with procfs(t1):
        pids = {r.pid for r in processes.collect()}
    assert gone not in pids
    assert len(pids) == len([d for d in t1.iterdir() if d.name.isdigit()]) - 1


def test_a_process_gone_before_its_details_are_read_has_none(moments):
    _, t1 = moments
    pid = pid_of(t1, "sleep 602")
    with procfs(t1):
        [reading] = [r for r in processes.collect() if r.pid == pid]
        shutil.rmtree(t1 / str(pid))
        assert processes.details(reading, static=True) is None


def test_details_of_a_known_identity_read_io_and_memory_as_psutil_does(moments):
    """Without static fields, io and statm are read directly (no psutil.Process)."""
    t0, _ = moments
    with procfs(t0):
        fast = [processes.details(r, static=False) for r in processes.collect()]
        slow = {r.pid: r for r in processes.collect({}, psutil.process_iter())}
    assert len(fast) > 30
    for f in fast:
        s = slow[f.pid]
        assert f.detailed and f.rss_slack == 0 and f.cmdline is None
        assert (f.rss, f.vms, f.read_bytes, f.write_bytes) == (
            s.rss,
            s.vms,
            s.read_bytes,
            s.write_bytes,
        )


def test_a_known_process_gone_before_its_details_are_read_has_none(moments):
    _, t1 = moments
    pid = pid_of(t1, "sleep 602")
    with procfs(t1):
        [reading] = [r for r in processes.collect() if r.pid == pid]
        shutil.rmtree(t1 / str(pid))
        assert processes.details(reading, static=False) is None


def test_a_pid_reused_between_the_stat_read_and_the_details_has_none(moments):
    _, t1 = moments
    pid = pid_of(t1, "sleep 602")
    with procfs(t1):
        [reading] = [r for r in processes.collect() if r.pid == pid]
        _, fields = stat_fields(t1, pid)
        rewrite_stat(t1, pid, f19=int(fields[19]) + 1)
        assert processes.details(reading, static=True) is None


def test_a_cut_stat_line_is_skipped(moments):
    _, t1 = moments
    pid = pid_of(t1, "sleep 602")
    (t1 / str(pid) / "stat").write_text(f"{pid} (sleep) S 1 ")
    with procfs(t1):
        assert pid not in {r.pid for r in processes.collect()}


@contextmanager
def as_nobody() -> Iterator[None]:
    """Read files as an ordinary user would: root reads files whatever their mode."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def open_moments() -> Iterator[tuple[Path, Path]]:
    """Copies of the moments where an ordinary user can reach them (pytest's tmp_path
    is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="ptracker-procfs-"))
    top.chmod(0o755)
    try:
        yield copy_of("t0", top), copy_of("t1", top)
    finally:
        shutil.rmtree(top)


def test_a_process_whose_stat_is_denied_is_left_out(open_moments):
    t0, _ = open_moments
    pid = pid_of(t0, "sleep 601")
    (t0 / str(pid) / "stat").chmod(0)
    with procfs(t0), as_nobody():
        pids = {r.pid for r in processes.collect()}
    assert pid not in pids and pid_of(t0, "other-name 600") in pids


def test_denied_io_and_command_line_leave_only_those_fields_unknown(open_moments, clock):
    t0, t1 = open_moments
    pid = pid_of(t0, "-sleeper 600")
    for root in (t0, t1):
        (root / str(pid) / "io").chmod(0)
        (root / str(pid) / "cmdline").chmod(0)
    sampler = store_all()
    with as_nobody():
        rows_at(sampler, t0, clock)
        row = rows_at(sampler, t1, clock)[pid]
    assert row.read_bps is row.write_bps is None
    assert (row.name, row.cmdline) == ("long-program-na", "")  # no command line to complete it
    assert row.exe.endswith("/long-program-name-sleeper")
    assert row.username == "root"
    assert row.cpu_percent == 0.0 and row.rss > 0 and row.threads == 1
