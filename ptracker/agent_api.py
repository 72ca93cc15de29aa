"""The agent's HTTP API (`ptracker agent --listen ADDR:PORT`), for a hub that can
reach the agent when the agent cannot reach the hub: the hub pulls.

Every request needs `Authorization: Bearer <the agent's token>` (the token it would
push with), or gets a 401:

    GET  /v1/health    {"status": "ok", "version", "name", "time": epoch s,
                        "last_sample": ISO time or null, "spool": {"batches", "bytes"}}
    GET  /v1/snapshot  the newest batch (Batch.to_dict()); 503 before the first
    GET  /v1/services  {"ts", "services"}: the newest systemd units read, null until
                       read (and where systemd cannot be read)
    GET  /v1/batches?after=<batch id>&limit=100
                       the batches waiting in the spool, oldest first, in the body a
                       push carries: {"host", "agent", "dropped", "batches"}; with
                       `after`, those after that batch (from the oldest when it is not
                       waiting: acknowledged, or unknown)
    POST /v1/ack       {"through": <batch id>, "dropped": n, "config": {...}}: the hub
                       stored every batch up to `through`, so the spool's cursor moves
                       past them; it was told of `dropped` dropped batches; `config` is
                       what a push's answer carries (interval, top N, watches, units)

Push and pull do not mix: an agent started with --hub pushes, its spool's cursor
moves on the hub's answers only, and /v1/batches and /v1/ack answer 409 (health,
snapshot and services work). Without --hub the hub's acks are what move the cursor:
a batch stays in the spool (up to its cap) until a hub acknowledges it.

Served by the stdlib's ThreadingHTTPServer in threads of the agent; TLS with
--tls-cert and --tls-key, plain HTTP only on a loopback address or with --insecure.
The token is compared in constant time and never logged.
"""

import gzip
import hmac
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ptracker.agent import MAX_CHUNK, TokenError, UsageError, version

log = logging.getLogger("ptracker.agent")

MAX_BODY = 2**20  # an ack with the hub's config is a few KiB
GZIP_FROM = 1024  # bytes: smaller answers go as they are
ID_LENGTH = 64  # the longest batch id (Batch.from_dict)


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field

    def body(self) -> dict:
        return {"error": str(self), **({"field": self.field} if self.field else {})}


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}") from None
    return context


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: "AgentAPI") -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api = api
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        # A scanner, a client gone, a failed TLS handshake: not worth a traceback.
        log.debug("a request from %s failed", client_address[0], exc_info=True)


