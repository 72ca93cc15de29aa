"""Alert rules, notification channels, silences, and what happened (transitions).

A Transition row is the alert history; its Delivery rows (one per channel) are the
notification outbox, each claimed by the sender with a conditional update, so a
notification goes out once however many workers look.
"""

from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.template import Template, TemplateSyntaxError
from django.utils import timezone

from monitoring.models import Host, WatchedProcess, validate_pattern

SEVERITIES = [("info", "info"), ("warning", "warning"), ("critical", "critical")]
OPERATORS = {">": lambda v, t: v > t, ">=": lambda v, t: v >= t,
             "<": lambda v, t: v < t, "<=": lambda v, t: v <= t}  # fmt: skip

# Heartbeat rules: the states of a heartbeat check (jobs.models.HeartbeatCheck) that
# each one fires on.
HEARTBEAT_RULES = {
    "heartbeat_late": {"late"},
    "run_failed": {"failed", "orphaned"},
    "run_too_long": {"too_long"},
    "run_too_short": {"too_short"},
}
# Rules about something that must be there (value: 1 present, 0 not): no threshold.
PRESENCE_RULES = {"process_missing", "service_inactive", *HEARTBEAT_RULES}


class Metric(NamedTuple):
    label: str  # in forms and lists
    unit: str  # of values and thresholds: "%", "bytes", "bytes/s", "°C", …
    scope: str  # what it is measured on
    low: float | None  # lowest valid threshold
    high: float | None  # highest valid threshold
    short: str  # in messages: "CPU 77.5 % > 50 %"


METRICS = {
    "cpu_percent": Metric("Host CPU %", "%", "host", 0, 100, "CPU"),
    "mem_percent": Metric("Host memory %", "%", "host", 0, 100, "memory"),
    "swap_percent": Metric("Host swap %", "%", "host", 0, 100, "swap"),
    "load_per_core": Metric("Load (1 min) per core", "", "host", 0, None, "load per core"),
    "disk_percent": Metric("Disk used % (per mount)", "%", "mount", 0, 100, "disk used"),
    "disk_read_bps": Metric("Disk read, bytes/s", "bytes/s", "host", 0, None, "disk read"),
    "disk_write_bps": Metric("Disk write, bytes/s", "bytes/s", "host", 0, None, "disk write"),
    "net_rx_bps": Metric("Network in, bytes/s", "bytes/s", "host", 0, None, "network in"),
    "net_tx_bps": Metric("Network out, bytes/s", "bytes/s", "host", 0, None, "network out"),
    "process_count": Metric("Number of processes", "", "host", 0, None, "processes"),
    "gpu_utilization": Metric("GPU utilization %", "%", "gpu", 0, 100, "GPU utilization"),
    "gpu_memory_percent": Metric("GPU memory %", "%", "gpu", 0, 100, "GPU memory"),
    "gpu_temperature": Metric("GPU temperature, °C", "°C", "gpu", 0, 150, "GPU temperature"),
    "process_cpu_percent": Metric("Process CPU % (of one core)", "%", "process", 0, None, "CPU"),
    "process_rss": Metric("Process memory (RSS), bytes", "bytes", "process", 0, None, "RSS"),
    "process_threads": Metric("Process threads", "", "process", 0, None, "threads"),
    "process_gpu_memory": Metric(
        "Process GPU memory, bytes", "bytes", "process", 0, None, "GPU memory"
    ),
    # Special rules: their own evaluation, see alerts.evaluation.
    "host_offline": Metric(
        "Host offline (no sample for N intervals)", "intervals", "host", 1, None, "silent for"
    ),
    "process_missing": Metric("Watched process not running", "", "watch", None, None, "running"),
    "service_inactive": Metric("systemd service not active", "", "service", None, None, "active"),
    "memory_growth": Metric(
        "Memory grows faster than N MB per hour",
        "MB/h",
        "host|process",
        0,
        None,
        "memory growth",
    ),
    "disk_will_fill": Metric(
        "Disk full within N hours (linear trend)", "h", "mount", 0, None, "disk full in"
    ),
    "heartbeat_late": Metric("Heartbeat check late", "", "check", None, None, "on time"),
    "run_failed": Metric("Job run failed or orphaned", "", "check", None, None, "succeeding"),
    "run_too_long": Metric("Job run too long", "", "check", None, None, "within its time"),
    "run_too_short": Metric("Job run too short", "", "check", None, None, "long enough"),
    # From ptracker.sdk (appmetrics), over the last 5 minutes, per app on each host.
    "app_llm_error_rate": Metric(
        "App LLM error rate % (last 5 min)", "%", "app", 0, 100, "LLM error rate"
    ),
    "app_llm_p95_latency": Metric(
        "App LLM p95 latency, s (last 5 min)", "s", "app", 0, None, "LLM p95 latency"
    ),
}
APP_RULES = {"app_llm_error_rate", "app_llm_p95_latency"}


