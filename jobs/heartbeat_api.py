"""Task heartbeats on the web: the ping URLs (/ping/<slug>[/start|/fail|/progress|/<exit
status>], the secret slug is all a ping needs), the checks in the REST API under
/api/v1/heartbeats/ (a jobs token reaches them), and the seed's heartbeat endpoints
under /api/v1/monitoring/heartbeat/ (seed 003: its field names, epoch seconds).

A seed "task" is a run: its `task_id` is the run id the client chose, else
`<check name>:<run number>`; its `task_name` is the check's name.
"""

from datetime import timedelta

from django.http import HttpResponse, HttpResponseNotFound
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, viewsets
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from jobs import heartbeats
from jobs.models import GpuLease, HeartbeatCheck, Run, schedule_errors
from monitoring.api.schema import answers, errors
from monitoring.params import BadParameter

DEAD_AGE = timedelta(days=1)  # an ended run is "dead" in the seed's sense after this


def epoch(value) -> float | None:
    return round(value.timestamp(), 3) if value else None


# --- ping URLs --------------------------------------------------------------------------


def number(request, name: str, kind=float):
    value = request.GET.get(name, "")
    if value == "":
        return None
    try:
        return kind(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a number") from None


@csrf_exempt
@require_http_methods(["GET", "POST", "HEAD"])
def ping_view(request, slug: str, action: str = "success", exit_status: int | None = None):
    """A ping: `rid` names the run, `progress` (0-1), and at start `pid`, `create_time`
    (epoch seconds), `hostname`, `machine_id` name its process; a POST body is the log."""
    check = HeartbeatCheck.objects.filter(slug=slug).first()
    if check is None:
        return HttpResponseNotFound("not found\n", content_type="text/plain")
    if not check.admit_ping():
        return HttpResponse("rate limited\n", status=429, content_type="text/plain")
    if exit_status is not None:
        action = "success" if exit_status == 0 else "fail"
    try:
        progress = number(request, "progress")
        pid = number(request, "pid", int)
        created = heartbeats.epoch_time(number(request, "create_time"))
    except BadParameter as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain")
    heartbeats.ping(
        check,
        action,
        run_id=request.GET.get("rid", "")[:64],
        exit_status=exit_status,
        log=request.body.decode(errors="replace") if request.method == "POST" else "",
        progress=progress,
        hostname=request.GET.get("hostname", ""),
        machine_id=request.GET.get("machine_id", ""),
        pid=pid,
        process_started=created,
    )
    return HttpResponse("OK\n", content_type="text/plain")


ping_urls = [
    path("ping/<str:slug>", ping_view, name="ping"),
    path("ping/<str:slug>/<int:exit_status>", ping_view, name="ping-exit"),
    *(
        path(f"ping/<str:slug>/{action}", ping_view, {"action": action}, name=f"ping-{action}")
        for action in ("start", "fail", "progress")
    ),
]


# --- checks in the REST API ---------------------------------------------------------------


@extend_schema_field(OpenApiTypes.NUMBER)
class Seconds(serializers.Field):
    """A duration as seconds."""

    def to_representation(self, value):
        return value.total_seconds() if value is not None else None

    def to_internal_value(self, data):
        if data in (None, ""):
            return None
        try:
            seconds = float(data)
        except (TypeError, ValueError):
            raise serializers.ValidationError("seconds, a number") from None
        if seconds <= 0:
            raise serializers.ValidationError("must be positive")
        return timedelta(seconds=seconds)


class RunSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="seconds")
    host = serializers.CharField(source="host.name", default=None, allow_null=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "run_id",
            "status",
            "started_at",
            "ended_at",
            "duration",
            "exit_status",
            "progress",
            "too_long",
            "log",
            "host",
            "hostname",
            "pid",
            "process_started",
        ]
        read_only_fields = fields


class CheckSerializer(serializers.ModelSerializer):
    """A heartbeat check; `ping_url` is its secret: whoever has it may ping."""

    period = Seconds(required=False, allow_null=True, help_text="seconds between pings")
    grace = Seconds(required=False, help_text="seconds a ping may be late")
    max_duration = Seconds(required=False, allow_null=True)
    min_duration = Seconds(required=False, allow_null=True)
    ping_url = serializers.SerializerMethodField()
    next_due = serializers.SerializerMethodField()
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = HeartbeatCheck
        fields = [
            "id",
            "name",
            "slug",
            "ping_url",
            "period",
            "cron",
            "tz",
            "grace",
            "max_duration",
            "min_duration",
            "state",
            "last_ping",
            "next_due",
            "last_run",
            "created",
        ]
        read_only_fields = ["slug", "state", "last_ping", "created"]

    def get_ping_url(self, check) -> str:
        url = reverse("ping", args=[check.slug])
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_next_due(self, check) -> str | None:
        due = check.due()
        return due.isoformat() if due else None

    @extend_schema_field(RunSerializer(allow_null=True))
    def get_last_run(self, check) -> dict | None:
        run = check.runs.first()
        return RunSerializer(run).data if run else None

    def validate(self, data):
        def value(field, default):
            return data.get(field, getattr(self.instance, field, default))

        errors = schedule_errors(value("period", None), value("cron", ""), value("tz", "UTC"))
        if "__all__" in errors:
            errors[api_settings.NON_FIELD_ERRORS_KEY] = errors.pop("__all__")
        if errors:
            raise serializers.ValidationError(errors)
        return data


