"""Benchmark of ptracker's HTTP API against a real server and a seeded database.

What it measures, on a fresh database of its own:

1. Seeding: N hosts x D days of 1-minute and 1-hour rollups (series "host", every
   metric of monitoring.rollups.HOST_METRICS) with their RollupState watermarks,
   48 h of raw 5-second HostSample rows per host, and one "export" host with a
   month of raw 5-second samples (518,400 rows). Rows per second and database size.
2. Time-series latency (GET /api/v1/hosts/<id>/timeseries, metrics cpu_percent,
   mem_used and load1) for ranges of 1 h, 24 h, 7 d and 30 d ending now: median and
   p95 over 30 requests spread over the hosts, after 3 warm-ups, with the points
   per series and the `resolution` and `step` that the API reports.
3. Export throughput (GET /api/v1/export/host-samples): the export host's month as
   CSV and as JSON Lines in one streamed request each (and one day of CSV for
   comparison): rows/s, MB/s, time to first byte, and the server's RSS before and
   at its peak during the download (polled every 50 ms), to show that memory stays
   bounded however many rows are streamed. The row counts are checked.

The server is the real one, `python -m daphne ptracker.asgi:application`, started
as a subprocess on a free port and authenticated with an API token. It is always
stopped, and the temporary data directory (and PostgreSQL database) removed.

Minute rollups have count=12 (5-second samples); hour rollups have count=720, the
sum of their minutes' counts, as monitoring.rollups writes them.

Run from the repository root:

    .venv/bin/python bench/bench_api.py --quick        # 2 hosts, 2 days, export 1 day
    .venv/bin/python bench/bench_api.py                # 10 hosts, 30 days, export 30 days
    .venv/bin/python bench/bench_api.py --postgres postgres://postgres@127.0.0.1:5432/postgres

With --postgres the URL names a server and a database to connect to for
administration; the benchmark creates a database ptracker_bench_<random> of its own
there and drops it at the end. Otherwise SQLite in a temporary PTRACKER_DATA_DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

import psutil

if TYPE_CHECKING:
    from monitoring.models import HostSample, Rollup

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
INTERVAL = 5  # seconds between raw samples
BATCH = 5000  # rows per bulk_create and per transaction
DAY = 86_400
MIB = 1024 * 1024
TIMESERIES_METRICS = ["cpu_percent", "mem_used", "load1"]
RANGES = [("1 h", 3600), ("24 h", DAY), ("7 d", 7 * DAY), ("30 d", 30 * DAY)]
INT_METRICS = {"mem_used", "mem_available", "swap_used", "process_count", "thread_count"}


@dataclass(frozen=True)
class Config:
    hosts: int
    rollup_days: int
    raw_hours: int
    export_days: float
    requests: int
    warmups: int = 3


@dataclass(frozen=True)
class Profile:
    """What makes one host's numbers differ from another's."""

    cores: int
    mem_total: int
    swap_total: int
    cpu_base: float
    cpu_amp: float
    phase: float
    mem_base: float
    procs: int
    disk_scale: float
    net_scale: float


@dataclass
class Seeded:
    hosts: list[int]
    export_host: int
    export_rows: int
    end: datetime
    timings: list[list] = field(default_factory=list)


# --- environment and database --------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 hosts, 2 days, export 1 day")
    parser.add_argument("--postgres", metavar="URL", help="postgres://user@host:port/dbname")
    parser.add_argument("--export-days", type=float, help="days of raw samples to export")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per range")
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    if args.quick:
        config = Config(hosts=2, rollup_days=2, raw_hours=48, export_days=1, requests=30)
    else:
        config = Config(hosts=10, rollup_days=30, raw_hours=48, export_days=30, requests=30)
    if args.export_days is not None:
        config = replace(config, export_days=args.export_days)
    return replace(config, requests=args.requests)


def pg_database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path="/" + name).geturl()


def pg_admin(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


def server_env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "PTRACKER_DATA_DIR": str(data_dir), "DEBUG": "0"}
    env["DJANGO_SETTINGS_MODULE"] = "ptracker.settings"
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def setup_django(env: dict[str, str]) -> None:
    """Configure Django in this process with the server's environment, and migrate."""
    os.environ.update(env)
    if "DATABASE_URL" not in env:
        os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def settle_database() -> str:
    """Checkpoint SQLite's WAL; VACUUM ANALYZE PostgreSQL as autovacuum soon would."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return "WAL checkpoint"
        cursor.execute("VACUUM ANALYZE")
        return "VACUUM ANALYZE"


def database_size() -> int:
    from django.db import connection

    if connection.vendor == "sqlite":
        name = Path(connection.settings_dict["NAME"])
        files = [name, Path(f"{name}-wal"), Path(f"{name}-shm")]
        return sum(f.stat().st_size for f in files if f.exists())
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0]


def issue_token() -> str:
    from django.contrib.auth import get_user_model

    from monitoring.models import ApiToken

    user = get_user_model().objects.create_superuser(
        "bench", "bench@example.invalid", secrets.token_urlsafe(16)
    )
    return ApiToken.issue(user, "bench")[1]


# --- synthetic data ----------------------------------------------------------------


def make_profile(rng: random.Random) -> Profile:
    cores = rng.choice([2, 4, 8, 16])
    return Profile(
        cores=cores,
        mem_total=rng.choice([8, 16, 32, 64]) * 1024**3,
        swap_total=rng.choice([0, 2, 4]) * 1024**3,
        cpu_base=rng.uniform(10, 45),
        cpu_amp=rng.uniform(5, 25),
        phase=rng.uniform(0, 2 * math.pi),
        mem_base=rng.uniform(0.3, 0.7),
        procs=rng.randint(150, 400),
        disk_scale=rng.uniform(1e5, 5e6),
        net_scale=rng.uniform(1e4, 2e6),
    )


def levels(p: Profile, t: float, rng: random.Random) -> dict[str, float | int]:
    """Every HOST_METRICS value at epoch second t: a daily and a weekly cycle, noise
    and the odd burst."""
    daily = math.sin(2 * math.pi * t / DAY + p.phase)
    weekly = math.sin(2 * math.pi * t / (7 * DAY) + 2 * p.phase)
    burst = rng.uniform(20, 60) if rng.random() < 0.01 else 0.0
    cpu = p.cpu_base + p.cpu_amp * daily + 3 * weekly + rng.gauss(0, 3) + burst
    cpu = min(max(cpu, 0.0), 100.0)
    mem = min(max(p.mem_base + 0.06 * daily + 0.04 * weekly + rng.gauss(0, 0.005), 0.05), 0.95)
    mem_used = int(p.mem_total * mem)
    procs = max(1, int(p.procs + 15 * daily + rng.randint(-3, 3)))
    return {
        "cpu_percent": round(cpu, 1),
        "load1": round(max(0.0, cpu / 100 * p.cores * rng.uniform(0.8, 1.3)), 2),
        "mem_used": mem_used,
        "mem_available": int((p.mem_total - mem_used) * rng.uniform(0.85, 0.95)),
        "swap_used": int(p.swap_total * max(0.0, 0.05 + 0.03 * weekly)),
        "disk_read_bps": round(p.disk_scale * (1.2 + daily) * rng.lognormvariate(0, 1), 1),
        "disk_write_bps": round(p.disk_scale * (1.2 + daily) * rng.lognormvariate(0, 0.8), 1),
        "net_rx_bps": round(p.net_scale * (1.2 + daily) * rng.lognormvariate(0, 0.7), 1),
        "net_tx_bps": round(p.net_scale * (1.2 + daily) * rng.lognormvariate(0, 0.7) / 3, 1),
        "process_count": procs,
        "thread_count": max(procs, int(procs * (5 + weekly) + rng.randint(-20, 20))),
    }


def rollup_values(p: Profile, t: float, rng: random.Random, spread: float) -> dict[str, list]:
    """{metric: [avg, min, max, last]} around the levels at t."""
    values = {}
    for metric, avg in levels(p, t, rng).items():
        low = avg * (1 - spread * rng.random())
        high = avg * (1 + spread * rng.random())
        if metric == "cpu_percent":
            high = min(high, 100.0)
        last = low + (high - low) * rng.random()
        if metric in INT_METRICS:
            low, high, last = int(low), math.ceil(high), round(last)
        else:
            low, high, last = round(low, 2), round(high, 2), round(last, 2)
        values[metric] = [round(float(avg), 4), low, high, last]
    return values


def host_sample(host_id: int, p: Profile, ts: datetime, rng: random.Random) -> HostSample:
    """A HostSample with every column filled the way the sampler fills it."""
    from monitoring.models import HostSample

    t = ts.timestamp()
    v = levels(p, t, rng)
    cpu = v["cpu_percent"]
    disk_total = 512 * 1024**3
    disk_used = int(disk_total * (0.4 + 0.1 * math.sin(t / (30 * DAY))))
    return HostSample(
        host_id=host_id,
        ts=ts,
        per_cpu=[
            round(min(100.0, max(0.0, cpu + rng.uniform(-15, 15))), 1) for _ in range(p.cores)
        ],
        load5=round(v["load1"] * 0.9, 2),
        load15=round(v["load1"] * 0.8, 2),
        mem_total=p.mem_total,
        swap_total=p.swap_total,
        other_cpu_percent=round(cpu * 0.3, 1),
        other_rss=int(v["mem_used"] * 0.2),
        disks=[
            {
                "mount": "/",
                "device": "/dev/nvme0n1p2",
                "fstype": "ext4",
                "total": disk_total,
                "used": disk_used,
                "percent": round(100 * disk_used / disk_total, 1),
            }
        ],
        nets=[
            {"name": "eth0", "rx_bps": v["net_rx_bps"], "tx_bps": v["net_tx_bps"]},
            {"name": "lo", "rx_bps": 1200.0, "tx_bps": 1200.0},
        ],
        uptime=t - 1_700_000_000,
        **v,
    )


def insert(model: type, objects: Iterable) -> int:
    """bulk_create in batches of BATCH rows, one transaction per batch."""
    from django.db import transaction

    total = 0
    iterator = iter(objects)
    while batch := list(itertools.islice(iterator, BATCH)):
        with transaction.atomic():
            model.objects.bulk_create(batch)
        total += len(batch)
    return total


def timed(label: str, rows: Callable[[], int], timings: list[list]) -> None:
    print(f"  seeding {label}…", flush=True)
    start = time.perf_counter()
    count = rows()
    seconds = time.perf_counter() - start
    timings.append([label, count, seconds, count / seconds if seconds else 0.0])


def floor_to(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def rollups(
    host_id: int, p: Profile, end: datetime, days: int, resolution: int, rng: random.Random
) -> Iterator[Rollup]:
    from monitoring.models import Rollup

    count = 12 if resolution == 60 else 720
    spread = 0.15 if resolution == 60 else 0.5
    buckets = days * DAY // resolution
    first = end - timedelta(seconds=resolution * buckets)
    for i in range(buckets):
        bucket = first + timedelta(seconds=resolution * i)
        mid = bucket.timestamp() + resolution / 2
        yield Rollup(
            host_id=host_id,
            resolution=resolution,
            series="host",
            bucket=bucket,
            count=count,
            values=rollup_values(p, mid, rng, spread),
        )


def raw_samples(
    host_id: int, p: Profile, end: datetime, rows: int, rng: random.Random
) -> Iterator[HostSample]:
    first = end - timedelta(seconds=INTERVAL * (rows - 1))
    for i in range(rows):
        yield host_sample(host_id, p, first + timedelta(seconds=INTERVAL * i), rng)


def create_host(name: str) -> int:
    from monitoring.models import Host

    return Host.objects.create(name=name, hostname=name, machine_id=f"bench-{name}").pk


def seed_rollups(hosts: dict[int, Profile], end: datetime, days: int, rng: random.Random) -> int:
    from monitoring.models import Rollup, RollupState

    total = 0
    for host_id, p in hosts.items():
        for resolution in (60, 3600):
            until = floor_to(end, resolution)
            total += insert(Rollup, rollups(host_id, p, until, days, resolution, rng))
            RollupState.objects.create(host_id=host_id, resolution=resolution, done_until=until)
    return total


def seed_raw(hosts: dict[int, Profile], end: datetime, rows: int, rng: random.Random) -> int:
    from monitoring.models import Host, HostSample

    total = 0
    for host_id, p in hosts.items():
        total += insert(HostSample, raw_samples(host_id, p, end, rows, rng))
        Host.objects.filter(pk=host_id).update(last_seen=end)
    return total


def seed(config: Config) -> Seeded:
    rng = random.Random(20_240_601)
    end = floor_to(datetime.now(UTC), INTERVAL)
    hosts = {create_host(f"bench-{i:02d}"): make_profile(rng) for i in range(config.hosts)}
    export_id = create_host("export")
    export_rows = int(config.export_days * DAY / INTERVAL)
    seeded = Seeded(
        hosts=list(hosts),
        export_host=export_id,
        export_rows=export_rows,
        end=end,
    )
    raw_rows = config.raw_hours * 3600 // INTERVAL
    t = seeded.timings
    timed("rollups", lambda: seed_rollups(hosts, end, config.rollup_days, rng), t)
    timed("raw samples", lambda: seed_raw(hosts, end, raw_rows, rng), t)
    export = {export_id: make_profile(rng)}
    timed("export host samples", lambda: seed_raw(export, end, export_rows, rng), t)
    return seeded


# --- the server and the client ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    python = PYTHON if PYTHON.exists() else Path(sys.executable)
    command = [str(python), "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "ptracker.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


class Api:
    """A keep-alive HTTP connection to the server with the bearer token."""

    def __init__(self, port: int, secret: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {secret}"}
        self.conn: http.client.HTTPConnection | None = None

    def connect(self, timeout: float = 600) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get(self, path: str) -> bytes:
        for attempt in (1, 2):
            self.conn = self.conn or self.connect()
            try:
                self.conn.request("GET", path, headers=self.headers)
                response = self.conn.getresponse()
                body = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()  # the server closed a kept-alive connection: once more
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
        return body


def wait_ready(api: Api, server: subprocess.Popen, log: Path, timeout: float = 90) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited ({server.returncode}):\n{tail(log)}")
        try:
            api.get("/api/v1/hosts/")
            return time.perf_counter() - start
        except (OSError, http.client.HTTPException):
            api.close()
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer in {timeout} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- time series -------------------------------------------------------------------


def timeseries_path(host_id: int, seconds: int) -> str:
    now = time.time()
    query = [("metric", m) for m in TIMESERIES_METRICS]
    query += [("from", f"{now - seconds:.3f}"), ("to", f"{now:.3f}")]
    return f"/api/v1/hosts/{host_id}/timeseries?{urlencode(query)}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def spread(values: Iterable) -> str:
    distinct = sorted(set(values))
    return str(distinct[0]) if len(distinct) == 1 else f"{distinct[0]}–{distinct[-1]}"


def bench_range(api: Api, hosts: list[int], label: str, seconds: int, config: Config) -> list:
    """One table row: latency over config.requests requests after the warm-ups."""
    latencies, points, resolutions, steps, sizes = [], [], [], [], []
    for i in range(config.warmups + config.requests):
        path = timeseries_path(hosts[i % len(hosts)], seconds)
        start = time.perf_counter()
        body = api.get(path)
        elapsed = (time.perf_counter() - start) * 1000
        if i < config.warmups:
            continue
        data = json.loads(body)
        latencies.append(elapsed)
        points.append(max(len(s["points"]) for s in data["series"]))
        resolutions.append(data["resolution"])
        steps.append(data["step"])
        sizes.append(len(body) / 1024)
    return [
        label,
        spread(resolutions),
        spread(steps),
        spread(points),
        statistics.median(sizes),
        statistics.median(latencies),
        percentile(latencies, 95),
        max(latencies),
    ]


# --- exports -----------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Polls a process's RSS every `interval` seconds and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
                self.samples += 1
            self._done.wait(self.interval)

    def finish(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def download(api: Api, path: str, server_pid: int, chunk: int = 256 * 1024) -> dict:
    """Read one streamed response in chunks, timing it and watching the server's RSS."""
    server = psutil.Process(server_pid)
    rss_before = server.memory_info().rss
    cpu_before = cpu_seconds(server)
    sampler = RssSampler(server_pid)
    sampler.start()
    conn = api.connect()
    nbytes = lines = 0
    first_byte = None
    start = time.perf_counter()
    try:
        conn.request("GET", path, headers=api.headers)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}: {response.read(300)!r}")
        while data := response.read1(chunk):
            if first_byte is None:
                first_byte = time.perf_counter() - start
            nbytes += len(data)
            lines += data.count(b"\n")
        total = time.perf_counter() - start
    finally:
        peak = sampler.finish()
        conn.close()
    return {
        "bytes": nbytes,
        "lines": lines,
        "seconds": total,
        "ttfb": first_byte or total,
        "rss_before": rss_before,
        "rss_peak": peak,
        "rss_after": server.memory_info().rss,
        "cpu": cpu_seconds(server) - cpu_before,
        "rss_samples": sampler.samples,
    }


