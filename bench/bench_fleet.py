"""Benchmark a hub taking the pushes of a fleet of agents.

What it measures
----------------
A real hub (`ptracker run`, plus --web-1 more Daphne processes on the next ports)
in a fresh data directory, and --agents simulated agents. Each agent posts what a
real one does: every --interval seconds one gzip'd batch of a real sample of this
machine (its top --processes processes) with a fresh id and time, to
/api/v1/ingest with its own agent token. The agents' ticks are spread evenly over
the interval, as real agents' are.

After --warmup seconds it measures for --seconds:
* accepted batches per second, and ingest latency (request to answer) p50/p95;
* rows written per second (host samples + process samples) and database growth;
* then, with --backfill, one agent sends an hour of spool (720 batches, 100 per
  request, back to back) while the others go on: how long the hour takes to be
  absorbed, and the others' p95 during it against before.

The load generator runs on the same machine, so it takes CPU from the hub: the
figures are a floor of what the hub does alone.

How to run
----------
    .venv/bin/python bench/bench_fleet.py                       # SQLite, 500 agents
    .venv/bin/python bench/bench_fleet.py --agents 100 --seconds 30 --backfill
    .venv/bin/python bench/bench_fleet.py --postgres postgres://postgres@127.0.0.1/bench \\
        --redis redis://127.0.0.1:6379/14 --web 2

Targets (printed, not asserted): SQLite >= 100 batches/s (500 agents at 5 s) with
p95 <= 250 ms; PostgreSQL with two Daphne processes and Redis >= 500 batches/s;
an hour of backfill absorbed in <= 60 s without the others' p95 growing over 2x.
"""

import argparse
import gzip
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_batch(processes: int) -> dict:
    """One real sample of this machine, as an agent would push it."""
    from monitoring.sampling import Sampler

    sampler = Sampler(top_n=processes)
    sampler.prime()
    time.sleep(0.5)
    batch = sampler.sample().to_dict()
    batch["processes"] = batch["processes"][:processes]
    return batch


class Hub:
    def __init__(self, args, data_dir: Path) -> None:
        self.args = args
        self.env = {
            **os.environ,
            "PTRACKER_DATA_DIR": str(data_dir),
            "PTRACKER_SAMPLE_INTERVAL": str(int(args.interval)),
            "PYTHONPATH": str(REPO_ROOT),
        }
        self.env.pop("DATABASE_URL", None)
        if args.postgres:
            self.env["DATABASE_URL"] = args.postgres
        if args.redis:
            self.env["PTRACKER_REDIS_URL"] = args.redis
        self.ports = [free_port() for _ in range(args.web)]
        self.children: list[subprocess.Popen] = []

    def manage(self, *argv: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "ptracker", "manage", *argv],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def django(self, script: str) -> str:
        """What a Python snippet prints, run with Django set up on the hub's data."""
        return subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n" + script],
            env={**self.env, "DJANGO_SETTINGS_MODULE": "ptracker.settings"},
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def tokens(self, n: int) -> list[tuple[str, str]]:
        """n hosts and their agent tokens, made in one process (addhost per host is slow)."""
        script = (
            "import json, sys\n"
            "from monitoring.models import Host\n"
            "out = []\n"
            f"for i in range({n}):\n"
            "    name = f'bench-{i:04d}'\n"
            "    host = Host.objects.filter(name=name).first()\n"
            "    if host: secret = host.set_agent_token(); host.save()\n"
            "    else: host, secret = Host.add_remote(name)\n"
            "    out.append((name, secret))\n"
            "json.dump(out, sys.stdout)\n"
        )
        return [tuple(pair) for pair in json.loads(self.django(script))]

    def start(self) -> None:
        self.manage("migrate", "--verbosity", "0")
        self.children.append(
            subprocess.Popen(
                [sys.executable, "-m", "ptracker", "run", "--port", str(self.ports[0])],
                env=self.env,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        for port in self.ports[1:]:
            self.children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "daphne",
                        "--port",
                        str(port),
                        "ptracker.asgi:application",
                    ],  # fmt: skip
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        for port in self.ports:
            wait_listening(port)

    def stop(self) -> None:
        for child in self.children:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for child in self.children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)

    def rows(self) -> tuple[int, int]:
        """(host samples, process samples) stored so far."""
        out = self.django(
            "from monitoring.models import HostSample, ProcessSample\n"
            "print(HostSample.objects.count(), ProcessSample.objects.count())\n"
        ).split()
        return int(out[0]), int(out[1])

    def db_bytes(self, data_dir: Path) -> int:
        if not self.args.postgres:
            return sum(p.stat().st_size for p in data_dir.glob("ptracker.sqlite3*"))
        return int(
            self.django(
                "from django.db import connection\nc = connection.cursor()\n"
                "c.execute('select pg_database_size(current_database())')\n"
                "print(c.fetchone()[0])\n"
            )
        )


