"""GPU leases for batch jobs, without Django: `ptracker gpu` and `gpu_lease()`.

    ptracker gpu --count 1 --ttl 2h -- python train.py

    with ptracker.client.gpu_lease(count=1, ttl=7200) as gpus:
        ...  # CUDA_VISIBLE_DEVICES names the leased GPUs; gpus[0].index is one

The lease comes from the hub (--hub or PTRACKER_HUB, default http://127.0.0.1:8000)
with an API token from PTRACKER_TOKEN or a file (--token-file, PTRACKER_TOKEN_FILE),
never from the command line, which every user of the machine can read. A token made
for "GPU leases only" on the hub's API tokens page is enough. The lease names this
process (pid and start time), so the hub's monitor frees the GPUs within a minute
if the job dies without releasing them. While the job runs a thread renews the lease
every third of its TTL (at most every 5 minutes); at the end it is released, also
after an exception, Ctrl+C or SIGTERM.

Waiting is done here: the hub answers at once, and this asks again every couple of
seconds under one `attempt` id until GPUs are free or the wait is over.
"""

import argparse
import contextlib
import getpass
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

from monitoring.collectors.system import local_machine_id

HUB_ENV, TOKEN_ENV, TOKEN_FILE_ENV = "PTRACKER_HUB", "PTRACKER_TOKEN", "PTRACKER_TOKEN_FILE"
DEFAULT_HUB = "http://127.0.0.1:8000"
DEFAULT_TTL = 600.0  # seconds: how long a job killed with -9 can keep a GPU on a remote host
API = "/api/v1/gpu-leases/"
TIMEOUT = 15.0  # seconds for the hub to answer
FOREVER = 30 * 24 * 3600.0  # the hub's longest wait
NO_GPU = 75  # exit status when no GPU was granted (EX_TEMPFAIL): nothing ran
USAGE = 2  # exit status for a usage, token or hub error: nothing ran
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


class LeaseError(Exception):
    """The hub refused or could not be asked; the message says why."""


class NoFreeGpu(LeaseError):
    """Too few GPUs were free (at once, or within the wait): `answer` is the hub's."""

    def __init__(self, message: str, answer: dict) -> None:
        super().__init__(message)
        self.answer = answer


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    lock_key: str


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "15m", "2h", "1d" or "1h30m"."""
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)\s*([smhd]?)\s*)+", text or "")
    if not parts:
        raise ValueError(f"not a duration: {text!r} (write 90s, 15m, 2h or 1d)")
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text))


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def read_token(path: str | None = None) -> str:
    """The API token: from `path`, PTRACKER_TOKEN_FILE or PTRACKER_TOKEN."""
    path = path or os.environ.get(TOKEN_FILE_ENV)
    if path:
        try:
            value = Path(path).read_text()
        except OSError as exc:
            raise LeaseError(f"cannot read the token file {path}: {exc.strerror}") from None
        source = path
    else:
        value, source = os.environ.get(TOKEN_ENV, ""), TOKEN_ENV
    value = value.strip()
    if not value:
        raise LeaseError(
            f"no API token: put one in {TOKEN_ENV} or in a file named by --token-file "
            f"or {TOKEN_FILE_ENV} (make one on the hub's API tokens page)"
        )
    if not re.fullmatch(r"[\x21-\x7e]+", value):
        raise LeaseError(f"{source} holds more than one printable word")
    return value


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """The token never follows a redirect elsewhere."""

    def redirect_request(self, *args, **kwargs):
        return None


class Hub:
    def __init__(self, url: str | None = None, token: str | None = None, insecure=False) -> None:
        url = (url or os.environ.get(HUB_ENV) or DEFAULT_HUB).rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LeaseError(f"the hub's address must be http(s)://host[:port], got {url!r}")
        if parts.scheme == "http" and not is_loopback(parts.hostname) and not insecure:
            raise LeaseError(
                f"refusing to send the token in clear text to {url}: use https:// "
                "(or --insecure on a network you trust)"
            )
        self.url = url
        self.token = token or read_token()
        self.opener = urllib.request.build_opener(NoRedirects())

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        return self.call("POST", API + path, body)

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | list]:
        """One request to the hub with the token; (status, JSON answer)."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, _json(exc.read())
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise LeaseError(f"cannot reach the hub at {self.url}: {reason}") from None
        if status == 401:
            raise LeaseError(f"the hub at {self.url} refused the token: {_detail(answer)}")
        return status, answer


