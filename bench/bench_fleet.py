"""Benchmark a hub taking the pushes of a fleet of agents.

What it measures
----------------
A real hub (`ptracker run`, plus --web-1 more Daphne processes on the next ports)
in a fresh data directory, and --agents simulated agents. Each agent posts what a
real one does: every --interval seconds one gzip'd batch of a real sample of this
machine (its top --processes processes) with a fresh id and time, to
/api/v1/ingest with its own agent token, on its own keep-alive connection. The
agents' ticks are spread evenly over the interval, as real agents' are, and each
agent keeps its own schedule: a slow answer delays that agent's next push only, so
the hub's slowness shows in the latency and is not hidden by a generator that
waits on it (only its own agent waits, as a real one does).

After --warmup seconds it measures for --seconds:
* accepted batches per second, and ingest latency (request sent to answer read)
  p50/p95;
* the CPU the hub used a batch, and the share of a core the load generator took;
  the CPU of the whole machine a batch (the hub, its database, Redis: what sizing a
  machine for a fleet needs), less the load generator's;
* rows written per second (host samples + process samples) and database growth;
* then, with --backfill, one agent sends an hour of spool (720 batches, 100 per
  request, back to back) while the others go on: how long the hour takes to be
  absorbed, and the others' p95 during it against before.

The load generator runs on the same machine, so it takes CPU from the hub: the
figures are a floor of what the hub does alone. It is made to take little: one
event loop in one thread for all agents, and bodies that are cheap to make (see
Bodies: only a short head with the ids and times is compressed per push; the hub
still inflates and parses a whole batch, every one with its own id and time). It
prints its share of a core beside the hub's.

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
import asyncio
import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

import psutil

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

    def cpu(self) -> float:
        """CPU seconds the hub's processes (those running now: the web processes, a
        cluster's workers under its supervisor) have used so far."""
        total = 0.0
        for child in self.children:
            root = psutil.Process(child.pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):  # gone meanwhile
                    total += sum(process.cpu_times()[:2])
        return total

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


GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, no mtime


class Bodies:
    """Push bodies of one template batch, each with its own id and times, made cheaply.

    A body is the JSON an agent sends (compact, as ptracker.agent writes it), gzip'd:
    a short head (host, agent time, the batch's id and ts) deflated anew for each push,
    then the rest of the batch, deflated once (level 6, as the agent does) and reused:
    two deflate streams end to end, the first flushed to a byte boundary, are one
    valid stream. So the hub inflates and parses exactly what an agent would send it,
    and the generator spends microseconds a push instead of a millisecond and more."""

    def __init__(self, template: dict) -> None:
        rest = {k: v for k, v in template.items() if k not in ("id", "ts")}
        self.tail = json.dumps(rest, separators=(",", ":"))[1:].encode() + b"]}"
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.tail_deflated = deflate.compress(self.tail) + deflate.flush()
        self.tail_crc = zlib.crc32(self.tail)

    def body(self, host: str) -> bytes:
        ts = datetime.now(UTC).isoformat()
        head = (
            f'{{"host":{json.dumps(host)},"agent":{{"version":"bench","time":{time.time()}}},'
            f'"batches":[{{"id":"{uuid.uuid4().hex}","ts":"{ts}",'
        ).encode()
        deflate = zlib.compressobj(1, zlib.DEFLATED, -15)
        head_deflated = deflate.compress(head) + deflate.flush(zlib.Z_SYNC_FLUSH)
        crc = zlib.crc32(self.tail, zlib.crc32(head))
        size = (len(head) + len(self.tail)) & 0xFFFFFFFF
        return GZIP_HEADER + head_deflated + self.tail_deflated + struct.pack("<II", crc, size)


def backlog_body(host: str, template: dict, count: int, since: float) -> bytes:
    """An agent's spool sent in one request: `count` batches 5 s apart from `since`."""
    batches = [
        {**template, "id": uuid.uuid4().hex,
         "ts": datetime.fromtimestamp(since + i * 5, UTC).isoformat()}
        for i in range(count)
    ]  # fmt: skip
    payload = {"host": host, "agent": {"version": "bench", "time": time.time()},
               "batches": batches}  # fmt: skip
    return gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)


class Agent:
    """One simulated agent: its own keep-alive connection and token."""

    def __init__(self, name: str, secret: str, port: int) -> None:
        self.name, self.port = name, port
        self.head = (
            f"POST /api/v1/ingest HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
            "Content-Encoding: gzip\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, float]:
        """(status, seconds from sending the request to having read its answer);
        status 0 when the hub could not be reached or answered nothing, twice."""
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.writer.write(self.head + b"%d\r\n\r\n" % len(body) + body)
                status, keep = await asyncio.wait_for(read_answer(self.reader), 60)
                if not keep:
                    self.close()
                return status, time.perf_counter() - started
            except (OSError, EOFError, ValueError, TimeoutError):
                self.close()
                if attempt == 2:
                    return 0, time.perf_counter() - started
        return 0, 0.0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """An HTTP/1.1 answer read whole: (status, whether the connection stays open)."""
    try:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    except asyncio.IncompleteReadError:
        raise EOFError from None
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    try:
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        else:
            await reader.read()  # to the end of the connection
            return status, False
    except asyncio.IncompleteReadError:
        raise EOFError from None
    return status, headers.get("connection") != "close"


class Load:
    """The agents, each on its own schedule, ticks spread evenly over the interval, on
    one event loop in one thread: a slow answer delays only its own agent's next push,
    as with real agents, and the generator's CPU is little more than the sockets'."""

    def __init__(self, agents: list[Agent], bodies: Bodies, interval: float) -> None:
        self.agents, self.bodies, self.interval = agents, bodies, interval
        self.loop = asyncio.new_event_loop()
        self.stopping: asyncio.Event | None = None
        self.lock = threading.Lock()
        self.results: list[tuple[float, int, float]] = []  # (end time, status, latency)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),),
                                  daemon=True)  # fmt: skip
        thread.start()
        return thread

    def stop(self) -> None:
        if self.stopping is not None:
            self.loop.call_soon_threadsafe(self.stopping.set)

    def post(self, agent: Agent, body: bytes) -> tuple[int, float]:
        """From another thread: one push by `agent` on the load's loop, waited for."""
        return asyncio.run_coroutine_threadsafe(agent.post(body), self.loop).result()

    async def main(self) -> None:
        self.stopping = asyncio.Event()
        start = time.monotonic()
        n = len(self.agents)
        tasks = [asyncio.create_task(self.tick(agent, start + self.interval * i / n))
                 for i, agent in enumerate(self.agents)]  # fmt: skip
        await self.stopping.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for agent in self.agents:
            agent.close()

    async def tick(self, agent: Agent, first: float) -> None:
        due = first
        while True:
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            status, latency = await agent.post(self.bodies.body(agent.name))
            with self.lock:
                self.results.append((time.monotonic(), status, latency))
            due += self.interval

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


