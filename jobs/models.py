"""GPU leases: one row per GPU of a host, held by one job at a time.

How a GPU changes hands (the sampler's Lease, per GPU): it is taken by a conditional
UPDATE that succeeds only while the row is free (`handle` empty) or still carries the
expired handle that was read; it is renewed and released by UPDATEs that name the
holder's handle. Zero rows updated means someone else got there first: nothing is
read and then written in between. A request for several GPUs takes them in index
order inside one transaction and rolls back unless it got them all, so nobody holds
part of a request, and two requests never wait on each other in a cycle.

The holder is a process: host, pid and its start time (a reused pid is another
process), the account that asked (which alone may renew and release), the user who
runs it and the job's name. Every change is a LeaseRecord: the history, and what the
statistics count.
"""

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from monitoring.models import Event, GpuSample, Host

LOCK_PREFIX = "gpu_lock:"  # the seed's name for a lock: gpu_lock:<host>:<index>


def host_gpus(host: Host) -> list[dict]:
    """The host's GPUs as its sampler last listed them: [{"index", "uuid", "name"}]."""
    gpus = (host.inventory or {}).get("gpus") or []
    if not gpus and host.last_seen is not None:
        rows = GpuSample.objects.filter(host=host, ts=host.last_seen)
        gpus = [{"index": g.index, "uuid": g.uuid, "name": g.name} for g in rows]
    return sorted(gpus, key=lambda g: g["index"])


@dataclass(frozen=True)
class Holder:
    """Who takes a lease."""

    owner: object  # the account (token or session) that asked: it may renew and release
    user: str = ""  # who runs the job (its system user): the page and hours per user
    job: str = ""
    pid: int | None = None
    process_started: datetime | None = None  # pid + start time: a reused pid is not it

    def fields(self) -> dict:
        return {
            "owner": self.owner,
            "user": self.user[:100],
            "job": self.job[:200],
            "pid": self.pid,
            "process_started": self.process_started,
        }


