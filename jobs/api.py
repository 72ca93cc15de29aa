"""GPU leases in the REST API, under /api/v1/gpu-leases/.

A job takes GPUs of its host (`acquire`), renews them while it runs and releases
them at the end, naming the lease by the `lease` handle the acquire answered: only
the account that took a lease may renew or release it (anyone else gets 403).
Staff with a read-write token or a session force-release a GPU, which is recorded.
A jobs token (ApiToken.JOBS) reaches these views and nothing else of the API.

Waiting is the client's: an acquire that finds too few free GPUs answers 409 at
once, with `state` "waiting" while the client's `wait` lasts (ask again with the same
`attempt` after `retry_after` seconds), then "timeout"; "refused" without `wait`.
The server never holds a request open.
"""

import uuid
from datetime import UTC, datetime

from django.db.models import Q
from django.shortcuts import get_object_or_404
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from jobs import monitor
from jobs.models import GpuLease, Holder, LeaseRecord, Monitor, host_gpus
from monitoring.api.schema import Detail, answers, errors
from monitoring.api.views import ID
from monitoring.models import Host
from monitoring.params import BadParameter, parse_id, single

RETRY_AFTER = 2.0  # seconds a waiting client lets pass before it asks again
MAX_WAIT = 30 * 24 * 3600  # seconds


def find_host(host: str = "", machine_id: str = "", hostname: str = "") -> Host:
    """The host a request means: by its name on the hub, else by the machine id of the
    machine it runs on (the hub's own host), else by that machine's hostname."""
    if host:
        found = Host.objects.filter(name=host).first()
        if found is None:
            raise BadParameter("host", f"no host named {host!r} on this hub")
        return found
    if machine_id and (found := Host.objects.filter(machine_id=machine_id).first()):
        return found
    if hostname:
        named = list(Host.objects.filter(Q(name=hostname) | Q(hostname=hostname))[:2])
        if len(named) == 1:
            return named[0]
        if named:
            raise BadParameter("host", f"several hosts are called {hostname!r}: name one")
    raise BadParameter("host", "this machine is no host of the hub: name its host")


def get_lease_for_user(user, lease_id: int) -> GpuLease:
    # Every signed-in user sees every GPU, as every host (monitoring.views).
    return get_object_or_404(GpuLease.objects.select_related("host", "owner"), pk=lease_id)


# --- serializers ----------------------------------------------------------------------


class GpuLeaseSerializer(serializers.ModelSerializer):
    """A GPU and its holder. The lease handle, the holder's proof, is never shown."""

    lock_key = serializers.CharField(source="key", read_only=True)
    host = serializers.CharField(source="host.name", read_only=True)
    is_locked = serializers.BooleanField(source="is_held", read_only=True)
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True)
    ttl_left = serializers.SerializerMethodField()
    issues = serializers.SerializerMethodField()

    class Meta:
        model = GpuLease
        fields = [
            "id",
            "lock_key",
            "host",
            "host_id",
            "index",
            "uuid",
            "name",
            "is_locked",
            "owner",
            "user",
            "job",
            "pid",
            "process_started",
            "acquired_at",
            "renewed_at",
            "expires_at",
            "ttl_left",
            "unleased_use_since",
            "idle_since",
            "issues",
        ]

    def get_ttl_left(self, lease: GpuLease) -> float | None:
        left = lease.ttl_left()
        return None if left is None else round(left, 1)

    def get_issues(self, lease: GpuLease) -> list[str]:
        ends = self.context.get("recent_ends")
        if ends is None:
            ends = monitor.recent_ends(timezone.now(), [lease.pk])
        return monitor.gpu_issues(lease, timezone.now(), ends)


class LeaseRecordSerializer(serializers.ModelSerializer):
    host = serializers.CharField(source="host.name")
    index = serializers.IntegerField(source="gpu.index", default=None, allow_null=True)
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True)
    by = serializers.CharField(source="by.username", default=None, allow_null=True)

    class Meta:
        model = LeaseRecord
        fields = [
            "id",
            "ts",
            "action",
            "host",
            "index",
            "owner",
            "user",
            "job",
            "pid",
            "count",
            "by",
            "held",
            "waited",
            "message",
        ]


