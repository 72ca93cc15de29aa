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
the hub's pulls): a malformed request stores nothing.
"""

import functools
import time
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
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
            push = Push(request, host.agent_token_hash, host.name)
            return Response({**ingest.writer.store(host, *push.parts()), "time": time.time()})
        except Refused as refused:
            return Response(refused.body, status=refused.status)
        except StaleToken:  # revoked in the moment since authentication
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.") from None
        except ingest.WriterBusy as exc:
            return Response(busy(exc), status=503, headers={"Retry-After": "10"})

    @classmethod
    def as_view(cls, **initkwargs):
        """The URL's view: the async `push`, which hands DRF (this class) only the first
        push of a token and every request that is not an agent's push. It carries what
        drf-spectacular reads of a DRF view (cls, initkwargs), so this class documents it."""
        drf_view = super().as_view(**initkwargs)

        @csrf_exempt
        async def view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            return await push(request, sync_to_async(drf_view))

        view.cls, view.initkwargs = drf_view.cls, drf_view.initkwargs
        return view


async def push(request: HttpRequest, drf_view) -> HttpResponse:
    """An agent's push whose token is known (KnownTokens): checked and parsed in one hop
    to a thread, then the writer's commit is awaited on the event loop, so a request
    holds no thread while it waits, and its answer is what IngestView.post would give.
    Anything else is IngestView's."""
    secret = agent_secret(request) if request.method == "POST" else None
    digest = hash_token(secret) if secret else None
    known = known_tokens.get(digest) if digest else None
    if known is None:
        return await drf_view(request)
    host_id, name = known
    try:
        future = await sync_to_async(submit)(request, digest, host_id, name)
        answer = {**await ingest.writer.outcome(future), "time": time.time()}
    except Refused as refused:
        return json_response(refused.body, refused.status)
    except (StaleToken, Host.DoesNotExist):
        known_tokens.forget(digest)
        return await drf_view(request)  # which refuses it, or takes it under its new name
    except ingest.WriterBusy as exc:
        return json_response(busy(exc), 503, {"Retry-After": "10"})
    return json_response(answer, 200)


def submit(request: HttpRequest, digest: str, host_id: int, name: str):
    """In a thread (parsing a backlog takes a while): check, parse, hand to the writer."""
    return ingest.writer.submit(host_id, *Push(request, digest, name).parts())


def busy(exc: Exception) -> dict:
    return {"error": f"the hub is overloaded: {exc}"}


def json_response(body: dict, status: int, headers: dict | None = None) -> HttpResponse:
    """The bytes DRF's Response would send."""
    return HttpResponse(JSONRenderer().render(body), status=status, headers=headers,
                        content_type="application/json")  # fmt: skip


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
