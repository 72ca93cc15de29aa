"""POST /api/v1/ingest: agents push their batches here.

An agent authenticates with its host's agent token (`Bearer pta_…`), which writes
that host's samples and reads nothing. The body is JSON, gzip'd when it says
`Content-Encoding: gzip`:

    {"host": "<name>", "agent": {"version": "…", "time": <epoch s>}, "dropped": 0,
     "batches": [<Batch.to_dict() with an "id">, …]}

Batches are stored oldest first, each once per (host, id), so an agent resends
whatever it is not sure of. The answer counts what was stored and gives the agent
its configuration (interval, top N, watches).

Everything is checked before anything is stored (monitoring.agents, shared with
the hub's pulls): a malformed request stores nothing. The batches are then written
Push.PART at a time, each part its own transaction: a request that fails midway has
its earlier parts stored, and the agent's resend finds them as duplicates.

A push whose token this process knows (KnownTokens) is served by KnownPushes, in
front of Django: on the event loop, with no query to authenticate and none of
Django's request machinery (middleware, a thread per request, DRF). DRF (IngestView)
serves everything else, the first push of a token included, and the answers of both
are the same.
"""

import asyncio
import functools
import io
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.db import connection, transaction
from django.http import HttpRequest
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import ingest
from monitoring.agents import (
    agent_config,
    decode_json,
    note_agent,
    parse,
    store_batches,
)
from monitoring.api.auth import BearerTokenAuthentication
from monitoring.models import Host, hash_token
from monitoring.params import BadParameter

log = logging.getLogger(__name__)


class KnownTokens:
    """The agent tokens this process authenticated lately, as SHA-256 -> (host id, host
    name): a push with one of them needs no query to find its host.

    Remembering a token never keeps it working once revoked: the writer reads the
    host's row for the push anyway, and stores nothing unless the row still has this
    token, is enabled and has this name (Push.write). When it has not, the token is
    forgotten and the request goes to DRF's authentication, which answers from the
    database (401 for a revoked token or a disabled host). A token is forgotten TTL
    seconds after the writer last confirmed it, so the map holds the tokens in use."""

    TTL = 60.0
    MAX = 100_000  # tokens; past that (only a flood of tokens would get there) start over

    def __init__(self) -> None:
        self.hosts: dict[str, tuple[int, str, float]] = {}

    def get(self, digest: str) -> tuple[int, str] | None:
        entry = self.hosts.get(digest)
        if entry is None or entry[2] < time.monotonic():
            return None
        return entry[0], entry[1]

    def remember(self, digest: str, host: Host) -> None:
        if len(self.hosts) >= self.MAX:
            self.hosts.clear()
        self.hosts[digest] = (host.pk, host.name, time.monotonic() + self.TTL)

    def forget(self, digest: str) -> None:
        self.hosts.pop(digest, None)


known_tokens = KnownTokens()


def agent_secret(request) -> str | None:
    """The secret of a `Bearer pta_…` Authorization header, else None."""
    header = authentication.get_authorization_header(request).split()
    if len(header) != 2 or header[0].lower() != b"bearer":
        return None
    secret = header[1].decode(errors="replace")
    return secret if secret.startswith(Host.AGENT_TOKEN_PREFIX) else None


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """`Bearer pta_…`: request.auth is the token's Host, request.user anonymous."""

    def authenticate(self, request):
        secret = agent_secret(request)
        if secret is None:
            return None  # an API token, or none: the next authenticator decides
        host = Host.for_agent_token(secret)
        if host is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
        known_tokens.remember(hash_token(secret), host)
        return AnonymousUser(), host

    def authenticate_header(self, request) -> str:
        return "Bearer"


class IsAgent(permissions.BasePermission):
    message = "Only an agent token may push samples."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Host)


class Refused(Exception):
    """A push answered with an error (status, JSON body) before anything is stored."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body["error"])
        self.status, self.body = status, body


class StaleToken(Exception):
    """The host's row no longer matches the remembered token (revoked, disabled, renamed)."""


def too_large() -> BadParameter:
    return BadParameter("body", "too large: send fewer batches per request")