def check_template(text: str) -> None:
    try:
        Template(text)
    except TemplateSyntaxError as exc:
        raise ValidationError(f"Template error: {exc}") from exc


class Channel(models.Model):
    KINDS = [
        ("webhook", "Generic webhook"),
        ("slack", "Slack"),
        ("discord", "Discord"),
        ("teams", "Microsoft Teams"),
        ("telegram", "Telegram"),
        ("email", "Email"),
        ("dingtalk", "DingTalk"),
        ("wecom", "WeCom"),
        ("feishu", "Feishu / Lark"),
        ("ntfy", "ntfy"),
        ("pagerduty", "PagerDuty Events v2"),
    ]
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KINDS)
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "webhook: url, method (POST), headers {}, body (a template; default: the alert "
            "as JSON). slack/discord/teams/dingtalk/wecom/feishu: url. telegram: bot_token, "
            "chat_id. email: to (a list). ntfy: url (https://ntfy.sh/your-topic), token. "
            "pagerduty: routing_key."
        ),
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    def clean(self) -> None:
        from alerts.transports import TRANSPORTS

        # Errors are named by the setting at fault, which the admin's form has a field for.
        config = self.config or {}
        if self.kind in TRANSPORTS:
            problem = TRANSPORTS[self.kind].check_config(config)
            if problem:
                missing = [k for k in TRANSPORTS[self.kind].required if not config.get(k)]
                raise ValidationError({(missing or ["url"])[0]: problem})
        if self.kind == "webhook" and config.get("body"):
            try:
                check_template(config["body"])
            except ValidationError as exc:
                raise ValidationError({"body": exc.messages}) from exc


def metric_choices() -> list[tuple[str, str]]:
    # A callable, so that a new metric needs no migration.
    return [(k, v.label) for k, v in METRICS.items()]


