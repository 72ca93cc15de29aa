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

import time

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions, status
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
from monitoring.models import Host
from monitoring.params import BadParameter


class AgentTokenAuthentication(authentication.BaseAuthentication):
    """`Bearer pta_…`: request.auth is the token's Host, request.user anonymous."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != b"bearer":
            return None
        secret = header[1].decode(errors="replace")
        if not secret.startswith(Host.AGENT_TOKEN_PREFIX):
            return None  # an API token: the next authenticator decides
        host = Host.for_agent_token(secret)
        if host is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
        return AnonymousUser(), host

    def authenticate_header(self, request) -> str:
        return "Bearer"


class IsAgent(permissions.BasePermission):
    message = "Only an agent token may push samples."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Host)


def read_json(request) -> dict:
    try:
        body = request.body
    except RequestDataTooBig:
        raise BadParameter("body", "too large: send fewer batches per request") from None
    gzipped = request.headers.get("Content-Encoding", "").lower() == "gzip"
    return decode_json(body, gzipped)


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
        },
    )
    def post(self, request):
        host: Host = request.auth
        try:
            payload = read_json(request)
            if payload.get("host", host.name) != host.name:
                return Response(
                    {"error": f"this token writes only the samples of {host.name!r}"},
                    status=status.HTTP_403_FORBIDDEN,
                )
            batches, dropped, agent = parse(payload)
        except BadParameter as exc:
            return Response({"error": str(exc), "field": exc.field}, status=400)

        def write(host: Host) -> tuple[int, int]:
            counts = store_batches(host, batches)
            note_agent(host, agent, dropped)
            return counts

        try:
            stored, duplicates = ingest.writer.store(host, write)
        except ingest.WriterBusy as exc:
            return Response({"error": f"the hub is overloaded: {exc}"}, status=503,
                            headers={"Retry-After": "10"})  # fmt: skip
        return Response(
            {
                "stored": stored,
                "duplicates": duplicates,
                "config": agent_config(host),
                "time": time.time(),
            }
        )


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