def export_path(seeded: Seeded, fmt: str, rows: int) -> str:
    first = seeded.end - timedelta(seconds=INTERVAL * (rows - 1))
    query = {
        "host": seeded.export_host,
        "format": fmt,
        "from": f"{first.timestamp():.0f}",
        "to": f"{seeded.end.timestamp() + 1:.0f}",
    }
    return f"/api/v1/export/host-samples?{urlencode(query)}"


def export_runs(rows: int) -> list[tuple[str, int]]:
    """(format, rows): the whole export as CSV and JSON Lines, after one day of CSV
    when the export is longer, to compare the server's memory for both sizes."""
    runs = [("csv", rows), ("jsonl", rows)]
    one_day = DAY // INTERVAL
    return [("csv", one_day), *runs] if rows > one_day else runs


def bench_export(api: Api, seeded: Seeded, fmt: str, rows: int, pid: int) -> tuple[list, bool]:
    """One table row for one export, and whether its row count is right."""
    label = f"{fmt} ({rows * INTERVAL / DAY:g} d)"
    print(f"  export {label}…", flush=True)
    r = download(api, export_path(seeded, fmt, rows), pid)
    got = r["lines"] - 1 if fmt == "csv" else r["lines"]  # the CSV header line
    mb = r["bytes"] / 1e6
    row = [
        label,
        got,
        "ok" if got == rows else f"WRONG (want {rows})",
        mb,
        r["seconds"],
        r["ttfb"] * 1000,
        got / r["seconds"],
        mb / r["seconds"],
        r["cpu"],
        r["rss_before"] / MIB,
        r["rss_peak"] / MIB,
        (r["rss_peak"] - r["rss_before"]) / MIB,
        r["rss_after"] / MIB,
    ]
    return row, got == rows


