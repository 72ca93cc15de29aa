import base64
import hashlib
import secrets
import socket
import uuid
from datetime import timedelta

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from monitoring.collectors.system import local_machine_id
from monitoring.patterns import PatternError, compile_pattern, exactly


class Host(models.Model):
    name = models.CharField(max_length=100, unique=True)
    hostname = models.CharField(max_length=255, blank=True)
    machine_id = models.CharField(max_length=100, unique=True)
    labels = models.JSONField(default=dict, blank=True, help_text='e.g. {"env": "prod"}')
    enabled = models.BooleanField(default=True)
    is_local = models.BooleanField(default=False, editable=False)
    sample_interval = models.PositiveIntegerField(default=5, help_text="seconds")
    last_seen = models.DateTimeField(null=True, blank=True, editable=False)
    down_since = models.DateTimeField(null=True, blank=True, editable=False)
    agent_version = models.CharField(max_length=40, blank=True, editable=False)
    inventory = models.JSONField(default=dict, blank=True, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    # The agent's token, as its SHA-256 (shown once when made; see issue_agent_token).
    agent_token_hash = models.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False
    )
    agent_token_prefix = models.CharField(max_length=12, blank=True, editable=False)
    service_patterns = models.CharField(
        max_length=500,
        blank=True,
        help_text="systemd units to follow besides failed ones: globs separated by spaces, "
        "e.g. nginx.service postgresql*",
    )
    # Hub clock minus agent clock at its last push, seconds: samples carry agent time.
    clock_offset = models.FloatField(null=True, blank=True, editable=False)
    # Pull mode, for an agent the hub can reach that cannot reach the hub (monitoring.pull).
    pull_url = models.URLField(
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Only for an agent that cannot reach this hub: the address of its "
        "`ptracker agent --listen` (e.g. https://gpu-7.internal:9100), which the hub "
        "then pulls samples from. http:// sends the token in clear text.",
    )
    # The agent's token, which the hub shows the agent when it pulls: a credential the
    # hub must hold in full (unlike agent_token_hash), so it is kept encrypted with a
    # key derived from SECRET_KEY (see seal); a database dump alone does not reveal it.
    pull_token_sealed = models.TextField(blank=True, editable=False)
    pull_error = models.CharField(
        max_length=300, blank=True, editable=False, help_text="why the last pull failed"
    )

    AGENT_TOKEN_PREFIX = "pta_"
    CLOCK_WARNING = 10.0  # seconds of offset worth a warning on the host page

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def add_remote(cls, name: str, labels: dict | None = None) -> tuple["Host", str]:
        """A host that an agent will report for, and that agent's token (shown once)."""
        host = cls(name=name, machine_id=f"agent:{uuid.uuid4().hex}", labels=labels or {})
        secret = host.set_agent_token()
        host.save()
        return host, secret

    def set_agent_token(self) -> str:
        """A new agent token (the old one stops working); returns the secret."""
        secret = self.AGENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.agent_token_hash = hash_token(secret)
        self.agent_token_prefix = secret[:12]
        return secret

    def set_pull_token(self, secret: str) -> None:
        self.pull_token_sealed = seal(secret) if secret else ""

    def pull_token(self) -> str:
        """The token to pull with; ValueError when it cannot be unsealed."""
        return unseal(self.pull_token_sealed)

    @property
    def clock_warning(self) -> bool:
        return self.clock_offset is not None and abs(self.clock_offset) > self.CLOCK_WARNING

    @classmethod
    def for_agent_token(cls, secret: str) -> "Host | None":
        if not secret.startswith(cls.AGENT_TOKEN_PREFIX):
            return None
        return cls.objects.filter(agent_token_hash=hash_token(secret), enabled=True).first()

    @classmethod
    def local(cls) -> "Host":
        """The Host row of the machine this code runs on, created on first use."""
        machine_id = local_machine_id()
        host = cls.objects.filter(machine_id=machine_id).first()
        if host:
            return host
        name = socket.gethostname()
        if cls.objects.filter(name=name).exists():
            name = f"{name}-{machine_id[:8]}"
        try:
            with transaction.atomic():
                return cls.objects.create(
                    name=name, hostname=socket.gethostname(), machine_id=machine_id, is_local=True
                )
        except IntegrityError:  # another process registered it a moment ago
            return cls.objects.get(machine_id=machine_id)

    def offline_after(self) -> timedelta:
        """Silence longer than this means the host is down."""
        return timedelta(seconds=max(3 * self.sample_interval, 15))

    def is_online(self, now=None) -> bool:
        if self.last_seen is None:
            return False
        return (now or timezone.now()) - self.last_seen <= self.offline_after()

    def latest_sample(self) -> "HostSample | None":
        if self.last_seen is None:
            return None
        return self.samples.filter(ts=self.last_seen).first()


