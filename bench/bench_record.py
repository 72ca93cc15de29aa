"""What `ptracker record` costs while it records a tree of processes, against psrecord.

A job tree of --processes processes (a Python parent, two children that burn a
little CPU, the rest `sleep`) is recorded at the same time, for --duration seconds,
by both:

a. ``ptracker record --pid ROOT --interval 0.5 --quiet --format json`` (this
   checkout's code): every process of the tree, CPU, RSS, threads, disk I/O, GPU
   (NVML, when there is one) per process and summed.
b. ``psrecord ROOT --include-children --interval 0.5 --log FILE``: CPU and RSS of
   the tree summed.

Each recorder's own tree is read once a second by bench_footprint's TreeMeter: CPU %
of one core (utime + stime over the wall time) and PSS (mean, max). psrecord is taken
from PATH, else pip-installed into a private virtualenv under
$XDG_CACHE_HOME/ptracker-bench/psrecord-venv (kept for the next run).

Target (issue #16), printed, never asserted: ptracker record's CPU <= psrecord's.

    .venv/bin/python bench/bench_record.py                  # 30 s, 50 processes
    .venv/bin/python bench/bench_record.py --duration 60 --processes 100
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

# Helpers of the benchmarks next to this file (its directory is sys.path[0]).
from bench_footprint import TreeMeter, mean, run_quietly, spawn, stop_tree

REPO_ROOT = Path(__file__).resolve().parent.parent
PSRECORD_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "ptracker-bench"
    / "psrecord-venv"
)
JOB = """
import subprocess, sys
burn = "import time\\nwhile True:\\n    sum(range(20000)); time.sleep(0.02)"
children = [subprocess.Popen([sys.executable, "-c", burn]) for _ in range(2)]
children += [subprocess.Popen(["sleep", "3600"]) for _ in range(int(sys.argv[1]) - 3)]
for child in children:
    child.wait()
"""


def ensure_psrecord() -> str | None:
    private = PSRECORD_VENV / "bin" / "psrecord"
    for candidate in (shutil.which("psrecord"), Path(sys.executable).parent / "psrecord", private):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    print(f"Installing psrecord from PyPI into {PSRECORD_VENV}…", file=sys.stderr)
    ok = run_quietly([sys.executable, "-m", "venv", str(PSRECORD_VENV)]) and run_quietly(
        [str(PSRECORD_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "psrecord"]
    )
    return str(private) if ok and os.access(private, os.X_OK) else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    psrecord = ensure_psrecord()
    work = Path(tempfile.mkdtemp(prefix="bench-record-"))
    job = spawn([sys.executable, "-c", JOB, str(args.processes)], work / "job.log")
    recorders = {}
    try:
        deadline = time.monotonic() + 30
        while len(_tree(job.pid)) < args.processes and time.monotonic() < deadline:
            time.sleep(0.2)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        report = work / "record.json"
        recorders["ptracker record"] = spawn(
            [sys.executable, "-m", "ptracker", "record", "--pid", str(job.pid)]
            + ["--interval", str(args.interval), "--quiet", "--format", "json", "-o", str(report)],
            work / "record.log",
            env,
        )
        if psrecord:
            recorders["psrecord --include-children"] = spawn(
                [psrecord, str(job.pid), "--include-children", "--interval", str(args.interval)]
                + ["--log", str(work / "psrecord.txt")],
                work / "psrecord.log",
            )
        time.sleep(3)  # both past their start-up
        meters = {name: TreeMeter(p.pid) for name, p in recorders.items()}
        start = time.monotonic()
        for i in range(round(args.duration) + 1):
            time.sleep(max(0.0, start + i - time.monotonic()))
            for meter in meters.values():
                meter.read()
        print(
            f"\nA tree of {len(_tree(job.pid))} processes, recorded every {args.interval} s "
            f"for {meters[next(iter(meters))].wall_s:.0f} s by both at once:\n"
        )
        print(f"{'recorder':32} {'CPU % (1 core)':>15} {'PSS mean MiB':>13} {'PSS max MiB':>12}")
        cpu = {}
        for name, meter in meters.items():
            ticks = sum(p.cpu_ticks for p in meter.procs.values())
            cpu[name] = meter.cpu_percent(ticks)
            pss = [kib / 1024 for kib in meter.pss_totals]
            print(f"{name:32} {cpu[name]:>15.2f} {mean(pss):>13.1f} {max(pss):>12.1f}")
        recorders["ptracker record"].send_signal(signal.SIGINT)
        recorders["ptracker record"].wait(30)
        recorded = json.loads(report.read_text())
        print(
            f"\nptracker record's report: {len(recorded['processes'])} processes, "
            f"{len(recorded['samples'])} samples, fields {', '.join(recorded['fields'])}, "
            f"{len(recorded['host']['gpus'] or [])} GPU(s)"
        )
        if not psrecord:
            print("psrecord: not available (pip install failed); no comparison")
        else:
            ours, theirs = cpu["ptracker record"], cpu["psrecord --include-children"]
            verdict = "met" if ours <= theirs else "missed"
            print(f"target CPU <= psrecord's: {ours:.2f} vs {theirs:.2f} % -> {verdict}")
    finally:
        for process in [*recorders.values(), job]:
            with contextlib.suppress(Exception):
                stop_tree(process, signal.SIGTERM)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _tree(pid: int) -> list:
    try:
        return [pid, *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


if __name__ == "__main__":
    sys.exit(main())