def _json(body: bytes) -> dict | list:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {"detail": body[:200].decode(errors="replace")}
    return value if isinstance(value, dict | list) else {"detail": str(value)}


def _detail(answer: dict) -> str:
    if "detail" in answer:
        return str(answer["detail"])
    return "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in answer.items()) or "no reason"


def holders_text(answer: dict) -> str:
    """`GPU 0: bob: train.py (pid 42)…` from a refusal."""
    held = []
    for h in answer.get("holders", []):
        text = f"GPU {h['index']}: {h['user']}" + (f": {h['job']}" if h["job"] else "")
        held.append(text + (f" (pid {h['pid']})" if h.get("pid") else ""))
    return "; ".join(held)


class Lease:
    """GPUs of this host held from the hub; `acquire`, then `release` (or use
    `holding()`)."""

    def __init__(
        self,
        hub: Hub,
        count: int = 1,
        ttl: float = DEFAULT_TTL,
        job: str = "",
        wait: float | None = None,
        host: str = "",
        on_wait=None,
    ) -> None:
        self.hub, self.count, self.ttl, self.job, self.host = hub, count, ttl, job, host
        self.wait = FOREVER if wait is None else wait
        self.on_wait = on_wait  # called with the hub's answer each time it says "waiting"
        self.handle: str | None = None
        self.gpus: list[Gpu] = []
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def body(self) -> dict:
        me = psutil.Process()
        return {
            "host": self.host,
            "machine_id": local_machine_id(),
            "hostname": socket.gethostname(),
            "count": self.count,
            "ttl": max(5, round(self.ttl)),
            "job": self.job[:200],
            "user": getpass.getuser()[:100],
            "pid": me.pid,
            "process_started": me.create_time(),
        }

    def acquire(self) -> list[Gpu]:
        body = {**self.body(), "wait": min(self.wait, FOREVER), "attempt": uuid.uuid4().hex}
        while True:
            status, answer = self.hub.post("acquire", body)
            if status == 200:
                self.handle = answer["lease"]
                self.gpus = [
                    Gpu(g["index"], g["uuid"], g["name"], g["lock_key"]) for g in answer["gpus"]
                ]
                return self.gpus
            if status != 409:
                raise LeaseError(f"the hub refused the lease ({status}): {_detail(answer)}")
            if answer.get("state") != "waiting":
                held = holders_text(answer)
                raise NoFreeGpu(answer["detail"] + (f"; held by {held}" if held else ""), answer)
            if self.on_wait:
                self.on_wait(answer)
            time.sleep(float(answer.get("retry_after") or 2.0))

    def renew(self) -> bool:
        """Renew once; False when the hub says the lease is gone (raises when unreachable)."""
        status, answer = self.hub.post("renew", {"lease": self.handle, "ttl": round(self.ttl)})
        if status == 404:
            self.lost.set()
            return False
        if status != 200:
            raise LeaseError(f"renewing failed ({status}): {_detail(answer)}")
        return True

    def release(self) -> None:
        self.stop_renewing()
        if self.handle is None:
            return
        handle, self.handle = self.handle, None
        status, answer = self.hub.post("release", {"lease": handle})
        if status not in (200, 404):
            raise LeaseError(f"releasing failed ({status}): {_detail(answer)}")

    def start_renewing(self, warn=None) -> None:
        every = max(1.0, min(self.ttl / 3, 300.0))
        warn = warn or (lambda message: print(f"ptracker: {message}", file=sys.stderr))

        def renew_loop() -> None:
            while not self._stop.wait(every):
                try:
                    if not self.renew():
                        warn("the GPU lease was lost (expired or force-released)")
                        return
                except LeaseError as exc:
                    warn(f"{exc}; trying again in {every:g} s")

        self._renewer = threading.Thread(target=renew_loop, name="ptracker-renew", daemon=True)
        self._renewer.start()

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(TIMEOUT + 1)

    def visible_devices(self) -> str:
        """CUDA_VISIBLE_DEVICES: UUIDs when known, as CUDA may number GPUs otherwise
        than NVML (fastest first, not by PCI bus)."""
        if self.gpus and all(g.uuid for g in self.gpus):
            return ",".join(g.uuid for g in self.gpus)
        return ",".join(str(g.index) for g in self.gpus)