class Push:
    """One request's batches, checked, for the host `name` whose token hashes to `digest`."""

    # Batches a transaction: an agent's backlog (100 a request) is written in parts,
    # and the other agents' pushes are written between them (GroupWriter.submit). A
    # live push that comes while a part is written waits for it: at 5 batches a part,
    # bench_fleet's others' p95 during a backfill was 3.5x the p95 before it; at 2, 1.5x.
    PART = 2

    def __init__(self, body: bytes | BadParameter, gzipped: bool, digest: str, name: str) -> None:
        """`body` as sent (gzip'd when `gzipped`), or why it could not be read."""
        try:
            if isinstance(body, BadParameter):
                raise body
            payload = decode_json(body, gzipped)
            if payload.get("host", name) != name:
                raise Refused(403, {"error": f"this token writes only the samples of {name!r}"})
            self.batches, self.dropped, self.agent = parse(payload)
        except BadParameter as exc:
            raise Refused(400, {"error": str(exc), "field": exc.field}) from None
        self.digest, self.name = digest, name
        self.counts: dict[int, tuple[int, int]] = {}  # part -> (stored, duplicates)

    def parts(self) -> list[Callable[[Host], dict | None]]:
        """What the writer writes: the batches oldest first, PART at a time, the last
        part noting the agent and returning the answer (less its time)."""
        starts = range(0, len(self.batches), self.PART) or [0]
        return [functools.partial(self.write, i, i == starts[-1]) for i in starts]

    def write(self, start: int, last: bool, host: Host) -> dict | None:
        if host.agent_token_hash != self.digest or not host.enabled or host.name != self.name:
            raise StaleToken
        batches = self.batches[start : start + self.PART]
        # Keyed by part: a part written again (its group failed to commit) counts once.
        self.counts[start] = store_batches(host, batches, newest_last=last)
        if not last:
            return None
        known_tokens.remember(self.digest, host)
        note_agent(host, self.agent, self.dropped)
        stored, duplicates = (sum(c) for c in zip(*self.counts.values(), strict=True))
        return {"stored": stored, "duplicates": duplicates, "config": agent_config(host)}


class IngestView(APIView):
    """Agents push batches of samples (see the module docstring for the body)."""

    authentication_classes = [AgentTokenAuthentication, BearerTokenAuthentication]
    permission_classes = [IsAgent]

    @extend_schema(
        tags=["agents"],
        request=OpenApiTypes.OBJECT,
        responses={
            200: OpenApiTypes.OBJECT,
            400: OpenApiTypes.OBJECT,
            401: OpenApiTypes.OBJECT,
            403: OpenApiTypes.OBJECT,
            503: OpenApiTypes.OBJECT,
        },
    )
    def post(self, request):
        host: Host = request.auth
        try:
            status, body, headers = answer(request, host, host.agent_token_hash, host.name)
        except StaleToken:  # revoked since: the row the writer used says so
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.") from None
        return Response(body, status=status, headers=headers)


def answer(request: HttpRequest, host: Host, digest: str, name: str) -> tuple[int, dict, dict]:
    """(status, body, headers) of a push, once the writer has committed it: the agent
    waits in its request's thread (Django gives each request one, ptracker.middleware)."""
    try:
        body = request.body
    except RequestDataTooBig:
        body = too_large()
    gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
    try:
        push = Push(body, gzipped, digest, name)
        if not transaction.get_connection().in_atomic_block:
            # What this thread reads (DRF's authentication) is read: it holds no database
            # connection through the wait (PostgreSQL has only so many, 100 by default).
            connection.close()
        return 200, {**ingest.writer.store(host, *push.parts()), "time": time.time()}, {}
    except Refused as refused:
        return refused.status, refused.body, {}
    except ingest.WriterBusy as exc:
        return busy(exc)


def busy(exc: ingest.WriterBusy) -> tuple[int, dict, dict]:
    return 503, {"error": f"the hub is overloaded: {exc}"}, {"Retry-After": "10"}


