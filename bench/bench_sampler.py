"""Benchmark what the sampler itself costs: CPU, time per tick, memory, storage.

What it measures
----------------
The real code path of the sampler loop (monitoring.tasks.run_sampler): a
``Sampler(top_n=25)`` is primed, then on every tick aligned to the interval
``sampler.sample()`` is called and its batch stored with ``ingest.store(host, batch)``
into a fresh SQLite database. Four scenarios run, each for --seconds: interval 5 s
and 1 s, each on the machine as it is and with --extra idle ``sleep`` processes
started by this script (killed and reaped at the end, also on Ctrl+C). For each it
reports:

* sampler CPU as a percentage of one core: this process's CPU time (user + system,
  ``time.process_time()``) over the scenario's wall time, idle waits included;
* wall time of each ``sample()`` and ``store()`` call, median and p95;
* peak RSS of this process so far (``ru_maxrss``) and its current RSS;
* a baseline: psutil alone reading the same fields of every process (median of 20
  passes, same process count), and the ratio of the median ``sample()`` time to it.

After the scenarios it reports the bytes one stored HostSample and ProcessSample row
take on disk, from SQLite's ``dbstat`` table (table alone, and table + its indexes),
and the ProcessSample rows stored per tick.

Not measured: the lease renewal and watch reload that run_sampler also does every
tick (two small queries), and django-q's own worker overhead.

How to run
----------
    .venv/bin/python bench/bench_sampler.py                # 4 scenarios x 60 s
    .venv/bin/python bench/bench_sampler.py --quick        # 4 x 10 s, a smoke run
    .venv/bin/python bench/bench_sampler.py --seconds 120 --extra 1000

The database is created in a fresh temporary directory, removed at the end; set
PTRACKER_DATA_DIR to use (and keep) another one. DATABASE_URL is ignored so that a
benchmark never writes into a server database. Targets (interval 5 s, with the
extra processes): sample()/psutil ratio <= 2.0 and CPU < 1 % of one core. They are
printed as PASS/MISS for information; the exit status is 0 either way.
"""

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

if TYPE_CHECKING:
    from monitoring.models import Host

REPO_ROOT = Path(__file__).resolve().parent.parent
TOP_N = 25
BASELINE_PASSES = 20
TARGET_RATIO = 2.0
TARGET_CPU_PERCENT = 1.0
TARGET_INTERVAL = 5
MIB = 1024 * 1024


@dataclass(frozen=True)
class Scenario:
    interval: int  # seconds between ticks
    extra: int  # idle processes started for this scenario

    @property
    def label(self) -> str:
        extra = f"+{self.extra} idle processes" if self.extra else "machine as it is"
        return f"interval {self.interval} s, {extra}"


@dataclass
class Result:
    scenario: Scenario
    wall_s: float = 0.0
    cpu_s: float = 0.0
    prime_ms: float = 0.0
    sample_ms: list[float] = field(default_factory=list)
    store_ms: list[float] = field(default_factory=list)
    procs_seen: list[int] = field(default_factory=list)
    rows_stored: list[int] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    peak_rss: int = 0  # bytes, of this process since it started
    rss: int = 0  # bytes, at the end of the scenario

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.wall_s if self.wall_s else float("nan")

    @property
    def ratio(self) -> float:
        if not self.sample_ms or not self.baseline_ms:
            return float("nan")
        return statistics.median(self.sample_ms) / statistics.median(self.baseline_ms)


@dataclass
class TableSize:
    model: str
    rows: int
    table_bytes: int
    index_bytes: int


# -- setup ---------------------------------------------------------------------------


def setup_django() -> Path | None:
    """Configure Django on a fresh SQLite database; the temp dir it made, if any."""
    created = None
    if not os.environ.get("PTRACKER_DATA_DIR"):
        created = Path(tempfile.mkdtemp(prefix="ptracker-bench-"))
        os.environ["PTRACKER_DATA_DIR"] = str(created)
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ptracker.settings"
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return created