@contextlib.contextmanager
def gpu_lease(
    count: int = 1,
    ttl: float | str = DEFAULT_TTL,
    wait: float | None = None,
    job: str | None = None,
    hub: str | None = None,
    token: str | None = None,
    host: str = "",
    set_environment: bool = True,
):
    """Hold `count` GPUs of this host while the block runs; yields [Gpu].

    wait: seconds to wait for free GPUs (None: as long as it takes, 0: not at all;
    NoFreeGpu when they are not free in time). With `set_environment`,
    CUDA_VISIBLE_DEVICES names them inside the block. In the main thread, SIGTERM
    (with its default action) raises SystemExit inside the block, so the lease is
    released; it is restored after."""
    ttl = parse_duration(ttl) if isinstance(ttl, str) else float(ttl)
    job = job if job is not None else Path(sys.argv[0] or "python").name
    lease = Lease(Hub(hub, token), count=count, ttl=ttl, job=job, wait=wait, host=host)
    gpus = lease.acquire()
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    handler = None
    try:
        if set_environment:
            os.environ["CUDA_VISIBLE_DEVICES"] = lease.visible_devices()
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            handler = signal.signal(signal.SIGTERM, _exit_on_term)
        lease.start_renewing()
        yield gpus
    finally:
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)
        if set_environment:
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous
        lease.release()


def _exit_on_term(signum, frame):
    raise SystemExit(128 + signum)


# --- `ptracker gpu -- command` --------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptracker gpu",
        description="Run a command on GPUs leased from the hub: it sees them in "
        "CUDA_VISIBLE_DEVICES; the lease is renewed while it runs and released when it "
        "ends. Exits with the command's status (128+N when killed by signal N), "
        f"{NO_GPU} when no GPU was granted, {USAGE} on a usage or hub error.",
        epilog=f"The token comes from ${TOKEN_ENV} or a file (--token-file, "
        f"${TOKEN_FILE_ENV}), never from the command line.",
        allow_abbrev=False,  # or `--token SECRET` would pass for --token-file
    )
    parser.add_argument("--count", type=int, default=1, help="GPUs to lease (default 1)")
    parser.add_argument(
        "--ttl",
        default="10m",
        help="how long the lease lasts unless renewed: 90s, 15m, 2h (default 10m). It is "
        "renewed while the command runs; if this wrapper is killed with -9 on a host "
        "other than the hub's, the GPUs stay leased this long",
    )
    waiting = parser.add_mutually_exclusive_group()
    waiting.add_argument(
        "--no-wait", action="store_true", help=f"fail at once (status {NO_GPU}) when busy"
    )
    waiting.add_argument("--wait", help="wait at most this long (default: until free)")
    parser.add_argument("--job", help="the job's name on the GPUs page (default: the command)")
    parser.add_argument("--hub", help=f"the hub's address (${HUB_ENV}, default {DEFAULT_HUB})")
    parser.add_argument("--token-file", help=f"a file holding the API token (else ${TOKEN_ENV})")
    parser.add_argument("--host", default="", help="this machine's name on the hub, if unusual")
    parser.add_argument("--insecure", action="store_true", help="allow http:// to another host")
    parser.add_argument("-q", "--quiet", action="store_true", help="say nothing while waiting")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    return parser


def default_job(command: list[str]) -> str:
    """`python train.py` from `/usr/bin/python3 train.py --lr 3e-4`: no arguments, which
    may hold secrets."""
    words = [Path(command[0]).name]
    if len(command) > 1 and not command[1].startswith("-"):
        words.append(Path(command[1]).name)
    return " ".join(words)


class Progress:
    """One line while waiting: redrawn on a terminal, else once a minute."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.drawn = False

    def __call__(self, answer: dict) -> None:
        if self.quiet or (not self.tty and time.monotonic() - self.last < 60):
            return
        self.last = time.monotonic()
        held = holders_text(answer)
        line = f"ptracker: {answer['detail']}, {answer['waited']:.0f} s so far" + (
            f"; held by {held}" if held else ""
        )
        if self.tty:
            print(f"\r\x1b[K{line[:200]}", end="", file=sys.stderr, flush=True)
            self.drawn = True
        else:
            print(line, file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.drawn:
            print(file=sys.stderr, flush=True)


def in_terminal_foreground() -> bool:
    """Whether Ctrl+C on the terminal reaches the child by itself (same group)."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except OSError:
        return False


