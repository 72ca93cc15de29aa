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

A push whose token this process knows (KnownTokens) is served without DRF: no query
to authenticate, no DRF request and response. DRF (IngestView) serves everything
else, the first push of a token included, and the answers of both are the same.
"""

import functools
import time
from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
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


def read_json(request) -> dict:
    try:
        body = request.body
    except RequestDataTooBig:
        raise BadParameter("body", "too large: send fewer batches per request") from None
    gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
    return decode_json(body, gzipped)


class Push:
    """One request's batches, checked, for the host `name` whose token hashes to `digest`."""

    # Batches a transaction: an agent's backlog (100 a request) is written in parts,
    # and the other agents' pushes are written between them (GroupWriter.submit).
    PART = 5

    def __init__(self, request: HttpRequest, digest: str, name: str) -> None:
        try:
            payload = read_json(request)
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

    @classmethod
    def as_view(cls, **initkwargs):
        """The URL's view: `known_push` when it takes the request, else DRF (this class).
        It carries what drf-spectacular reads of a DRF view (cls, initkwargs), so this
        class documents it."""
        drf_view = super().as_view(**initkwargs)

        @csrf_exempt
        def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            response = known_push(request)
            return drf_view(request, *args, **kwargs) if response is None else response

        view.cls, view.initkwargs = drf_view.cls, drf_view.initkwargs
        return view


def known_push(request: HttpRequest) -> HttpResponse | None:
    """The answer to an agent's push whose token is known (KnownTokens), or None to
    leave the request to DRF: another method, another token, or one the writer found
    stale (revoked, the host disabled or renamed), which DRF refuses from the database."""
    secret = agent_secret(request) if request.method == "POST" else None
    digest = hash_token(secret) if secret else None
    known = known_tokens.get(digest) if digest else None
    if known is None:
        return None
    host_id, name = known
    try:
        status, body, headers = answer(request, host_id, digest, name)
    except (StaleToken, Host.DoesNotExist):
        known_tokens.forget(digest)
        return None
    return HttpResponse(JSONRenderer().render(body), status=status, headers=headers,
                        content_type="application/json")  # fmt: skip


def answer(
    request: HttpRequest, host: Host | int, digest: str, name: str
) -> tuple[int, dict, dict]:
    """(status, body, headers) of a push, once the writer has committed it: the agent
    waits in its request's thread (Django gives each request one, ptracker.middleware)."""
    try:
        push = Push(request, digest, name)
        if not transaction.get_connection().in_atomic_block:
            # What this thread reads (DRF's authentication) is read: it holds no database
            # connection through the wait (PostgreSQL has only so many, 100 by default).
            connection.close()
        return 200, {**ingest.writer.store(host, *push.parts()), "time": time.time()}, {}
    except Refused as refused:
        return refused.status, refused.body, {}
    except ingest.WriterBusy as exc:
        return 503, {"error": f"the hub is overloaded: {exc}"}, {"Retry-After": "10"}


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