class HostSample(models.Model):
    """One row per host per tick. Rates are None on the first sample after a start."""

    host = models.ForeignKey(Host, models.CASCADE, related_name="samples", db_index=False)
    ts = models.DateTimeField()
    cpu_percent = models.FloatField(null=True)
    per_cpu = models.JSONField(default=list)  # [percent, ...] rounded to 0.1
    load1 = models.FloatField(null=True)
    load5 = models.FloatField(null=True)
    load15 = models.FloatField(null=True)
    mem_total = models.BigIntegerField(null=True)
    mem_used = models.BigIntegerField(null=True)
    mem_available = models.BigIntegerField(null=True)
    swap_total = models.BigIntegerField(null=True)
    swap_used = models.BigIntegerField(null=True)
    disk_read_bps = models.FloatField(null=True)
    disk_write_bps = models.FloatField(null=True)
    net_rx_bps = models.FloatField(null=True)
    net_tx_bps = models.FloatField(null=True)
    process_count = models.PositiveIntegerField(default=0)
    thread_count = models.PositiveIntegerField(default=0)
    # Processes not stored as ProcessSample rows this tick, summed.
    other_cpu_percent = models.FloatField(null=True)
    other_rss = models.BigIntegerField(null=True)
    # [{"mount", "device", "fstype", "total", "used", "percent"}]
    disks = models.JSONField(default=list)
    # [{"name", "rx_bps", "tx_bps"}]: loopback excluded from net_*_bps, listed here
    nets = models.JSONField(default=list)
    uptime = models.FloatField(null=True)  # seconds
    # The agent's id for the batch this row came from: a resent batch is stored once.
    batch_id = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 (NULLs stay distinct under the unique constraint)

    class Meta:
        indexes = [models.Index(fields=["host", "ts"])]
        constraints = [
            models.UniqueConstraint(fields=["host", "batch_id"], name="one_sample_per_batch")
        ]
        get_latest_by = "ts"

    @property
    def mem_percent(self) -> float | None:
        return 100 * self.mem_used / self.mem_total if self.mem_total else None

    @property
    def swap_percent(self) -> float | None:
        return 100 * self.swap_used / self.swap_total if self.swap_total else None


class GpuSample(models.Model):
    host = models.ForeignKey(Host, models.CASCADE, related_name="gpu_samples", db_index=False)
    ts = models.DateTimeField()
    index = models.PositiveSmallIntegerField()
    uuid = models.CharField(max_length=100, blank=True)
    name = models.CharField(max_length=100, blank=True)
    utilization = models.FloatField(null=True)
    memory_used = models.BigIntegerField(null=True)
    memory_total = models.BigIntegerField(null=True)
    temperature = models.FloatField(null=True)
    power_w = models.FloatField(null=True)

    class Meta:
        indexes = [models.Index(fields=["host", "ts"])]

    @property
    def memory_percent(self) -> float | None:
        if self.memory_used is None or not self.memory_total:
            return None
        return 100 * self.memory_used / self.memory_total


def validate_pattern(value: str) -> None:
    """A user's regular expression is saved only when RE2 can run it (see patterns)."""
    try:
        compile_pattern(value)
    except PatternError as exc:
        raise ValidationError(str(exc)) from None