class KnownPushes:
    """ASGI, in front of Django (ptracker.asgi): a push whose agent token this process
    knows (KnownTokens) is served on the event loop, with no query to authenticate and
    none of Django's request machinery. That machinery (a thread started per request,
    the middleware, DRF) cost more CPU than storing the push, and a fleet's hub spends
    most of its time on pushes. The answers are IngestView's: the body is checked by
    Push in a thread of its own (a backlog of 100 batches takes ~100 ms, which would
    hold every page and websocket up on the loop) and written by the ingest writer.
    A body of one or a few batches is checked in a thread of its own, apart from the
    bigger ones: a live push waits behind no backlog's 100 ms of checking.

    Everything else goes to Django as it came: other paths and methods, a token not
    known here, a Host header Django refuses (ALLOWED_HOSTS), plain HTTP where HTTPS
    is required. A push the writer finds stale (the token revoked or replaced, the host
    disabled or renamed) goes to Django with its body, and DRF answers it from the
    database, as it answers a token's first push."""

    PATH = "/api/v1/ingest"
    BACKLOG = 64 * 1024  # bytes as sent: one batch of 50 processes is ~3 KiB gzip'd

    def __init__(self, app) -> None:
        self.app = app
        self.checker = ThreadPoolExecutor(1, thread_name_prefix="ingest-check")
        self.backlog_checker = ThreadPoolExecutor(1, thread_name_prefix="ingest-check-backlog")

    async def __call__(self, scope, receive, send) -> None:
        taken = self.takes(scope)
        if taken is None:
            return await self.app(scope, receive, send)
        digest, (host_id, name), gzipped = taken
        body = await read_body(receive)
        if body is None:
            return  # the agent went away: it sends the batches again
        try:
            status, answer_, headers = await self.store(body, gzipped, digest, host_id, name)
        except (StaleToken, Host.DoesNotExist):
            known_tokens.forget(digest)
            return await self.app(scope, replay(body, receive), send)
        except Exception:
            log.exception("a push of %s could not be stored", name)
            status, answer_, headers = 500, {"error": "not stored: see the hub's log"}, {}
        content = JSONRenderer().render(answer_)
        head = {
            "Content-Type": "application/json",
            "Content-Length": str(len(content)),
            "X-Content-Type-Options": "nosniff",
            **headers,
        }
        head_ = [(k.lower().encode(), v.encode()) for k, v in head.items()]
        await send({"type": "http.response.start", "status": status, "headers": head_})
        await send({"type": "http.response.body", "body": content})

    async def store(
        self, body: bytes | BadParameter, gzipped: bool, digest: str, host_id: int, name: str
    ) -> tuple[int, dict, dict]:
        try:
            loop = asyncio.get_running_loop()
            big = not isinstance(body, BadParameter) and len(body) > self.BACKLOG
            checker = self.backlog_checker if big else self.checker
            push = await loop.run_in_executor(checker, Push, body, gzipped, digest, name)
        except Refused as refused:
            return refused.status, refused.body, {}
        written = asyncio.wrap_future(ingest.writer.submit(host_id, *push.parts()))
        # Not wait_for, which would cancel it: a push whose turn comes late is still
        # written (the agent's resend of it is then a duplicate), as IngestView's is.
        if not (await asyncio.wait([written], timeout=ingest.writer.WAIT))[0]:
            return busy(ingest.WriterBusy(ingest.writer.WAIT))
        return 200, {**written.result(), "time": time.time()}, {}

    def takes(self, scope) -> tuple[str, tuple[int, str], bool] | None:
        """(token digest, (host id, name), gzip'd) of a push this serves, else None."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.PATH:
            return None
        request = ASGIRequest(scope, io.BytesIO())  # its headers, as Django reads them
        try:
            request.get_host()
        except DisallowedHost:
            return None
        if settings.SECURE_SSL_REDIRECT and not request.is_secure():
            return None
        secret = agent_secret(request)
        digest = hash_token(secret) if secret else None
        known = known_tokens.get(digest) if digest else None
        if known is None:
            return None
        return digest, known, request.headers.get("Content-Encoding", "").lower() == "gzip"


async def read_body(receive) -> bytes | BadParameter | None:
    """A request's body; too_large() past DATA_UPLOAD_MAX_MEMORY_SIZE, as Django's; None
    when the client disconnected first."""
    limit, chunks, size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE, [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if limit is not None and size > limit:
            return too_large()
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive):
    """An ASGI receive that gives `body` again, then whatever `receive` gives."""
    given = False

    async def again() -> dict:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


class AgentTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes agent tokens."""

    target_class = AgentTokenAuthentication
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A host's agent token (`Bearer pta_…`), from Add a server or "
            "`ptracker manage addhost`: it pushes that host's samples and reads nothing.",
        }
