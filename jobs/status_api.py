"""The seed's monitoring API for GPU locks and their monitor, under /api/v1/monitoring/
(seed 003): its paths and field names, epoch-second timestamps as it has them, and
more fields beside.

A seed lock is a GPU lease: `gpu_lock:<host>:<index>`, or `gpu_lock:<index>` for a
GPU of the hub's own machine (else of the one host with leases). The task-heartbeat
parts (its tasks) are heartbeat runs: jobs.heartbeat_api.
"""

import re

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs import health, heartbeat_api, monitor, statistics
from jobs.api import STAFF_WRITE, force_release
from jobs.models import LOCK_PREFIX, GpuLease, HeartbeatCheck, LeaseRecord, Monitor, Run, host_gpus
from monitoring.api.schema import answers, errors
from monitoring.api.views import ID
from monitoring.collectors.system import local_machine_id
from monitoring.models import Host
from monitoring.params import BadParameter, parse_id, single

CONFIGURED_ACTIONS = ["force_release_gpu_lock", "log_timeout_event"]
TIMEOUTS = ("expire", "holder_gone")
RELEASES = ("expire", "holder_gone", "force_release")
LOCK_KEY_FORM = re.compile(LOCK_PREFIX + r"(?:(.*):)?([0-9]{1,5})")
LOCK_KEY = OpenApiParameter(
    "lock_key",
    {"type": "string", "pattern": f"^{LOCK_KEY_FORM.pattern}$"},
    description="gpu_lock:<host>:<index>, or gpu_lock:<index> on the hub's own machine",
)
HOST = OpenApiParameter("host", ID, description="only this host's GPUs")


def epoch(value) -> float | None:
    return None if value is None else round(value.timestamp(), 3)


def local_host() -> Host | None:
    return Host.objects.filter(machine_id=local_machine_id()).first()


def find_lock(key: str) -> GpuLease:
    """The lease of a seed lock key; an unleased GPU of a host as a free, unsaved one."""
    form = LOCK_KEY_FORM.fullmatch(key)
    if not form:
        raise BadParameter("lock_key", f"a lock key is {LOCK_PREFIX}<host>:<index>")
    name, index = form[1], int(form[2])
    if name:
        host = Host.objects.filter(name=name).first()
    else:
        hosts = set(GpuLease.objects.values_list("host_id", flat=True).distinct()[:2])
        host = local_host() or (Host.objects.get(pk=hosts.pop()) if len(hosts) == 1 else None)
    if host is None:
        raise BadParameter("lock_key", f"no host for {key!r}: write {LOCK_PREFIX}<host>:<index>")
    lease = GpuLease.objects.select_related("host", "owner").filter(host=host, index=index).first()
    if lease is None:
        if index not in [g["index"] for g in host_gpus(host)]:
            raise BadParameter("lock_key", f"{host.name} has no GPU {index}")
        lease = GpuLease(host=host, index=index)
    return lease


def leases_of(params) -> list[GpuLease]:
    leases = GpuLease.objects.select_related("host", "owner")
    if host := single(params, "host"):
        leases = leases.filter(host_id=parse_id(host, "host"))
    return list(leases)


def holder_name(lease: GpuLease) -> str | None:
    """The seed's `lock_holder`: the job's name, else who holds it."""
    return (lease.job or lease.holder_text()) if lease.is_held else None


def lock_age(lease: GpuLease, now) -> float | None:
    return round((now - lease.acquired_at).total_seconds(), 1) if lease.is_held else None


def seed_history(records) -> list[dict]:
    return [
        {
            "action": r.action,
            "task_name": r.job,
            "timestamp": epoch(r.ts),
            "success": r.action not in ("refused", "timeout"),
            "user": r.user,
            "pid": r.pid,
            "message": r.message,
        }
        for r in records
    ]


SEED_STATISTICS = (
    "total_attempts",
    "success_count",
    "timeout_count",
    "failure_count",
    "average_execution_time",
)