class WatchedProcess(models.Model):
    """A pattern: matching processes are stored every tick and get lifecycle events."""

    FIELDS = [("name", "process name"), ("cmdline", "command line"), ("exe", "executable")]

    name = models.CharField(max_length=100, unique=True, help_text="What you call it: nginx")
    pattern = models.CharField(
        max_length=500,
        validators=[validate_pattern],
        help_text="Regular expression (RE2 syntax), searched anywhere in the field",
    )
    field = models.CharField(max_length=10, choices=FIELDS, default="name")
    hosts = models.ManyToManyField(Host, blank=True, help_text="Leave empty to watch on every host")
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "watched process"
        verbose_name_plural = "watched processes"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def for_process(cls, process: "Process") -> tuple["WatchedProcess", bool]:
        """A watch of `process`'s program (its executable, else its name) on its host:
        an identical one reused, else a new one; and whether it is new."""
        field, value = ("exe", process.exe) if process.exe else ("name", process.name)
        pattern = exactly(value)
        validate_pattern(pattern)
        watch = cls.objects.filter(field=field, pattern=pattern).first()
        created = watch is None
        if created:
            watch = cls.objects.create(name=cls._free_name(process), field=field, pattern=pattern)
            watch.hosts.add(process.host)
        elif watch.hosts.exists():  # a watch of some hosts: this one joins them
            watch.hosts.add(process.host)
        return watch, created

    @classmethod
    def _free_name(cls, process: "Process") -> str:
        base = (process.exe.rsplit("/", 1)[-1] or process.name)[:80]
        for name in (base, f"{base} on {process.host.name}"[:100]):
            if not cls.objects.filter(name=name).exists():
                return name
        n = 2
        while cls.objects.filter(name=f"{base} ({n})").exists():
            n += 1
        return f"{base} ({n})"


class Process(models.Model):
    """One process identity: pid + create_time, since pids are reused."""

    host = models.ForeignKey(Host, models.CASCADE, related_name="processes", db_index=False)
    pid = models.PositiveIntegerField()
    create_time = models.DateTimeField()
    ppid = models.PositiveIntegerField(null=True)
    name = models.CharField(max_length=255)
    exe = models.TextField(blank=True)
    cmdline = models.TextField(blank=True)
    username = models.CharField(max_length=100, blank=True)
    watched = models.ForeignKey(WatchedProcess, models.SET_NULL, null=True, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    # The program this process runs, the same for every run of it (the normalized
    # command line or executable): what "other runs" and grouping by program join on.
    program = models.CharField(max_length=255, blank=True)
    # The longest-kept tier holding some of its history (0: raw samples only; 60, 3600:
    # a rollup of that resolution, row or packed): retention keeps the identity as long.
    history_tier = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "pid", "create_time"], name="process_identity")
        ]
        indexes = [
            # No index holds last_seen: every batch moves it for each running process,
            # and an indexed column would make each of those an index write too (on
            # PostgreSQL a new entry in every index of the table, as no update is HOT).
            models.Index(fields=["host", "program", "create_time"]),  # a program's runs
        ]
        verbose_name_plural = "processes"
        permissions = [
            ("view_full_cmdline", "Can see command lines unredacted"),
            (
                "view_process_internals",
                "Can see open files, connections and environment of running processes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.pid})"


class ProcessSample(models.Model):
    ts = models.DateTimeField()
    host = models.ForeignKey(Host, models.CASCADE, related_name="+", db_index=False)
    process = models.ForeignKey(Process, models.CASCADE, related_name="samples", db_index=False)
    cpu_percent = models.FloatField(null=True)  # of one core: 250 means 2.5 cores
    rss = models.BigIntegerField(null=True)
    vms = models.BigIntegerField(null=True)
    mem_percent = models.FloatField(null=True)
    threads = models.PositiveIntegerField(null=True)
    read_bps = models.FloatField(null=True)
    write_bps = models.FloatField(null=True)
    gpu_memory = models.BigIntegerField(null=True)
    status = models.CharField(max_length=12, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["host", "ts"]),
            models.Index(fields=["process", "ts"]),
        ]


class ProcessChunk(models.Model):
    """Process history of one host over one span, packed (monitoring.chunks): raw
    samples (resolution 0) or a rollup tier's rows.

    monitoring.process_store packs ProcessSample and ProcessRollup rows older than a
    tier's hot window into chunks and reads both as one. Process ids in a chunk are not
    foreign keys: a reader skips those whose identity is gone, and retention keeps an
    identity as long as its longest tier (Process.history_tier)."""

    host = models.ForeignKey(Host, models.CASCADE, related_name="+", db_index=False)
    resolution = models.PositiveIntegerField()  # 0: raw samples; 60, 3600: rollups
    start = models.DateTimeField()
    end = models.DateTimeField()  # exclusive
    samples = models.PositiveIntegerField()  # entries
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "resolution", "start"], name="one_chunk_a_span")
        ]