class Rule(models.Model):
    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    metric = models.CharField(max_length=30, choices=metric_choices)
    operator = models.CharField(max_length=2, choices=[(o, o) for o in OPERATORS], default=">")
    threshold = models.FloatField(null=True, blank=True)
    for_seconds = models.PositiveIntegerField(
        default=60, help_text="The condition must hold this long before the alert fires."
    )
    recovery_threshold = models.FloatField(
        null=True,
        blank=True,
        help_text="Resolve only past this value (hysteresis); empty: the threshold itself.",
    )
    recovery_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The recovery must hold this long before the alert resolves. Empty: as "
        "long as the condition had to hold (for), so one burst sends one firing and one "
        "resolved message; 0 resolves on the first good value.",
    )
    window_minutes = models.PositiveIntegerField(
        default=60, help_text="memory growth and disk-fill rules: the trend window."
    )
    hosts = models.ManyToManyField(Host, blank=True, help_text="Empty: every host.")
    host_labels = models.JSONField(
        default=dict, blank=True, help_text='Only hosts with these labels: {"env": "prod"}'
    )
    process_pattern = models.CharField(
        max_length=300,
        blank=True,
        validators=[validate_pattern],
        help_text="Process rules: regular expression (RE2 syntax) searched in the name and, "
        "separately, in the command line (empty: any stored process).",
    )
    watched = models.ForeignKey(
        WatchedProcess,
        models.CASCADE,
        null=True,
        blank=True,
        help_text="Process rules: only processes of this watch. Required for process_missing.",
    )
    mount = models.CharField(max_length=300, blank=True, help_text="Disk rules: one mount point.")
    severity = models.CharField(max_length=10, choices=SEVERITIES, default="warning")
    repeat_minutes = models.PositiveIntegerField(
        default=0, help_text="Remind every N minutes while firing and not acknowledged (0: never)."
    )
    channels = models.ManyToManyField(Channel, blank=True)
    message = models.TextField(
        blank=True,
        help_text="Optional template: {{ rule }}, {{ subject }}, {{ value }}, {{ state }}, "
        "{{ host }}, {{ severity }}, {{ condition }} (CPU 77.5 % > 50 % for 10 s), {{ url }}.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recovery_after(self) -> int:
        return self.for_seconds if self.recovery_seconds is None else self.recovery_seconds

    @property
    def scope(self) -> str:
        return METRICS[self.metric].scope

    def clean(self) -> None:
        if self.metric not in METRICS:
            raise ValidationError({"metric": f"Unknown metric {self.metric!r}."})
        label, low, high = (getattr(METRICS[self.metric], f) for f in ("label", "low", "high"))
        needs_threshold = self.metric not in PRESENCE_RULES
        if needs_threshold and self.threshold is None:
            raise ValidationError({"threshold": "This metric needs a threshold."})
        for field in ("threshold", "recovery_threshold"):
            value = getattr(self, field)
            if value is None:
                continue
            if (low is not None and value < low) or (high is not None and value > high):
                span = f"{low} to {high}" if high is not None else f"at least {low}"
                raise ValidationError({field: f"{label}: the value must be {span}."})
        if self.metric == "process_missing" and self.watched_id is None:
            raise ValidationError({"watched": "Choose the watched process that must run."})
        if self.recovery_threshold is not None and self.threshold is not None:
            above = self.operator in (">", ">=")
            if (above and self.recovery_threshold > self.threshold) or (
                not above and self.recovery_threshold < self.threshold
            ):
                raise ValidationError(
                    {
                        "recovery_threshold": "The recovery value must be on the safe side of the "
                        "threshold (below it for > rules, above it for < rules)."
                    }
                )
        if self.message:
            try:
                check_template(self.message)
            except ValidationError as exc:
                raise ValidationError({"message": exc.messages}) from exc

    def applies_to(self, host: Host) -> bool:
        if not self.enabled or not host.enabled:
            return False
        if self.host_labels and any(host.labels.get(k) != v for k, v in self.host_labels.items()):
            return False
        ids = getattr(self, "_host_ids", None)
        if ids is None:
            ids = self._host_ids = set(self.hosts.values_list("pk", flat=True))
        return not ids or host.pk in ids


class AlertState(models.Model):
    """Where one rule stands for one subject (a host, a mount, a GPU, a process)."""

    OK, PENDING, FIRING = "ok", "pending", "firing"
    rule = models.ForeignKey(Rule, models.CASCADE, related_name="states")
    host = models.ForeignKey(Host, models.CASCADE)
    subject = models.CharField(max_length=300)  # "host", "mount:/", "gpu:0", "watch:3", "pid:…"
    state = models.CharField(max_length=10, default=OK)
    since = models.DateTimeField(default=timezone.now)  # when the current state began
    candidate_since = models.DateTimeField(null=True, blank=True)  # recovery under way
    value = models.FloatField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)  # alerts.messages.describe
    fired_at = models.DateTimeField(null=True, blank=True)
    last_notified = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "host", "subject"], name="alert_subject")
        ]

    def __str__(self) -> str:
        return f"{self.rule} on {self.host} {self.subject}: {self.state}"