# A loose schema for answers with a fixed set of fields, named for the docs.
def fields(name: str, **shape) -> serializers.Serializer:
    return inline_serializer(name, shape)


HEALTH = fields(
    "LockHealth",
    status=serializers.ChoiceField(monitor.HEALTH_STATES),
    last_check=serializers.FloatField(allow_null=True),
    issues=serializers.ListField(child=serializers.CharField()),
)
STATISTICS = fields(
    "LockStatistics",
    total_attempts=serializers.IntegerField(),
    success_count=serializers.IntegerField(),
    timeout_count=serializers.IntegerField(help_text="requests that gave up waiting"),
    failure_count=serializers.IntegerField(help_text="requests refused at once"),
    average_execution_time=serializers.FloatField(allow_null=True, help_text="hold, seconds"),
)
LOCK_STATUS = fields(
    "GpuLockStatus",
    lock_key=serializers.CharField(),
    is_locked=serializers.BooleanField(),
    lock_holder=serializers.CharField(allow_null=True),
    ttl_seconds=serializers.IntegerField(allow_null=True),
    timestamp=serializers.FloatField(),
    health=HEALTH,
    statistics=STATISTICS,
    recent_history=serializers.ListField(child=serializers.DictField()),
    lock_type=serializers.CharField(),
    lock_age=serializers.FloatField(allow_null=True),
    host=serializers.CharField(),
    index=serializers.IntegerField(),
    holder=serializers.DictField(allow_null=True),
)


class LockStatus(APIView):
    """One GPU lock: holder, TTL left, health, statistics (of its host: a request asks
    for a host's GPUs, not for one) and its latest history."""

    @extend_schema(parameters=[LOCK_KEY], responses=answers(LOCK_STATUS, 400))
    def get(self, request):
        now = timezone.now()
        lease = find_lock(single(request.query_params, "lock_key") or f"{LOCK_PREFIX}0")
        check = monitor.health([lease] if lease.pk else [], Monitor.current(), now)
        summary = statistics.summary(LeaseRecord.objects.filter(host=lease.host), now)
        history = lease.records.all()[:10] if lease.pk else []
        left = lease.ttl_left(now)
        holder = None
        if lease.is_held:
            holder = {
                "user": lease.user,
                "job": lease.job,
                "pid": lease.pid,
                "owner": lease.owner.get_username() if lease.owner else None,
                "since": epoch(lease.acquired_at),
                "expires_at": epoch(lease.expires_at),
            }
        return Response(
            {
                "lock_key": lease.key,
                "is_locked": lease.is_held,
                "lock_holder": holder_name(lease),
                "ttl_seconds": None if left is None else max(0, int(left)),
                "timestamp": epoch(now),
                "health": {
                    "status": check["status"],
                    "last_check": epoch(check["last_check"]),
                    "issues": check["issues"],
                },
                "statistics": {k: summary[k] for k in SEED_STATISTICS},
                "recent_history": seed_history(history),
                "lock_type": "GPU_LOCK",
                "lock_age": lock_age(lease, now),
                "host": lease.host.name,
                "index": lease.index,
                "holder": holder,
            }
        )


LOCK_HEALTH = fields(
    "GpuLockHealth",
    overall_status=serializers.ChoiceField(monitor.HEALTH_STATES),
    issues_count=serializers.IntegerField(),
    total_attempts=serializers.IntegerField(),
    success_rate=serializers.FloatField(allow_null=True),
    timeout_rate=serializers.FloatField(allow_null=True),
    average_execution_time=serializers.FloatField(allow_null=True),
    recent_success_rate=serializers.FloatField(allow_null=True),
    lock_holder=serializers.CharField(allow_null=True, help_text="of the longest-held GPU"),
    lock_age=serializers.FloatField(allow_null=True),
    timestamp=serializers.FloatField(),
    issues=serializers.ListField(child=serializers.CharField()),
    gpus_total=serializers.IntegerField(),
    gpus_held=serializers.IntegerField(),
)


