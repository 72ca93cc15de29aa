"""Footprint benchmark: what `ptracker run` and `ptracker agent` cost, against atop and glances.

What it measures
----------------
Five cases, each started fresh, warmed up, then measured for --duration seconds,
round robin (a b c d a b c d with --rounds 2), while --idle idle ``sleep`` processes
started by this script are on the machine (so every monitor has the same processes
to look at):

a. ``ptracker run`` idle: this checkout's code (``python -m ptracker run`` with the
   repository first on PYTHONPATH), SQLite in a fresh temporary PTRACKER_DATA_DIR,
   sampling every --interval seconds, every other PTRACKER_* variable and
   DATABASE_URL removed. Measured once it serves HTTP and has stored a sample.
b. ``atop -w FILE <interval>``, its raw log in a temporary file.
c. ``glances --quiet --export csv --export-csv-file FILE -t <interval>`` (with its
   update check and public-IP lookup off, so that all traffic stays on this machine).
d. ``ptracker run`` as in (a), with one logged-in websocket on /ws/live/ subscribed
   to the host ({"subscribe": "host:<id>"}), read by this script all along.
e. ``ptracker agent --interval <interval>`` (this checkout's code, a spool in a fresh
   temporary directory) pushing to a stub hub: a small HTTP server in this script,
   outside the measured tree, that takes every push and answers 200 with a config as
   the real hub does. Measured once a batch has arrived.

For each case the whole process tree under the process started here is found anew
every second (children, recursively; whatever ``ptracker run`` starts today) and
every member's /proc/<pid>/stat and /proc/<pid>/smaps_rollup are read:

* CPU % of one core: the tree's utime + stime over the window's wall time. Each
  process counts utime + stime + cutime + cstime, so a child that exited and was
  reaped by a parent in the tree is still counted (its time moved into the parent's
  cutime; the child's earlier readings are taken off the parent so nothing counts
  twice). A process that exits without being waited for (reaped outside the tree)
  loses at most its last second.
* PSS: summed over the tree at each reading; mean and max.
* processes: the most the tree had at once.
* per process (the ptracker cases): a short form of its command line, its CPU % and
  mean PSS, averaged over the rounds; django-q2's log names its workers' roles.

Before the cases it also times one tick over all processes, in this process: the
project's ``Sampler().sample()`` (Django-free) against a bare loop that reads every
/proc/<pid>/stat once, interleaved, median of --ticks each.

Targets, printed as met/missed, never asserted: whole tree idle CPU <= 1.0x atop's;
summed PSS (idle, max) <= 150 MiB; with one live subscriber CPU <= 2x idle; one tick
<= 2x the bare /proc loop; the agent's CPU <= 1.0x atop's and its PSS (max) <= 30 MiB.

Peers: atop is installed from Debian (``apt-get install -y atop``) when missing and
this runs as root, otherwise its case is skipped and the reason printed. Glances is
taken from PATH or this virtualenv, else installed from PyPI into a private
virtualenv under $XDG_CACHE_HOME/ptracker-bench/ (kept for the next run). On a
systemd host, Debian's atop package also enables its own logging services.

How to run (from the project root)
----------------------------------
    .venv/bin/python bench/bench_footprint.py              # 2 rounds x 4 cases x 60 s, ~12 min
    .venv/bin/python bench/bench_footprint.py --duration 20 --warmup 5 --rounds 1
    .venv/bin/python bench/bench_footprint.py --cases agent,atop   # the agent, ~5 min
    make bench-footprint

Every process it starts is killed at the end (also on Ctrl+C or SIGTERM), the idle
ones have a bounded lifetime even if this script is SIGKILLed, temporary
directories are removed, and the user's own ptracker data directory is never used.
The exit status is 0 whatever the figures.
"""

import argparse
import asyncio
import contextlib
import gzip
import http.client
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

# Helpers of the benchmarks next to this file (its directory is sys.path[0]).
from bench_dashboard import HttpClient, WebSocket, free_port, log_in, tail
from bench_sampler import table