@extend_schema_view(
    list=extend_schema(responses=answers(CheckSerializer(many=True))),
    create=extend_schema(responses={201: CheckSerializer, **errors(400, 403)}),
    retrieve=extend_schema(responses=answers(CheckSerializer, 404)),
    update=extend_schema(responses=answers(CheckSerializer, 400, 403, 404)),
    partial_update=extend_schema(responses=answers(CheckSerializer, 400, 403, 404)),
    destroy=extend_schema(responses={204: None, **errors(403, 404)}),
)
class CheckViewSet(viewsets.ModelViewSet):
    """Heartbeat checks: every signed-in user sees them all (as hosts); a read-write or
    jobs token makes and changes them. `?name=` finds one by name."""

    serializer_class = CheckSerializer
    jobs_scope = True

    def get_queryset(self):
        checks = HeartbeatCheck.objects.all()
        if name := self.request.query_params.get("name"):
            checks = checks.filter(name=name)
        return checks

    def perform_create(self, serializer):
        serializer.save(owner=self.request.user)


class CheckRuns(APIView):
    """A check's runs, newest first (the last RUNS_KEPT)."""

    jobs_scope = True

    @extend_schema(responses=answers(RunSerializer(many=True), 404))
    def get(self, request, pk: int):
        check = get_object_or_404(HeartbeatCheck, pk=pk)
        return Response(RunSerializer(check.runs.select_related("host")[:100], many=True).data)


