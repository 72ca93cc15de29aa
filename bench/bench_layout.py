"""Per-process figures of a running `ptracker run` tree: who wakes, who costs memory.

Quick figures for choosing the process layout; bench/bench_footprint.py compares the
whole tree with atop and glances. This one starts `python -m ptracker run` (this
checkout, SQLite in a temporary PTRACKER_DATA_DIR, a free port, --extra idle `sleep`
processes on the machine), waits until a sample is stored, then over --duration
seconds reads for every process of the tree:

* CPU % of one core: utime + stime from /proc/<pid>/stat, difference over the window;
* wakeups/s: voluntary + involuntary context switches of all its threads, from
  /proc/<pid>/task/*/status (a thread blocked in one wait does not switch; one that
  sleeps 0.2 s in a loop switches 5 times a second);
* PSS and RSS in MiB from /proc/<pid>/smaps_rollup (PSS shares common pages fairly
  between the processes that map them, so PSS sums to the tree's real memory).

With --live it then logs in, subscribes one websocket to this host and measures a
second window, with the delay from each sample's timestamp to its arrival.
With --imports it prints the memory and time each import stage costs a process.

    .venv/bin/python bench/bench_layout.py                  # idle, 45 s, 500 extra processes
    .venv/bin/python bench/bench_layout.py --live --imports
    .venv/bin/python bench/bench_layout.py --redis redis://127.0.0.1:6379/3

Everything it starts is stopped at the end; the temporary directory is removed.
"""

import argparse
import base64
import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def read_proc(pid: int) -> dict | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():  # every thread wakes on its own
        with contextlib.suppress(FileNotFoundError):
            text = (task / "status").read_text()
            switches += sum(int(v) for v in re.findall(r"ctxt_switches:\s+(\d+)", text))
    kib = dict(re.findall(r"^(Pss|Rss):\s+(\d+) kB", rollup, re.M))
    return {
        "cpu": (int(fields[11]) + int(fields[12])) / TICK,
        "switches": switches,
        "pss": int(kib["Pss"]) / 1024,
        "rss": int(kib["Rss"]) / 1024,
        "cmd": cmdline.strip(),
        "threads": int(re.search(r"Threads:\s+(\d+)", status).group(1)),
    }


def tree(root: int) -> list[int]:
    return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]


def short(cmd: str) -> str:
    cmd = re.sub(r"\S*/python3?(\.\d+)? ", "python ", cmd)
    return cmd[:70]


def measure(root: int, seconds: float) -> list[dict]:
    pids = tree(root)
    before = {pid: read_proc(pid) for pid in pids}
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    rows = []
    for pid in pids:
        a, b = before[pid], read_proc(pid)
        if a is None or b is None:
            continue
        rows.append(
            {
                "pid": pid,
                "cmd": short(b["cmd"]),
                "cpu": 100 * (b["cpu"] - a["cpu"]) / wall,
                "wakeups": (b["switches"] - a["switches"]) / wall,
                "pss": b["pss"],
                "rss": b["rss"],
                "threads": b["threads"],
            }
        )
    return rows