# --- output ------------------------------------------------------------------------


def cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(title: str, headers: list[str], rows: list[list]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        parts = [values[0].ljust(widths[0])]
        parts += [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join(parts)

    rule = "-" * len(line(headers))
    return "\n".join([f"\n{title}", rule, line(headers), rule, *map(line, cells), rule])


# --- the run -----------------------------------------------------------------------


TIMESERIES_HEADERS = [
    "range",
    "resolution s",
    "step s",
    "points/series",
    "body KiB",
    "median ms",
    "p95 ms",
    "max ms",
]
EXPORT_HEADERS = [
    "export",
    "rows",
    "count",
    "MB",
    "total s",
    "TTFB ms",
    "rows/s",
    "MB/s",
    "server CPU s",
    "RSS before MiB",
    "RSS peak MiB",
    "peak-before MiB",
    "RSS after MiB",
]


def bench_timeseries(api: Api, config: Config, seeded: Seeded) -> None:
    rows = []
    for label, seconds in RANGES:
        print(f"  time series {label}…", flush=True)
        rows.append(bench_range(api, seeded.hosts, label, seconds, config))
    api.close()
    title = (
        f"Time series: {'+'.join(TIMESERIES_METRICS)}, {config.requests} requests per range "
        f"over {len(seeded.hosts)} hosts after {config.warmups} warm-ups"
    )
    print(table(title, TIMESERIES_HEADERS, rows), flush=True)


def bench_exports(api: Api, seeded: Seeded, server_pid: int) -> bool:
    """Every export of export_runs; False when a row count is wrong."""
    rows, ok = [], True
    for fmt, count in export_runs(seeded.export_rows):
        row, good = bench_export(api, seeded, fmt, count, server_pid)
        rows.append(row)
        ok = ok and good
    title = (
        "Export: host-samples of the export host, one streamed request each "
        "(server RSS polled every 50 ms)"
    )
    print(table(title, EXPORT_HEADERS, rows), flush=True)
    return ok


def run_benchmarks(
    config: Config, seeded: Seeded, env: dict[str, str], secret: str, work: Path
) -> bool:
    """Start the server, run both benchmarks against it, always stop it."""
    port = free_port()
    log = work / "daphne.log"
    server = start_server(env, port, log)
    api = Api(port, secret)
    try:
        ready = wait_ready(api, server, log)
        rss = psutil.Process(server.pid).memory_info().rss / MIB
        print(
            f"\nserver: daphne pid {server.pid} on port {port}, ready in {ready:.1f} s, "
            f"RSS {rss:.0f} MiB",
            flush=True,
        )
        bench_timeseries(api, config, seeded)
        return bench_exports(api, seeded, server.pid)
    finally:
        api.close()
        stop_server(server)
        if server.returncode not in (0, -15):
            print(f"\nserver exited with {server.returncode}; log tail:\n{tail(log)}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = make_config(args)
    work = Path(tempfile.mkdtemp(prefix="ptracker-bench-"))
    db_name = f"ptracker_bench_{secrets.token_hex(4)}" if args.postgres else None
    database_url = pg_database_url(args.postgres, db_name) if args.postgres else None
    created = False
    try:
        if args.postgres:
            pg_admin(args.postgres, f'CREATE DATABASE "{db_name}"')
            created = True
        env = server_env(work / "data", database_url)
        setup_django(env)
        return run(config, env, work, db_name)
    finally:
        close_django()
        if created:
            pg_admin(args.postgres, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


def close_django() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def run(config: Config, env: dict[str, str], work: Path, db_name: str | None) -> int:
    import django
    from django.db import connection

    where = f"PostgreSQL database {db_name}" if db_name else f"SQLite in {work / 'data'}"
    print(
        f"ptracker API benchmark: {where}; Python {sys.version.split()[0]}, "
        f"Django {django.get_version()}, {os.cpu_count()} CPUs"
    )
    print(
        f"config: {config.hosts} hosts, {config.rollup_days} d of 1-minute and 1-hour "
        f"rollups, {config.raw_hours} h of raw samples at {INTERVAL} s, export host "
        f"{config.export_days:g} d",
        flush=True,
    )
    start = time.perf_counter()
    seeded = seed(config)
    seeding = time.perf_counter() - start
    settle_label = settle_database()
    settled = time.perf_counter() - start - seeding
    size = database_size()
    secret = issue_token()
    total_rows = sum(row[1] for row in seeded.timings)
    rows = [*seeded.timings, ["total", total_rows, seeding, total_rows / seeding]]
    print(
        table(
            f"Seeding ({connection.vendor}, bulk_create of {BATCH:,} rows per transaction)",
            ["phase", "rows", "seconds", "rows/s"],
            rows,
        )
    )
    print(f"{settle_label}: {settled:.1f} s; database size {size / MIB:,.1f} MiB", flush=True)
    close_django()
    ok = run_benchmarks(config, seeded, env, secret, work)
    print("\nrow counts: " + ("all as seeded" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