@contextmanager
def idle_processes(count: int, lifetime_s: float) -> Iterator[None]:
    """`count` sleeping child processes, killed and reaped on the way out.

    They sleep for a bounded time, so that even if this script is killed with
    SIGKILL (no finally), they end on their own.
    """
    children: list[subprocess.Popen] = []
    try:
        for _ in range(count):
            children.append(
                subprocess.Popen(
                    ["sleep", str(int(lifetime_s))],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        time.sleep(1)  # let every child exec sleep before the first reading
        yield
    finally:
        for child in children:
            child.kill()  # a no-op for a child that already exited
        for child in children:
            child.wait()


# -- measuring -----------------------------------------------------------------------


def read_every_process() -> int:
    """The psutil baseline: every process, the fields the collector reads. Count read."""
    from monitoring.collectors.processes import FIELD_ERRORS

    def field(read):  # a field psutil cannot read is skipped, as the collector does
        try:
            return read()
        except FIELD_ERRORS:
            return None

    count = 0
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                field(proc.create_time)
                field(proc.name)
                field(proc.cpu_times)
                field(proc.memory_info)
                field(proc.io_counters)
                field(proc.num_threads)
                field(proc.status)
                field(proc.ppid)
            count += 1
        except psutil.NoSuchProcess:
            pass
    return count


def psutil_baseline(passes: int = BASELINE_PASSES) -> list[float]:
    """Milliseconds per read_every_process() pass, after one warm-up pass."""
    read_every_process()
    timings = []
    for _ in range(passes):
        start = time.perf_counter()
        read_every_process()
        timings.append(1000 * (time.perf_counter() - start))
    return timings


def run_ticks(host: "Host", interval: int, seconds: float, result: Result) -> None:
    """Prime a Sampler, then sample and store on aligned ticks for `seconds`."""
    from monitoring import ingest
    from monitoring.sampling import Sampler

    sampler = Sampler(top_n=TOP_N)
    start = time.perf_counter()
    sampler.prime()
    result.prime_ms = 1000 * (time.perf_counter() - start)

    cpu_start, wall_start = time.process_time(), time.monotonic()
    deadline = wall_start + seconds
    while True:
        # Ticks fall on multiples of the interval, as in monitoring.tasks.run_sampler.
        wait = interval - time.time() % interval
        if time.monotonic() + wait > deadline:
            break
        time.sleep(wait)
        t0 = time.perf_counter()
        batch = sampler.sample()
        t1 = time.perf_counter()
        ingest.store(host, batch)
        t2 = time.perf_counter()
        result.sample_ms.append(1000 * (t1 - t0))
        result.store_ms.append(1000 * (t2 - t1))
        result.procs_seen.append(batch.host.get("process_count", 0))
        result.rows_stored.append(len(batch.processes))
    time.sleep(max(0.0, deadline - time.monotonic()))  # the window is `seconds` long
    result.cpu_s = time.process_time() - cpu_start
    result.wall_s = time.monotonic() - wall_start


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def run_scenario(host: "Host", scenario: Scenario, seconds: float) -> Result:
    result = Result(scenario)
    with idle_processes(scenario.extra, lifetime_s=seconds + 600):
        run_ticks(host, scenario.interval, seconds, result)
        result.baseline_ms = psutil_baseline()  # outside the CPU window, same processes
    result.peak_rss = peak_rss_bytes()
    result.rss = psutil.Process().memory_info().rss
    return result


# -- storage ---------------------------------------------------------------------------


def storage_sizes() -> list[TableSize] | None:
    """Bytes per table and its indexes from SQLite's dbstat; None when unavailable."""
    from django.db import DatabaseError, connection

    from monitoring.models import HostSample, Process, ProcessSample

    if connection.vendor != "sqlite":
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            pages = dict(cursor.fetchall())
            cursor.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
            index_owner = dict(cursor.fetchall())
    except DatabaseError:
        return None
    sizes = []
    for model in (HostSample, ProcessSample, Process):
        table = model._meta.db_table
        indexes = sum(pages.get(name, 0) for name, owner in index_owner.items() if owner == table)
        sizes.append(TableSize(model.__name__, model.objects.count(), pages.get(table, 0), indexes))
    return sizes


def database_file_bytes() -> int:
    """The whole database file after a WAL checkpoint (the dbstat fallback)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(connection.settings_dict["NAME"])


# -- report ----------------------------------------------------------------------------


def p95(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [str(first).ljust(widths[0])]
        parts += [str(c).rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def scenario_tables(results: list[Result]) -> str:
    cost = [
        [
            r.scenario.label,
            f"{median(r.procs_seen):.0f}",
            str(len(r.sample_ms)),
            f"{r.cpu_percent:.2f}",
            f"{median(r.sample_ms):.1f}",
            f"{p95(r.sample_ms):.1f}",
            f"{median(r.store_ms):.1f}",
            f"{p95(r.store_ms):.1f}",
        ]
        for r in results
    ]
    baseline = [
        [
            r.scenario.label,
            f"{median(r.baseline_ms):.1f}",
            f"{r.ratio:.2f}",
            f"{median(r.rows_stored):.0f}",
            f"{r.prime_ms:.0f}",
            f"{r.peak_rss / MIB:.1f}",
            f"{r.rss / MIB:.1f}",
        ]
        for r in results
    ]
    return "\n\n".join(
        [
            table(
                [
                    "scenario",
                    "procs",
                    "ticks",
                    "CPU % of 1 core",
                    "sample() med ms",
                    "p95 ms",
                    "store() med ms",
                    "p95 ms",
                ],
                cost,
            ),
            table(
                [
                    "scenario",
                    "psutil-only med ms",
                    "sample()/psutil",
                    "rows/tick",
                    "prime() ms",
                    "peak RSS MiB",
                    "RSS MiB",
                ],
                baseline,
            ),
        ]
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def target_line(name: str, value: float, target: str, ok: bool) -> str:
    return f"  {name:<24} {value:6.2f}    target {target:<6}  {verdict(ok)}"


def targets(results: list[Result], extra: int) -> str:
    wanted = Scenario(TARGET_INTERVAL, extra)
    result = next((r for r in results if r.scenario == wanted), None)
    if result is None:
        return f"Targets: no result for {wanted.label}."
    return "\n".join(
        [
            f"Targets ({wanted.label}, {median(result.procs_seen):.0f} processes):",
            target_line(
                "sample()/psutil ratio",
                result.ratio,
                f"<= {TARGET_RATIO:g}",
                result.ratio <= TARGET_RATIO,
            ),
            target_line(
                "CPU % of one core",
                result.cpu_percent,
                f"< {TARGET_CPU_PERCENT:g}",
                result.cpu_percent < TARGET_CPU_PERCENT,
            ),
        ]
    )


def storage_report() -> str:
    sizes = storage_sizes()
    if sizes is None:
        from monitoring.models import HostSample, ProcessSample

        total = database_file_bytes()
        lines = [f"Storage: dbstat unavailable; whole database file {total} B."]
        for model in (HostSample, ProcessSample):
            rows = model.objects.count()
            per_row = f"{total / rows:.0f} B" if rows else "n/a"
            lines.append(f"  file / {model.__name__} rows: {per_row} (upper bound)")
        return "\n".join(lines)

    by_name = {s.model: s for s in sizes}
    rows = [
        [
            s.model,
            str(s.rows),
            f"{s.table_bytes / 1024:.0f}",
            f"{s.index_bytes / 1024:.0f}",
            f"{s.table_bytes / s.rows:.0f}" if s.rows else "n/a",
            f"{(s.table_bytes + s.index_bytes) / s.rows:.0f}" if s.rows else "n/a",
        ]
        for s in sizes
    ]
    lines = [
        "Storage (SQLite dbstat, all scenarios together; Process = one row per identity):",
        table(
            ["model", "rows", "table KiB", "indexes KiB", "B/row table", "B/row table+idx"],
            rows,
        ),
    ]
    host, proc = by_name["HostSample"], by_name["ProcessSample"]
    if host.rows and proc.rows:
        per_tick = proc.rows / host.rows
        tick_bytes = (host.table_bytes + host.index_bytes + proc.table_bytes + proc.index_bytes) / (
            host.rows
        )
        per_day = tick_bytes * 86400 / TARGET_INTERVAL / MIB
        lines.append(
            f"ProcessSample rows per tick: {per_tick:.1f} on average.\n"
            f"HostSample + ProcessSample with indexes: {tick_bytes / 1024:.1f} KiB per tick, "
            f"about {per_day:.0f} MiB per day at {TARGET_INTERVAL} s."
        )
    return "\n".join(lines)


def machine_summary(seconds: float) -> str:
    import sqlite3

    from django.db import connection

    physical = psutil.cpu_count(logical=False)
    return (
        f"Machine: {psutil.cpu_count()} logical CPUs ({physical} physical), "
        f"Python {sys.version.split()[0]}, psutil {psutil.__version__}, "
        f"SQLite {sqlite3.sqlite_version}.\n"
        f"Database: {connection.settings_dict['NAME']}\n"
        f"Each scenario: {seconds:g} s of wall time measured after prime(); top_n={TOP_N}; "
        f"psutil-only = median of {BASELINE_PASSES} passes over every process."
    )


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="per scenario (default 60)")
    parser.add_argument("--extra", type=int, default=500, help="idle processes (default 500)")
    parser.add_argument("--quick", action="store_true", help="10 s per scenario (smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 10
    if args.seconds <= 0 or args.extra < 0:
        parser.error("--seconds must be > 0 and --extra >= 0")
    return args


def scenarios(extra: int) -> list[Scenario]:
    wanted = [Scenario(i, e) for i in (TARGET_INTERVAL, 1) for e in (0, extra)]
    return [s for n, s in enumerate(wanted) if s not in wanted[:n]]  # --extra 0: no twins


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run the finally blocks: kill the idle processes


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    temp_dir = setup_django()
    from monitoring.models import Host

    results: list[Result] = []
    try:
        host = Host.local()
        plan = scenarios(args.extra)
        for n, scenario in enumerate(plan, 1):
            print(f"[{n}/{len(plan)}] {scenario.label}: {args.seconds:g} s", file=sys.stderr)
            results.append(run_scenario(host, scenario, args.seconds))
    except KeyboardInterrupt:
        print("Interrupted: figures of the finished scenarios only.", file=sys.stderr)
    try:
        print()
        print(machine_summary(args.seconds))
        print()
        print(scenario_tables(results))
        print()
        print(targets(results, args.extra))
        print()
        print(storage_report())
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
