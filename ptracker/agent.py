"""`ptracker agent`: sample this machine and push the batches to a hub, or serve
them to a hub that pulls (--listen; ptracker.agent_api).

A thin driver of the sampling core (monitoring.sampling, no Django). The TickLoop
runs in the main thread; its sink gives each batch an id and appends it to the disk
spool (ptracker.spool), then wakes the sender thread. The sender pushes from the
spool's head, oldest first, at most 100 batches a request, and moves the spool's
cursor only after the hub's 200: whatever the hub has not acknowledged is sent
again, and the hub stores each batch id once.

When the hub cannot be reached, answers 5xx or refuses the token, ticks go on
filling the spool (up to its cap) and the sender retries with jittered exponential
backoff, logging one line when trouble starts and one when it ends.

The token comes from PTRACKER_AGENT_TOKEN or --token-file, never from the command
line, which every user of the machine can read. It is never sent in clear text to
another machine (plain http:// only to a loopback address, or with --insecure), and
never follows a redirect.

With --listen the agent also serves its newest sample, and without --hub it serves
its spool to a hub that pulls: the hub's acknowledgements move the spool's cursor
as a push's 200 does (see ptracker.agent_api).
"""

import argparse
import gzip
import http.client
import ipaddress
import json
import logging
import os
import random
import re
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from monitoring.sampling import MIN_WINDOW, Batch, Sampler, TickLoop, Watch
from ptracker.spool import Chunk, Spool, SpoolBusy

log = logging.getLogger("ptracker.agent")

DEFAULT_INTERVAL = 5.0
MAX_CHUNK = 100  # batches per request: the hub takes no more
TIMEOUT = 10.0  # seconds for the hub to answer
BACKOFF = (1.0, 60.0)  # first and longest wait between retries, seconds
INGEST_PATH = "/api/v1/ingest"
TOKEN_ENV = "PTRACKER_AGENT_TOKEN"
UNIT_SPOOL_DIR = "/var/lib/ptracker-agent/spool"
UNIT_ENV_FILE = "/etc/ptracker-agent/env"
WATCH_FIELDS = ("name", "cmdline", "exe")


def version() -> str:
    try:
        return metadata.version("ptracker")
    except metadata.PackageNotFoundError:
        return "unknown"


class UsageError(Exception):
    """A setting the agent cannot start with; the message says which and why."""


class TokenError(Exception):
    pass