class LockHealth(APIView):
    """Health of the GPU locks (of every host, or of `host`) and of their monitor."""

    @extend_schema(parameters=[HOST], responses=answers(LOCK_HEALTH, 400))
    def get(self, request):
        now = timezone.now()
        leases = leases_of(request.query_params)
        check = monitor.health(leases, Monitor.current(), now)
        records = LeaseRecord.objects.all()
        if host := single(request.query_params, "host"):
            records = records.filter(host_id=parse_id(host, "host"))
        summary = statistics.summary(records, now)
        held = sorted((lease for lease in leases if lease.is_held), key=lambda x: x.acquired_at)
        oldest = held[0] if held else GpuLease()
        return Response(
            {
                "overall_status": check["status"],
                "issues_count": len(check["issues"]),
                **{k: summary[k] for k in ("total_attempts", "success_rate", "timeout_rate")},
                "average_execution_time": summary["average_execution_time"],
                "recent_success_rate": summary["recent_success_rate"],
                "lock_holder": holder_name(oldest),
                "lock_age": lock_age(oldest, now),
                "timestamp": epoch(now),
                "issues": check["issues"],
                "gpus_total": len(leases),
                "gpus_held": len(held),
            }
        )


def tasks_recovered() -> int:
    """Runs the check found orphaned (their process gone) and closed."""
    return Run.objects.filter(status="orphaned").count()


def task_coverage() -> str:
    """Of the running heartbeat runs, those whose process the check watches (it named
    its host, pid and start time), so that it is found orphaned if it vanishes."""
    running = Run.objects.filter(status="running")
    total = running.count()
    watched = running.exclude(host=None).exclude(pid=None).exclude(process_started=None).count()
    return f"{round(100 * watched / total)}%" if total else "100%"


def heartbeat_timeout() -> int:
    """Seconds a heartbeat may be late: the grace a check gets unless it names one."""
    return int(HeartbeatCheck._meta.get_field("grace").default.total_seconds())


def timeouts_detected() -> int:
    return LeaseRecord.objects.filter(action__in=TIMEOUTS).count()


MONITOR_STATUS = fields(
    "MonitorStatus",
    monitor_status=fields(
        "MonitorState",
        running=serializers.BooleanField(),
        start_time=serializers.FloatField(),
        last_check=serializers.FloatField(allow_null=True),
        checks_performed=serializers.IntegerField(),
    ),
    monitor_stats=fields(
        "MonitorCounts",
        gpu_locks_monitored=serializers.IntegerField(),
        tasks_monitored=serializers.IntegerField(help_text="heartbeat runs running"),
        timeouts_detected=serializers.IntegerField(),
        tasks_recovered=serializers.IntegerField(allow_null=True),
    ),
    config=fields(
        "MonitorConfig",
        check_interval=serializers.IntegerField(),
        gpu_timeout=serializers.IntegerField(help_text="default lease TTL, seconds"),
        heartbeat_timeout=serializers.IntegerField(allow_null=True),
        enabled=serializers.BooleanField(),
    ),
    is_running=serializers.BooleanField(),
    uptime=serializers.FloatField(allow_null=True),
)


def monitor_state(now) -> dict:
    m = Monitor.current()
    running = m.is_running(now)
    return {
        "monitor_status": {
            "running": running,
            "start_time": epoch(m.started_at),
            "last_check": epoch(m.last_check),
            "checks_performed": m.checks,
        },
        "monitor_stats": {
            "gpu_locks_monitored": GpuLease.objects.count(),
            "tasks_monitored": Run.objects.filter(status="running").count(),
            "timeouts_detected": timeouts_detected(),
            "tasks_recovered": tasks_recovered(),
        },
        "config": {
            "check_interval": Monitor.INTERVAL,
            "gpu_timeout": m.default_ttl,
            "heartbeat_timeout": heartbeat_timeout(),
            "enabled": m.enabled,
        },
        "is_running": running,
        "uptime": round((now - m.started_at).total_seconds(), 3) if m.enabled else None,
    }