class HostChunk(models.Model):
    """Raw host samples of one host over one span, packed (monitoring.chunks.HOST),
    batch ids included: monitoring.host_store packs HostSample rows older than the hot
    window and reads both as one. Its own table, not ProcessChunk with a kind: every
    reader of process history filters ProcessChunk by resolution alone, and retention
    and the indexes of the two stay apart."""

    host = models.ForeignKey(Host, models.CASCADE, related_name="+", db_index=False)
    start = models.DateTimeField()
    end = models.DateTimeField()  # exclusive
    samples = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["host", "start"], name="one_host_chunk_a_span")
        ]


class Service(models.Model):
    """A systemd unit of a host as last read: failed units and those of its patterns."""

    host = models.ForeignKey(Host, models.CASCADE, related_name="services", db_index=False)
    unit = models.CharField(max_length=255)
    description = models.CharField(max_length=255, blank=True)
    active_state = models.CharField(max_length=20)
    sub_state = models.CharField(max_length=30, blank=True)
    restarts = models.PositiveIntegerField(null=True)
    memory = models.BigIntegerField(null=True)  # bytes
    cpu_percent = models.FloatField(null=True)  # of one core
    main_pid = models.PositiveIntegerField(null=True)
    since = models.DateTimeField()  # in this active state since (as far as we saw)
    last_seen = models.DateTimeField()  # newest read that listed it

    class Meta:
        ordering = ["unit"]
        constraints = [models.UniqueConstraint(fields=["host", "unit"], name="one_row_per_unit")]

    def __str__(self) -> str:
        return self.unit


def event_kinds() -> list[tuple[str, str]]:
    # A callable, so that a new kind needs no migration.
    return Event.KINDS


class Event(models.Model):
    KINDS = [
        ("host_down", "host down"),
        ("host_up", "host up"),
        ("link_down", "link down (host kept sampling)"),
        ("link_up", "link back, backfilled"),
        ("samples_dropped", "samples dropped by the agent"),
        ("service_failed", "service failed"),
        ("service_recovered", "service recovered"),
        ("process_started", "process started"),
        ("process_exited", "process exited"),
        ("process_vanished", "no matching process any more"),
        ("sampler_started", "sampler started"),
        ("alert_firing", "alert firing"),
        ("alert_resolved", "alert resolved"),
        ("gpu_lease_expired", "GPU lease expired"),
        ("gpu_lease_holder_gone", "GPU lease released: holder gone"),
        ("gpu_lease_force_released", "GPU lease force-released"),
        ("gpu_used_unleased", "GPU used without a lease"),
        ("gpu_lease_idle", "GPU held but idle"),
        ("heartbeat_up", "heartbeat check up again"),
        ("heartbeat_late", "heartbeat late"),
        ("heartbeat_failed", "run failed"),
        ("heartbeat_orphaned", "run orphaned: its process vanished"),
        ("heartbeat_too_long", "run too long"),
        ("heartbeat_too_short", "run too short"),
    ]
    # The same kind for the same subject within this window is one event, not many:
    # a flapping unit or host. Process lifecycle events have no subject, since each
    # concerns one run (pid + start time) and runs are never folded together.
    COLLAPSE_WINDOW = timedelta(minutes=5)

    host = models.ForeignKey(Host, models.CASCADE, related_name="events", db_index=False)
    process = models.ForeignKey(Process, models.SET_NULL, null=True, blank=True)
    kind = models.CharField(max_length=40, choices=event_kinds)
    ts = models.DateTimeField(default=timezone.now)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)
    subject = models.CharField(max_length=200, blank=True)  # what collapses: "watch:3"
    count = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["-ts"]
        indexes = [models.Index(fields=["host", "ts"]), models.Index(fields=["ts"])]

    def __str__(self) -> str:
        return self.message

    @classmethod
    def record(cls, host: Host, kind: str, message: str, *, ts=None, subject="", **kw) -> "Event":
        """Store an event, or count it on a recent one of the same kind and subject."""
        ts = ts or timezone.now()
        if subject:
            recent = cls.objects.filter(
                host=host, kind=kind, subject=subject, ts__gte=ts - cls.COLLAPSE_WINDOW
            ).first()
            if recent:
                cls.objects.filter(pk=recent.pk).update(count=models.F("count") + 1)
                return recent
        return cls.objects.create(
            host=host, kind=kind, message=message, ts=ts, subject=subject, **kw
        )