REPO_ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
READY_TIMEOUT = 180  # seconds; migrating a fresh database on a busy machine is slow
STOP_TIMEOUT = 20  # seconds for a tree to stop on its own before it is killed
GLANCES_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "ptracker-bench"
    / "glances-venv"
)
TARGET_CPU_VS_ATOP = 1.0
TARGET_PSS_MIB = 150
TARGET_LIVE_VS_IDLE = 2.0
TARGET_TICK_RATIO = 2.0
TARGET_AGENT_CPU_VS_ATOP = 1.0
TARGET_AGENT_PSS_MIB = 30

CASES = {
    "ptracker": "a. ptracker run, idle",
    "atop": "b. atop -w FILE",
    "glances": "c. glances --export csv",
    "live": "d. ptracker run, 1 live subscriber",
    "agent": "e. ptracker agent, pushing",
}
PTRACKER_CASES = ("ptracker", "live")
# django-q2 logs each child it forks ("Process-<id> ready for work at <pid>") and the
# function of each task it picks up ("Process-<id> processing <task name> '<module.func>'"):
# enough to name the roles of otherwise identical command lines. Task names are random
# words for scheduled jobs, so only the functions are kept.
QCLUSTER_ROLE = re.compile(r"Process-(\w+) (ready for work|monitoring|pushing tasks) at (\d+)")
QCLUSTER_TASK = re.compile(r"Process-(\w+) processing \S+ '[\w.]*?(\w+)'")


# -- processes we start ----------------------------------------------------------------


@contextmanager
def idle_processes(count: int, lifetime_s: float) -> Iterator[None]:
    """`count` sleeping processes in one process group, killed and reaped on the way out.

    They sleep for a bounded time, so that they end on their own even if this script
    is killed with SIGKILL.
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
                    process_group=children[0].pid if children else 0,
                )
            )
        time.sleep(1)  # every child has exec'd sleep before the first reading
        yield
    finally:
        if children:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(children[0].pid, signal.SIGKILL)  # the leader is not reaped yet
        for child in children:
            child.wait()


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A case's root process, in a session of its own so that no Ctrl+C reaches it."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_tree(root: subprocess.Popen, sig: int) -> None:
    """Signal the root's group, give the tree STOP_TIMEOUT, then kill what is left.

    The descendants are listed first: ptracker's children run in process groups of
    their own, and they would be orphans (invisible from the root) once it exits.
    """
    try:
        members = psutil.Process(root.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        members = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(root.pid, sig)
    deadline = time.monotonic() + STOP_TIMEOUT
    with contextlib.suppress(subprocess.TimeoutExpired):
        root.wait(timeout=STOP_TIMEOUT)
    if root.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(root.pid, signal.SIGKILL)  # still unreaped: the group is still ours
        root.wait()
    _, alive = psutil.wait_procs(members, timeout=max(0.1, deadline - time.monotonic()))
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()  # psutil refuses a pid that was reused meanwhile
    psutil.wait_procs(alive, timeout=5)


def wait_until(ready: Callable[[], bool], root: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready():
        if root.poll() is not None:
            raise RuntimeError(f"it exited with {root.returncode} before {what}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {READY_TIMEOUT} s:\n{tail(log)}")
        time.sleep(0.5)


# -- reading /proc ---------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    pid: int
    start: int  # clock ticks after boot; with the pid, the process's identity
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def read_stat(pid: int) -> Reading | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()  # the name may hold spaces and parens
    return Reading(pid, int(fields[19]), int(fields[1]), sum(int(x) for x in fields[11:15]))


def read_pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0  # gone, or a zombie: no memory left


def tree_pids(root: int) -> list[int]:
    try:
        return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def short_command(pid: int) -> str:
    """The command line without interpreter, options and their values: `daphne ptracker.asgi…`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"pid {pid}"
    argv = [a for a in argv if a]
    if not argv:
        return f"pid {pid}"
    words, rest = [os.path.basename(argv[0])], argv[1:]
    if re.fullmatch(r"python[\d.]*", words[0]):
        words = []
    after_option = False
    for arg in rest:
        if arg in ("-m", "-c"):
            after_option = False
            if arg == "-c":
                words.append("-c")
        elif arg.startswith("-"):
            after_option = "=" not in arg
        elif after_option:
            after_option = False
        else:
            words.append(os.path.basename(arg) if not words else arg)
    text = " ".join(words) or os.path.basename(argv[0])
    return text if len(text) <= 48 else text[:47] + "…"