class Transition(models.Model):
    """A change of state (or a reminder): the alert history and the notification outbox.
    Pending is a state (AlertState), never a row here: most pendings end unnoticed."""

    KINDS = [
        ("firing", "firing"),
        ("reminder", "still firing"),
        ("resolved", "resolved"),
    ]
    rule = models.ForeignKey(Rule, models.CASCADE, related_name="transitions")
    host = models.ForeignKey(Host, models.CASCADE)
    subject = models.CharField(max_length=300)
    kind = models.CharField(max_length=10, choices=KINDS)
    ts = models.DateTimeField(default=timezone.now)
    value = models.FloatField(null=True, blank=True)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)  # alerts.messages.describe
    duration = models.DurationField(null=True, blank=True)  # firing → resolved
    silenced = models.BooleanField(default=False)

    class Meta:
        ordering = ["-ts"]
        indexes = [models.Index(fields=["host", "ts"])]

    def __str__(self) -> str:
        return self.message


class Delivery(models.Model):
    """One channel's share of a transition: attempts, outcome, next retry."""

    PENDING, SENT, FAILED = "pending", "sent", "failed"
    transition = models.ForeignKey(Transition, models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(Channel, models.CASCADE)
    status = models.CharField(max_length=10, default=PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_try = models.DateTimeField(default=timezone.now)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["status", "next_try"])]


class Silence(models.Model):
    """Mute notifications (not evaluation, not history) for a while."""

    rule = models.ForeignKey(Rule, models.CASCADE, null=True, blank=True)
    host = models.ForeignKey(Host, models.CASCADE, null=True, blank=True)
    host_label = models.CharField(max_length=200, blank=True, help_text="key=value")
    starts = models.DateTimeField(default=timezone.now)
    ends = models.DateTimeField()
    comment = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return self.comment or f"silence until {self.ends:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.ends and self.starts and self.ends <= self.starts:
            raise ValidationError({"ends": "A silence must end after it starts."})
        if self.host_label and "=" not in self.host_label:
            raise ValidationError({"host_label": "Write the label as key=value."})

    def matches(self, rule: Rule, host: Host, at: datetime) -> bool:
        if not self.starts <= at < self.ends:
            return False
        if self.rule_id and self.rule_id != rule.pk:
            return False
        if self.host_id and self.host_id != host.pk:
            return False
        if self.host_label:
            key, _, value = self.host_label.partition("=")
            if host.labels.get(key.strip()) != value.strip():
                return False
        return True


class MaintenanceWindow(models.Model):
    """A recurring silence: every chosen weekday from a time, for a duration (UTC)."""

    name = models.CharField(max_length=100)
    weekdays = models.CharField(
        max_length=20, default="0123456", help_text="0 = Monday … 6 = Sunday, e.g. 5 for Saturdays"
    )
    start_time = models.TimeField(help_text="UTC")
    duration_minutes = models.PositiveIntegerField()
    hosts = models.ManyToManyField(Host, blank=True, help_text="Empty: every host.")
    rules = models.ManyToManyField(Rule, blank=True, help_text="Empty: every rule.")

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.weekdays or any(c not in "0123456" for c in self.weekdays):
            raise ValidationError({"weekdays": "Use the digits 0 (Monday) to 6 (Sunday)."})

    def covers(self, at: datetime) -> bool:
        # A window may start yesterday and run past midnight: look at both starts.
        for days_back in (0, 1):
            day = at - timedelta(days=days_back)
            if str(day.weekday()) not in self.weekdays:
                continue
            start = datetime.combine(day.date(), self.start_time, tzinfo=at.tzinfo)
            if start <= at < start + timedelta(minutes=self.duration_minutes):
                return True
        return False

    def matches(self, rule: Rule, host: Host, at: datetime) -> bool:
        if not self.covers(at):
            return False
        host_ids = {h.pk for h in self.hosts.all()}
        rule_ids = {r.pk for r in self.rules.all()}
        return (not host_ids or host.pk in host_ids) and (not rule_ids or rule.pk in rule_ids)