def wait_listening(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the hub did not listen on port {port} within {timeout} s")


class Agent:
    """One simulated agent: a keep-alive connection, its token, its own batch ids."""

    def __init__(self, name: str, secret: str, port: int, template: dict) -> None:
        self.name, self.secret, self.port, self.template = name, secret, port, template
        self.conn: http.client.HTTPConnection | None = None

    def body(self, count: int = 1, ts: float | None = None) -> bytes:
        batches = []
        for i in range(count):
            when = (ts or time.time()) + i * 5
            batches.append(
                {
                    **self.template,
                    "id": uuid.uuid4().hex,
                    "ts": datetime.fromtimestamp(when, UTC).isoformat(),
                }
            )
        payload = {"host": self.name, "agent": {"version": "bench", "time": time.time()},
                   "batches": batches}  # fmt: skip
        return gzip.compress(json.dumps(payload).encode(), compresslevel=6)

    def post(self, body: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                self.conn.request(
                    "POST",
                    "/api/v1/ingest",
                    body,
                    {"Authorization": f"Bearer {self.secret}",
                     "Content-Type": "application/json", "Content-Encoding": "gzip"},
                )  # fmt: skip
                response = self.conn.getresponse()
                response.read()
                return response.status, time.perf_counter() - started
            except (OSError, http.client.HTTPException):
                self.conn = None
                if attempt == 2:
                    return 0, time.perf_counter() - started
        return 0, 0.0


class Load:
    """Agents ticking every interval, spread over it, on a pool of threads."""

    def __init__(self, agents: list[Agent], interval: float, threads: int) -> None:
        self.agents, self.interval, self.threads = agents, interval, threads
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, int, float]] = []  # (end time, status, latency)

    def run_slice(self, mine: list[tuple[float, Agent]]) -> None:
        start = time.monotonic()
        tick = 0
        while not self.stop.is_set():
            for offset, agent in mine:
                due = start + tick * self.interval + offset
                wait = due - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    return
                status, latency = agent.post(agent.body())
                with self.lock:
                    self.results.append((time.monotonic(), status, latency))
            tick += 1

    def start(self) -> list[threading.Thread]:
        n = len(self.agents)
        spread = [(self.interval * i / n, a) for i, a in enumerate(self.agents)]
        slices = [spread[i :: self.threads] for i in range(self.threads)]
        threads = [threading.Thread(target=self.run_slice, args=(s,), daemon=True)
                   for s in slices if s]  # fmt: skip
        for t in threads:
            t.start()
        return threads

    def window(self, since: float, until: float) -> list[tuple[float, int, float]]:
        with self.lock:
            return [r for r in self.results if since <= r[0] < until]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def describe(rows: list[tuple[float, int, float]], seconds: float) -> dict:
    ok = [r for r in rows if r[1] == 200]
    latencies = [r[2] * 1000 for r in ok]
    return {
        "accepted_per_s": len(ok) / seconds,
        "failed": len(rows) - len(ok),
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": pct(latencies, 0.95),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--processes", type=int, default=50, help="per batch")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured period")
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=32, help="load generator threads")
    parser.add_argument("--web", type=int, default=1, help="Daphne processes")
    parser.add_argument("--postgres", help="postgres:// URL of an empty database to use")
    parser.add_argument("--redis", help="redis:// URL for the channel layer and broker")
    parser.add_argument("--backfill", action="store_true", help="also measure an hour's backfill")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="ptracker-bench-fleet-"))
    hub = Hub(args, data_dir)
    try:
        print(f"hub: {'PostgreSQL' if args.postgres else 'SQLite'}, {args.web} Daphne, "
              f"{'Redis' if args.redis else 'no Redis'}; {args.agents} agents every "
              f"{args.interval:g} s, {args.processes} processes a batch", flush=True)  # fmt: skip
        hub.start()
        template = sample_batch(args.processes)
        print(f"one batch: {len(template['processes'])} processes, "
              f"{len(json.dumps(template)) // 1024} KiB JSON", flush=True)  # fmt: skip
        secrets = hub.tokens(args.agents + 1)
        ports = hub.ports
        agents = [Agent(name, secret, ports[i % len(ports)], template)
                  for i, (name, secret) in enumerate(secrets[: args.agents])]  # fmt: skip
        load = Load(agents, args.interval, min(args.threads, args.agents))
        load.start()
        time.sleep(args.warmup)
        rows0, bytes0, t0 = hub.rows(), hub.db_bytes(data_dir), time.monotonic()
        time.sleep(args.seconds)
        t1 = time.monotonic()
        rows1, bytes1 = hub.rows(), hub.db_bytes(data_dir)
        steady = describe(load.window(t0, t1), t1 - t0)
        written = (rows1[0] - rows0[0]) + (rows1[1] - rows0[1])
        print("\nsteady state")
        print(
            f"  accepted batches/s   {steady['accepted_per_s']:8.1f}   "
            f"(offered {args.agents / args.interval:.1f}/s; failed {steady['failed']})"
        )
        print(f"  ingest p50 / p95     {steady['p50_ms']:8.1f} / {steady['p95_ms']:.1f} ms")
        print(
            f"  rows written/s       {written / (t1 - t0):8.0f}   "
            f"({(rows1[1] - rows0[1]) / max(1, rows1[0] - rows0[0]):.0f} process rows a batch)"
        )
        print(
            f"  database growth      {(bytes1 - bytes0) / 2**20 / (t1 - t0) * 3600:8.0f} MiB/h"
            f"   ({(bytes1 - bytes0) / max(1, rows1[0] - rows0[0]) / 1024:.1f} KiB a batch)"
        )
        target = 500 if args.postgres else 100
        offered = args.agents / args.interval
        print(
            f"  target: >= {target} batches/s"
            + ("" if args.postgres else ", p95 <= 250 ms")
            + (f" (offered only {offered:.0f}/s: raise --agents)" if offered < target else "")
        )
        if args.backfill:
            name, secret = secrets[-1]
            spool = Agent(name, secret, ports[0], template)
            start_ts = time.time() - 3600
            b0 = time.monotonic()
            for chunk in range(0, 720, 100):
                count = min(100, 720 - chunk)
                status, _ = spool.post(spool.body(count, start_ts + chunk * 5))
                if status != 200:
                    print(f"  backfill chunk answered {status}")
            b1 = time.monotonic()
            during = describe(load.window(b0, b1), max(b1 - b0, 1e-3))
            print("\nbackfill of one hour (720 batches) by one agent")
            print(f"  absorbed in          {b1 - b0:8.1f} s   (target <= 60 s)")
            print(f"  others' p95          {during['p95_ms']:8.1f} ms during, "
                  f"{steady['p95_ms']:.1f} ms before "
                  f"(x{during['p95_ms'] / steady['p95_ms']:.2f}; target <= x2)")  # fmt: skip
        load.stop.set()
    finally:
        hub.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