@dataclass
class ProcStats:
    pid: int
    command: str
    parent: tuple[int, int] | None  # the parent's identity, when it is in the tree
    last_ticks: int
    cpu_ticks: int = 0
    pss_kib: list[int] = field(default_factory=list)


class TreeMeter:
    """Readings of one process tree, once a second; CPU counted as the module says."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.procs: dict[tuple[int, int], ProcStats] = {}
        self.previous: dict[tuple[int, int], Reading] = {}
        self.pss_totals: list[int] = []  # KiB, one per reading
        self.counts: list[int] = []
        self.started: float | None = None
        self.ended: float | None = None

    def read(self) -> None:
        now = time.monotonic()
        readings = [r for r in map(read_stat, tree_pids(self.root)) if r is not None]
        current = {(r.pid, r.start): r for r in readings}
        by_pid = {r.pid: key for key, r in current.items()}
        pss_total = 0
        for key, r in current.items():
            stats = self.procs.get(key)
            if stats is None:
                born_inside = self.started is not None
                stats = self.procs[key] = ProcStats(
                    r.pid, short_command(r.pid), by_pid.get(r.ppid), r.ticks
                )
                stats.cpu_ticks = r.ticks if born_inside else 0
            else:
                stats.cpu_ticks += r.ticks - stats.last_ticks
                stats.last_ticks = r.ticks
            pss = read_pss_kib(r.pid)
            stats.pss_kib.append(pss)
            pss_total += pss
        for key, r in self.previous.items():
            if key not in current and r.ppid in by_pid and self._gone(r):
                # Reaped by a parent in the tree: its whole total now sits in the
                # parent's cutime, of which its earlier readings were counted already.
                self.procs[by_pid[r.ppid]].cpu_ticks -= r.ticks
        self.previous = current
        self.pss_totals.append(pss_total)
        self.counts.append(len(current))
        if self.started is None:
            self.started = now
        self.ended = now

    @staticmethod
    def _gone(r: Reading) -> bool:
        again = read_stat(r.pid)
        return again is None or again.start != r.start

    @property
    def wall_s(self) -> float:
        return (self.ended or 0.0) - (self.started or 0.0)

    def cpu_percent(self, ticks: int) -> float:
        return 100 * ticks / CLK_TCK / self.wall_s if self.wall_s > 0 else float("nan")


def measure(root: subprocess.Popen, seconds: float, log: Path) -> TreeMeter:
    meter = TreeMeter(root.pid)
    start = time.monotonic()
    for i in range(max(1, round(seconds)) + 1):
        time.sleep(max(0.0, start + i - time.monotonic()))
        meter.read()
        if root.poll() is not None:
            raise RuntimeError(f"it exited with {root.returncode} while measured:\n{tail(log)}")
    return meter


# -- the cases -------------------------------------------------------------------------


@dataclass
class ProcRow:
    path: tuple[str, ...]  # commands from the root down; names a process across rounds
    cpu_percent: float
    pss_mib: float


@dataclass
class Measurement:
    case: str
    round: int
    cpu_percent: float = float("nan")
    pss_mean_mib: float = float("nan")
    pss_max_mib: float = float("nan")
    processes: int = 0
    procs: list[ProcRow] = field(default_factory=list)
    messages: int | None = None  # live case: samples received on the websocket
    pushed: int | None = None  # agent case: batches the stub hub received
    error: str = ""


@dataclass
class Context:
    args: argparse.Namespace
    work: Path  # this run's temporary directory
    atop: str | None
    glances: str | None
    versions: dict[str, str] = field(default_factory=dict)
    load_start: str = ""


def qcluster_roles(log: Path) -> dict[int, str]:
    """pid -> role, from django-q2's log lines; empty when there are none."""
    text = log.read_text(errors="replace")
    roles = {int(pid): (name, role) for name, role, pid in QCLUSTER_ROLE.findall(text)}
    funcs: dict[str, set[str]] = {}
    for name, func in QCLUSTER_TASK.findall(text):
        funcs.setdefault(name, set()).add(func)
    return {
        pid: f"{role}; ran {', '.join(sorted(funcs[name]))}" if name in funcs else role
        for pid, (name, role) in roles.items()
    }