class HolderFields(serializers.Serializer):
    job = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    user = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        allow_blank=True,
        help_text="who runs the job (its system user); default: the account's name",
    )
    pid = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False)
    process_started = serializers.FloatField(
        min_value=0,
        max_value=253402300799,  # 9999-12-31
        required=False,
        help_text="the holder process's start, epoch seconds (psutil's create_time): "
        "with pid, how the monitor knows the holder is gone, even if its pid is reused",
    )

    def validate(self, data):
        if ("pid" in data) != ("process_started" in data):
            raise serializers.ValidationError({"process_started": "give pid and process_started"})
        return data

    def holder(self, account) -> Holder:
        data = self.validated_data
        started = data.get("process_started")
        return Holder(
            owner=account,
            user=data["user"] or account.get_username(),
            job=data["job"],
            pid=data.get("pid"),
            process_started=None if started is None else datetime.fromtimestamp(started, UTC),
        )


class AcquireRequest(HolderFields):
    host = serializers.CharField(
        max_length=100, required=False, default="", allow_blank=True, help_text="its name here"
    )
    machine_id = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        allow_blank=True,
        help_text="without host: the host whose machine id this is (/etc/machine-id)",
    )
    hostname = serializers.CharField(
        max_length=255,
        required=False,
        default="",
        allow_blank=True,
        help_text="without host, or an unknown machine id: the host of this name",
    )
    count = serializers.IntegerField(min_value=1, max_value=64, default=1)
    ttl = serializers.IntegerField(
        min_value=5,
        required=False,
        help_text="seconds the lease lasts unless renewed; default: the monitor's setting",
    )
    wait = serializers.FloatField(
        min_value=0,
        max_value=MAX_WAIT,
        default=0,
        help_text="seconds the client will wait for free GPUs (it asks again); 0: not at all",
    )
    attempt = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        allow_blank=True,
        help_text="the id of one wait, sent again with every try (the first answer gives one)",
    )


class AcquireAnswer(serializers.Serializer):
    lease = serializers.CharField(help_text="the handle to renew and release with: keep it")
    host = serializers.CharField()
    gpus = GpuLeaseSerializer(many=True)
    ttl = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    waited = serializers.FloatField(allow_null=True)
    attempt = serializers.CharField()


class Refusal(serializers.Serializer):
    state = serializers.ChoiceField(["waiting", "refused", "timeout"])
    detail = serializers.CharField()
    attempt = serializers.CharField()
    retry_after = serializers.FloatField(allow_null=True, help_text="while waiting")
    waited = serializers.FloatField()
    free = serializers.IntegerField()
    total = serializers.IntegerField()
    holders = GpuLeaseSerializer(many=True)


class LeaseRequest(serializers.Serializer):
    lease = serializers.CharField(max_length=32, help_text="the handle acquire answered")
    ttl = serializers.IntegerField(
        min_value=5, required=False, help_text="renew only; default: the lease's TTL"
    )