class AgentAPI:
    def __init__(self, agent, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        """`agent`: the ptracker.agent.Agent it serves (its settings, spool, newest
        batch); pulls are served when it has no hub to push to."""
        self.agent = agent
        self.pull = agent.sender is None
        try:
            self.server = Server(address, self)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
            ) from None
        if tls:
            # The handshake happens in the request's thread (Handler.setup), not in
            # the one accepting connections, so a slow client stalls nobody else.
            self.server.socket = tls.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )
        host, port = self.server.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{host}:{port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="ptracker-api", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorize(self, header: str) -> None:
        try:
            expected = self.agent.settings.token.read()
        except TokenError as exc:
            log.warning("cannot check a request's token: %s", exc)
            raise ApiError(503, "the agent has no usable token") from None
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise ApiError(401, "a valid agent token is required (Authorization: Bearer …)")

    # -- the endpoints: each gives (status, JSON object) ---------------------------------
    def health(self, query: dict) -> tuple[int, dict]:
        newest, spool = self.agent.newest, self.agent.spool
        return 200, {
            "status": "ok",
            "version": version(),
            "name": self.agent.settings.name,
            "time": time.time(),
            "last_sample": newest["ts"] if newest else None,
            "spool": {"batches": spool.pending_count(), "bytes": spool.backlog_bytes()},
        }

    def snapshot(self, query: dict) -> tuple[int, dict]:
        if self.agent.newest is None:
            raise ApiError(503, "no sample yet: the first comes within one interval")
        return 200, self.agent.newest

    def services(self, query: dict) -> tuple[int, dict]:
        return 200, self.agent.newest_services

    def batches(self, query: dict) -> tuple[int, dict]:
        self.pulls_only()
        after = one(query, "after")
        if after is not None and not 0 < len(after) <= ID_LENGTH:
            raise ApiError(400, f"a batch id of 1 to {ID_LENGTH} characters", "after")
        limit = one(query, "limit") or str(MAX_CHUNK)
        if not limit.isdigit() or not 1 <= int(limit) <= MAX_CHUNK:
            raise ApiError(400, f"a whole number from 1 to {MAX_CHUNK}", "limit")
        spool = self.agent.spool
        dropped = spool.dropped  # read before the batches, as a push does
        return 200, {
            "host": self.agent.settings.name,
            "agent": {"version": version(), "time": time.time()},
            "dropped": dropped,
            "batches": spool.pending(int(limit), after),
        }

    def ack(self, body: dict) -> tuple[int, dict]:
        self.pulls_only()
        through, dropped = body.get("through"), body.get("dropped", 0)
        if through is not None and not (isinstance(through, str) and 0 < len(through) <= ID_LENGTH):
            raise ApiError(400, "the id of the newest batch the hub stored", "through")
        if type(dropped) is not int or dropped < 0:
            raise ApiError(400, "the count of dropped batches the hub was told of", "dropped")
        if through is None and not dropped:
            raise ApiError(400, "the id of the newest batch the hub stored", "through")
        config = body.get("config")
        if config is not None and not isinstance(config, dict):
            raise ApiError(400, "an object, as in a push's answer", "config")
        acked = self.agent.spool.ack(through, dropped)
        if config:
            self.agent.offer_config(config)
        return 200, {"acked": acked}

    def pulls_only(self) -> None:
        if not self.pull:
            raise ApiError(
                409, "this agent pushes to its hub (--hub): its batches are not for pulling"
            )


def one(query: dict, name: str) -> str | None:
    values = query.get(name)
    if values and len(values) > 1:
        raise ApiError(400, "given more than once", name)
    return values[0] if values else None


GET_ROUTES = {
    "/v1/health": AgentAPI.health,
    "/v1/snapshot": AgentAPI.snapshot,
    "/v1/services": AgentAPI.services,
    "/v1/batches": AgentAPI.batches,
}
POST_ROUTES = {"/v1/ack": AgentAPI.ack}


class Handler(BaseHTTPRequestHandler):
    server: Server
    server_version = "ptracker-agent"
    timeout = 30  # seconds a connection may idle: a stuck client frees its thread

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        self.respond(GET_ROUTES, path, lambda route: route(self.server.api, parse_qs(query)))

    def do_POST(self) -> None:
        path = self.path.partition("?")[0]
        self.respond(POST_ROUTES, path, lambda route: route(self.server.api, self.json_body()))

    def respond(self, routes: dict, path: str, call) -> None:
        try:
            self.server.api.authorize(self.headers.get("Authorization", ""))
            route = routes.get(path)
            if route is None:
                known = path in GET_ROUTES or path in POST_ROUTES
                raise ApiError(405 if known else 404, "no such method" if known else "no such path")
            status, body = call(route)
        except ApiError as exc:
            status, body = exc.status, exc.body()
        self.send_json(status, body)

    def json_body(self) -> dict:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            raise ApiError(411, "a Content-Length is required", "body")
        if int(length) > MAX_BODY:
            raise ApiError(413, f"at most {MAX_BODY} bytes", "body")
        try:
            body = json.loads(self.rfile.read(int(length)))
        except ValueError as exc:
            raise ApiError(400, f"not JSON: {exc}", "body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "a JSON object is expected", "body")
        return body

    def send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        gzipped = len(data) >= GZIP_FROM and "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:
            data = gzip.compress(data, 6)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="ptracker-agent"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:
        # Request lines only (never headers, so never the token), and only with -v.
        log.debug("api: %s %s", self.address_string(), format % args)


def parse_qs(query: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(query, keep_blank_values=True)