def report(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'pid':>7} {'CPU %':>6} {'wake/s':>7} {'PSS MiB':>8} {'RSS MiB':>8} {'thr':>4}  command"
    )
    for r in rows:
        print(
            f"{r['pid']:>7} {r['cpu']:6.2f} {r['wakeups']:7.1f} {r['pss']:8.1f} {r['rss']:8.1f} "
            f"{r['threads']:>4}  {r['cmd']}"
        )
    total = {k: sum(r[k] for r in rows) for k in ("cpu", "wakeups", "pss", "rss")}
    print(
        f"{'total':>7} {total['cpu']:6.2f} {total['wakeups']:7.1f} {total['pss']:8.1f} "
        f"{total['rss']:8.1f}       {len(rows)} processes"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def sample_count(data_dir: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(data_dir / "ptracker.sqlite3")) as db:
            return db.execute("SELECT count(*) FROM monitoring_hostsample").fetchone()[0]
    except sqlite3.Error:
        return 0


def log_in(base: str, password: str) -> str:
    """The session cookie of a logged-in admin."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(base + "/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = {"username": "admin", "password": password, "csrfmiddlewaretoken": token}
    opener.open(base + "/login/", urllib.parse.urlencode(form).encode())
    return next(c.value for c in jar if c.name == "sessionid")


def frame(data: bytes, opcode: int = 0x1) -> bytes:
    """One masked client frame (the mask is zero: still a valid frame)."""
    assert len(data) < 126
    return bytes([0x80 | opcode, 0x80 | len(data)]) + b"\0\0\0\0" + data


def read_frame(sock_file) -> tuple[int, bytes]:
    """(opcode, payload) of one unmasked server frame."""
    head = sock_file.read(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(sock_file.read(2), "big")
    elif length == 127:
        length = int.from_bytes(sock_file.read(8), "big")
    return head[0] & 0x0F, sock_file.read(length)


def subscribe(port: int, session: str, host_id: int, delays: list[float]) -> socket.socket:
    """A websocket on /ws/live/ subscribed to the host; delays fill from a thread."""
    sock = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws/live/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\nCookie: sessionid={session}\r\n\r\n"
        ).encode()
    )
    sock_file = sock.makefile("rb")
    while sock_file.readline() not in (b"\r\n", b""):
        pass
    sock.sendall(frame(json.dumps({"subscribe": f"host:{host_id}"}).encode()))

    def read() -> None:
        with contextlib.suppress(OSError, IndexError):
            while True:
                opcode, payload = read_frame(sock_file)
                if opcode == 0x9:  # Daphne pings every 20 s and drops a socket that never answers
                    sock.sendall(frame(payload, opcode=0xA))
                if opcode != 0x1:
                    continue
                message = json.loads(payload)
                if message.get("kind") == "sample":
                    ts = datetime.fromisoformat(message["data"]["sample"]["ts"]).timestamp()
                    delays.append(time.time() - ts)

    threading.Thread(target=read, daemon=True).start()
    return sock


HEAVY = ["rest_framework", "drf_spectacular", "prometheus_client", "django_q.cluster", "twisted"]


def import_costs() -> None:
    """RSS and time after each stage of what a ptracker process imports."""
    stages = [
        ("python", ""),
        ("django.setup()", "import django; django.setup()"),
        ("+ monitoring.tasks (sampler, jobs)", "import monitoring.tasks, alerts.tasks"),
        ("+ ptracker.asgi (web app, channels)", "import ptracker.asgi"),
        ("+ ptracker.urls (views, DRF, schema, /metrics)", "import ptracker.urls"),
        ("+ django_q.cluster", "import django_q.cluster"),
    ]
    code = "\n".join(
        [
            "import os, re, sys, time",
            "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'ptracker.settings')",
            "def rss():",
            "    s = open('/proc/self/status').read()",
            "    return int(re.search(r'VmRSS:\\s+(\\d+)', s).group(1)) / 1024",
            "t = time.perf_counter()",
        ]
        + [
            f"{stmt}\nprint(f'{name:<48} {{rss():6.1f}} MiB {{time.perf_counter() - t:5.2f}} s')"
            for name, stmt in stages
        ]
        + [
            f"heavy = {HEAVY!r}",
            "print('loaded at the end:', [m for m in heavy if m in sys.modules])",
        ]
    )
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "PTRACKER_DATA_DIR": data_dir, "PYTHONPATH": str(ROOT)}
        print("\nImport stages of one process (cumulative RSS, time):")
        subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--duration", type=float, default=45)
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--extra", type=int, default=500, help="idle processes to add")
    parser.add_argument("--live", action="store_true", help="also measure with a subscriber")
    parser.add_argument("--imports", action="store_true", help="also print import costs")
    parser.add_argument("--redis", default="", help="PTRACKER_REDIS_URL for the run")
    args = parser.parse_args()

    if args.imports:
        import_costs()
    idle = [subprocess.Popen(["sleep", "3600"]) for _ in range(args.extra)]
    data_dir = Path(tempfile.mkdtemp(prefix="ptracker-layout-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PTRACKER_", "DATABASE_"))}
    env.update(
        PTRACKER_DATA_DIR=str(data_dir),
        PTRACKER_SAMPLE_INTERVAL=str(args.interval),
        PYTHONPATH=str(ROOT),
    )
    if args.redis:
        env["PTRACKER_REDIS_URL"] = args.redis
    log = open(data_dir / "run.log", "w")  # noqa: SIM115 (closed in finally)
    run = subprocess.Popen(
        [sys.executable, "-m", "ptracker", "run", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        started = time.monotonic()
        wait_for(lambda: sample_count(data_dir) > 0, "a stored sample")
        print(f"first sample stored {time.monotonic() - started:.1f} s after start")
        time.sleep(args.warmup)
        report(
            f"idle, {args.duration:.0f} s, interval {args.interval} s",
            measure(run.pid, args.duration),
        )
        if args.live:
            password = (data_dir / "initial-admin-password").read_text().strip()
            session = log_in(f"http://127.0.0.1:{port}", password)
            delays: list[float] = []
            sock = subscribe(port, session, 1, delays)
            time.sleep(args.warmup)
            rows = measure(run.pid, args.duration)
            sock.close()
            report("one websocket subscriber", rows)
            if len(delays) >= 2:
                p95 = statistics.quantiles(delays, n=20)[-1]
                print(
                    f"sample ts -> on the socket: {len(delays)} samples, "
                    f"median {statistics.median(delays):.2f} s, p95 {p95:.2f} s"
                )
        stop_started = time.monotonic()
        run.send_signal(signal.SIGTERM)
        run.wait(30)
        print(f"\nstopped in {time.monotonic() - stop_started:.1f} s, status {run.returncode}")
    finally:
        if run.poll() is None:
            for child in psutil.Process(run.pid).children(recursive=True):
                child.kill()
            run.kill()
        for p in idle:
            p.kill()
            p.wait()
        log.close()
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


if __name__ == "__main__":
    main()