class LeaseAnswer(serializers.Serializer):
    lease = serializers.CharField()
    gpus = GpuLeaseSerializer(many=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class ForceRelease(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)


CONFLICT = OpenApiResponse(Refusal, description="Too few free GPUs (see `state`).")
NOT_HELD = OpenApiResponse(Detail, description="No GPU is held under this lease (any more).")
NOT_HELD_NOW = OpenApiResponse(Detail, description="Nobody holds this GPU.")


# --- views ----------------------------------------------------------------------------


class LeaseList(ListAPIView):
    """Every GPU under lease management, with its holder and what is wrong with it."""

    serializer_class = GpuLeaseSerializer
    jobs_scope = True

    @extend_schema(
        parameters=[OpenApiParameter("host", ID)],
        responses=answers(GpuLeaseSerializer(many=True), 400),
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        leases = GpuLease.objects.select_related("host", "owner")
        if host := single(self.request.query_params, "host"):
            leases = leases.filter(host_id=parse_id(host, "host"))
        return leases

    def get_serializer_context(self):
        return {
            **super().get_serializer_context(),
            "recent_ends": monitor.recent_ends(timezone.now()),
        }


class LeaseDetail(APIView):
    """One GPU, its holder, and its latest 50 history rows."""

    @extend_schema(responses=answers(GpuLeaseSerializer, 404))
    def get(self, request, lease_id: int):
        lease = get_lease_for_user(request.user, lease_id)
        data = GpuLeaseSerializer(lease, context={"request": request}).data
        records = lease.records.select_related("host", "gpu", "owner", "by")[:50]
        data["history"] = LeaseRecordSerializer(records, many=True).data
        return Response(data)


class Acquire(APIView):
    """Take `count` free GPUs of a host (see the module docstring for waiting)."""

    jobs_scope = True

    @extend_schema(
        request=AcquireRequest,
        responses={200: AcquireAnswer, 409: CONFLICT, **errors(400, 403)},
    )
    def post(self, request):
        asked = AcquireRequest(data=request.data)
        asked.is_valid(raise_exception=True)
        data = asked.validated_data
        host = find_host(data["host"], data["machine_id"], data["hostname"])
        total = len(host_gpus(host))
        if total == 0:
            raise BadParameter("host", f"{host.name} has no GPUs the hub knows of")
        if data["count"] > total:
            raise BadParameter("count", f"{host.name} has {total} GPUs")
        settings = Monitor.current()
        ttl = data.get("ttl") or settings.default_ttl
        if ttl > settings.max_ttl:
            raise BadParameter("ttl", f"ttl must be at most {settings.max_ttl} seconds")
        holder = asked.holder(request.user)
        attempt = data["attempt"] or uuid.uuid4().hex
        now = timezone.now()
        began = None
        if data["attempt"]:
            first = LeaseRecord.objects.filter(attempt=attempt, action="wait", host=host).first()
            began = first.ts if first else None
        waited = (now - began).total_seconds() if began else None
        granted = GpuLease.acquire(host, data["count"], ttl, holder, now, waited=waited)
        if granted:
            handle, leases = granted
            answer = {
                "lease": handle,
                "host": host.name,
                "ttl": ttl,
                "attempt": attempt,
                "expires_at": leases[0].expires_at,
                "waited": waited,
            }
            context = {"request": request, "recent_ends": {}}
            answer["gpus"] = GpuLeaseSerializer(leases, many=True, context=context).data
            return Response(answer)
        return self.refuse(request, host, data, holder, attempt, began, now)

    def refuse(self, request, host, data, holder, attempt, began, now) -> Response:
        count, wait = data["count"], data["wait"]
        if not wait:
            state = "refused"
        elif began is None:
            state, began = "waiting", now
        elif (now - began).total_seconds() >= wait:
            state = "timeout"
        else:
            state = "waiting"
        action = "wait" if state == "waiting" else state
        first = (
            state == "refused"
            or not LeaseRecord.objects.filter(attempt=attempt, action=action, host=host).exists()
        )
        if first:  # a wait is one row however often the client asks
            waited = (now - began).total_seconds() if began else None
            LeaseRecord.of_request(host, action, holder, count, now, attempt=attempt, waited=waited)
        leases = GpuLease.objects.filter(host=host).select_related("host", "owner")
        held = [lease for lease in leases if lease.is_held and lease.expires_at > now]
        free = len(host_gpus(host)) - len(held)
        detail = {
            "refused": f"{free} of the {count} GPUs asked for are free on {host.name}",
            "waiting": f"waiting for {count} free GPUs on {host.name} ({free} free)",
            "timeout": f"gave up after waiting {wait:g} s for {count} GPUs on {host.name}",
        }[state]
        context = {"request": request, "recent_ends": {}}
        body = {
            "state": state,
            "detail": detail,
            "attempt": attempt,
            "retry_after": RETRY_AFTER if state == "waiting" else None,
            "waited": round((now - began).total_seconds(), 1) if began else 0.0,
            "free": free,
            "total": len(host_gpus(host)),
            "holders": GpuLeaseSerializer(held, many=True, context=context).data,
        }
        return Response(body, status=status.HTTP_409_CONFLICT)


def held_by_caller(request, handle: str) -> list[GpuLease]:
    """The GPUs held under `handle`, when the caller took them: else 403 or 404."""
    leases = GpuLease.held_by(handle)
    if not leases:
        return []
    if leases[0].owner_id != request.user.pk:
        owner = leases[0].owner.get_username() if leases[0].owner else "another account"
        raise PermissionDenied(f"this lease is held by {owner}")
    return leases


def not_held(handle: str) -> Response:
    message = "no GPU is held under this lease (it expired, or was released)"
    return Response({"detail": message, "lease": handle}, status=status.HTTP_404_NOT_FOUND)


class Renew(APIView):
    """Push a lease's expiry to now + ttl (default: its own TTL). Holder only."""

    jobs_scope = True

    @extend_schema(
        request=LeaseRequest, responses={200: LeaseAnswer, 404: NOT_HELD, **errors(400, 403)}
    )
    def post(self, request):
        asked = LeaseRequest(data=request.data)
        asked.is_valid(raise_exception=True)
        handle = asked.validated_data["lease"]
        leases = held_by_caller(request, handle)
        if not leases:
            return not_held(handle)
        ttl = (
            asked.validated_data.get("ttl")
            or (leases[0].expires_at - leases[0].renewed_at).total_seconds()
        )
        if ttl > Monitor.current().max_ttl:
            raise BadParameter("ttl", f"ttl must be at most {Monitor.current().max_ttl} seconds")
        leases = GpuLease.renew(handle, ttl)
        if not leases:
            return not_held(handle)
        context = {"request": request, "recent_ends": {}}
        gpus = GpuLeaseSerializer(leases, many=True, context=context).data
        return Response({"lease": handle, "gpus": gpus, "expires_at": leases[0].expires_at})


class Release(APIView):
    """Free the GPUs of a lease. Holder only: anyone else gets 403."""

    jobs_scope = True

    @extend_schema(
        request=LeaseRequest, responses={200: LeaseAnswer, 404: NOT_HELD, **errors(400, 403)}
    )
    def post(self, request):
        asked = LeaseRequest(data=request.data)
        asked.is_valid(raise_exception=True)
        handle = asked.validated_data["lease"]
        if not held_by_caller(request, handle):
            return not_held(handle)
        freed = GpuLease.release(handle)
        if not freed:
            return not_held(handle)
        for lease in freed:
            lease.refresh_from_db()
        context = {"request": request, "recent_ends": {}}
        gpus = GpuLeaseSerializer(freed, many=True, context=context).data
        return Response({"lease": handle, "gpus": gpus, "expires_at": None})


STAFF_WRITE = [*api_settings.DEFAULT_PERMISSION_CLASSES, permissions.IsAdminUser]


def force_release(lease: GpuLease, by, reason: str) -> bool:
    return lease.end("force_release", by=by, message=reason)


class ForceReleaseView(APIView):
    """Free a GPU whoever holds it: staff with a read-write token or a session.
    Recorded with who did it and why, and an event."""

    permission_classes = STAFF_WRITE

    @extend_schema(
        request=ForceRelease,
        responses={200: GpuLeaseSerializer, 409: NOT_HELD_NOW, **errors(400, 403, 404)},
    )
    def post(self, request, lease_id: int):
        lease = get_lease_for_user(request.user, lease_id)
        asked = ForceRelease(data=request.data)
        asked.is_valid(raise_exception=True)
        if not force_release(lease, request.user, asked.validated_data["reason"]):
            return Response({"detail": f"{lease.key} is not held"}, status=409)
        lease.refresh_from_db()
        return Response(GpuLeaseSerializer(lease, context={"request": request}).data)


urlpatterns = [
    path("", LeaseList.as_view(), name="api-gpu-leases"),
    path("<id:lease_id>/", LeaseDetail.as_view(), name="api-gpu-lease"),
    path("<id:lease_id>/force-release", ForceReleaseView.as_view(), name="api-force-release"),
    path("acquire", Acquire.as_view(), name="api-gpu-acquire"),
    path("renew", Renew.as_view(), name="api-gpu-renew"),
    path("release", Release.as_view(), name="api-gpu-release"),
]