def run_child(command: list[str], env: dict, tail: bytearray | None = None) -> int:
    """Run the command; forward termination signals to it; its exit status. With
    `tail`, its output goes through here (to the same stdout and stderr) and the last
    TAIL_BYTES of it are kept there."""
    children: list[subprocess.Popen] = []
    pending: list[int] = []  # signals that came before the child was there

    def forward(signum, frame):
        if signum == signal.SIGINT and in_terminal_foreground():
            return  # the terminal sent it to the child too
        if not children:
            pending.append(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        try:
            pipe = subprocess.PIPE if tail is not None else None
            children.append(subprocess.Popen(command, env=env, stdout=pipe, stderr=pipe))
        except OSError as exc:
            print(f"ptracker: cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        for signum in pending:
            children[0].send_signal(signum)
        tees = []
        if tail is not None:
            child = children[0]
            streams = ((child.stdout, sys.stdout), (child.stderr, sys.stderr))
            tees = [threading.Thread(target=tee, args=(*pair, tail)) for pair in streams]
            for thread in tees:
                thread.start()
        status = children[0].wait()
        for thread in tees:
            thread.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status if status >= 0 else 128 - status


TAIL_BYTES = 10_000  # of a job's output kept for its final ping (the hub keeps as much)
tail_lock = threading.Lock()


def tee(source, target, tail: bytearray) -> None:
    """Copy the child's output as it comes (no waiting for a line's end), keeping its
    last TAIL_BYTES in `tail`."""
    out = getattr(target, "buffer", None)
    while chunk := os.read(source.fileno(), 65536):
        if out is not None:
            out.write(chunk)
            out.flush()
        else:
            target.write(chunk.decode(errors="replace"))
        with tail_lock:
            tail += chunk
            del tail[:-TAIL_BYTES]
    source.close()


def main(argv: list[str]) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --: ptracker gpu --count 1 -- python train.py")
    try:
        ttl = parse_duration(args.ttl)
        wait = 0.0 if args.no_wait else (parse_duration(args.wait) if args.wait else None)
    except ValueError as exc:
        parser.error(str(exc))
    if args.count < 1:
        parser.error("--count must be at least 1")
    progress = Progress(args.quiet)
    # Until the command runs, a stop request ends the wait, or releases what was taken.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _exit_on_term)
    try:
        hub = Hub(args.hub, read_token(args.token_file), args.insecure)
        job = args.job or default_job(command)
        lease = Lease(hub, args.count, ttl, job, wait, args.host, on_wait=progress)
        lease.acquire()
    except NoFreeGpu as exc:
        progress.done()
        print(f"ptracker: {exc}", file=sys.stderr)
        return NO_GPU
    except LeaseError as exc:
        progress.done()
        print(f"ptracker: {exc}", file=sys.stderr)
        return USAGE
    progress.done()
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": lease.visible_devices(),
        "PTRACKER_GPUS": ",".join(str(g.index) for g in lease.gpus),
    }
    try:
        lease.start_renewing()
        status = run_child(command, env)
    finally:
        try:
            lease.release()
        except LeaseError as exc:
            print(f"ptracker: {exc}; the hub frees the GPUs itself", file=sys.stderr)
    return status


# --- task heartbeats: `ptracker job -- command` and `heartbeat()` -----------------------

PING_URL_ENV = "PTRACKER_PING_URL"


class Heartbeat:
    """One run of a heartbeat check, told to the hub through the check's ping URL (its
    secret: no token needed): `start()`, `ping(progress=…)`, then `success()` or
    `fail(exit_status)`. The start names this process (host, pid, start time), so the
    hub marks the run orphaned if the process vanishes without a final ping. A hub
    that cannot be reached is a warning, never the job's failure."""

    def __init__(self, ping_url: str, run_id: str | None = None, warn=None) -> None:
        self.url = ping_url.rstrip("/")
        self.run_id = run_id or uuid.uuid4().hex
        self.warn = warn or (lambda message: print(f"ptracker: {message}", file=sys.stderr))

    def send(self, action: str, log: str = "", **params) -> bool:
        query = urllib.parse.urlencode(
            {"rid": self.run_id, **{k: v for k, v in params.items() if v is not None}}
        )
        url = f"{self.url}/{action}?{query}" if action else f"{self.url}?{query}"
        data = log.encode()[-TAIL_BYTES:] if log else None
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return response.status == 200
        except urllib.error.HTTPError as exc:
            self.warn(f"the hub answered {exc.code} to the {action or 'success'} ping")
        except (OSError, ValueError) as exc:
            self.warn(f"cannot ping the hub: {getattr(exc, 'reason', None) or exc}")
        return False

    def start(self) -> bool:
        me = psutil.Process()
        return self.send(
            "start",
            pid=me.pid,
            create_time=me.create_time(),
            hostname=socket.gethostname(),
            machine_id=local_machine_id(),
        )

    def ping(self, progress: float | None = None) -> bool:
        """Say the run lives, with its progress (0-1)."""
        return self.send("progress", progress=progress)

    def success(self, log: str = "") -> bool:
        return self.send("", log)

    def fail(self, exit_status: int | None = None, log: str = "") -> bool:
        return self.send(str(exit_status) if exit_status is not None else "fail", log)


def ping_url_of(name: str, hub: Hub) -> str:
    """The ping URL of the check `name`, asked of the hub with the token."""
    status, answer = hub.call(
        "GET", "/api/v1/heartbeats/?" + urllib.parse.urlencode({"name": name})
    )
    rows = answer.get("results", []) if isinstance(answer, dict) else answer
    if status != 200 or not rows:
        raise LeaseError(f"the hub has no heartbeat check named {name!r} ({status})")
    return f"{hub.url}/ping/{rows[0]['slug']}"


@contextlib.contextmanager
def heartbeat(
    name: str | None = None,
    ping_url: str | None = None,
    hub: str | None = None,
    token: str | None = None,
    run_id: str | None = None,
):
    """Report the block as one run of a heartbeat check; yields the Heartbeat, whose
    `ping(progress=…)` says how far it got. An exception in the block is a failed
    run (its last lines as the log), and goes on; SystemExit(n) ends it with n.
    The check is named by its ping URL (or PTRACKER_PING_URL), else by its name
    (then a token is needed to look it up)."""
    url = ping_url or os.environ.get(PING_URL_ENV) or ping_url_of(name or "", Hub(hub, token))
    beat = Heartbeat(url, run_id)
    beat.start()
    try:
        yield beat
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        beat.success() if code == 0 else beat.fail(code)
        raise
    except BaseException:
        import traceback

        beat.fail(1, traceback.format_exc()[-TAIL_BYTES:])
        raise
    else:
        beat.success()


def make_job_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ptracker job",
        description="Run a command as one run of a heartbeat check: a start ping, then "
        "success or fail with its exit status, duration and the last lines of its output "
        "(which still shows here). Exits with the command's status (128+N when killed by "
        f"signal N), {USAGE} on a usage error.",
        epilog=f"Name the check by --ping-url (or ${PING_URL_ENV}: no token needed) or by "
        f"--check NAME (the token from ${TOKEN_ENV} or --token-file looks it up).",
        allow_abbrev=False,
    )
    parser.add_argument("--check", help="the heartbeat check's name on the hub")
    parser.add_argument("--ping-url", help=f"the check's ping URL (${PING_URL_ENV})")
    parser.add_argument("--run-id", help="this run's id (default: a random one)")
    parser.add_argument("--lines", type=int, default=50, help="output lines sent (default 50)")
    parser.add_argument("--hub", help=f"the hub's address (${HUB_ENV}, default {DEFAULT_HUB})")
    parser.add_argument("--token-file", help=f"a file holding the API token (else ${TOKEN_ENV})")
    parser.add_argument("--insecure", action="store_true", help="allow http:// to another host")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    return parser


def job_main(argv: list[str]) -> int:
    parser = make_job_parser()
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --: ptracker job --check NAME -- ./backup.sh")
    url = args.ping_url or os.environ.get(PING_URL_ENV)
    if not url and not args.check:
        parser.error("name the check: --check NAME or --ping-url URL")
    beat = None
    try:
        if not url:
            url = ping_url_of(args.check, Hub(args.hub, read_token(args.token_file), args.insecure))
        beat = Heartbeat(url, args.run_id)
    except LeaseError as exc:  # the job runs all the same: the check will say it is late
        print(f"ptracker: {exc}; running without heartbeats", file=sys.stderr)
    if beat:
        beat.start()
    tail = bytearray()
    status = run_child(command, dict(os.environ), tail)
    if beat:
        lines = bytes(tail).decode(errors="replace").splitlines()[-max(args.lines, 0) :]
        log = "\n".join(lines)
        beat.success(log) if status == 0 else beat.fail(status, log)
    return status