def process_rows(meter: TreeMeter, roles: dict[int, str]) -> list[ProcRow]:
    """One row per process, named by its path of commands (twins numbered by pid)."""
    names: dict[tuple[int, int], tuple[str, ...]] = {}

    def path(key: tuple[int, int]) -> tuple[str, ...]:
        if key not in names:
            stats = meter.procs[key]
            role = roles.get(stats.pid)
            own = f"{stats.command} [{role}]" if role else stats.command
            parent = path(stats.parent) if stats.parent in meter.procs else ()
            names[key] = (*parent, own)
        return names[key]

    by_path: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for key in sorted(meter.procs):
        by_path.setdefault(path(key), []).append(key)
    rows = []
    for name, keys in by_path.items():
        for n, key in enumerate(keys, 1):
            stats = meter.procs[key]
            unique = name if len(keys) == 1 else (*name[:-1], f"{name[-1]} #{n}")
            rows.append(
                ProcRow(
                    unique,
                    meter.cpu_percent(stats.cpu_ticks),
                    statistics.mean(stats.pss_kib) / 1024,
                )
            )
    return rows


def summarize(result: Measurement, meter: TreeMeter, roles: dict[int, str]) -> None:
    result.cpu_percent = meter.cpu_percent(sum(s.cpu_ticks for s in meter.procs.values()))
    result.pss_mean_mib = statistics.mean(meter.pss_totals) / 1024
    result.pss_max_mib = max(meter.pss_totals) / 1024
    result.processes = max(meter.counts)
    result.procs = process_rows(meter, roles)