api_urls = [
    path("", CheckViewSet.as_view({"get": "list", "post": "create"}), name="heartbeat-list"),
    path(
        "<int:pk>",
        CheckViewSet.as_view(
            {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
        ),
        name="heartbeat-detail",
    ),
    path("<int:pk>/runs", CheckRuns.as_view(), name="heartbeat-runs"),
]


# --- the seed's heartbeat endpoints ----------------------------------------------------------

SEED_STATUS = {"success": "completed", "fail": "failed"}


def task_id(run: Run) -> str:
    return run.run_id or f"{run.heartbeat.name}:{run.pk}"


def find_task(tid: str) -> Run | None:
    runs = Run.objects.select_related("heartbeat", "host").order_by("-started_at")
    run = runs.filter(run_id=tid).first()
    if run is None and ":" in tid:
        name, _, number = tid.rpartition(":")
        if number.isdigit():
            run = runs.filter(heartbeat__name=name, pk=int(number)).first()
    if run is None:
        run = runs.filter(heartbeat__name=tid).first()
    return run


def gpu_lock(run: Run) -> str | None:
    if run.host_id is None or run.pid is None:
        return None
    lease = GpuLease.objects.filter(host=run.host_id, pid=run.pid).exclude(handle="").first()
    return lease.key if lease else None


def seed_status(run: Run) -> str:
    return SEED_STATUS.get(run.status, run.status)


TASK = inline_serializer(
    "SeedTask",
    {
        "task_id": serializers.CharField(),
        "heartbeat_exists": serializers.BooleanField(),
        "is_registered": serializers.BooleanField(),
        "status": serializers.CharField(help_text="running, completed, failed, orphaned…"),
        "heartbeat_data": serializers.DictField(allow_null=True),
        "last_update": serializers.FloatField(allow_null=True),
        "is_running": serializers.BooleanField(),
        "exit_status": serializers.IntegerField(allow_null=True),
        "duration": serializers.FloatField(allow_null=True),
    },
)
DONE = inline_serializer(
    "SeedHeartbeatDone", {"message": serializers.CharField(), "success": serializers.BooleanField()}
)


class Task(APIView):
    """One task's heartbeat (GET), or stop it (DELETE: the run ends as "stopped")."""

    jobs_scope = True

    @extend_schema(responses=answers(TASK))
    def get(self, request, tid: str):
        run = find_task(tid)
        if run is None:
            return Response(
                {
                    "task_id": tid,
                    "heartbeat_exists": False,
                    "is_registered": False,
                    "status": "unknown",
                    "heartbeat_data": None,
                    "last_update": None,
                    "is_running": False,
                    "exit_status": None,
                    "duration": None,
                }
            )
        running = run.status == "running"
        data = {
            "task_name": run.heartbeat.name,
            "start_time": epoch(run.started_at),
            "last_update": epoch(run.last_ping),
            "gpu_lock": gpu_lock(run),
            "progress": run.progress,
        }
        return Response(
            {
                "task_id": task_id(run),
                "heartbeat_exists": running,
                "is_registered": True,
                "status": seed_status(run),
                "heartbeat_data": data if running else None,
                "last_update": epoch(run.last_ping) if running else None,
                "is_running": running,
                "exit_status": run.exit_status,
                "duration": run.duration,
            }
        )

    @extend_schema(responses=answers(DONE, 403, 404))
    def delete(self, request, tid: str):
        run = find_task(tid)
        stopped = bool(
            run
            and Run.objects.filter(pk=run.pk, status="running").update(
                status="stopped", ended_at=timezone.now()
            )
        )
        message = f"heartbeat of task {tid} stopped" if stopped else f"task {tid} is not running"
        return Response({"message": message, "success": stopped}, status=200 if stopped else 404)


class TaskStart(APIView):
    """Start a task's heartbeat: a run of the check `task_name` (default: the task id)
    with the task id as its run id. The check is made (daily, 1 h grace) if new."""

    jobs_scope = True

    @extend_schema(
        request=inline_serializer(
            "SeedTaskStart",
            {
                "task_name": serializers.CharField(required=False),
                "pid": serializers.IntegerField(required=False),
                "create_time": serializers.FloatField(required=False),
                "hostname": serializers.CharField(required=False),
                "machine_id": serializers.CharField(required=False),
            },
        ),
        responses=answers(DONE, 400, 403),
    )
    def post(self, request, tid: str):
        name = str(request.data.get("task_name") or tid)[:100]
        check, _ = HeartbeatCheck.objects.get_or_create(
            name=name, defaults={"owner": request.user, "period": timedelta(days=1)}
        )
        try:
            pid = int(request.data["pid"]) if request.data.get("pid") else None
            created = heartbeats.epoch_time(request.data.get("create_time"))
        except (TypeError, ValueError):
            raise BadParameter("pid", "pid and create_time are numbers") from None
        heartbeats.ping(
            check,
            "start",
            run_id=tid[:64],
            pid=pid,
            process_started=created,
            hostname=str(request.data.get("hostname") or ""),
            machine_id=str(request.data.get("machine_id") or ""),
        )
        return Response({"message": f"heartbeat of task {tid} started", "success": True})


def all_tasks(now) -> dict:
    runs = Run.objects.select_related("heartbeat")
    active = runs.filter(status="running")
    dead = runs.exclude(status__in=["running", "orphaned"]).filter(ended_at__gte=now - DEAD_AGE)
    orphaned = runs.filter(status="orphaned")
    periods = [c.period.total_seconds() for c in HeartbeatCheck.objects.exclude(period=None)]
    return {
        "active_tasks": {
            task_id(r): {
                "task_name": r.heartbeat.name,
                "last_update": epoch(r.last_ping),
                "status": "running",
                "progress": r.progress,
            }
            for r in active
        },
        "dead_tasks": [
            {
                "task_id": task_id(r),
                "task_name": r.heartbeat.name,
                "last_update": epoch(r.last_ping),
                "status": seed_status(r),
                "exit_status": r.exit_status,
            }
            for r in dead
        ],
        "orphaned_tasks": [
            {"task_id": task_id(r), "last_update": epoch(r.last_ping), "timeout": True}
            for r in orphaned
        ],
        "statistics": {
            "total_tasks": runs.count(),
            "active_count": active.count(),
            "dead_count": dead.count(),
            "orphaned_count": orphaned.count(),
            # the checks' periods: the interval their heartbeats are expected at
            "average_heartbeat_interval": sum(periods) / len(periods) if periods else None,
        },
        "timestamp": epoch(now),
    }


class AllTasks(APIView):
    """Every task: running (active), ended in the last day (dead), orphaned."""

    jobs_scope = True

    @extend_schema(
        responses=answers(
            inline_serializer(
                "SeedAllTasks",
                {
                    "active_tasks": serializers.DictField(),
                    "dead_tasks": serializers.ListField(child=serializers.DictField()),
                    "orphaned_tasks": serializers.ListField(child=serializers.DictField()),
                    "statistics": serializers.DictField(),
                    "timestamp": serializers.FloatField(),
                },
            )
        )
    )
    def get(self, request):
        return Response(all_tasks(timezone.now()))


class Cleanup(APIView):
    """Delete orphaned and stopped runs, and runs that ended over a day ago beyond each
    check's last RUNS_KEPT (the history keeps those)."""

    @extend_schema(
        request=None,
        responses=answers(
            inline_serializer(
                "SeedCleanup",
                {
                    "message": serializers.CharField(),
                    "success": serializers.BooleanField(),
                    "cleaned_dead_tasks": serializers.IntegerField(),
                },
            ),
            403,
        ),
    )
    def post(self, request):
        cleaned = Run.objects.filter(status__in=["orphaned", "stopped"]).delete()[0]
        for check in HeartbeatCheck.objects.all():
            check.prune()
        return Response(
            {"message": "heartbeat cleanup done", "success": True, "cleaned_dead_tasks": cleaned}
        )


seed_urls = [
    path("heartbeat/task/<str:tid>", Task.as_view(), name="seed-heartbeat-task"),
    path("heartbeat/task/<str:tid>/start", TaskStart.as_view(), name="seed-heartbeat-start"),
    path("heartbeat/all", AllTasks.as_view(), name="seed-heartbeat-all"),
    path("heartbeat/cleanup", Cleanup.as_view(), name="seed-heartbeat-cleanup"),
]