class GpuLease(models.Model):
    host = models.ForeignKey(Host, models.CASCADE, related_name="gpu_leases")
    index = models.PositiveSmallIntegerField()
    uuid = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=100, blank=True)
    # The holder; handle "" means free. The handle is the holder's proof of holding.
    handle = models.CharField(max_length=32, blank=True, default="", db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user = models.CharField(max_length=100, blank=True)
    job = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    process_started = models.DateTimeField(null=True, blank=True)
    acquired_at = models.DateTimeField(null=True, blank=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    # What the check read in the GPU's samples; None while it does not hold.
    unleased_use_since = models.DateTimeField(null=True, blank=True)
    idle_since = models.DateTimeField(null=True, blank=True)

    FREE = {
        "handle": "",
        "owner": None,
        "user": "",
        "job": "",
        "pid": None,
        "process_started": None,
        "acquired_at": None,
        "renewed_at": None,
        "expires_at": None,
        "idle_since": None,
    }
    # How a lease ended -> the event it is, where it is one.
    EVENTS = {
        "expire": ("gpu_lease_expired", "expired (not renewed in time)"),
        "holder_gone": ("gpu_lease_holder_gone", "released: its process is gone"),
        "force_release": ("gpu_lease_force_released", "force-released"),
    }

    class Meta:
        ordering = ["host__name", "index"]
        constraints = [models.UniqueConstraint(fields=["host", "index"], name="one_lease_per_gpu")]
        verbose_name = "GPU lease"

    def __str__(self) -> str:
        return self.key

    @property
    def key(self) -> str:
        return f"{LOCK_PREFIX}{self.host.name}:{self.index}"

    @property
    def is_held(self) -> bool:
        return bool(self.handle)

    def ttl_left(self, now=None) -> float | None:
        if not self.handle:
            return None
        return (self.expires_at - (now or timezone.now())).total_seconds()

    def holder_text(self) -> str:
        """`bob: train.py (pid 4242)`: who holds it, for messages."""
        text = self.user or (self.owner.get_username() if self.owner else "someone")
        if self.job:
            text += f": {self.job}"
        return text + (f" (pid {self.pid})" if self.pid else "")

    @classmethod
    def for_host(cls, host: Host) -> list["GpuLease"]:
        """The rows of the host's GPUs, made on first use, in index order."""
        gpus = host_gpus(host)
        indexes = [g["index"] for g in gpus]
        have = set(cls.objects.filter(host=host).values_list("index", flat=True))
        missing = [
            cls(host=host, index=g["index"], uuid=g.get("uuid") or "", name=g.get("name") or "")
            for g in gpus
            if g["index"] not in have
        ]
        if missing:
            cls.objects.bulk_create(missing, ignore_conflicts=True)  # another asker may race
        return list(cls.objects.filter(host=host, index__in=indexes).order_by("index"))

    @classmethod
    def acquire(
        cls, host: Host, count: int, ttl: float, holder: Holder, now=None, waited=None
    ) -> tuple[str, list["GpuLease"]] | None:
        """Take `count` free GPUs of `host` for `ttl` seconds: (handle, leases), or None
        (and nothing taken) when fewer are free."""
        indexes = [row.index for row in cls.for_host(host)]
        handle = secrets.token_hex(16)
        taken, displaced = [], []
        with transaction.atomic():
            # Read the clock once in: on SQLite the write lock is ours from here, so the
            # history's times follow the order in which GPUs changed hands.
            now = now or timezone.now()
            for row in cls.objects.filter(host=host, index__in=indexes).order_by("index"):
                if row.handle and row.expires_at > now:
                    continue
                free = Q(handle=row.handle, expires_at__lte=now) if row.handle else Q(handle="")
                took = (
                    cls.objects.filter(pk=row.pk)
                    .filter(free)
                    .update(
                        handle=handle,
                        **holder.fields(),
                        acquired_at=now,
                        renewed_at=now,
                        expires_at=now + timedelta(seconds=ttl),
                        idle_since=None,
                        unleased_use_since=None,
                    )
                )
                if took:
                    taken.append(row)
                    if row.handle:
                        displaced.append(row)  # still carries its expired holder
                    if len(taken) == count:
                        break
            if len(taken) < count:
                transaction.set_rollback(True)
                return None
            for row in displaced:
                row.ended("expire", now)
            leases = list(cls.objects.filter(pk__in=[r.pk for r in taken]).select_related("host"))
            for lease in leases:
                LeaseRecord.of(lease, "acquire", now, count=count, waited=waited)
        return handle, leases

    @classmethod
    def held_by(cls, handle: str) -> list["GpuLease"]:
        return list(cls.objects.filter(handle=handle).select_related("host", "owner"))

    @classmethod
    def renew(cls, handle: str, ttl: float, now=None) -> list["GpuLease"]:
        """Push the expiry of every GPU held under `handle` to now + ttl."""
        with transaction.atomic():
            now = now or timezone.now()
            renewed = cls.objects.filter(handle=handle).update(
                renewed_at=now, expires_at=now + timedelta(seconds=ttl)
            )
            leases = cls.held_by(handle) if renewed else []
            for lease in leases:
                LeaseRecord.of(lease, "renew", now)
        return leases

    def end(self, action: str, now=None, by=None, message: str = "") -> bool:
        """Free this GPU if it is still held as read; False when someone else ended or
        took it first. Records the action, and an event where it is one."""
        if not self.handle:
            return False
        with transaction.atomic():
            now = now or timezone.now()
            freed = GpuLease.objects.filter(pk=self.pk, handle=self.handle).update(**self.FREE)
            if freed:
                self.ended(action, now, by=by, message=message)
        return bool(freed)

    def ended(self, action: str, now, by=None, message: str = "") -> None:
        """Record the end of the lease this (unchanged) object still describes."""
        held = (now - self.acquired_at).total_seconds() if self.acquired_at else None
        LeaseRecord.of(self, action, now, by=by, held=held, message=message)
        if action in self.EVENTS:
            kind, what = self.EVENTS[action]
            text = f"GPU {self.index} of {self.host.name}: lease of {self.holder_text()} {what}"
            if by is not None:
                text += f" by {by.get_username()}"
            Event.record(
                self.host,
                kind,
                text + (f" ({message})" if message else ""),
                ts=now,
                data={"gpu": self.index, "pid": self.pid, "job": self.job, "user": self.user},
            )

    @classmethod
    def release(cls, handle: str, now=None) -> list["GpuLease"]:
        """Free every GPU held under `handle`; the ones this call freed."""
        return [lease for lease in cls.held_by(handle) if lease.end("release", now)]


class LeaseRecord(models.Model):
    """One row of lease history: a GPU taken, renewed or freed, or a request refused,
    waiting or given up."""

    ACTIONS = [
        ("acquire", "acquired"),
        ("renew", "renewed"),
        ("release", "released"),
        ("expire", "expired"),
        ("holder_gone", "released: holder gone"),
        ("force_release", "force-released"),
        ("wait", "waiting for a GPU"),
        ("refused", "refused: no free GPU"),
        ("timeout", "gave up waiting"),
    ]
    ENDINGS = ("release", "expire", "holder_gone", "force_release")

    ts = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=20, choices=ACTIONS)
    host = models.ForeignKey(Host, models.CASCADE, related_name="+")
    gpu = models.ForeignKey(GpuLease, models.CASCADE, null=True, blank=True, related_name="records")
    handle = models.CharField(max_length=32, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user = models.CharField(max_length=100, blank=True)
    job = models.CharField(max_length=200, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    process_started = models.DateTimeField(null=True, blank=True)
    count = models.PositiveSmallIntegerField(default=1, help_text="GPUs asked for")
    # Who forced a release (None: the holder, or the check).
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    held = models.FloatField(null=True, blank=True, help_text="seconds, when a lease ends")
    waited = models.FloatField(null=True, blank=True, help_text="seconds, when granted")
    attempt = models.CharField(max_length=64, blank=True, help_text="the client's id of a wait")
    message = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-ts", "-id"]
        indexes = [
            models.Index(fields=["host", "ts"]),
            models.Index(fields=["gpu", "ts"]),
            models.Index(fields=["ts"]),
            models.Index(fields=["attempt"]),
        ]
        verbose_name = "GPU lease record"

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.ts:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def of(cls, lease: GpuLease, action: str, now, **extra) -> "LeaseRecord":
        """A record of `action` on `lease`, with the holder the object describes."""
        return cls.objects.create(
            ts=now,
            action=action,
            host_id=lease.host_id,
            gpu=lease,
            handle=lease.handle,
            owner_id=lease.owner_id,
            user=lease.user,
            job=lease.job,
            pid=lease.pid,
            process_started=lease.process_started,
            **extra,
        )

    @classmethod
    def of_request(cls, host: Host, action: str, holder: Holder, count: int, now, **extra):
        """A record of a request that got no GPU (waiting, refused, gave up)."""
        return cls.objects.create(
            ts=now, action=action, host=host, count=count, **holder.fields(), **extra
        )


class Monitor(models.Model):
    """The lease monitor (the seed's "monitor"): one row. The minute check runs while
    `enabled`; start and stop it here, in the admin or through the API."""

    INTERVAL = 60  # seconds: the minute schedule that runs the check

    enabled = models.BooleanField(default=True, help_text="Run the minute check of GPU leases.")
    started_at = models.DateTimeField(default=timezone.now, editable=False)
    last_check = models.DateTimeField(null=True, blank=True, editable=False)
    checks = models.PositiveIntegerField(default=0, editable=False)
    check_seconds = models.FloatField(default=0.0, editable=False)  # summed, for the average
    idle_minutes = models.PositiveIntegerField(
        default=30, help_text="Flag a held GPU that stayed idle this long."
    )
    busy_percent = models.PositiveSmallIntegerField(
        default=10, help_text="GPU utilization from which a GPU counts as busy."
    )
    default_ttl = models.PositiveIntegerField(
        default=600, help_text="Seconds a lease lasts when its taker names no TTL."
    )
    max_ttl = models.PositiveIntegerField(
        default=7 * 24 * 3600, help_text="The longest TTL a lease may ask for, seconds."
    )

    class Meta:
        verbose_name = verbose_name_plural = "lease monitor"

    def __str__(self) -> str:
        return "lease monitor (running)" if self.enabled else "lease monitor (stopped)"

    @classmethod
    def current(cls) -> "Monitor":
        return cls.objects.get_or_create(pk=1)[0]

    def start(self) -> bool:
        """Start it; False when it ran already."""
        started = Monitor.objects.filter(pk=self.pk, enabled=False).update(
            enabled=True, started_at=timezone.now()
        )
        self.refresh_from_db()
        return bool(started)

    def stop(self) -> bool:
        stopped = Monitor.objects.filter(pk=self.pk, enabled=True).update(enabled=False)
        self.refresh_from_db()
        return bool(stopped)

    def is_running(self, now=None) -> bool:
        """Enabled, and a check ran within the last two intervals."""
        now = now or timezone.now()
        if not self.enabled or self.last_check is None:
            return False
        return (now - self.last_check).total_seconds() <= 2 * self.INTERVAL + 15


# --- task heartbeats -------------------------------------------------------------------


def new_slug() -> str:
    return secrets.token_urlsafe(18)


class HeartbeatCheck(models.Model):
    """A task that reports in (healthchecks.io's model): by a period + grace, or by a cron
    expression in a time zone + grace. Anyone who knows its secret `slug` may ping it;
    nothing else is asked of a ping.

    `state` is what the last ping or the minute check made of it: new (never pinged),
    up, running, late (nothing since the period or cron time + grace), failed (a fail
    ping or a non-zero exit status), orphaned (a run's process vanished without a final
    ping), too_long / too_short (a run outside the check's duration limits).
    """

    STATES = ["new", "up", "running", "late", "failed", "orphaned", "too_long", "too_short"]
    PINGS_PER_SECOND = 5  # beyond, a ping answers 429
    LOG_LIMIT = 10_000  # characters of a run's log tail kept (its end)
    RUNS_KEPT = 200  # runs kept per check; older ones go on the write path

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100, unique=True)
    slug = models.CharField(max_length=40, unique=True, default=new_slug, editable=False)
    period = models.DurationField(null=True, blank=True, help_text="expected between pings")
    cron = models.CharField(max_length=100, blank=True, help_text="instead of a period")
    tz = models.CharField(max_length=64, default="UTC", help_text="the cron's time zone")
    grace = models.DurationField(default=timedelta(hours=1))
    max_duration = models.DurationField(null=True, blank=True, help_text="a longer run alerts")
    min_duration = models.DurationField(null=True, blank=True, help_text="a shorter run alerts")
    state = models.CharField(max_length=20, default="new", editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_ping = models.DateTimeField(null=True, blank=True, editable=False)
    # The rate limit, by conditional update: pings counted in the current second.
    ping_second = models.BigIntegerField(default=0, editable=False)
    ping_count = models.PositiveIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "heartbeat check"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if errors := schedule_errors(self.period, self.cron, self.tz):
            raise ValidationError(errors)

    def due(self, since=None):
        """When the next ping is due, after the last one (or `since`), grace included;
        None for a check that was never pinged."""
        since = since or self.last_ping
        if since is None:
            return None
        if self.cron:
            return next_cron(self.cron, self.tz, since) + self.grace
        return since + (self.period or timedelta(days=1)) + self.grace

    def admit_ping(self, now=None) -> bool:
        """Count a ping against the rate limit; False beyond PINGS_PER_SECOND."""
        second = int((now or timezone.now()).timestamp())
        this = HeartbeatCheck.objects.filter(pk=self.pk)
        if this.filter(ping_second=second, ping_count__lt=self.PINGS_PER_SECOND).update(
            ping_count=models.F("ping_count") + 1
        ):
            return True
        return bool(this.exclude(ping_second=second).update(ping_second=second, ping_count=1))

    def set_state(self, state: str, now, message: str, run=None) -> bool:
        """Move to `state`; an event when it changed (kind heartbeat_<state>), and for
        "up" only when it comes back from a bad state."""
        # The row's state, not this instance's, which another ping may have changed.
        this = HeartbeatCheck.objects.filter(pk=self.pk)
        previous = this.values_list("state", flat=True).first() or self.state
        self.state = previous
        if state == previous:
            return False
        changed = this.filter(state=previous).update(state=state)
        self.state = state
        back_up = state != "up" or previous not in ("new", "running")
        if changed and state in HEARTBEAT_EVENTS and back_up:
            host = (run.host if run else None) or Host.local()
            data = {"check": self.name, "run": run.run_id if run else None}
            if run is not None and run.exit_status is not None:
                data["exit_status"] = run.exit_status
            Event.record(
                host, HEARTBEAT_EVENTS[state], f"{self.name}: {message}", ts=now, data=data
            )
        return bool(changed)

    def prune(self) -> None:
        keep = self.runs.order_by("-started_at").values_list("pk", flat=True)[: self.RUNS_KEPT]
        self.runs.exclude(pk__in=list(keep)).delete()


# A check's state -> the event kind of moving into it (also the alert rule kinds).
HEARTBEAT_EVENTS = {
    "up": "heartbeat_up",
    "late": "heartbeat_late",
    "failed": "heartbeat_failed",
    "orphaned": "heartbeat_orphaned",
    "too_long": "heartbeat_too_long",
    "too_short": "heartbeat_too_short",
}


def schedule_errors(period, cron: str, tz: str) -> dict[str, str]:
    """What is wrong with a check's schedule, by field ("__all__" for the whole): the
    one rule the API and the admin both apply. A valid cron expression that never
    fires (February 31st) is refused too: every evaluation of it would fail."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import CroniterBadDateError, croniter

    errors = {}
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        errors["tz"] = f"no time zone {tz!r}"
    if cron and not croniter.is_valid(cron):
        errors["cron"] = f"{cron!r} is no cron expression"
    elif cron:
        try:
            next_cron(cron, "UTC", timezone.now())
        except CroniterBadDateError:
            errors["cron"] = f"{cron!r} never fires"
    if bool(period) == bool(cron):
        errors["__all__"] = "give a period or a cron expression, not both"
    return errors


def next_cron(expression: str, tz: str, after: datetime) -> datetime:
    """The first time the cron expression fires after `after`, read in the time zone
    `tz` (so 02:30 daily means 02:30 local, DST or not), as an aware UTC time."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    times = croniter(expression, after.astimezone(ZoneInfo(tz)))
    fire = times.get_next(datetime)
    # When the clocks go back, a wall time comes twice. Like cron, a job at a set hour
    # runs at the first only (else a daily job would be late an hour after it ran);
    # one whose hour is a wildcard (hourly, every 10 minutes) runs at both.
    if "*" not in expression.split()[1]:
        while fire.replace(fold=0).astimezone(UTC) != fire.astimezone(UTC):
            fire = times.get_next(datetime)
    return fire.astimezone(UTC)


class Run(models.Model):
    """One run of a check: from a start ping (or a lone final ping) to its end. The
    client may name it (`run_id`), so several runs of one check go at once."""

    STATUSES = ["running", "success", "fail", "orphaned", "stopped"]

    heartbeat = models.ForeignKey(HeartbeatCheck, models.CASCADE, related_name="runs")
    run_id = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=10, default="running")
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    last_ping = models.DateTimeField()
    exit_status = models.IntegerField(null=True, blank=True)
    progress = models.FloatField(null=True, blank=True)
    log = models.TextField(blank=True)
    too_long = models.BooleanField(default=False)  # flagged by the minute check
    # The process that runs it: when it vanishes without a final ping, it is orphaned.
    host = models.ForeignKey(Host, models.SET_NULL, null=True, blank=True, related_name="+")
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    process_started = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["heartbeat", "status"])]

    def __str__(self) -> str:
        return f"{self.heartbeat.name} {self.run_id or self.pk}"

    @property
    def duration(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class Recording(models.Model):
    """One `ptracker record` report uploaded to the hub (POST /api/v1/recordings/).

    `data` is the report's JSON as the recorder wrote it (ptracker.report, version 1);
    the columns beside it are what the list and the comparison sort and show."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, related_name="recordings"
    )
    uploaded = models.DateTimeField(default=timezone.now, db_index=True)
    command = models.TextField(blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    end_reason = models.CharField(max_length=30, blank=True)
    process_count = models.PositiveIntegerField(default=0)
    cpu_avg = models.FloatField(null=True, blank=True)  # percent of one core, summed
    cpu_max = models.FloatField(null=True, blank=True)
    rss_max = models.BigIntegerField(null=True, blank=True)  # bytes, summed
    gpu_memory_max = models.BigIntegerField(null=True, blank=True)
    data = models.JSONField()

    class Meta:
        ordering = ["-uploaded"]

    def __str__(self) -> str:
        return f"{self.command[:60] or 'recording'} ({self.pk})"

    @classmethod
    def from_report(cls, data: dict, owner) -> "Recording":
        """A recording of a checked report (jobs.recordings_api checks it)."""
        total = data["summary"]["total"]

        def pick(field: str, stat: str):
            return (total.get(field) or {}).get(stat)

        return cls(
            owner=owner,
            command=(data.get("command") or "pids " + ", ".join(map(str, data["pids"])))[:2000],
            hostname=((data.get("host") or {}).get("hostname") or "")[:255],
            started=datetime.fromisoformat(data["started"]) if data.get("started") else None,
            duration_s=data.get("duration_s"),
            exit_code=data.get("exit_code"),
            end_reason=(data.get("end_reason") or "")[:30],
            process_count=data["summary"].get("processes") or 0,
            cpu_avg=pick("cpu_percent", "avg"),
            cpu_max=pick("cpu_percent", "max"),
            rss_max=pick("rss", "max"),
            gpu_memory_max=pick("gpu_memory", "max"),
            data=data,
        )