def ptracker_env(data_dir: Path, interval: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PTRACKER_") and k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    }
    path = os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    env["PTRACKER_DATA_DIR"] = str(data_dir)
    env["PTRACKER_SAMPLE_INTERVAL"] = str(interval)
    return env


def hosts_with_a_sample(client: HttpClient) -> list[int]:
    status, _, body = client.request("GET", "/api/v1/hosts/")
    if status != 200:
        return []
    data = json.loads(body)
    hosts = data.get("results", []) if isinstance(data, dict) else data
    return [h["id"] for h in hosts if h.get("latest")]


def ptracker_ready(data_dir: Path, port: int) -> tuple[Callable[[], bool], dict]:
    """A readiness check (logged in, and a sample stored) and what it found."""
    client = HttpClient(port)
    found: dict = {"client": client}
    password_file = data_dir / "initial-admin-password"

    def ready() -> bool:
        try:
            if "sessionid" not in client.cookies:
                password = password_file.read_text().strip()
                if not password:
                    return False
                log_in(client, "admin", password)
            hosts = hosts_with_a_sample(client)
        except (OSError, RuntimeError, ValueError, http.client.HTTPException):
            client.close()
            client.conn = None
            return False
        if hosts:
            found["host_id"] = hosts[0]
        return bool(hosts)

    return ready, found


def run_ptracker(ctx: Context, case_dir: Path, result: Measurement, live: bool) -> None:
    port, data_dir, log = free_port(), case_dir / "data", case_dir / "ptracker.log"
    data_dir.mkdir()
    command = [sys.executable, "-m", "ptracker", "run", "--bind", "127.0.0.1", "--port", str(port)]
    root = spawn(command, log, ptracker_env(data_dir, ctx.args.interval))
    subscriber = None
    try:
        ready, found = ptracker_ready(data_dir, port)
        wait_until(ready, root, log, "HTTP answer and stored sample")
        client = found["client"]
        if live:
            subscriber = LiveSubscriber(port, client.cookie_header(), found["host_id"])
            subscriber.start()
        client.close()
        time.sleep(ctx.args.warmup)
        before = subscriber.messages if subscriber else 0
        meter = measure(root, ctx.args.duration, log)
        if subscriber:
            result.messages = subscriber.messages - before
        summarize(result, meter, qcluster_roles(log))
    finally:
        if subscriber:
            subscriber.stop()
        stop_tree(root, signal.SIGINT)  # what Ctrl+C does: ptracker stops its children


def run_peer(ctx: Context, case_dir: Path, result: Measurement, case: str) -> None:
    """atop or glances: started, measured once its output file has something in it."""
    output, log = case_dir / "output", case_dir / "peer.log"
    env = {**os.environ, "XDG_CACHE_HOME": str(case_dir)}  # glances writes its log there
    root = spawn(peer_command(ctx, case, output), log, env)
    try:
        wait_until(lambda: output.exists() and output.stat().st_size > 0, root, log, "output")
        time.sleep(ctx.args.warmup)
        summarize(result, measure(root, ctx.args.duration, log), {})
    finally:
        stop_tree(root, signal.SIGTERM)


def peer_command(ctx: Context, case: str, output: Path) -> list[str]:
    interval = str(ctx.args.interval)
    if case == "atop":
        return [str(ctx.atop), "-w", str(output), interval]
    return [
        str(ctx.glances),
        "--quiet",
        "--export",
        "csv",
        "--export-csv-file",
        str(output),
        "-t",
        interval,
        "--disable-check-update",  # no traffic beyond loopback
        "--hide-public-info",
    ]


class StubHub:
    """The hub's ingest endpoint, as far as an agent can tell: takes each push (gzip'd
    JSON) and answers 200 with a config. Runs in a thread of this script, so it is not
    part of the measured tree."""

    def __init__(self, interval: int) -> None:
        self.batches = 0
        config = {"interval": interval, "top_n": 25, "service_patterns": [], "watches": []}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                pushed = json.loads(gzip.decompress(body))["batches"]
                hub.batches += len(pushed)
                answer = {"stored": len(pushed), "duplicates": 0, "config": config}
                data = json.dumps({**answer, "time": time.time()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_agent(ctx: Context, case_dir: Path, result: Measurement) -> None:
    hub, log = StubHub(ctx.args.interval), case_dir / "agent.log"
    env = ptracker_env(case_dir, ctx.args.interval)
    env["PTRACKER_AGENT_TOKEN"] = "pta_bench-footprint"  # the stub takes any token
    command = [sys.executable, "-m", "ptracker", "agent", "--hub", hub.url, "--name", "bench"]
    command += ["--interval", str(ctx.args.interval), "--spool-dir", str(case_dir / "spool")]
    root = spawn(command, log, env)
    try:
        wait_until(lambda: hub.batches > 0, root, log, "a pushed batch")
        time.sleep(ctx.args.warmup)
        before = hub.batches
        summarize(result, measure(root, ctx.args.duration, log), {})
        result.pushed = hub.batches - before
    finally:
        stop_tree(root, signal.SIGTERM)
        hub.close()


def run_case(ctx: Context, case: str, round_no: int) -> Measurement:
    result = Measurement(case, round_no)
    case_dir = Path(tempfile.mkdtemp(prefix=f"{case}-{round_no}-", dir=ctx.work))
    try:
        if case in PTRACKER_CASES:
            run_ptracker(ctx, case_dir, result, live=case == "live")
        elif case == "agent":
            run_agent(ctx, case_dir, result)
        else:
            run_peer(ctx, case_dir, result, case)
    except (RuntimeError, OSError) as exc:
        result.error = str(exc)
        print(f"  {CASES[case]}, round {round_no} failed: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)
    return result


class LiveSubscriber:
    """One logged-in websocket on /ws/live/, subscribed to a host, read in a thread."""

    def __init__(self, port: int, cookie: str, host_id: int) -> None:
        self.port, self.cookie, self.host_id = port, cookie, host_id
        self.messages = 0
        self.error: BaseException | None = None
        self._subscribed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._subscribed.wait(timeout=30) or self.error:
            self.stop()
            raise RuntimeError(f"the live subscriber could not subscribe: {self.error!r}")

    def stop(self) -> None:
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        self._task = self._loop.create_task(self._listen())
        with contextlib.suppress(asyncio.CancelledError):
            self._loop.run_until_complete(self._task)
        self._loop.close()
        self._subscribed.set()  # wakes start() when it failed

    async def _listen(self) -> None:
        ws = None
        try:
            ws = await WebSocket.connect(self.port, "/ws/live/", self.cookie)
            await ws.send_json({"subscribe": f"host:{self.host_id}"})
            reply = json.loads(await ws.recv() or b"null")
            if not isinstance(reply, dict) or reply.get("kind") != "subscribed":
                raise RuntimeError(f"subscribing gave {reply!r}")
            self._subscribed.set()
            while (message := await ws.recv()) is not None:
                if json.loads(message).get("kind") == "sample":
                    self.messages += 1
        except (OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
            self.error = exc
        finally:
            if ws is not None:
                await ws.close()


# -- one tick --------------------------------------------------------------------------


@dataclass
class Ticks:
    processes: int
    sample_ms: list[float]
    bare_ms: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.sample_ms) / statistics.median(self.bare_ms)


def bare_proc_pass() -> int:
    """Read every /proc/<pid>/stat once: the least any per-process sampler must do."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    f.read()
            except OSError:
                continue  # exited meanwhile
            count += 1
    return count


def time_ticks(n: int) -> Ticks:
    """Sampler().sample() and the bare loop, interleaved, `n` each (Django-free path)."""
    from monitoring.sampling import Sampler

    sampler = Sampler()
    sampler.prime()
    result = Ticks(0, [], [])
    for _ in range(n):
        time.sleep(0.2)  # sample() measures rates since the previous tick
        start = time.perf_counter()
        result.processes = bare_proc_pass()
        result.bare_ms.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        sampler.sample()
        result.sample_ms.append(1000 * (time.perf_counter() - start))
    return result


# -- peers -----------------------------------------------------------------------------


def run_quietly(command: list[str], env: dict[str, str] | None = None) -> bool:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        print(f"  {' '.join(command)} failed:\n{done.stdout[-800:]}{done.stderr[-800:]}")
    return done.returncode == 0


def ensure_atop() -> tuple[str | None, str]:
    """atop's path, installing it from Debian when we may; else None and why."""
    found = shutil.which("atop")
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "atop is not installed, and installing it needs root and apt-get"
    print("Installing atop from Debian (apt-get install -y atop)…", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "atop"]
    if not run_quietly(install, env):
        run_quietly(["apt-get", "update", "-q"], env)
        run_quietly(install, env)
    found = shutil.which("atop")
    return (found, "") if found else (None, "apt-get install atop failed")


def ensure_glances() -> tuple[str | None, str]:
    """glances from PATH or this virtualenv, else pip-installed into a private one."""
    private = GLANCES_VENV / "bin" / "glances"
    candidates = [shutil.which("glances"), Path(sys.executable).parent / "glances", private]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate), ""
    print(f"Installing glances from PyPI into {GLANCES_VENV}…", file=sys.stderr)
    ok = run_quietly([sys.executable, "-m", "venv", str(GLANCES_VENV)]) and run_quietly(
        [str(GLANCES_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "glances"]
    )
    if ok and os.access(private, os.X_OK):
        return str(private), ""
    return None, f"pip install glances into {GLANCES_VENV} failed"


def version(command: list[str], work: Path) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(work)}  # glances logs even for --version
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip()
    return " ".join(text.splitlines()[0].split()) if text else "?"


# -- report ----------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def good(results: list[Measurement], case: str) -> list[Measurement]:
    return [r for r in results if r.case == case and not r.error]


def case_table(results: list[Measurement], plan: list[str]) -> str:
    rows = []
    for case in plan:
        done = good(results, case)
        if not done:
            ran = any(r.case == case for r in results)
            rows.append([CASES[case], "failed" if ran else "not run", "", "", "", ""])
            continue
        rows.append(
            [
                CASES[case],
                f"{mean([r.cpu_percent for r in done]):.2f}",
                " / ".join(f"{r.cpu_percent:.2f}" for r in done),
                f"{mean([r.pss_mean_mib for r in done]):.1f}",
                f"{max(r.pss_max_mib for r in done):.1f}",
                str(max(r.processes for r in done)),
            ]
        )
    headers = ["case", "CPU % of 1 core", "per round", "PSS MiB mean", "max", "processes"]
    return table(headers, rows)


def ratio(results: list[Measurement], top: str, bottom: str, attr: str) -> float:
    a = mean([getattr(r, attr) for r in good(results, top)])
    b = mean([getattr(r, attr) for r in good(results, bottom)])
    return a / b if b else float("nan")


def ratio_lines(results: list[Measurement], skipped: dict[str, str]) -> list[str]:
    lines = ["Ratios (means over rounds):"]
    pairs = [("ptracker", "atop"), ("ptracker", "glances"), ("live", "ptracker"), ("agent", "atop")]
    for top, bottom in pairs:
        label = f"  {CASES[top]} / {CASES[bottom]}:"
        why = skipped.get(bottom) or skipped.get(top)
        if why:
            lines.append(f"{label} n/a ({why})")
            continue
        if not (good(results, top) and good(results, bottom)):
            continue  # not both measured in this run
        cpu = ratio(results, top, bottom, "cpu_percent")
        pss = ratio(results, top, bottom, "pss_mean_mib")
        lines.append(f"{label} CPU {times(cpu)}, PSS {times(pss)}")
    received = [str(r.messages) for r in good(results, "live")]
    if received:
        lines.append(f"  live samples received while measured, per round: {', '.join(received)}")
    pushed = [str(r.pushed) for r in good(results, "agent")]
    if pushed:
        lines.append(f"  batches the agent pushed while measured, per round: {', '.join(pushed)}")
    return lines


def times(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def target_line(name: str, value: float, unit: str, limit: float) -> str:
    if math.isnan(value):
        return f"  {name:<38} {'n/a':>8}{'':<4} target <= {limit:g}{unit:<4} n/a"
    verdict = "met" if value <= limit else "missed"
    return f"  {name:<38} {value:8.2f}{unit:<4} target <= {limit:g}{unit:<4} {verdict}"


def target_lines(results: list[Measurement], ticks: Ticks | None) -> list[str]:
    idle = good(results, "ptracker")
    pss = max((r.pss_max_mib for r in idle), default=float("nan"))
    tick = ticks.ratio if ticks else float("nan")
    vs_atop = ratio(results, "ptracker", "atop", "cpu_percent")
    live = ratio(results, "live", "ptracker", "cpu_percent")
    agent_cpu = ratio(results, "agent", "atop", "cpu_percent")
    agent_pss = max((r.pss_max_mib for r in good(results, "agent")), default=float("nan"))
    return [
        "Targets (printed, not asserted):",
        target_line("whole tree idle CPU vs atop's", vs_atop, "x", TARGET_CPU_VS_ATOP),
        target_line("summed PSS, idle (max of readings)", pss, " MiB", TARGET_PSS_MIB),
        target_line("CPU with 1 live subscriber vs idle", live, "x", TARGET_LIVE_VS_IDLE),
        target_line("one tick vs bare /proc loop", tick, "x", TARGET_TICK_RATIO),
        target_line("agent CPU vs atop's", agent_cpu, "x", TARGET_AGENT_CPU_VS_ATOP),
        target_line("agent PSS (max of readings)", agent_pss, " MiB", TARGET_AGENT_PSS_MIB),
    ]


def breakdown(results: list[Measurement], case: str) -> str:
    """Per process, averaged over the rounds it appeared in."""
    cpu: dict[tuple[str, ...], list[float]] = {}
    pss: dict[tuple[str, ...], list[float]] = {}
    for r in good(results, case):
        for row in r.procs:
            cpu.setdefault(row.path, []).append(row.cpu_percent)
            pss.setdefault(row.path, []).append(row.pss_mib)
    rows = [
        [
            "  " * (len(path) - 1) + path[-1],
            f"{mean(cpu[path]):.2f}",
            f"{mean(pss[path]):.1f}",
            str(len(cpu[path])),
        ]
        for path in sorted(cpu)  # a parent's path is a prefix of its children's: tree order
    ]
    return f"Per process, {CASES[case]}:\n" + table(
        ["process (command, [django-q2 role])", "CPU % of 1 core", "PSS MiB mean", "rounds"], rows
    )


def tick_lines(ticks: Ticks, n: int) -> list[str]:
    return [
        f"One tick over all processes ({ticks.processes} processes), in this process, "
        f"median of {n} each, interleaved:",
        f"  Sampler().sample()              {statistics.median(ticks.sample_ms):8.1f} ms",
        f"  bare /proc/<pid>/stat loop      {statistics.median(ticks.bare_ms):8.1f} ms",
        f"  ratio                           {ticks.ratio:8.2f}x",
    ]


def machine_lines(args: argparse.Namespace, plan: list[str], ctx: Context) -> list[str]:
    order = " ".join(CASES[c][0] for c in plan)
    lines = [
        f"Machine: {psutil.cpu_count()} logical CPUs, Linux {os.uname().release}, "
        f"Python {sys.version.split()[0]}, psutil {psutil.__version__}; load average "
        f"{ctx.load_start} at the start, {load_average()} at the end.",
        f"Each case: ready, {args.warmup:g} s warm-up, {args.duration:g} s measured (tree read "
        f"every second), {args.rounds} round(s) in the order {order}; "
        f"interval {args.interval} s; {args.idle} extra idle processes.",
    ]
    lines += [f"{name}: {text}" for name, text in ctx.versions.items()]
    return lines


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(
    results: list[Measurement],
    ticks: Ticks | None,
    ctx: Context,
    plan: list[str],
    skipped: dict[str, str],
) -> None:
    print()
    print("\n".join(machine_lines(ctx.args, plan, ctx)))
    for case, why in skipped.items():
        print(f"Skipped {CASES[case]}: {why}.")
    for r in results:
        if r.error:
            print(f"Failed {CASES[r.case]}, round {r.round}: {r.error.splitlines()[0]}")
    print()
    print(case_table(results, plan))
    print()
    print("\n".join(ratio_lines(results, skipped)))
    if ticks:
        print()
        print("\n".join(tick_lines(ticks, ctx.args.ticks)))
    print()
    print("\n".join(target_lines(results, ticks)))
    for case in PTRACKER_CASES:
        if case in plan and good(results, case):
            print()
            print(breakdown(results, case))


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=60, help="seconds measured per case (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=10, help="seconds between ready and measured (default 10)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all cases (default 2)")
    parser.add_argument(
        "--interval", type=int, default=5, help="seconds between samples, every monitor (default 5)"
    )
    parser.add_argument("--idle", type=int, default=500, help="idle processes (default 500)")
    parser.add_argument("--ticks", type=int, default=20, help="ticks timed each (default 20)")
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated, in round-robin order (default {','.join(CASES)})",
    )
    args = parser.parse_args(argv)
    args.plan = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in args.plan if c not in CASES]
    if unknown or not args.plan:
        parser.error(f"--cases: unknown {', '.join(unknown) or 'empty'}; choose from {list(CASES)}")
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1 or args.idle < 0:
        parser.error("--duration must be >= 1, --warmup and --idle >= 0, --rounds >= 1")
    if not 1 <= args.interval <= 60 or args.ticks < 1:
        parser.error("--interval must be 1 to 60 and --ticks >= 1")
    return args


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run the finally blocks: stop every tree, kill the idle ones


def find_peers(plan: list[str]) -> tuple[str | None, str | None, dict[str, str]]:
    skipped: dict[str, str] = {}
    atop = glances = None
    if "atop" in plan:
        atop, why = ensure_atop()
        if why:
            skipped["atop"] = why
    if "glances" in plan:
        glances, why = ensure_glances()
        if why:
            skipped["glances"] = why
    return atop, glances, skipped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    sys.path.insert(0, str(REPO_ROOT))  # this checkout's monitoring package for the tick
    atop, glances, skipped = find_peers(args.plan)
    for case, why in skipped.items():
        print(f"Skipping {CASES[case]}: {why}.", file=sys.stderr)
    plan = [c for c in args.plan if c not in skipped]
    per_case = args.warmup + args.duration + READY_TIMEOUT + 2 * STOP_TIMEOUT
    lifetime = args.rounds * len(plan) * per_case + 600
    ctx = Context(args, Path(tempfile.mkdtemp(prefix="ptracker-footprint-")), atop, glances)
    ctx.load_start = load_average()
    results: list[Measurement] = []
    ticks = None
    try:
        if atop:
            ctx.versions["atop"] = f"{atop} ({version([atop, '-V'], ctx.work)})"
        if glances:
            ctx.versions["glances"] = f"{glances} ({version([glances, '--version'], ctx.work)})"
        with idle_processes(args.idle, lifetime):
            print(f"Timing {args.ticks} ticks…", file=sys.stderr)
            ticks = time_ticks(args.ticks)
            for round_no in range(1, args.rounds + 1):
                for case in plan:
                    print(f"[round {round_no}/{args.rounds}] {CASES[case]}", file=sys.stderr)
                    results.append(run_case(ctx, case, round_no))
    except KeyboardInterrupt:
        print("Interrupted: figures of the finished cases only.", file=sys.stderr)
    finally:
        shutil.rmtree(ctx.work, ignore_errors=True)
    report(results, ticks, ctx, args.plan, skipped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
