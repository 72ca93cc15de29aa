"""Dashboard benchmark: pages, charts and the live feed on a realistically full database.

What it measures
  1. Seeding (timed): a fresh database, migrated, then N hosts with D days of 1-minute
     and 1-hour rollups of every host metric (series "host", count 12 and 720), the
     rollup watermarks at the end, and for 5 of the hosts 48 h of raw 5-second samples
     with ~50 process rows per tick for their last hour. The other hosts get one raw
     sample each (their newest), so the overview draws every card. The 5 raw hosts
     also get per-process rollups (ProcessRollup) as the rollup job leaves them: 20
     rows per 1-minute bucket over the D days and per 1-hour bucket over the D days
     and 7 more (hours outlive minutes), from 10 long-running processes (10 of the
     raw ones) and 10 slots of jobs whose process is replaced every 2-8 hours (new
     pid and start time). Written in batches with executemany (SQLite) or COPY
     (PostgreSQL). Then what the rollup task would have packed by now (1-minute
     process rows older than a day, 1-hour ones older than a week) is packed into
     chunks (monitoring.process_store), as on a running install. Database size.
  2. The real server: `python -m daphne -b 127.0.0.1 -p <free port>
     ptracker.asgi:application` as a child process with the same environment, logged
     in through /login/ like a browser (CSRF token, session cookie).
  3. Server time, measured by this client as wall time over loopback (so it includes
     HTTP and Daphne, not only the view): the overview, the page of a host with raw
     samples, and 30-day, 7-day, 24-hour and 1-hour chart requests of 9 metrics;
     3 warm-ups, then 30 requests each; median and p95. Then, over the raw hosts:
     the processes at a moment T (`GET /api/v1/hosts/<id>/processes?at=T` and the
     host page's partial `/hosts/<id>/processes?at=T`), each request a random host
     and a random T (epoch ms) in the D days, saying which tier answered each (raw,
     minute, hour) and how many rows; the same at moments older than the 1-minute
     rows (hour tier); and a long-running process's chart over 30 days (its
     cpu_percent and rss, and the 5 metrics its page asks for), each request
     another process. A "Targets" block prints issue #14's figures, met or missed
     (not asserted): processes at T p95 <= 100 ms, a process's 30-day chart p95
     <= 150 ms, the 7-day host chart's p95 <= the 30-day one's.
  4. Live latency: 50 websockets on /ws/live/ with the session cookie, spread over the
     raw hosts ({"subscribe": "host:<id>"}); this process stores one new sample per
     raw host per second for 20 seconds through monitoring.ingest.store, notes the
     wall time just after each commit, and every socket notes when the message of
     that sample (matched by its ts) arrives. Median and p95 commit-to-receive
     latency over all sockets and samples, and how many messages never came.

With --overview only the fleet overview is measured, for a hub of many agents: N
hosts (default 500) with labels and their newest sample only (no history), 8 GPUs on
every 4th host, every 25th host offline, 5 that never reported, a firing alert on
every 10th; then the page `/` and its live partial `/fleet`, as cards and as a table,
plain and with a search, a grouping and a sort (times as in 3; each answer must show
the hosts it should).

How to run (from the project root)
  .venv/bin/python bench/bench_dashboard.py --quick     # 5 hosts, 2 days, 6 h raw: a smoke test
  .venv/bin/python bench/bench_dashboard.py             # 50 hosts, 30 days (SQLite; many minutes)
  .venv/bin/python bench/bench_dashboard.py --hosts 20 --days 7
  .venv/bin/python bench/bench_dashboard.py --postgres postgres://postgres@127.0.0.1:5432/
  .venv/bin/python bench/bench_dashboard.py --overview              # 500 hosts, overview only
  .venv/bin/python bench/bench_dashboard.py --overview --hosts 2000

SQLite lives in a temporary PTRACKER_DATA_DIR. With --postgres URL (or DATABASE_URL set
to a postgres:// URL) the URL names a server: a database ptracker_bench_<random> is
created on it and dropped at the end. The server is always stopped and the temporary
directory removed, also after an error or Ctrl+C.
"""

import argparse
import asyncio
import base64
import contextlib
import hashlib
import http.client
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIB = 2**30
TAU = 2 * math.pi

RAW_HOSTS = 5
INTERVAL = 5  # seconds between raw samples
PROCESS_HOURS = 1  # process rows are seeded for the newest hour of raw samples only
PROCESSES = 50
STABLE = 10  # long-running processes of a raw host (its first raw ones) in every bucket
JOB_SLOTS = 10  # per raw host: a job runs 2-8 hours, then another (a new identity)
JOB_HOURS = (2, 8)
HOUR_ONLY_DAYS = 7  # process hour rollups reach this far before the minute rows
MOMENT_TARGET_MS = 100  # issue #14, p95
PROCESS_CHART_TARGET_MS = 150  # issue #14, p95
ROLLUP_BATCH = 20_000  # rows per executemany
WARMUPS = 3
REPEATS = 30
SOCKETS = 50
LIVE_SAMPLES = 20
LIVE_WAIT = 10.0  # seconds to wait for stragglers after the last write
PAGE_TARGET_MS = 300
OVERVIEW_HOSTS = 500
LIVE_TARGET_MS = 1500
CHART_METRICS = [
    "cpu_percent",
    "mem_used",
    "load1",
    "disk_read_bps",
    "disk_write_bps",
    "net_rx_bps",
    "net_tx_bps",
    "mem_available",
    "swap_used",
]
PROCESS_NAMES = [
    "postgres", "nginx", "python3", "java", "node", "redis-server", "dockerd", "containerd",
    "sshd", "systemd-journald", "prometheus", "gunicorn", "celery", "kubelet", "etcd",
    "mysqld", "rsyslogd", "cron", "chrome", "code",
]  # fmt: skip
JOB_COMMANDS = [
    "python3 train.py --epochs 40", "python3 -m celery -A shop worker", "java -jar etl.jar",
    "node build.js", "ffmpeg -i input.mp4 out.webm", "pg_dump shop", "rsync -a /data /backup",
    "python3 manage.py rebuild_index", "make -j8", "spark-submit job.py",
]  # fmt: skip


# --- Options and database ----------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--hosts", type=int, default=None, help="hosts to seed (default 50; 500 with --overview)"
    )
    parser.add_argument("--days", type=int, default=30, help="days of rollups (default 30)")
    parser.add_argument(
        "--raw-hours", type=int, default=48, help="hours of raw samples of 5 hosts (default 48)"
    )
    parser.add_argument("--quick", action="store_true", help="5 hosts, 2 days, 6 h of raw samples")
    parser.add_argument(
        "--overview",
        action="store_true",
        help="only the fleet overview, on hosts with their newest sample (see above)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=None,
        help="PostgreSQL server to create a throw-away database on "
        "(default: DATABASE_URL when it is postgres://, else SQLite)",
    )
    args = parser.parse_args(argv)
    if args.hosts is None:
        args.hosts = OVERVIEW_HOSTS if args.overview else 50
    if args.quick:
        args.hosts, args.days, args.raw_hours = 5, 2, 6
    if args.hosts < 1 or args.days < 1 or args.raw_hours < 1:
        parser.error("--hosts, --days and --raw-hours must be at least 1")
    env_url = os.environ.get("DATABASE_URL", "").strip()
    if args.postgres is None and env_url.startswith(("postgres://", "postgresql://")):
        args.postgres = env_url
    return args