class MonitorStatus(APIView):
    """The lease monitor: whether it runs (enabled, and checked lately), its counts
    and settings."""

    @extend_schema(responses=answers(MONITOR_STATUS))
    def get(self, request):
        return Response(monitor_state(timezone.now()))


MONITOR_HEALTH = fields(
    "MonitorHealth",
    status=serializers.ChoiceField(monitor.HEALTH_STATES),
    issues=serializers.ListField(child=serializers.CharField()),
    metrics=fields(
        "MonitorMetrics",
        check_frequency=serializers.CharField(),
        gpu_lock_coverage=serializers.CharField(help_text="GPUs known that are leased by row"),
        task_monitoring_coverage=serializers.CharField(allow_null=True),
        avg_response_time=serializers.CharField(allow_null=True, help_text="one check, on average"),
    ),
    timestamp=serializers.FloatField(),
)


class MonitorHealth(APIView):
    """Whether the lease monitor does its job."""

    @extend_schema(responses=answers(MONITOR_HEALTH))
    def get(self, request):
        now = timezone.now()
        m = Monitor.current()
        state, issues = monitor.monitor_issues(m, now)
        hosts = Host.objects.filter(pk__in=GpuLease.objects.values("host_id"))
        known = sum(len(host_gpus(host)) for host in hosts)
        rows = GpuLease.objects.count()
        coverage = f"{round(100 * min(rows, known) / known)}%" if known else "100%"
        average = f"{round(1000 * m.check_seconds / m.checks)}ms" if m.checks else None
        metrics = {
            "check_frequency": f"{Monitor.INTERVAL}s",
            "gpu_lock_coverage": coverage,
            "task_monitoring_coverage": task_coverage(),
            "avg_response_time": average,
        }
        return Response(
            {"status": state, "issues": issues, "metrics": metrics, "timestamp": epoch(now)}
        )


SWITCHED = fields(
    "MonitorSwitched", message=serializers.CharField(), success=serializers.BooleanField()
)


class MonitorStart(APIView):
    """Start the lease monitor (staff, with a read-write token or a session)."""

    permission_classes = STAFF_WRITE

    @extend_schema(request=None, responses=answers(SWITCHED, 403))
    def post(self, request):
        started = Monitor.current().start()
        message = "the monitor started" if started else "the monitor was running already"
        return Response({"message": message, "success": True})


class MonitorStop(APIView):
    """Stop the lease monitor: leases then expire only when someone takes the GPU."""

    permission_classes = STAFF_WRITE

    @extend_schema(request=None, responses=answers(SWITCHED, 403))
    def post(self, request):
        stopped = Monitor.current().stop()
        message = "the monitor stopped" if stopped else "the monitor was stopped already"
        return Response({"message": message, "success": True})


TIMEOUT_STATUS = fields(
    "TimeoutStatus",
    timeout_stats=fields(
        "TimeoutCounts",
        total_timeouts_detected=serializers.IntegerField(),
        tasks_recovered=serializers.IntegerField(allow_null=True),
        resources_released=serializers.IntegerField(),
        current_timeouts=serializers.IntegerField(help_text="expired, not yet freed"),
    ),
    action_history=serializers.ListField(child=serializers.DictField()),
    configured_actions=serializers.ListField(child=serializers.CharField()),
    timestamp=serializers.FloatField(),
)


class TimeoutStatus(APIView):
    """Leases the monitor freed (expired, holder gone) or staff forced free, latest first."""

    @extend_schema(responses=answers(TIMEOUT_STATUS))
    def get(self, request):
        now = timezone.now()
        done = LeaseRecord.objects.filter(action__in=RELEASES).select_related("host", "gpu")
        history = [
            {
                "timestamp": epoch(r.ts),
                "action": r.action,
                "task_id": r.job or r.user,
                "result": "success",
                "lock_key": r.gpu.key if r.gpu else None,
                "reason": r.message,
            }
            for r in done[:20]
        ]
        expired = GpuLease.objects.exclude(handle="").filter(expires_at__lte=now).count()
        stats = {
            "total_timeouts_detected": timeouts_detected(),
            "tasks_recovered": tasks_recovered(),
            "resources_released": done.count(),
            "current_timeouts": expired,
        }
        return Response(
            {
                "timeout_stats": stats,
                "action_history": history,
                "configured_actions": CONFIGURED_ACTIONS,
                "timestamp": epoch(now),
            }
        )


