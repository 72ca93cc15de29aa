"""The fast path stores what the psutil path stores: the same processes, the same fields.

On a recorded /proc both paths read the very same files at the same (fake) moments, so
they must agree exactly. On this machine they read a moment apart, so a difference
must be explained by a process that changed in between.
"""

import re
import time

import psutil
import pytest

from monitoring.collectors import gpu, processes
from monitoring.sampling import Batch, Sampler, Watch
from tests.fakes.procfs import ONLY_PROCESSES, pid_of, procfs


def psutil_everywhere(known):
    return processes.collect(known, psutil.process_iter())


def identities(batch: Batch) -> list:
    return [(r.pid, r.create_time) for r in batch.processes]


WATCHES = {
    "none": [],
    "cmdline": [Watch(1, "cmdline", re.compile(r"^sleep 60[12]$"))],
    "name": [Watch(2, "name", re.compile(r"^long-program-name-"))],
    "exe": [Watch(3, "exe", re.compile(r"/sleep$")), Watch(4, "name", re.compile("^sh$"))],
}


@pytest.mark.parametrize("top_n", [1, 3, 8, 100])
@pytest.mark.parametrize("watching", WATCHES)
def test_on_a_recorded_machine_both_paths_store_the_same_rows(moments, clock, top_n, watching):
    t0, t1 = moments
    on_gpu = (pid_of(t0, "sleep 600; true"), pid_of(t0, "other-name 600"))
    card = gpu.GpuReading(
        0, "GPU-1", "H100", 50.0, None, None, None, None, None, None,
        processes=(gpu.GpuProcess(on_gpu[0], 2**30), gpu.GpuProcess(on_gpu[1], None)),
    )  # fmt: skip
    collectors = {**ONLY_PROCESSES, "gpu": lambda: [card]}
    fast = Sampler(top_n, WATCHES[watching], collectors=collectors)
    slow_collectors = {**collectors, "processes": psutil_everywhere}
    slow = Sampler(top_n, WATCHES[watching], collectors=slow_collectors)
    kept_before: set = set()
    for root in (t0, t1):
        clock.now += 1.0
        with procfs(root):
            a, b = fast.sample(), slow.sample()
        assert identities(a) == identities(b)
        assert a.watched_running == b.watched_running
        assert {k: a.host[k] for k in ("process_count", "thread_count", "other_cpu_percent")} == {
            k: b.host[k] for k in ("process_count", "thread_count", "other_cpu_percent")
        }
        for row_a, row_b in zip(a.processes, b.processes, strict=True):
            no_io_before = (row_a.pid, row_a.create_time) not in kept_before
            if no_io_before and row_a.read_bps is None and row_a.write_bps is None:
                # Not kept (so I/O not read) last tick: honestly no rate, unlike psutil.
                row_a.read_bps, row_a.write_bps = row_b.read_bps, row_b.write_bps
            assert row_a == row_b
        kept_before = set(identities(a))
    assert set(on_gpu) <= {r.pid for r in a.processes}


def test_a_process_kept_on_two_ticks_has_the_same_io_rate_on_both_paths(moments, clock):
    t0, t1 = moments
    writer = pid_of(t0, "fsync")
    fast = Sampler(100, collectors=ONLY_PROCESSES)
    slow = Sampler(100, collectors={**ONLY_PROCESSES, "processes": psutil_everywhere})
    for root in (t0, t1):
        clock.now += 1.0
        with procfs(root):
            a, b = fast.sample(), slow.sample()
    [row_a] = [r for r in a.processes if r.pid == writer]
    [row_b] = [r for r in b.processes if r.pid == writer]
    assert row_a.write_bps == row_b.write_bps > 0


# -- this machine ------------------------------------------------------------------------

TOP_N = 10


class Recording:
    """A process collector that keeps what it read, by identity, tick by tick."""

    def __init__(self, read) -> None:
        self.read, self.ticks = read, []

    def __call__(self, known):
        readings = self.read(known)
        self.ticks.append({r.identity: r for r in readings})
        return readings


def moved(before: list[dict], after: list[dict]) -> set:
    """Identities the two paths did not see alike: started or exited between the
    reads, or with CPU time or memory that changed between them."""
    seen = set(before[0]) & set(before[1]) & set(after[0]) & set(after[1])
    changed = {
        ident
        for ident in seen
        if after[0][ident].cpu_seconds - before[0][ident].cpu_seconds
        != after[1][ident].cpu_seconds - before[1][ident].cpu_seconds
        or abs(after[0][ident].rss - after[1][ident].rss) > after[0][ident].rss_slack
    }
    everyone = set().union(*before, *after)
    return (everyone - seen) | changed


def test_on_this_machine_the_paths_differ_only_by_processes_that_changed(start_child):
    child = start_child(("sleep", "601"))
    watches = [Watch(1, "cmdline", re.compile(r"^sleep 601$"))]
    fast_read, slow_read = Recording(processes.collect), Recording(psutil_everywhere)
    fast = Sampler(TOP_N, watches, collectors={**ONLY_PROCESSES, "processes": fast_read})
    slow = Sampler(TOP_N, watches, collectors={**ONLY_PROCESSES, "processes": slow_read})
    fast.sample(), slow.sample()
    time.sleep(1.0)
    a, b = fast.sample(), slow.sample()

    assert child.pid in {r.pid for r in a.processes} & {r.pid for r in b.processes}
    changed = moved(
        [fast_read.ticks[0], slow_read.ticks[0]], [fast_read.ticks[1], slow_read.ticks[1]]
    )
    kept_a, kept_b = set(identities(a)), set(identities(b))
    # A process that changed may take a steady one's place in one path's top N.
    steady_differences = (kept_a ^ kept_b) - changed
    assert len(steady_differences) <= len(changed & (kept_a | kept_b)), steady_differences
    rows_b = {(r.pid, r.create_time): r for r in b.processes}
    for row in a.processes:
        twin = rows_b.get((row.pid, row.create_time))
        if twin is not None and (row.pid, row.create_time) not in changed:
            assert (row.name, row.cmdline, row.exe, row.username, row.ppid) == (
                twin.name,
                twin.cmdline,
                twin.exe,
                twin.username,
                twin.ppid,
            )