@dataclass
class Database:
    label: str
    url: str | None = None  # DATABASE_URL for Django; None: SQLite in the data dir
    admin_url: str | None = None  # where CREATE/DROP DATABASE run
    name: str | None = None


def create_postgres(server_url: str) -> Database:
    """A new, empty database on the server of `server_url`."""
    import psycopg

    name = f"ptracker_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(server_url)
    url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    return Database(f"PostgreSQL ({name} on {parts.hostname})", url, server_url, name)


def drop_postgres(db: Database) -> None:
    import psycopg

    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)')


def setup_django(data_dir: Path, db: Database) -> None:
    """Point this process (and, through os.environ, the server) at the bench database."""
    os.environ["PTRACKER_DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "ptracker.settings"
    os.environ["DEBUG"] = "0"  # no query log in memory, no debug pages
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    os.environ.pop("DATABASE_URL", None)
    if db.url:
        os.environ["DATABASE_URL"] = db.url
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def database_size(db: Database) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        if db.url:
            cursor.execute("SELECT pg_database_size(current_database())")
            return human_bytes(cursor.fetchone()[0])
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = Path(connection.settings_dict["NAME"])
    wal = Path(str(path) + "-wal")
    size = path.stat().st_size
    wal_size = wal.stat().st_size if wal.exists() else 0
    extra = f" (+ {human_bytes(wal_size)} WAL)" if wal_size else ""
    return f"{human_bytes(size)}{extra}  {path.name}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# --- Synthetic data ------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """What a host looks like: size, mean load and where in the day it peaks."""

    cores: int
    busy: float  # mean CPU fraction
    mem_total: int
    mem_frac: float
    swap_total: int
    swap_frac: float
    disk_read: float  # bytes/s, daily mean
    disk_write: float
    net_rx: float
    net_tx: float
    procs: int
    threads: int
    phase: float  # fraction of a day


def make_profile(rng: random.Random) -> Profile:
    return Profile(
        cores=rng.choice([4, 8, 16, 32, 64]),
        busy=rng.uniform(0.05, 0.6),
        mem_total=rng.choice([8, 16, 32, 64, 128, 256]) * GIB,
        mem_frac=rng.uniform(0.2, 0.8),
        swap_total=rng.choice([0, 2 * GIB, 8 * GIB]),
        swap_frac=rng.uniform(0.0, 0.3),
        disk_read=rng.uniform(1e5, 5e7),
        disk_write=rng.uniform(1e5, 3e7),
        net_rx=rng.uniform(1e4, 1e8),
        net_tx=rng.uniform(1e4, 5e7),
        procs=rng.randint(150, 900),
        threads=rng.randint(800, 6000),
        phase=rng.random(),
    )


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


def _level(p: Profile, t: float, rng: random.Random) -> tuple[float, float, float]:
    """(daily wave -1..1, CPU busy fraction, memory fraction) at epoch second t."""
    day = math.sin(TAU * (t / 86400 + p.phase))
    busy = _clamp(p.busy * (1 + 0.6 * day) + rng.gauss(0, 0.02), 0.005, 0.99)
    mem = _clamp(p.mem_frac + 0.05 * day + rng.uniform(-0.01, 0.01), 0.02, 0.98)
    return day, busy, mem


def _four(avg: float, spread: float, rng: random.Random, kind: str = "float", cap=None) -> list:
    """[avg, min, max, last] around avg, as a rollup stores them (kind: float|int|pct)."""
    low = avg * (1 - min(0.95, spread * rng.random()))
    high = avg * (1 + spread * rng.random())
    if cap is not None:
        high = min(high, cap)
    last = low + (high - low) * rng.random()
    if kind == "int":
        return [round(avg, 4), int(low), int(high), int(last)]
    if kind == "pct":
        return [round(avg, 4), round(low, 2), round(high, 2), round(last, 2)]
    return [round(avg, 4), low, high, last]  # rates: full float precision, like real ones


def rollup_values(p: Profile, t: float, rng: random.Random, spread: float) -> dict[str, list]:
    """{metric: [avg, min, max, last]} for every metric in rollups.HOST_METRICS."""
    day, busy, mem = _level(p, t, rng)
    used = p.mem_total * mem
    io = max(0.01, 1 + 0.8 * day + rng.gauss(0, 0.3))
    net = max(0.01, 1 + 0.6 * day + rng.gauss(0, 0.2))
    return {
        "cpu_percent": _four(100 * busy, spread, rng, "pct", cap=100.0),
        "load1": _four(busy * p.cores * 1.1, spread, rng, "pct"),
        "mem_used": _four(used, spread / 10, rng, "int"),
        "mem_available": _four(p.mem_total - used, spread / 10, rng, "int"),
        "swap_used": _four(p.swap_total * p.swap_frac, 0.01, rng, "int"),
        "disk_read_bps": _four(p.disk_read * io, spread * 3, rng),
        "disk_write_bps": _four(p.disk_write * io, spread * 3, rng),
        "net_rx_bps": _four(p.net_rx * net, spread * 2, rng),
        "net_tx_bps": _four(p.net_tx * net, spread * 2, rng),
        "process_count": _four(p.procs + 20 * day, 0.02, rng, "int"),
        "thread_count": _four(p.threads + 200 * day, 0.02, rng, "int"),
    }


def sample_fields(p: Profile, t: float, rng: random.Random) -> dict:
    """The fields of one raw HostSample (also a Batch's host dict)."""
    day, busy, mem = _level(p, t, rng)
    per_cpu = [round(_clamp(100 * busy + rng.gauss(0, 12), 0, 100), 1) for _ in range(p.cores)]
    cpu = round(sum(per_cpu) / len(per_cpu), 2)
    used = int(p.mem_total * mem)
    io = max(0.0, 1 + 0.8 * day + rng.gauss(0, 0.4))
    net = max(0.0, 1 + 0.6 * day + rng.gauss(0, 0.3))
    rx, tx = p.net_rx * net * rng.uniform(0.7, 1.3), p.net_tx * net * rng.uniform(0.7, 1.3)
    root_used = int(0.4 * 500 * GIB + t % 86400 * 1000)
    return {
        "cpu_percent": cpu,
        "per_cpu": per_cpu,
        "load1": round(busy * p.cores * rng.uniform(0.9, 1.2), 2),
        "load5": round(busy * p.cores, 2),
        "load15": round(busy * p.cores * 0.95, 2),
        "mem_total": p.mem_total,
        "mem_used": used,
        "mem_available": p.mem_total - used,
        "swap_total": p.swap_total,
        "swap_used": int(p.swap_total * p.swap_frac),
        "disk_read_bps": p.disk_read * io * rng.uniform(0.5, 1.5),
        "disk_write_bps": p.disk_write * io * rng.uniform(0.5, 1.5),
        "net_rx_bps": rx,
        "net_tx_bps": tx,
        "process_count": p.procs + int(20 * day),
        "thread_count": p.threads + int(200 * day),
        "other_cpu_percent": round(cpu * p.cores * 0.3, 2),
        "other_rss": int(used * 0.3),
        "disks": [
            {
                "mount": "/",
                "device": "/dev/nvme0n1p2",
                "fstype": "ext4",
                "total": 500 * GIB,
                "used": root_used,
                "percent": round(100 * root_used / (500 * GIB), 1),
            },
            {
                "mount": "/data",
                "device": "/dev/sda1",
                "fstype": "xfs",
                "total": 4096 * GIB,
                "used": 2600 * GIB,
                "percent": 63.5,
            },
        ],
        "nets": [
            {"name": "eth0", "rx_bps": rx, "tx_bps": tx},
            {"name": "lo", "rx_bps": 2e4 * net, "tx_bps": 2e4 * net},
        ],
        "uptime": 3e6 + t % 1e6,
    }


@dataclass(frozen=True)
class ProcSpec:
    """One long-running process of a raw host: stored at seeding, sampled live later."""

    pid: int
    create_time: float  # epoch seconds, millisecond precision
    ppid: int
    name: str
    username: str
    cpu: float  # mean percent of one core
    rss: int

    @property
    def cmdline(self) -> str:
        return f"/usr/bin/{self.name} --config /etc/{self.name}.conf --worker {self.pid}"


def make_procs(rng: random.Random, boot: float) -> list[ProcSpec]:
    procs = []
    for i in range(PROCESSES):
        name = PROCESS_NAMES[i % len(PROCESS_NAMES)]
        procs.append(
            ProcSpec(
                pid=300 + 41 * i,
                create_time=round(boot + 7.5 * i, 3),
                ppid=1 if i < 10 else 300 + 41 * rng.randrange(10),
                name=name,
                username=rng.choice(["root", "www-data", "postgres", "svc", "alice"]),
                cpu=rng.expovariate(1 / 15),
                rss=int(rng.uniform(5, 4000) * 2**20),
            )
        )
    return procs


def proc_fields(spec: ProcSpec, rng: random.Random) -> dict:
    return {
        "cpu_percent": round(spec.cpu * rng.uniform(0.3, 1.7), 1),
        "rss": int(spec.rss * rng.uniform(0.95, 1.05)),
        "vms": spec.rss * 4,
        "mem_percent": round(spec.rss / (64 * GIB) * 100, 3),
        "threads": 1 + spec.pid % 40,
        "read_bps": rng.expovariate(1 / 1e5),
        "write_bps": rng.expovariate(1 / 5e4),
        "gpu_memory": None,
        "status": rng.choice(["running", "sleeping", "sleeping", "sleeping"]),
    }


# --- Seeding ------------------------------------------------------------------------


@dataclass
class Seeded:
    """What was seeded, and what the later phases need of it."""

    raw_hosts: list[int]
    procs: dict[int, list[ProcSpec]]
    profiles: dict[int, Profile]
    # (step, rows, seconds); seconds None: written, and timed, with the step above
    timings: list[tuple[str, int, float | None]] = field(default_factory=list)
    # Process rollups of the raw hosts: the long-running processes (Process ids), and
    # the epoch seconds where the raw samples, the minute and the hour rows begin.
    long_running: list[int] = field(default_factory=list)
    raw_from: float = 0.0
    minute_from: float = 0.0
    hour_from: float = 0.0
    now: float = 0.0
    username: str = "bench"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(16))


def _bulk(model, rows: list, chunk: int = 5000) -> int:
    for i in range(0, len(rows), chunk):
        model.objects.bulk_create(rows[i : i + chunk], batch_size=1000)
    return len(rows)


def migrate() -> float:
    from django.core.management import call_command

    started = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    return time.perf_counter() - started


def seed_rollups(host_id: int, p: Profile, start: int, end: int, resolution: int, rng) -> int:
    """Rollups of series "host" for every bucket in [start, end), one transaction."""
    from django.db import transaction

    from monitoring.models import Rollup

    count = resolution // INTERVAL  # 12 samples a minute, 720 an hour
    spread = 0.15 if resolution == Rollup.MINUTE else 0.5
    written, rows = 0, []
    with transaction.atomic():
        for t in range(start, end, resolution):
            rows.append(
                Rollup(
                    host_id=host_id,
                    resolution=resolution,
                    series="host",
                    bucket=datetime.fromtimestamp(t, UTC),
                    count=count,
                    values=rollup_values(p, t + resolution / 2, rng, spread),
                )
            )
            if len(rows) >= 5000:
                written += _bulk(Rollup, rows)
                rows = []
        written += _bulk(Rollup, rows)
    return written


def seed_raw(host_id: int, p: Profile, procs: list[ProcSpec], start: float, end: float, rng):
    """Raw samples every INTERVAL s in [start, end], process rows for the last hour.

    Returns (host samples, process samples, newest ts)."""
    from django.db import transaction

    from monitoring.ingest import ctime
    from monitoring.models import HostSample, Process, ProcessSample

    ticks = [start + i * INTERVAL for i in range(int((end - start) // INTERVAL) + 1)]
    newest = datetime.fromtimestamp(ticks[-1], UTC)
    process_from = ticks[-1] - PROCESS_HOURS * 3600
    with transaction.atomic():
        processes = Process.objects.bulk_create(
            Process(
                host_id=host_id,
                pid=s.pid,
                create_time=ctime(s.create_time),
                ppid=s.ppid,
                name=s.name,
                exe=f"/usr/bin/{s.name}",
                cmdline=s.cmdline,
                username=s.username,
                first_seen=datetime.fromtimestamp(start, UTC),
                last_seen=newest,
            )
            for s in procs
        )
        host_rows, proc_rows, n_host, n_proc = [], [], 0, 0
        for t in ticks:
            ts = datetime.fromtimestamp(t, UTC)
            host_rows.append(HostSample(host_id=host_id, ts=ts, **sample_fields(p, t, rng)))
            if t > process_from:
                proc_rows.extend(
                    ProcessSample(
                        ts=ts, host_id=host_id, process_id=row.pk, **proc_fields(spec, rng)
                    )
                    for spec, row in zip(procs, processes, strict=True)
                )
            if len(host_rows) >= 2000:
                n_host += _bulk(HostSample, host_rows)
                host_rows = []
            if len(proc_rows) >= 10000:
                n_proc += _bulk(ProcessSample, proc_rows)
                proc_rows = []
        n_host += _bulk(HostSample, host_rows)
        n_proc += _bulk(ProcessSample, proc_rows)
    return n_host, n_proc, newest


@dataclass
class Run:
    """One identity of a process over [start, end) and its typical load."""

    process_id: int
    start: float
    end: float
    cpu: float
    rss: int
    threads: int


def job_runs(host_id: int, start: float, now: float, rng) -> list[list[Run]]:
    """Processes of the job slots of a host, created here: per slot, one job after
    another from before `start` to past `now` (the last one still runs)."""
    from monitoring.ingest import ctime
    from monitoring.models import Process
    from monitoring.programs import program_key

    planned = []
    for slot in range(JOB_SLOTS):
        command = JOB_COMMANDS[slot % len(JOB_COMMANDS)]
        t = start - rng.uniform(0, JOB_HOURS[0] * 3600)
        while t < now:
            end = t + rng.uniform(*JOB_HOURS) * 3600
            planned.append((slot, command, round(t, 3), end))
            t = end
    rows = []
    for _, command, t, end in planned:
        argv0 = command.split()[0]
        exe = f"/usr/bin/{argv0}"
        ended = end <= now
        rows.append(
            Process(
                host_id=host_id,
                pid=rng.randint(1000, 4_000_000),
                create_time=ctime(t),
                ppid=1,
                name=argv0,
                exe=exe,
                cmdline=command,
                username=rng.choice(["svc", "alice", "ci", "root"]),
                first_seen=datetime.fromtimestamp(t, UTC),
                last_seen=datetime.fromtimestamp(min(end, now) - INTERVAL, UTC),
                exited_at=datetime.fromtimestamp(end, UTC) if ended else None,
                program=program_key(argv0, exe, command),
            )
        )
    created = Process.objects.bulk_create(rows, batch_size=1000)
    slots: list[list[Run]] = [[] for _ in range(JOB_SLOTS)]
    for (slot, _, t, end), row in zip(planned, created, strict=True):
        slots[slot].append(
            Run(
                row.pk,
                t,
                end,
                cpu=rng.expovariate(1 / 60),
                rss=int(rng.uniform(50, 8000) * 2**20),
                threads=rng.randint(1, 64),
            )
        )
    return slots


def _rollup_row(host_id, resolution, bucket, run: Run, samples, wave, spread, rng) -> tuple:
    """One ProcessRollup row as a tuple in PROCESS_ROLLUP_COLUMNS order."""
    r = rng.random
    cpu = run.cpu * (1 + 0.4 * wave) * (1 - spread / 2 + spread * r())
    rss = int(run.rss * (0.97 + 0.06 * r()))
    rss_max = int(rss * (1 + spread * 0.2 * r()))
    return (
        host_id,
        resolution,
        bucket,
        run.process_id,
        samples,
        round(cpu, 2),
        round(cpu * (1 + spread * 2 * r()), 2),
        rss,
        rss_max,
        rss + int((rss_max - rss) * r()),
        run.threads,
        1e5 * (1 + wave) * r(),
        5e4 * (1 + wave) * r(),
        None,
    )


PROCESS_ROLLUP_COLUMNS = [
    "host_id", "resolution", "bucket", "process_id", "samples", "cpu_avg", "cpu_max",
    "rss_avg", "rss_max", "rss_last", "threads_max", "read_bps_avg", "write_bps_avg",
    "gpu_memory_max",
]  # fmt: skip


def seed_process_rollups(
    host_id: int, stable: list[Run], jobs: list[list[Run]], spans: dict[int, tuple], phase, rng
) -> dict[int, int]:
    """ProcessRollup rows of the stable processes and the jobs for every bucket in
    spans ({resolution: (start, end)}, epoch seconds), written in batches of
    ROLLUP_BATCH in one transaction: executemany on SQLite, COPY on PostgreSQL (where
    executemany manages some 15,000 rows/s). Returns {resolution: rows}."""
    from django.db import connection, transaction

    from monitoring.models import ProcessRollup

    quote = connection.ops.quote_name
    table = quote(ProcessRollup._meta.db_table)
    columns = ", ".join(quote(c) for c in PROCESS_ROLLUP_COLUMNS)
    marks = ", ".join(["%s"] * len(PROCESS_ROLLUP_COLUMNS))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"

    def write(rows: list[tuple]) -> None:
        if connection.vendor != "postgresql":
            cursor.executemany(sql, rows)
            return
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    written = {}
    with transaction.atomic(), connection.cursor() as cursor:
        for resolution, (start, end) in spans.items():
            samples = resolution // INTERVAL
            spread = 0.3 if resolution == 60 else 0.8
            current = [0] * len(jobs)  # index of each slot's running job
            rows, count = [], 0
            for t in range(start, end, resolution):
                middle = t + resolution / 2
                wave = math.sin(TAU * (middle / 86400 + phase))
                bucket = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(t, UTC))
                runs = list(stable)
                for slot, slot_runs in enumerate(jobs):
                    while slot_runs[current[slot]].end <= middle:
                        current[slot] += 1
                    runs.append(slot_runs[current[slot]])
                for run in runs:
                    rows.append(
                        _rollup_row(host_id, resolution, bucket, run, samples, wave, spread, rng)
                    )
                if len(rows) >= ROLLUP_BATCH:
                    write(rows)
                    count += len(rows)
                    rows = []
            if rows:
                write(rows)
                count += len(rows)
            written[resolution] = count
    return written


def seed(hosts: int, days: int, raw_hours: int) -> Seeded:
    """Fill the (migrated, empty) database; prints progress, records timings."""
    from django.contrib.auth import get_user_model

    from monitoring.models import Host, HostSample, Rollup, RollupState

    rng = random.Random(20261125)
    now = time.time()
    end_minute = int(now) // 60 * 60  # minute watermark: everything before is rolled up
    end_hour = end_minute // 3600 * 3600
    start_minute = end_minute - days * 86400
    start_hour = start_minute // 3600 * 3600

    rows = [
        Host(
            name=f"bench-{i:02d}",
            hostname=f"bench-{i:02d}.example.org",
            machine_id=f"bench-machine-{i:02d}",
            labels={"env": "prod" if i % 3 else "staging", "rack": f"r{i % 4}"},
            inventory={"os": "Linux", "kernel": "6.8.0", "cpu_count": 0},
        )
        for i in range(hosts)
    ]
    host_ids = [h.pk for h in Host.objects.bulk_create(rows)]
    profiles = {pk: make_profile(rng) for pk in host_ids}
    raw_ids = host_ids[:RAW_HOSTS]
    result = Seeded(raw_hosts=raw_ids, procs={}, profiles=profiles, now=now)
    result.minute_from, result.hour_from = start_minute, start_hour - HOUR_ONLY_DAYS * 86400
    result.raw_from = now - raw_hours * 3600
    get_user_model().objects.create_user(result.username, password=result.password)

    started = time.perf_counter()
    minutes = hours = 0
    for n, pk in enumerate(host_ids, start=1):
        minutes += seed_rollups(pk, profiles[pk], start_minute, end_minute, Rollup.MINUTE, rng)
        hours += seed_rollups(pk, profiles[pk], start_hour, end_hour, Rollup.HOUR, rng)
        if n % 5 == 0 or n == hosts:
            elapsed = time.perf_counter() - started
            rows_so_far = minutes + hours
            print(
                f"  rollups: {n}/{hosts} hosts, {rows_so_far:,} rows, {elapsed:.0f} s", flush=True
            )
    result.timings.append(("1-minute rollups", minutes, time.perf_counter() - started))
    result.timings.append(("1-hour rollups", hours, None))

    started = time.perf_counter()
    states = [
        RollupState(host_id=pk, resolution=res, done_until=datetime.fromtimestamp(until, UTC))
        for pk in host_ids
        for res, until in ((Rollup.MINUTE, end_minute), (Rollup.HOUR, end_hour))
    ]
    RollupState.objects.bulk_create(states)
    result.timings.append(("rollup watermarks", len(states), time.perf_counter() - started))

    started = time.perf_counter()
    n_host = n_proc = 0
    raw_start = result.raw_from
    for pk in raw_ids:
        procs = result.procs[pk] = make_procs(rng, boot=result.hour_from - 3600)
        a, b, newest = seed_raw(pk, profiles[pk], procs, raw_start, now, rng)
        n_host, n_proc = n_host + a, n_proc + b
        Host.objects.filter(pk=pk).update(
            last_seen=newest, inventory={"os": "Linux", "cpu_count": profiles[pk].cores}
        )
        print(f"  raw samples: host {pk}: {a:,} samples, {b:,} process rows", flush=True)
    others = []
    newest = datetime.fromtimestamp(now, UTC)
    for pk in host_ids[RAW_HOSTS:]:
        others.append(HostSample(host_id=pk, ts=newest, **sample_fields(profiles[pk], now, rng)))
    _bulk(HostSample, others)
    Host.objects.filter(pk__in=host_ids[RAW_HOSTS:]).update(last_seen=newest)
    elapsed = time.perf_counter() - started
    result.timings.append(("raw host samples (5 s)", n_host + len(others), elapsed))
    result.timings.append(("process samples (last hour)", n_proc, None))
    seed_all_process_rollups(result, end_minute, end_hour, rng)
    pack_history(result)
    return result


def pack_history(result: Seeded) -> None:
    """Pack what the rollup task would have packed by now (monitoring.process_store):
    the 1-minute process rows older than a day, the 1-hour ones older than a week."""
    from monitoring import process_store
    from monitoring.models import ProcessChunk

    started = time.perf_counter()
    process_store.pack(now=datetime.fromtimestamp(result.now, UTC), budget=24 * 3600)
    elapsed = time.perf_counter() - started
    result.timings.append(("process history chunks", ProcessChunk.objects.count(), elapsed))


def seed_all_process_rollups(result: Seeded, end_minute: int, end_hour: int, rng) -> None:
    """Per-process rollups of the raw hosts (see the top): their first STABLE raw
    processes in every bucket since hour_from, and JOB_SLOTS jobs that come and go."""
    from monitoring.models import Process, Rollup

    spans = {
        Rollup.MINUTE: (int(result.minute_from), end_minute),
        Rollup.HOUR: (int(result.hour_from), end_hour),
    }
    started = time.perf_counter()
    minutes = hours = identities = 0
    for pk in result.raw_hosts:
        specs = result.procs[pk][:STABLE]
        ids = dict(
            Process.objects.filter(host_id=pk, pid__in=[s.pid for s in specs]).values_list(
                "pid", "pk"
            )
        )
        Process.objects.filter(pk__in=ids.values()).update(
            first_seen=datetime.fromtimestamp(result.hour_from, UTC)
        )
        stable = [
            Run(ids[s.pid], result.hour_from, math.inf, s.cpu, s.rss, 1 + s.pid % 40) for s in specs
        ]
        result.long_running.extend(r.process_id for r in stable)
        jobs = job_runs(pk, result.hour_from, result.now, rng)
        n_jobs = sum(len(slot) for slot in jobs)
        phase = result.profiles[pk].phase
        written = seed_process_rollups(pk, stable, jobs, spans, phase, rng)
        minutes += written[Rollup.MINUTE]
        hours += written[Rollup.HOUR]
        identities += n_jobs
        print(
            f"  process rollups: host {pk}: {written[Rollup.MINUTE]:,} minute and "
            f"{written[Rollup.HOUR]:,} hour rows, {STABLE} long-running processes and "
            f"{n_jobs} jobs, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    elapsed = time.perf_counter() - started
    result.timings.append(("process rollups (1 min)", minutes, elapsed))
    result.timings.append(("process rollups (1 h)", hours, None))
    result.timings.append(("job processes (identities)", identities, None))


def seed_fleet(hosts: int) -> Seeded:
    """N hosts as a hub of agents sees them: labels and the newest sample only."""
    from django.contrib.auth import get_user_model

    from alerts.models import AlertState, Rule
    from monitoring.models import GpuSample, Host, HostSample

    rng = random.Random(20261126)
    now = time.time()
    newest = datetime.fromtimestamp(now, UTC)
    silent = datetime.fromtimestamp(now - 600, UTC)  # offline: 10 minutes without a sample
    started = time.perf_counter()
    rows = []
    for i in range(hosts):
        labels = {"rack": f"r{i % 20:02d}", "team": rng.choice(["ml", "web", "data", "infra"])}
        if i % 7:  # some hosts have no env: they group last
            labels["env"] = ("prod", "staging", "dev")[i % 3]
        rows.append(
            Host(
                name=f"node-{i:04d}",
                hostname=f"node-{i:04d}.dc1.example.org",
                machine_id=f"agent:bench-{i:04d}",
                labels=labels,
                inventory={"os": "Linux", "kernel": "6.8.0", "cpu_count": 0},
            )
        )
    host_ids = [h.pk for h in Host.objects.bulk_create(rows)]
    reporting = host_ids[5:]  # the first 5 never reported
    profiles = {pk: make_profile(rng) for pk in host_ids}
    samples, gpus, seen = [], [], {}
    for n, pk in enumerate(reporting):
        ts = silent if n % 25 == 0 else newest
        seen[pk] = ts
        samples.append(HostSample(host_id=pk, ts=ts, **sample_fields(profiles[pk], now, rng)))
        if n % 4 == 0:
            gpus.extend(
                GpuSample(
                    host_id=pk,
                    ts=ts,
                    index=g,
                    uuid=f"GPU-{pk}-{g}",
                    name="NVIDIA H100 80GB HBM3",
                    utilization=rng.uniform(0, 100),
                    memory_used=rng.randint(0, 80) * GIB,
                    memory_total=80 * GIB,
                    temperature=rng.uniform(30, 80),
                    power_w=rng.uniform(60, 700),
                )
                for g in range(8)
            )
    _bulk(HostSample, samples)
    _bulk(GpuSample, gpus)
    for ts in (newest, silent):
        Host.objects.filter(pk__in=[pk for pk, t in seen.items() if t == ts]).update(last_seen=ts)
    rule = Rule.objects.create(name="bench: CPU above 90 %", metric="cpu_percent", threshold=90)
    states = [
        AlertState(rule=rule, host_id=pk, subject="host", state=AlertState.FIRING)
        for pk in host_ids[::10]
    ]
    AlertState.objects.bulk_create(states)
    result = Seeded(raw_hosts=[], procs={}, profiles=profiles)
    get_user_model().objects.create_user(result.username, password=result.password)
    elapsed = time.perf_counter() - started
    result.timings.append(("hosts", len(host_ids), elapsed))
    result.timings.append(("newest samples", len(samples), None))
    result.timings.append(("GPU readings", len(gpus), None))
    result.timings.append(("firing alerts", len(states), None))
    return result


def analyze(db: Database) -> None:
    """PostgreSQL only: autovacuum would have gathered statistics on a month-old database."""
    from django.db import connection

    if db.url:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


# --- Server and HTTP ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    """Daphne on 127.0.0.1:port, in its own process group; returns once it listens."""
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*command, "ptracker.asgi:application"],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return server
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"the server did not listen within 60 s:\n{tail(log)}")


def stop_server(server: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=wait)
            return


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class HttpClient:
    """One keep-alive connection with a cookie jar: a browser, as far as we need one."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.conn: http.client.HTTPConnection | None = None

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def request(self, method: str, path: str, body: str | None = None, headers=None):
        """(status, headers, body); reconnects once if the server closed the connection."""
        headers = {"Cookie": self.cookie_header(), **(headers or {})}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if response.will_close:
                self.conn.close()
                self.conn = None
            for header in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(header).items():
                    self.cookies[name] = morsel.value
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


def log_in(client: HttpClient, username: str, password: str) -> None:
    status, _, body = client.request("GET", "/login/")
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    if status != 200 or not match:
        raise RuntimeError(f"GET /login/ gave {status} without a CSRF token")
    form = urllib.parse.urlencode(
        {
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": match.group(1).decode(),
            "next": "/",
        }
    )
    content_type = {"Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = client.request("POST", "/login/", form, content_type)
    if status != 302 or "sessionid" not in client.cookies:
        raise RuntimeError(f"logging in failed: POST /login/ gave {status}")


@dataclass
class Timing:
    name: str
    path: str
    ms: list[float]
    size: int
    note: str = ""
    target: float | None = None  # for the median
    p95_target: float | None = None  # issue #14's, printed under Targets


def time_paths(client: HttpClient, paths: list[str]) -> tuple[list[float], list[bytes]]:
    """WARMUPS untimed GETs, then REPEATS timed ones (wall time to the last body byte),
    request i asking for paths[i % len(paths)]. Returns the times and the timed bodies."""
    times, bodies = [], []
    for i in range(WARMUPS + REPEATS):
        path = paths[i % len(paths)]
        started = time.perf_counter()
        status, _, body = client.request("GET", path)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"GET {path} gave {status}: {body[:300]!r}")
        if i >= WARMUPS:
            times.append(elapsed)
            bodies.append(body)
    return times, bodies


def time_get(
    client: HttpClient, name: str, path: str, target: float | None = None, hosts: int | None = None
) -> Timing:
    """WARMUPS untimed GETs, then REPEATS timed ones (wall time to the last body byte);
    with `hosts`, the body must show that many hosts (cards or rows)."""
    times, bodies = time_paths(client, [path])
    body, size, note = bodies[-1], len(bodies[-1]), ""
    shown = body.count(b" data-host=")
    if hosts is not None and shown != hosts:
        raise RuntimeError(f"GET {path} showed {shown} hosts, not {hosts}")
    if hosts is not None:
        note = f"{shown} hosts"
    if "/timeseries" in path:
        data = json.loads(body)
        points = sum(len(s["points"]) for s in data["series"])
        note = f"resolution {data['resolution']} s, step {data['step']} s, {points} points"
    return Timing(name, path, times, size, note, target)


def chart_path(host_id: int, hours: float, now: float) -> str:
    query = [("metric", m) for m in CHART_METRICS]
    query += [("from", f"{now - hours * 3600:.0f}"), ("to", f"{now:.0f}")]
    return f"/api/v1/hosts/{host_id}/timeseries?{urllib.parse.urlencode(query)}"


def overview_times(client: HttpClient, hosts: int) -> list[Timing]:
    """The page and its partial, as cards and as a table, plain and searched, grouped
    and sorted. `prod` is the env of 1 in 3 hosts with an env (6 in 7 have one)."""
    prod = sum(1 for i in range(hosts) if i % 7 and i % 3 == 0)
    cases = [
        ("overview / (cards)", "/", hosts),
        ("overview /?view=table", "/?view=table", hosts),
        ("partial /fleet (cards)", "/fleet", hosts),
        ("partial /fleet?view=table", "/fleet?view=table", hosts),
        ("/?q=prod&group=env&sort=cpu", "/?q=prod&group=env&sort=cpu", prod),
        ("/fleet?group=rack&sort=disk&view=table", "/fleet?group=rack&sort=disk&view=table", hosts),
        ("/fleet?q=node-04 (search, cards)", "/fleet?q=node-04", None),
    ]
    return [time_get(client, name, path, PAGE_TARGET_MS, n) for name, path, n in cases]


def moment_paths(seeded: Seeded, start: float, end: float, api: bool, rng) -> list[str]:
    """A random raw host and a random moment in [start, end) (epoch ms) per request."""
    paths = []
    for _ in range(WARMUPS + REPEATS):
        host_id = rng.choice(seeded.raw_hosts)
        at = round(rng.uniform(start, end) * 1000)
        prefix = "/api/v1" if api else ""
        paths.append(f"{prefix}/hosts/{host_id}/processes?at={at}")
    return paths


def time_moments(
    client: HttpClient, name: str, seeded: Seeded, start: float, end: float, api: bool, rng
) -> Timing:
    """The processes at random moments (see moment_paths); the note says which tier
    answered how many requests, and (API) the median rows on the first page."""
    paths = moment_paths(seeded, start, end, api, rng)
    times, bodies = time_paths(client, paths)
    tiers: dict[str, int] = {}
    rows: dict[str, list[int]] = {}
    for body in bodies:
        if api:
            data = json.loads(body)
            tier = data["tier"]
            rows.setdefault(tier, []).append(len(data["results"]))
        else:
            match = re.search(rb'data-tier="(\w+)"', body)
            tier = match.group(1).decode() if match else "raw"
        tiers[tier] = tiers.get(tier, 0) + 1
    answered = ", ".join(
        f"{tier} {n}"
        + (f" (median {percentile(rows[tier], 0.5):.0f} rows)" if tier in rows else "")
        for tier, n in sorted(tiers.items())
    )
    path = paths[-1].split("?")[0] + "?at=T"
    return Timing(
        name, path, times, len(bodies[-1]), f"tier: {answered}", p95_target=MOMENT_TARGET_MS
    )


def process_chart_path(process_id: int, host_id: int, metrics: list[str], now: float) -> str:
    query = [("metric", f"process:{process_id}:{m}") for m in metrics]
    query += [("from", f"{now - 30 * 86400:.0f}"), ("to", f"{now:.0f}")]
    return f"/api/v1/hosts/{host_id}/timeseries?{urllib.parse.urlencode(query)}"


def time_process_charts(client: HttpClient, name: str, seeded: Seeded, metrics, now) -> Timing:
    """A long-running process's 30-day chart, another process per request."""
    from monitoring.models import Process

    hosts = dict(Process.objects.filter(pk__in=seeded.long_running).values_list("pk", "host_id"))
    paths = [process_chart_path(pk, hosts[pk], metrics, now) for pk in seeded.long_running]
    times, bodies = time_paths(client, paths)
    data = json.loads(bodies[-1])
    points = sum(len(s["points"]) for s in data["series"])
    if not points:
        raise RuntimeError(f"the chart of a long-running process has no points: {paths[-1]}")
    note = (
        f"{len(paths)} processes; resolution {data['resolution']} s, step {data['step']} s, "
        f"{points} points"
    )
    return Timing(name, paths[-1], times, len(bodies[-1]), note, p95_target=PROCESS_CHART_TARGET_MS)


def server_times(client: HttpClient, seeded: Seeded) -> list[Timing]:
    host_id = seeded.raw_hosts[0]
    now = time.time()
    rng = random.Random(14)
    minute = max(seeded.minute_from, now - 30 * 86400)  # the D days (at most 30)
    older = (seeded.hour_from, seeded.minute_from - 600)  # before the minute rows
    page_metrics = ["cpu_percent", "rss", "read_bps", "write_bps", "threads"]
    return [
        time_get(client, "overview /", "/", PAGE_TARGET_MS),
        time_get(client, "overview /?view=table", "/?view=table", PAGE_TARGET_MS),
        time_get(client, "overview partial /fleet", "/fleet", PAGE_TARGET_MS),
        time_get(client, f"host page /hosts/{host_id}/", f"/hosts/{host_id}/", PAGE_TARGET_MS),
        time_get(client, "chart 30 days, 9 metrics", chart_path(host_id, 30 * 24, now)),
        time_get(client, "chart 7 days, 9 metrics", chart_path(host_id, 7 * 24, now)),
        time_get(client, "chart 24 hours, 9 metrics", chart_path(host_id, 24, now)),
        time_get(client, "chart 1 hour, 9 metrics", chart_path(host_id, 1, now)),
        time_moments(client, "processes at T, API", seeded, minute, now, True, rng),
        time_moments(client, "processes at T, partial", seeded, minute, now, False, rng),
        time_moments(client, "processes at T (hour tier), API", seeded, *older, True, rng),
        time_moments(client, "processes at T (hour tier), partial", seeded, *older, False, rng),
        time_process_charts(
            client, "process chart 30 days, cpu+rss", seeded, ["cpu_percent", "rss"], now
        ),
        time_process_charts(client, "process chart 30 days, 5 metrics", seeded, page_metrics, now),
    ]


# --- Websockets -----------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    """A minimal RFC 6455 client over asyncio streams: masked frames out, pings answered."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str, cookie: str) -> "WebSocket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest())
        if b" 101 " not in head.split(b"\r\n", 1)[0] + b" " or accept not in head:
            writer.close()
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")
        return cls(reader, writer)

    async def send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.writer.write(header + mask + masked)
        await self.writer.drain()

    async def send_json(self, value) -> None:
        await self.send(0x1, json.dumps(value).encode())

    async def recv(self) -> bytes | None:
        """The next data message; None once the server closes."""
        parts = []
        while True:
            first, second = await self.reader.readexactly(2)
            n = second & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
            mask = await self.reader.readexactly(4) if second & 0x80 else None
            payload = await self.reader.readexactly(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = first & 0x0F
            if opcode == 0x8:
                return None
            if opcode == 0x9:
                await self.send(0xA, payload)  # pong: Daphne pings idle sockets
            elif opcode != 0xA:
                parts.append(payload)
                if first & 0x80:
                    return b"".join(parts)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send(0x8, struct.pack("!H", 1000))
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


@dataclass
class Subscriber:
    host_id: int
    ws: WebSocket
    arrivals: dict[datetime, float] = field(default_factory=dict)  # sample ts -> time.time()


async def subscribe(port: int, cookie: str, host_id: int) -> Subscriber:
    ws = await WebSocket.connect(port, "/ws/live/", cookie)
    await ws.send_json({"subscribe": f"host:{host_id}"})
    reply = json.loads(await ws.recv() or b"null")
    if reply != {"kind": "subscribed", "topic": f"host:{host_id}"}:
        raise RuntimeError(f"subscribing to host:{host_id} gave {reply!r}")
    return Subscriber(host_id, ws)


async def listen(sub: Subscriber) -> None:
    while True:
        message = await sub.ws.recv()
        received = time.time()  # before parsing: the parse is this client's cost
        if message is None:
            return
        data = json.loads(message)
        if data.get("kind") == "sample" and data["data"].get("sample"):
            ts = datetime.fromisoformat(data["data"]["sample"]["ts"].replace("Z", "+00:00"))
            sub.arrivals.setdefault(ts, received)


def _committed(committed: dict, key: tuple) -> None:
    committed[key] = time.time()


def watch_commits(committed: dict) -> Callable[[], None]:
    """Note in `committed` the wall time at which each new HostSample's transaction
    commits: on_commit runs right after COMMIT, before store() returns or runs its
    after-ingest hooks (the poller may see the row before either). Returns the undo."""
    from django.db import transaction
    from django.db.models.signals import post_save

    from monitoring.models import HostSample

    def saved(sender, instance, created, **kwargs):
        if created:
            key = (instance.host_id, instance.ts)
            transaction.on_commit(partial(_committed, committed, key))

    post_save.connect(saved, sender=HostSample, weak=False, dispatch_uid="bench-commits")
    return partial(post_save.disconnect, sender=HostSample, dispatch_uid="bench-commits")


def write_samples(seeded: Seeded, count: int) -> tuple[dict[tuple[int, datetime], float], list]:
    """One sample per raw host per second through ingest.store (run in a worker thread).

    Returns {(host id, sample ts): wall time just after the commit} and store() times
    (which include the after-ingest hooks, alert evaluation)."""
    from django.db import connection

    from monitoring.ingest import store
    from monitoring.models import Host
    from monitoring.sampling import Batch, ProcessRow

    rng = random.Random(7)
    hosts = list(Host.objects.filter(pk__in=seeded.raw_hosts))
    committed: dict[tuple[int, datetime], float] = {}
    stop_watching = watch_commits(committed)
    store_ms: list[float] = []
    started = time.monotonic()
    try:
        for i in range(count):
            time.sleep(max(0.0, started + i - time.monotonic()))
            for host in hosts:
                ts = datetime.now(UTC)
                rows = [
                    ProcessRow(
                        pid=s.pid,
                        create_time=s.create_time,
                        ppid=s.ppid,
                        name=s.name,
                        cmdline=s.cmdline,
                        exe=f"/usr/bin/{s.name}",
                        username=s.username,
                        **proc_fields(s, rng),
                    )
                    for s in seeded.procs[host.pk]
                ]
                fields = sample_fields(seeded.profiles[host.pk], ts.timestamp(), rng)
                before = time.perf_counter()
                store(host, Batch(ts=ts, host=fields, processes=rows))
                store_ms.append((time.perf_counter() - before) * 1000)
    finally:
        stop_watching()
        connection.close()
    return committed, store_ms


@dataclass
class LiveResult:
    sockets: int
    written: int
    expected: int
    latencies_ms: list[float]
    store_ms: list[float]

    @property
    def lost(self) -> int:
        return self.expected - len(self.latencies_ms)


async def live_latency(port: int, cookie: str, seeded: Seeded) -> LiveResult:
    hosts = seeded.raw_hosts
    subs = await asyncio.gather(
        *(subscribe(port, cookie, hosts[i % len(hosts)]) for i in range(SOCKETS))
    )
    readers = [asyncio.create_task(listen(s)) for s in subs]
    try:
        await asyncio.sleep(1.5)  # the poller's first round sets its watermark
        committed, store_ms = await asyncio.to_thread(write_samples, seeded, LIVE_SAMPLES)
        expected = sum(1 for s in subs for host_id, _ in committed if host_id == s.host_id)
        deadline = time.monotonic() + LIVE_WAIT
        while time.monotonic() < deadline:
            if sum(len(s.arrivals) for s in subs) >= expected:
                break
            await asyncio.sleep(0.1)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.gather(*(s.ws.close() for s in subs))
    latencies = [
        (s.arrivals[ts] - at) * 1000
        for s in subs
        for (host_id, ts), at in committed.items()
        if host_id == s.host_id and ts in s.arrivals
    ]
    return LiveResult(len(subs), len(committed), expected, latencies, store_ms)


# --- Report ---------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (q in 0..1)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def table(headers: list[str], rows: list[list]) -> str:
    """Columns padded to fit; the first left-aligned, the rest right-aligned."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        first = row[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)])

    return "\n".join(
        [line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    )


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"< {target:.0f}: {'ok' if value < target else 'MISSED'}"


def print_seeding(args, db: Database, seeded: Seeded, migrate_s: float, size: str) -> None:
    print(f"\n== Seeding: {db.label}")
    if args.overview:
        print(f"   {args.hosts} hosts with their newest sample (--overview)")
    else:
        print(
            f"   {args.hosts} hosts x {args.days} days of 1-minute and 1-hour rollups; "
            f"{len(seeded.raw_hosts)} hosts with {args.raw_hours} h of raw {INTERVAL} s "
            f"samples and {PROCESSES} processes per tick for the last {PROCESS_HOURS} h; "
            f"their process rollups: {STABLE + JOB_SLOTS} rows per minute over the "
            f"{args.days} days and per hour over {args.days + HOUR_ONLY_DAYS} days"
            + (" (--quick)" if args.quick else "")
        )
    rows = [["migrate", "", f"{migrate_s:.1f}", ""]]
    steps = seeded.timings
    for i, (name, count, seconds) in enumerate(steps):
        if seconds is None:
            rows.append([name, f"{count:,}", "(above)", ""])
            continue
        together = count
        for _, more, later in steps[i + 1 :]:
            if later is not None:
                break
            together += more
        rate = f"{together / seconds:,.0f}" if seconds else ""
        rows.append([name, f"{count:,}", f"{seconds:.1f}", rate])
    total = migrate_s + sum(t for _, _, t in steps if t)
    rows.append(["total", "", f"{total:.1f}", ""])
    print(table(["step", "rows", "seconds", "rows/s"], rows))
    print(f"   database size: {size}")


def print_server(timings: list[Timing]) -> None:
    print(
        f"\n== Server time, ms: client-measured wall time on loopback (HTTP + Daphne + view), "
        f"{WARMUPS} warm-ups then {len(timings[0].ms)} requests each, one at a time; "
        f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    rows = [
        [
            t.name,
            f"{percentile(t.ms, 0.5):.1f}",
            f"{percentile(t.ms, 0.95):.1f}",
            f"{min(t.ms):.1f}",
            f"{max(t.ms):.1f}",
            human_bytes(t.size),
            verdict(percentile(t.ms, 0.5), t.target),
        ]
        for t in timings
    ]
    print(table(["request", "median", "p95", "min", "max", "body", "target (median)"], rows))
    for t in timings:
        if t.note:
            print(f"   {t.name}: {t.note}")


def print_targets(timings: list[Timing]) -> None:
    """Issue #14's figures, each p95 against its target: met or missed."""
    print("\n== Targets (printed, not asserted): issue #14, p95 in ms")
    rows = []
    for t in timings:
        if t.p95_target is not None:
            p95 = percentile(t.ms, 0.95)
            met = "met" if p95 <= t.p95_target else "MISSED"
            rows.append([t.name, f"{p95:.1f}", f"<= {t.p95_target:.0f}", met])
    by_name = {t.name: t for t in timings}
    week, month = by_name["chart 7 days, 9 metrics"], by_name["chart 30 days, 9 metrics"]
    week_p95, month_p95 = percentile(week.ms, 0.95), percentile(month.ms, 0.95)
    met = "met" if week_p95 <= month_p95 else "MISSED"
    rows.append(["host chart 7 days vs 30 days", f"{week_p95:.1f}", f"<= {month_p95:.1f}", met])
    print(table(["figure", "p95", "target", ""], rows))


def print_live(live: LiveResult, raw_hosts: int) -> None:
    print(
        f"\n== Live feed: {live.sockets} websockets over {raw_hosts} hosts; "
        f"{live.written} samples stored ({live.written // raw_hosts} per host, one per "
        f"second per host); latency = socket receive time - commit time, ms"
    )
    lat = live.latencies_ms
    median = percentile(lat, 0.5)
    rows = [
        [
            f"{live.expected}",
            f"{len(lat)}",
            f"{live.lost}",
            f"{median:.0f}",
            f"{percentile(lat, 0.95):.0f}",
            f"{min(lat, default=float('nan')):.0f}",
            f"{max(lat, default=float('nan')):.0f}",
            verdict(percentile(lat, 0.95), LIVE_TARGET_MS),
        ]
    ]
    headers = ["expected", "received", "lost", "median", "p95", "min", "max", "target (p95)"]
    print(table(headers, rows))
    print(
        f"   ingest.store() in this process: median {percentile(live.store_ms, 0.5):.0f} ms, "
        f"p95 {percentile(live.store_ms, 0.95):.0f} ms ({PROCESSES} processes per sample)"
    )


def print_environment(db: Database) -> None:
    from django.conf import settings

    layer = settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    print(
        f"ptracker dashboard benchmark: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {db.label}, "
        f"channel layer {layer}"
    )


# --- Main -----------------------------------------------------------------------------


def run(args: argparse.Namespace, workdir: Path, db: Database) -> None:
    from django.db import connections

    setup_django(workdir / "data", db)
    print_environment(db)
    print("seeding…", flush=True)
    migrate_s = migrate()
    if args.overview:
        seeded = seed_fleet(args.hosts)
    else:
        seeded = seed(args.hosts, args.days, args.raw_hours)
    analyze(db)
    size = database_size(db)
    print_seeding(args, db, seeded, migrate_s, size)
    connections.close_all()

    port = free_port()
    log = workdir / "daphne.log"
    print(f"\nstarting daphne on 127.0.0.1:{port}…", flush=True)
    server = start_server(port, log)
    client = HttpClient(port)
    try:
        log_in(client, seeded.username, seeded.password)
        if args.overview:
            print_server(overview_times(client, args.hosts))
            return
        timings = server_times(client, seeded)
        print_server(timings)
        print_targets(timings)
        cookie = f"sessionid={client.cookies['sessionid']}"
        live = asyncio.run(live_latency(port, cookie, seeded))
        print_live(live, len(seeded.raw_hosts))
    finally:
        client.close()
        stop_server(server)
        connections.close_all()
        errors = log.read_text(errors="replace").count("Traceback") if log.exists() else 0
        if errors:
            print(f"\nserver log: {errors} tracebacks; its end:\n{tail(log)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ptracker-bench-"))
    db = Database(f"SQLite ({workdir / 'data'})")
    try:
        if args.postgres:
            db = create_postgres(args.postgres)
        run(args, workdir, db)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if db.name:
            try:
                drop_postgres(db)
            except Exception as exc:  # report, but do not hide the original error
                print(f"could not drop database {db.name}: {exc}", file=sys.stderr)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