TIMEOUT_CONFIG = fields(
    "TimeoutConfig",
    gpu_lock_timeout=serializers.IntegerField(help_text="default lease TTL, seconds"),
    task_heartbeat_timeout=serializers.IntegerField(allow_null=True),
    monitor_check_interval=serializers.IntegerField(),
    auto_recovery_enabled=serializers.BooleanField(),
    max_retry_attempts=serializers.IntegerField(allow_null=True),
    timestamp=serializers.FloatField(),
    max_lock_timeout=serializers.IntegerField(),
    idle_minutes=serializers.IntegerField(),
    busy_percent=serializers.IntegerField(),
)


class TimeoutConfig(APIView):
    """The monitor's settings (edited in the admin, under lease monitor)."""

    @extend_schema(responses=answers(TIMEOUT_CONFIG))
    def get(self, request):
        m = Monitor.current()
        return Response(
            {
                "gpu_lock_timeout": m.default_ttl,
                "task_heartbeat_timeout": heartbeat_timeout(),
                "monitor_check_interval": Monitor.INTERVAL,
                "auto_recovery_enabled": m.enabled,
                "max_retry_attempts": None,
                "timestamp": epoch(timezone.now()),
                "max_lock_timeout": m.max_ttl,
                "idle_minutes": m.idle_minutes,
                "busy_percent": m.busy_percent,
            }
        )


CHECKED = fields(
    "TimeoutCheck",
    checked_locks=serializers.ListField(child=serializers.CharField()),
    timeouts_detected=serializers.IntegerField(),
    actions_taken=serializers.ListField(child=serializers.DictField()),
    timestamp=serializers.FloatField(),
)


class TimeoutCheck(APIView):
    """Run the monitor's check now (of every lock, or of `lock_key`), running or not."""

    @extend_schema(request=None, parameters=[LOCK_KEY], responses=answers(CHECKED, 400, 403))
    def post(self, request):
        key = single(request.query_params, "lock_key") or request.data.get("lock_key")
        leases = None
        if key:
            lease = find_lock(key)
            leases = [lease] if lease.pk else []
        outcome = monitor.check(leases=leases)
        timeouts = [a for a in outcome.actions if a["action"] in TIMEOUTS]
        return Response(
            {
                "checked_locks": outcome.checked,
                "timeouts_detected": len(timeouts),
                "actions_taken": outcome.actions,
                "timestamp": epoch(timezone.now()),
            }
        )


RELEASE_REQUEST = fields(
    "LockReleaseRequest",
    lock_key=serializers.CharField(),
    task_name=serializers.CharField(required=False, help_text="why, for the record (manual)"),
)
RELEASED = fields(
    "LockReleased",
    success=serializers.BooleanField(),
    message=serializers.CharField(),
    lock_key=serializers.CharField(),
    task_name=serializers.CharField(),
)


class LockRelease(APIView):
    """Force-release a GPU lock (staff, with a read-write token or a session): recorded
    with who did it, and an event. 409 with success false when nobody holds it."""

    permission_classes = STAFF_WRITE

    @extend_schema(
        request=RELEASE_REQUEST, responses={200: RELEASED, 409: RELEASED, **errors(400, 403)}
    )
    def post(self, request):
        key = request.data.get("lock_key")
        if not isinstance(key, str) or not key:
            raise BadParameter("lock_key", "name the lock: gpu_lock:<host>:<index>")
        reason = str(request.data.get("task_name") or "manual")[:200]
        lease = find_lock(key)
        done = bool(lease.pk) and force_release(lease, request.user, reason)
        verb = "released" if done else "could not be released: nobody holds it"
        body = {
            "success": done,
            "message": f"lock {lease.key} {verb}",
            "lock_key": lease.key,
            "task_name": reason,
        }
        return Response(body, status=200 if done else 409)