class Rollup(models.Model):
    """Aggregates of one series of a host over one bucket (1 minute or 1 hour).

    `series` is "host", "gpu:<index>" or "process:<Process id>". `values` maps each
    metric to [avg, min, max, last] over the `count` samples in the bucket, with a
    fifth item, the number of values, when the metric was missing from some samples.
    """

    MINUTE = 60
    HOUR = 3600
    RESOLUTIONS = [(MINUTE, "1 minute"), (HOUR, "1 hour")]

    host = models.ForeignKey(Host, models.CASCADE, related_name="rollups", db_index=False)
    resolution = models.PositiveIntegerField(choices=RESOLUTIONS)
    series = models.CharField(max_length=40)
    bucket = models.DateTimeField()
    count = models.PositiveIntegerField()
    values = models.JSONField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["host", "resolution", "series", "bucket"], name="rollup_bucket"
            )
        ]
        indexes = [models.Index(fields=["resolution", "bucket"])]


class ProcessRollup(models.Model):
    """One process over one bucket (1 minute or 1 hour) of its host.

    Which processes get one (monitoring.rollups): the top N of the bucket by average
    CPU and by peak RSS, every GPU user and every watched process. Averages are over
    the samples the process was in (`samples`), so a process present for part of a
    bucket is not diluted by the samples it missed."""

    host = models.ForeignKey(Host, models.CASCADE, related_name="+", db_index=False)
    resolution = models.PositiveIntegerField(choices=Rollup.RESOLUTIONS)
    bucket = models.DateTimeField()
    process = models.ForeignKey(Process, models.CASCADE, related_name="rollups", db_index=False)
    samples = models.PositiveIntegerField()
    cpu_avg = models.FloatField(null=True)  # % of one core
    cpu_max = models.FloatField(null=True)
    rss_avg = models.BigIntegerField(null=True)  # bytes
    rss_max = models.BigIntegerField(null=True)
    rss_last = models.BigIntegerField(null=True)
    threads_max = models.PositiveIntegerField(null=True)
    read_bps_avg = models.FloatField(null=True)
    write_bps_avg = models.FloatField(null=True)
    gpu_memory_max = models.BigIntegerField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["host", "resolution", "bucket", "process"], name="process_rollup_bucket"
            )
        ]
        indexes = [models.Index(fields=["process", "resolution", "bucket"])]


class RollupState(models.Model):
    """Watermark: everything of `host` before `done_until` is rolled up at `resolution`."""

    host = models.ForeignKey(Host, models.CASCADE, db_index=False)
    resolution = models.PositiveIntegerField(choices=Rollup.RESOLUTIONS)
    done_until = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["host", "resolution"], name="rollup_state")]


class Retention(models.Model):
    """How long history is kept. One row, edited in the admin."""

    raw_hours = models.PositiveIntegerField(
        default=48, help_text="Raw samples (every tick), in hours."
    )
    minute_days = models.PositiveIntegerField(default=30, help_text="1-minute rollups, in days.")
    hour_days = models.PositiveIntegerField(default=365, help_text="1-hour rollups, in days.")
    event_days = models.PositiveIntegerField(default=90, help_text="Events, in days.")
    # When pruning last finished: ptracker's own health (jobs.health) reads it.
    pruned_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = verbose_name_plural = "retention"

    def __str__(self) -> str:
        return (
            f"raw {self.raw_hours} h, 1-minute {self.minute_days} d, "
            f"1-hour {self.hour_days} d, events {self.event_days} d"
        )

    def clean(self) -> None:
        if self.raw_hours < 1:
            raise ValidationError({"raw_hours": "Keep raw samples at least 1 hour."})

    @classmethod
    def current(cls) -> "Retention":
        return cls.objects.get_or_create(pk=1)[0]


