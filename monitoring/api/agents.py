"""POST /api/v1/ingest: agents push their batches here.

An agent authenticates with its host's agent token (`Bearer pta_…`), which writes
that host's samples and reads nothing. The body is JSON, gzip'd when it says
`Content-Encoding: gzip`:

    {"host": "<name>", "agent": {"version": "…", "time": <epoch s>}, "dropped": 0,
     "batches": [<Batch.to_dict() with an "id">, …]}

Batches are stored oldest first, each once per (host, id), so an agent resends
whatever it is not sure of. The answer counts what was stored and gives the agent
its configuration (interval, top N, watches).

Everything is checked before anything is stored: a malformed request stores nothing.
"""

import json
import math
import time
import zlib

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import authentication, exceptions, permissions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import ingest
from monitoring.api.auth import BearerTokenAuthentication
from monitoring.models import Event, GpuSample, Host, HostSample, Service, WatchedProcess
from monitoring.params import BadParameter
from monitoring.sampling import Batch, BatchFormatError

MAX_BATCHES = 100  # per request: an agent sends its backlog in chunks of this size
MAX_JSON_BYTES = 16 * 2**20  # decompressed; a gzip bomb stops here


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
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        inflate = zlib.decompressobj(wbits=31)
        try:
            body = inflate.decompress(body, MAX_JSON_BYTES)
        except zlib.error as exc:
            raise BadParameter("body", f"not valid gzip: {exc}") from None
        if inflate.unconsumed_tail:
            raise BadParameter("body", "too large once decompressed")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadParameter("body", f"not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise BadParameter("body", "a JSON object is expected")
    return payload


def parse(payload: dict) -> tuple[list[Batch], int, dict]:
    """(batches oldest first, batches the agent dropped, agent info), or BadParameter."""
    raw = payload.get("batches")
    if not isinstance(raw, list):
        raise BadParameter("batches", "a list of batches is required")
    if len(raw) > MAX_BATCHES:
        raise BadParameter("batches", f"at most {MAX_BATCHES} batches per request")
    batches = []
    for i, data in enumerate(raw):
        try:
            batch = Batch.from_dict(data)
        except BatchFormatError as exc:
            raise BadParameter(f"batches[{i}]", str(exc)) from None
        if batch.id is None:
            raise BadParameter(f"batches[{i}]", "id: every pushed batch needs an id")
        check_values(batch, f"batches[{i}]")
        batches.append(batch)
    dropped = payload.get("dropped", 0)
    if type(dropped) is not int or not 0 <= dropped < 2**31:
        raise BadParameter("dropped", "a count of batches (0 or more)")
    agent = payload.get("agent", {})
    if not isinstance(agent, dict):
        raise BadParameter("agent", "an object with version and time")
    return sorted(batches, key=lambda b: b.ts), dropped, agent


def _finite(value) -> bool:
    """A JSON number (not true/false, not NaN or infinite)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(value, field) -> bool:
    """Whether a JSON value may be stored in a model field as it is."""
    kind = field.get_internal_type()
    if kind == "JSONField":
        return isinstance(value, list | dict)
    if kind == "CharField":
        return isinstance(value, str) and len(value) <= field.max_length
    if value is None:
        return field.null
    if not _finite(value):
        return False
    if value is not None and kind.endswith("IntegerField"):
        return isinstance(value, int) and (0 if "Positive" in kind else -(2**63)) <= value < 2**63
    return True


def _check_fields(values: dict, model, where: str) -> None:
    for key, value in values.items():
        try:
            field = model._meta.get_field(key)
        except Exception:
            raise BadParameter(where, f"{key}: unknown field") from None
        if key in ("id", "host", "ts", "batch_id", "since", "last_seen") or not _fits(value, field):
            raise BadParameter(where, f"{key}: not a valid value")


def check_values(batch: Batch, where: str) -> None:
    """The host and GPU values of a batch fit their columns (the envelope and the
    processes were checked by Batch.from_dict)."""
    _check_fields(batch.host, HostSample, f"{where}.host")
    for j, gpu in enumerate(batch.gpus):
        _check_fields(gpu, GpuSample, f"{where}.gpus[{j}]")
        if "index" not in gpu:
            raise BadParameter(f"{where}.gpus[{j}]", "index: required")
    for j, unit in enumerate(batch.services or ()):
        _check_fields(unit, Service, f"{where}.services[{j}]")
        if not unit.get("unit") or not unit.get("active_state"):
            raise BadParameter(f"{where}.services[{j}]", "unit and active_state: required")


def agent_config(host: Host) -> dict:
    watches = (
        WatchedProcess.objects.filter(enabled=True)
        .filter(Q(hosts=None) | Q(hosts=host))
        .distinct()
        .order_by("id")
    )
    return {
        "interval": host.sample_interval,
        "top_n": settings.PTRACKER_TOP_N,
        "service_patterns": host.service_patterns.split(),
        "watches": [{"id": w.id, "field": w.field, "pattern": w.pattern} for w in watches],
    }


def note_agent(host: Host, agent: dict, dropped: int) -> None:
    update = {}
    version = agent.get("version")
    if isinstance(version, str) and version[:40] != host.agent_version:
        update["agent_version"] = version[:40]
    sent = agent.get("time")
    if _finite(sent):
        offset = round(time.time() - sent, 1)
        if host.clock_offset is None or abs(offset - host.clock_offset) >= 1:
            update["clock_offset"] = offset
    if update:
        Host.objects.filter(pk=host.pk).update(**update)
    if dropped:
        Event.record(
            host,
            "samples_dropped",
            f"The agent of {host.name} dropped its {dropped} oldest samples: "
            "its spool was full while the hub could not be reached",
            data={"dropped": dropped},
        )


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
        stored = duplicates = 0
        fresh_after = timezone.now() - host.offline_after()
        for i, batch in enumerate(batches):
            # Alerts follow only the newest, fresh batch: a backlog is history, not news.
            live = i == len(batches) - 1 and batch.ts >= fresh_after
            if ingest.store(host, batch, hooks="later" if live else False) is None:
                duplicates += 1
            else:
                stored += 1
        note_agent(host, agent, dropped)
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