class Token:
    """The agent token. A token file is read again for every push, so a new token
    written there is used from the next try on, without a restart."""

    def __init__(self, path: Path | None, environ_value: str | None) -> None:
        self.path = path
        self.environ_value = environ_value
        self._warned_mode = False

    def source(self) -> str:
        return str(self.path) if self.path else TOKEN_ENV

    def read(self) -> str:
        if self.path is None:
            value = self.environ_value or ""
        else:
            try:
                value = self.path.read_text()
                mode = self.path.stat().st_mode
            except OSError as exc:
                raise TokenError(f"cannot read {self.path}: {exc.strerror}") from None
            if mode & 0o077 and not self._warned_mode:
                self._warned_mode = True
                log.warning("%s can be read by other users: chmod 600 it", self.path)
        value = value.strip()
        if not value:
            raise TokenError(f"{self.source()} is empty or not set")
        if not re.fullmatch(r"[\x21-\x7e]+", value):
            raise TokenError(f"{self.source()} holds more than one printable word")
        return value


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is: the token never follows one elsewhere."""

    def redirect_request(self, *args, **kwargs):
        return None


class Hub:
    """The hub's ingest endpoint: one POST of a gzip'd JSON body."""

    def __init__(self, url: str, token: Token, ca_file: str | None = None) -> None:
        self.url = url + INGEST_PATH
        self.token = token
        context = ssl.create_default_context(cafile=ca_file)
        self.opener = urllib.request.build_opener(
            NoRedirects(), urllib.request.HTTPSHandler(context=context)
        )

    def push(self, payload: dict) -> tuple[int, dict]:
        """(HTTP status, the answer's JSON object or {}); OSError or HTTPException
        when no answer came (refused, timed out, TLS failed)."""
        body = gzip.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token.read()}",
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "User-Agent": f"ptracker-agent/{version()}",
            },
        )
        try:
            with self.opener.open(request, timeout=TIMEOUT) as response:
                return response.status, _json_object(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                answer = _json_object(exc.read())
                if 300 <= exc.code < 400:
                    answer.setdefault("error", f"redirects to {exc.headers.get('Location')}")
                return exc.code, answer


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _describe(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__


class Sender:
    """Pushes the spool's head to the hub until it is empty, then waits for `wake`."""

    def __init__(self, spool: Spool, hub: Hub, name: str, on_config, backoff=BACKOFF) -> None:
        """`on_config(config)` gets the hub's config from each answer."""
        self.spool, self.hub, self.name = spool, hub, name
        self.on_config = on_config
        self.backoff = backoff
        self.wake = threading.Event()
        self.chunk_size = MAX_CHUNK
        self.failures = 0
        self.trouble: str | None = None  # the kind of failure going on, logged once

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.wake.clear()  # before reading: an append after this wakes the wait below
            chunk = self.spool.head(self.chunk_size)
            if chunk is None:
                self.wake.wait()
                continue
            delay = self.push(chunk)
            if delay:
                stop.wait(delay)

    def push(self, chunk: Chunk) -> float:
        """Send one chunk; the seconds to wait before the next try."""
        dropped = self.spool.dropped
        payload = {
            "host": self.name,
            "agent": {"version": version(), "time": time.time()},
            "dropped": dropped,
            "batches": chunk.batches,
        }
        try:
            status, answer = self.hub.push(payload)
        except TokenError as exc:
            return self.failed("token", f"no usable agent token: {exc}")
        except (OSError, http.client.HTTPException) as exc:
            return self.failed("unreachable", f"cannot reach the hub: {_describe(exc)}")
        if status == 200:
            self.spool.commit(chunk, dropped)
            self.succeeded(answer)
            return 0.0
        # The hub's own refusals say "error"; its authentication layer (DRF) says "detail".
        error = str(answer.get("error") or answer.get("detail") or "")
        if status in (401, 403):
            return self.failed(
                "refused",
                f"the hub refused this agent ({status}: {error or 'no reason given'}); "
                f"batches stay in the spool until a valid token is in {self.hub.token.source()}"
                + ("" if self.hub.token.path else " and the agent restarted"),
            )
        if status in (400, 413):
            return self.rejected(chunk, status, answer)
        return self.failed(f"status {status}", f"the hub answered {status} {error}".rstrip())

    def succeeded(self, answer: dict) -> None:
        if self.trouble:
            log.info(
                "the hub takes batches again; %.1f MiB left to send",
                self.spool.backlog_bytes() / 2**20,
            )
        self.trouble, self.failures = None, 0
        self.chunk_size = min(MAX_CHUNK, self.chunk_size * 2)
        if isinstance(answer.get("config"), dict):
            self.on_config(answer["config"])

    def failed(self, kind: str, message: str) -> float:
        if kind != self.trouble:
            log.warning("%s; retrying with backoff", message)
            self.trouble = kind
        first, longest = self.backoff
        delay = min(longest, first * 2**self.failures)
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)

    def rejected(self, chunk: Chunk, status: int, answer: dict) -> float:
        """400 or 413. A request that is too large, or has one bad batch, gets smaller
        until the bad batch is alone; that one is dropped (resending the same bytes
        can never succeed). An error in the envelope drops nothing: it is retried."""
        where, error = str(answer.get("field", "")), answer.get("error", "")
        index = re.match(r"batches\[(\d+)\]", where)
        many = len(chunk.batches) > 1
        if many and index:
            self.chunk_size = int(index[1]) or 1  # the good ones before it, then it alone
            return 0.0
        if many and (status == 413 or where in ("body", "batches")):
            self.chunk_size = max(1, len(chunk.batches) // 2)
            return 0.0
        if status == 413 or index:
            log.error(
                "the hub rejects batch %s of %s (%s %s: %s); it is dropped",
                chunk.batches[0].get("id"),
                chunk.batches[0].get("ts"),
                status,
                where,
                error,
            )
            self.spool.drop(chunk)
            return 0.0
        return self.failed("rejected", f"the hub rejects the request ({status} {where}: {error})")


@dataclass
class Settings:
    hub: str | None  # None: only serve pulls (listen)
    token: Token
    interval: float | None  # None: the hub's
    spool_dir: Path
    spool_max_bytes: int
    ca_file: str | None
    name: str
    listen: tuple[str, int] | None = None  # where to serve ptracker.agent_api
    tls_cert: str | None = None
    tls_key: str | None = None


class Agent:
    def __init__(self, settings: Settings, sampler: Sampler | None = None, backoff=BACKOFF) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        self.sender = None
        if settings.hub:
            hub = Hub(settings.hub, settings.token, settings.ca_file)
            self.sender = Sender(self.spool, hub, settings.name, self.offer_config, backoff)
        self.newest: dict | None = None  # the newest batch, for the API
        self.newest_services: dict = {"ts": None, "services": None}
        self._config: dict | None = None  # the hub's newest config, for the tick thread
        self.api = None
        if settings.listen:
            from ptracker import agent_api  # it imports this module

            try:
                tls = settings.tls_cert and agent_api.tls_context(
                    settings.tls_cert, settings.tls_key
                )
                self.api = agent_api.AgentAPI(self, settings.listen, tls or None)
            except UsageError:
                self.spool.close()  # its lock, for an agent started again in this process
                raise
        self.sampler = sampler or Sampler()
        self.stop = threading.Event()
        interval = settings.interval or DEFAULT_INTERVAL
        self.loop = TickLoop(self.sampler, self.spool_batch, interval, self.stop)
        self._watch_specs: list = []
        self._bad_patterns: set = set()

    def spool_batch(self, batch: Batch) -> None:
        batch.id = uuid.uuid4().hex
        data = batch.to_dict()
        self.spool.append(data)
        log.debug("spooled batch %s of %s", batch.id, batch.ts.isoformat())
        self.newest = data
        if batch.services is not None:
            self.newest_services = {"ts": data["ts"], "services": batch.services}
        if self.sender:
            self.sender.wake.set()

    def offer_config(self, config: dict) -> None:
        """The hub's config, from a push's answer or a pull's ack: applied after the
        next tick, in the tick thread."""
        self._config = config

    def after_tick(self, ticks: int) -> None:
        config, self._config = self._config, None
        if config:
            self.apply(config)

    def apply(self, config: dict) -> None:
        """The hub's settings: interval (unless --interval), top N, services, watches."""
        interval = config.get("interval")
        if (
            self.settings.interval is None
            and isinstance(interval, int | float)
            and 1 <= interval <= 3600
            and interval != self.loop.interval
        ):
            log.info("sampling every %s s, as the hub says", interval)
            self.loop.interval = interval
            self.sampler.min_window = MIN_WINDOW * interval
        top_n = config.get("top_n")
        if type(top_n) is int and top_n > 0:
            self.sampler.top_n = top_n
        patterns = config.get("service_patterns")
        if isinstance(patterns, list) and all(isinstance(p, str) for p in patterns):
            self.sampler.service_patterns = tuple(patterns)
        specs = config.get("watches")
        if isinstance(specs, list) and specs != self._watch_specs:
            self._watch_specs = specs
            self.sampler.watches = [w for w in map(self.watch, specs) if w is not None]

    def watch(self, spec) -> Watch | None:
        try:
            if type(spec["id"]) is not int or spec["field"] not in WATCH_FIELDS:
                raise ValueError(f"an int id and a field of {', '.join(WATCH_FIELDS)}")
            return Watch(id=spec["id"], field=spec["field"], regex=re.compile(spec["pattern"]))
        except (TypeError, KeyError, ValueError, re.error) as exc:
            if repr(spec) not in self._bad_patterns:
                self._bad_patterns.add(repr(spec))
                log.warning("ignoring the hub's watch %r: %s", spec, exc)
            return None

    def run(self, until: float | None = None) -> str:
        sender = None
        if self.sender:
            sender = threading.Thread(
                target=self.sender.run, args=(self.stop,), name="ptracker-push", daemon=True
            )
            sender.start()
        if self.api:
            self.api.start()
        try:
            return self.loop.run(until=until, after_tick=self.after_tick)
        finally:
            self.stop.set()
            if sender:
                self.sender.wake.set()
                sender.join(timeout=2)  # a push in flight may go on: the spool has it anyway
            if self.api:
                self.api.stop()
            self.spool.close()


# -- settings ---------------------------------------------------------------------------
def default_spool_dir() -> Path:
    if os.geteuid() == 0:
        return Path(UNIT_SPOOL_DIR)
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "ptracker-agent" / "spool"


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def hub_url(url: str | None, insecure: bool) -> str:
    if not url:
        raise UsageError(
            "no hub: give --hub https://… (or set PTRACKER_HUB), or --listen for a hub that pulls"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--hub must be an https:// URL, got {url!r}")
    if parts.scheme == "http" and not insecure and not is_loopback(parts.hostname):
        raise UsageError(
            f"refusing to send the agent token in clear text to {url}: use https:// "
            "(--ca-file for a private CA), or --insecure on a network you trust"
        )
    return url.rstrip("/")


def listen_address(value: str, tls: bool, insecure: bool) -> tuple[str, int]:
    parts = urllib.parse.urlsplit("//" + value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise UsageError(
            f"--listen takes ADDRESS:PORT (0.0.0.0:9100, [::]:9100, 127.0.0.1:9100), got {value!r}"
        )
    if not tls and not insecure and not is_loopback(parts.hostname):
        raise UsageError(
            f"refusing to serve the agent's API in clear text on {value}: give --tls-cert "
            "and --tls-key, or --insecure on a network you trust"
        )
    return parts.hostname, port


def make_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="ptracker agent",
        allow_abbrev=False,  # or `--token SECRET` would pass for --token-file
        description="Sample this machine and push its samples to a ptracker hub. "
        f"The token comes from ${TOKEN_ENV} or --token-file, never from the command line.",
    )
    parser.add_argument("--hub", default=env("PTRACKER_HUB"), help="the hub's URL (PTRACKER_HUB)")
    parser.add_argument(
        "--token-file", type=Path, help=f"a file holding the token (else ${TOKEN_ENV})"
    )
    parser.add_argument(
        "--interval", type=float, help="seconds between samples (default: the hub's, else 5)"
    )
    parser.add_argument("--spool-dir", type=Path, default=None, help="where batches wait")
    parser.add_argument(
        "--spool-max-mb", type=float, default=200, help="the spool's cap (default 200)"
    )
    parser.add_argument("--ca-file", help="trust only this CA bundle for the hub's certificate")
    parser.add_argument(
        "--name", default=socket.gethostname(), help="host name (default: hostname)"
    )
    parser.add_argument(
        "--listen",
        metavar="ADDRESS:PORT",
        help="serve the agent's API there (for a hub that pulls: then leave out --hub)",
    )
    parser.add_argument("--tls-cert", help="the certificate (chain) to serve --listen with")
    parser.add_argument("--tls-key", help="its private key")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow plain http:// to another machine (pushing, or serving --listen)",
    )
    parser.add_argument(
        "--print-systemd-unit", action="store_true", help="print a systemd unit and exit"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every spooled batch")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    hub = hub_url(args.hub, args.insecure) if args.hub or not args.listen else None
    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("--tls-cert and --tls-key go together")
    if args.tls_cert and not args.listen:
        raise UsageError("--tls-cert and --tls-key are for --listen")
    listen = args.listen and listen_address(args.listen, bool(args.tls_cert), args.insecure)
    if args.interval is not None and not 1 <= args.interval <= 3600:
        raise UsageError(f"--interval must be 1 to 3600 seconds, got {args.interval:g}")
    if not args.spool_max_mb > 0:
        raise UsageError(f"--spool-max-mb must be more than 0, got {args.spool_max_mb:g}")
    if args.ca_file and not os.path.isfile(args.ca_file):
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    token = Token(args.token_file, os.environ.get(TOKEN_ENV))
    try:
        token.read()
    except TokenError as exc:
        raise UsageError(
            f"no agent token: {exc}; set {TOKEN_ENV} or give --token-file "
            "(`ptracker manage addhost NAME` on the hub makes one)"
        ) from None
    return Settings(
        hub=hub,
        token=token,
        interval=args.interval,
        spool_dir=args.spool_dir or default_spool_dir(),
        spool_max_bytes=int(args.spool_max_mb * 2**20),
        ca_file=args.ca_file,
        name=args.name,
        listen=listen or None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )


# -- systemd -----------------------------------------------------------------------------
def _unit_word(arg: str) -> str:
    arg = arg.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[\w@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ptracker_executable() -> list[str]:
    script = Path(sys.argv[0])
    if script.name == "ptracker" and script.is_file():
        return [os.path.abspath(script)]
    beside = Path(sys.executable).parent / "ptracker"
    return [str(beside)] if beside.is_file() else [sys.executable, "-m", "ptracker"]


def systemd_unit(
    command: list[str], hub: str | None, token_file: str | None = None, tls_key: str | None = None
) -> str:
    """The unit for `command` (the ptracker executable, then agent options); no hub:
    a hub pulls from it.

    The token never appears in the unit: it is read by systemd (as root) from
    `token_file` (a credential) or, without one, from an environment file. A TLS
    key is a credential too: the service's own user could not read a root-only file."""
    exec_start = " ".join(_unit_word(a) for a in command)
    key_line = ""
    if tls_key:
        exec_start += " --tls-key %d/tls-key"
        key_line = f"\nLoadCredential=tls-key:{_unit_word(tls_key)}"
    if token_file:
        exec_start += " --token-file %d/agent-token"  # %d: the service's credentials
        token_lines = f"LoadCredential=agent-token:{_unit_word(token_file)}"
        install = f"""#   1. the token in {token_file}, readable by root only; systemd hands the
#      service a copy (after replacing the token: systemctl restart ptracker-agent)"""
    else:
        token_lines = f"EnvironmentFile={UNIT_ENV_FILE}"
        install = f"""#   1. the token, readable by root only (systemd reads it for the service):
#        install -d -m 700 {Path(UNIT_ENV_FILE).parent}
#        echo '{TOKEN_ENV}=pta_…' > {UNIT_ENV_FILE}; chmod 600 {UNIT_ENV_FILE}"""
    does = f"pushes to the hub at {hub}" if hub else "serves a hub that pulls"
    verb = "pushes" if hub else "serves"
    return f"""\
# ptracker agent: samples this machine and {does}.
# Install:
{install}
#   2. this file as /etc/systemd/system/ptracker-agent.service, then
#        systemctl daemon-reload && systemctl enable --now ptracker-agent
[Unit]
Description=ptracker agent ({verb} this machine's samples to a ptracker hub)
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart={exec_start}
{token_lines}{key_line}
Restart=always
RestartSec=5
# A user of its own, made by systemd; the spool survives restarts in /var/lib.
DynamicUser=yes
User=ptracker-agent
StateDirectory=ptracker-agent
StateDirectoryMode=0700
# Read every process's I/O counters and executable path, as atop does as root; drop
# these two lines to sample other users' processes without them.
AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Not set on purpose: PrivateDevices (NVML needs /dev/nvidia*), ProtectProc (it
# must see every process).

[Install]
WantedBy=multi-user.target
"""


def unit_command(args: argparse.Namespace, executable: list[str]) -> list[str]:
    command = [*executable, "agent", *(["--hub", args.hub] if args.hub else [])]
    command += ["--spool-dir", UNIT_SPOOL_DIR]
    if args.name != socket.gethostname():
        command += ["--name", args.name]
    for flag, value in (
        ("--interval", args.interval),
        ("--ca-file", args.ca_file and os.path.abspath(args.ca_file)),
        ("--listen", args.listen),
        ("--tls-cert", args.tls_cert and os.path.abspath(args.tls_cert)),
    ):
        if value:
            command += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if args.spool_max_mb != 200:
        command += ["--spool-max-mb", f"{args.spool_max_mb:g}"]
    if args.insecure:
        command.append("--insecure")
    return command


# -- the command ----------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.print_systemd_unit:
            args.hub = hub_url(args.hub, args.insecure) if args.hub or not args.listen else None
            if args.listen:
                listen_address(args.listen, bool(args.tls_cert), args.insecure)
            token_file = args.token_file and os.path.abspath(args.token_file)
            tls_key = args.tls_key and os.path.abspath(args.tls_key)
            command = unit_command(args, ptracker_executable())
            print(systemd_unit(command, args.hub, token_file, tls_key), end="")
            return 0
        settings = settings_from(args)
        agent = Agent(settings)
    except (UsageError, SpoolBusy) as exc:
        print(f"ptracker agent: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"ptracker agent: cannot use the spool: {exc}", file=sys.stderr)
        return 2
    serving = agent.api and f"serving {agent.api.url}" + ("" if agent.sender else " for pulls")
    log.info(
        "ptracker agent %s: sampling %s every %s s, %s; spool %s (cap %g MiB)",
        version(),
        settings.name,
        f"{settings.interval:g}"
        if settings.interval
        else f"{DEFAULT_INTERVAL:g} (until the hub says)",
        ", ".join(filter(None, [settings.hub and f"pushing to {settings.hub}", serving])),
        settings.spool_dir,
        settings.spool_max_bytes / 2**20,
    )
    reason = agent.run()
    log.info("ptracker agent stopped (%s)", reason)
    return 0