class Lease(models.Model):
    """A named lock with an expiry, taken and renewed by conditional updates."""

    name = models.CharField(max_length=150, unique=True)
    owner = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField()
    acquired_at = models.DateTimeField(null=True)
    renewed_at = models.DateTimeField(null=True)
    info = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def acquire(cls, name: str, owner: str, ttl: float, now=None) -> bool:
        """Take the lease if it is free, expired, or already handed to `owner`."""
        now = now or timezone.now()
        expires = now + timedelta(seconds=ttl)
        taken = (
            cls.objects.filter(name=name)
            .filter(Q(expires_at__lte=now) | Q(owner=owner))
            .update(owner=owner, expires_at=expires, acquired_at=now, renewed_at=now)
        )
        if taken:
            return True
        try:
            with transaction.atomic():
                cls.objects.create(
                    name=name, owner=owner, expires_at=expires, acquired_at=now, renewed_at=now
                )
            return True
        except IntegrityError:
            return False  # it exists and someone else holds it

    @classmethod
    def renew(cls, name: str, owner: str, ttl: float, now=None, **info) -> bool:
        now = now or timezone.now()
        fields = {"expires_at": now + timedelta(seconds=ttl), "renewed_at": now}
        if info:
            fields["info"] = info
        return bool(cls.objects.filter(name=name, owner=owner).update(**fields))

    @classmethod
    def hand_over(cls, name: str, owner: str, successor: str, ttl: float) -> bool:
        """Give a held lease straight to `successor`, so nobody else can take it between."""
        expires = timezone.now() + timedelta(seconds=ttl)
        return bool(
            cls.objects.filter(name=name, owner=owner).update(owner=successor, expires_at=expires)
        )

    @classmethod
    def release(cls, name: str, owner: str) -> None:
        cls.objects.filter(name=name, owner=owner).update(expires_at=timezone.now(), owner="")

    @staticmethod
    def new_owner() -> str:
        return uuid.uuid4().hex


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SEAL_SALT = "monitoring.models.seal"


def _fernet() -> MultiFernet:
    """Fernet keys derived from SECRET_KEY, then SECRET_KEY_FALLBACKS: a rotated key
    still opens what the old one sealed."""
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    digests = [salted_hmac(SEAL_SALT, "", k, algorithm="sha256").digest() for k in keys]
    return MultiFernet([Fernet(base64.urlsafe_b64encode(d)) for d in digests])


def seal(secret: str) -> str:
    """`secret` encrypted and authenticated, for a credential the hub must send."""
    return _fernet().encrypt(secret.encode()).decode()


def unseal(sealed: str) -> str:
    if not sealed:
        raise ValueError("no token is set")
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise ValueError(
            "the stored token cannot be decrypted (SECRET_KEY changed?): set it again"
        ) from None


class ApiToken(models.Model):
    """A bearer token for the API: shown once when made, stored as its SHA-256.

    Tokens are 256 random bits, so a fast hash is enough: there is nothing to guess.
    """

    PREFIX = "pt_"
    API, JOBS = "api", "jobs"
    SCOPES = [
        (API, "the API (read only, or read and write)"),
        (JOBS, "only GPU leases (for batch jobs on shared machines)"),
    ]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What it is for: grafana, ci-job…")
    prefix = models.CharField(max_length=12, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    read_only = models.BooleanField(default=True, help_text="Only GET requests.")
    # A jobs token reaches only the views that say they take one (monitoring.api.auth).
    scope = models.CharField(max_length=10, choices=SCOPES, default=API)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(
        cls, user, name: str, read_only: bool = True, scope: str = API
    ) -> tuple["ApiToken", str]:
        """A new token and its secret, which is never stored and cannot be shown again."""
        secret = cls.PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user,
            name=name,
            read_only=read_only and scope != cls.JOBS,  # a job must take leases: a write
            scope=scope,
            prefix=secret[:11],
            token_hash=hash_token(secret),
        )
        return token, secret

    def clean(self) -> None:
        if self.scope == self.JOBS:
            self.read_only = False  # taking a lease is a write

    def set_secret(self) -> str:
        secret = self.PREFIX + secrets.token_urlsafe(32)
        self.prefix, self.token_hash = secret[:11], hash_token(secret)
        return secret

    @classmethod
    def find(cls, secret: str) -> "ApiToken | None":
        return (
            cls.objects.select_related("user")
            .filter(token_hash=hash_token(secret), revoked_at__isnull=True, user__is_active=True)
            .first()
        )