def machine_cpu() -> float:
    """CPU seconds every process of the machine has used (all cores, idle excluded)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def timeline(rows: list[tuple[float, int, float]], t0: float, t1: float, step: float = 10.0) -> str:
    """The p95 of each `step` seconds, in ms: a pause of the hub shows as one high value."""
    windows = []
    start = t0
    while start < t1 - 1:
        latencies = [r[2] * 1000 for r in rows if start <= r[0] < start + step and r[1] == 200]
        windows.append(f"{pct(latencies, 0.95):.0f}")
        start += step
    return " ".join(windows) + " ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--processes", type=int, default=50, help="per batch")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured period")
    parser.add_argument(
        "--warmup", type=float, default=30.0,
        help="seconds before measuring: every agent's first push (a token lookup) and the "
        "hub's first minute of background work (a first prune, rollups) are behind it",
    )  # fmt: skip
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
        agents = [Agent(name, secret, ports[i % len(ports)])
                  for i, (name, secret) in enumerate(secrets[: args.agents])]  # fmt: skip
        load = Load(agents, Bodies(template), args.interval)
        load.start()
        time.sleep(args.warmup)
        rows0, bytes0 = hub.rows(), hub.db_bytes(data_dir)
        cpu0, t0 = (hub.cpu(), time.process_time(), machine_cpu()), time.monotonic()
        time.sleep(args.seconds)
        t1 = time.monotonic()
        hub_cpu, own_cpu = hub.cpu() - cpu0[0], time.process_time() - cpu0[1]
        all_cpu = machine_cpu() - cpu0[2] - own_cpu  # the hub, its database, Redis, …
        rows1, bytes1 = hub.rows(), hub.db_bytes(data_dir)
        steady = describe(load.window(t0, t1), t1 - t0)
        written = (rows1[0] - rows0[0]) + (rows1[1] - rows0[1])
        print("\nsteady state")
        print(
            f"  accepted batches/s   {steady['accepted_per_s']:8.1f}   "
            f"(offered {args.agents / args.interval:.1f}/s; failed {steady['failed']})"
        )
        print(f"  ingest p50 / p95     {steady['p50_ms']:8.1f} / {steady['p95_ms']:.1f} ms")
        print(f"  p95 each 10 s        {timeline(load.window(t0, t1), t0, t1)}")
        print(
            f"  rows written/s       {written / (t1 - t0):8.0f}   "
            f"({(rows1[1] - rows0[1]) / max(1, rows1[0] - rows0[0]):.0f} process rows a batch)"
        )
        print(
            f"  database growth      {(bytes1 - bytes0) / 2**20 / (t1 - t0) * 3600:8.0f} MiB/h"
            f"   ({(bytes1 - bytes0) / max(1, rows1[0] - rows0[0]) / 1024:.1f} KiB a batch)"
        )
        accepted = max(1.0, steady["accepted_per_s"] * (t1 - t0))
        print(
            f"  CPU                  {hub_cpu / (t1 - t0) * 100:8.0f} % hub "
            f"({hub_cpu / accepted * 1000:.1f} ms a batch), "
            f"{own_cpu / (t1 - t0) * 100:.0f} % load generator"
        )
        print(
            f"  CPU, whole machine   {all_cpu / (t1 - t0) * 100:8.0f} % of one core "
            f"({all_cpu / accepted * 1000:.1f} ms a batch: the hub's processes, the "
            f"database, Redis, all else but the load generator; {psutil.cpu_count()} cores)"
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
            spool = Agent(name, secret, ports[0])
            start_ts = time.time() - 3600
            # Made beforehand: what is timed is the hub taking them.
            chunks = [backlog_body(name, template, min(100, 720 - i), start_ts + i * 5)
                      for i in range(0, 720, 100)]  # fmt: skip
            b0 = time.monotonic()
            for body in chunks:
                status, _ = load.post(spool, body)
                if status != 200:
                    print(f"  backfill chunk answered {status}")
            b1 = time.monotonic()
            during = describe(load.window(b0, b1), max(b1 - b0, 1e-3))
            print("\nbackfill of one hour (720 batches) by one agent")
            print(f"  absorbed in          {b1 - b0:8.1f} s   (target <= 60 s)")
            print(f"  others' p95          {during['p95_ms']:8.1f} ms during, "
                  f"{steady['p95_ms']:.1f} ms before "
                  f"(x{during['p95_ms'] / steady['p95_ms']:.2f}; target <= x2)")  # fmt: skip
        load.stop()
    finally:
        hub.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