STATISTICS_ALL = fields(
    "MonitoringStatistics",
    timestamp=serializers.FloatField(),
    gpu_lock=serializers.DictField(),
    monitor=serializers.DictField(),
    heartbeat=serializers.DictField(),
    timeout=serializers.DictField(),
    hours_per_user=serializers.DictField(child=serializers.FloatField()),
)


class Statistics(APIView):
    """Everything counted: GPU locks (with the full lease statistics), the monitor,
    timeouts, GPU hours per user."""

    @extend_schema(responses=answers(STATISTICS_ALL))
    def get(self, request):
        now = timezone.now()
        leases = list(GpuLease.objects.select_related("host", "owner"))
        m = Monitor.current()
        check = monitor.health(leases, m, now)
        summary = statistics.summary(now=now)
        released = LeaseRecord.objects.filter(action__in=RELEASES).count()
        tasks = heartbeat_api.all_tasks(now)
        return Response(
            {
                "timestamp": epoch(now),
                "gpu_lock": {"overall_status": check["status"], **summary},
                "monitor": {
                    "running": m.is_running(now),
                    "uptime": round((now - m.started_at).total_seconds(), 3) if m.enabled else None,
                    "checks_performed": m.checks,
                    "issues_detected": len(check["issues"]),
                },
                "heartbeat": {
                    "active_tasks": tasks["statistics"]["active_count"],
                    "dead_tasks": tasks["statistics"]["dead_count"],
                    "orphaned_tasks": tasks["statistics"]["orphaned_count"],
                    "average_interval": tasks["statistics"]["average_heartbeat_interval"],
                },
                "timeout": {
                    "total_timeouts": timeouts_detected(),
                    "tasks_recovered": tasks_recovered(),
                    "resources_released": released,
                },
                "hours_per_user": statistics.hours_per_user(now=now),
            }
        )


HEALTH = fields(
    "OwnHealth",
    status=serializers.ChoiceField(choices=health.LEVELS),
    issues=serializers.ListField(child=serializers.CharField()),
    components=serializers.DictField(
        child=serializers.DictField(),
        help_text="sampler, queue, database, rollups, disk, notifications, monitor, heartbeat: "
        "each with status, issues, metrics, timestamp",
    ),
    timestamp=serializers.FloatField(),
)


class Health(APIView):
    """ptracker's own health: sampler, task queue, database latency, rollups and pruning,
    free disk, alert deliveries, the lease monitor, heartbeat failures (jobs.health)."""

    @extend_schema(responses=answers(HEALTH))
    def get(self, request):
        return Response(health.summary(health.read()))


urlpatterns = [
    path("health", Health.as_view(), name="seed-health"),
    *heartbeat_api.seed_urls,
    path("gpu-lock/status", LockStatus.as_view(), name="seed-lock-status"),
    path("gpu-lock/health", LockHealth.as_view(), name="seed-lock-health"),
    path("monitor/status", MonitorStatus.as_view(), name="seed-monitor-status"),
    path("monitor/health", MonitorHealth.as_view(), name="seed-monitor-health"),
    path("monitor/start", MonitorStart.as_view(), name="seed-monitor-start"),
    path("monitor/stop", MonitorStop.as_view(), name="seed-monitor-stop"),
    path("timeout/status", TimeoutStatus.as_view(), name="seed-timeout-status"),
    path("timeout/config", TimeoutConfig.as_view(), name="seed-timeout-config"),
    path("timeout/check", TimeoutCheck.as_view(), name="seed-timeout-check"),
    path("lock/release", LockRelease.as_view(), name="seed-lock-release"),
    path("statistics", Statistics.as_view(), name="seed-statistics"),
]
