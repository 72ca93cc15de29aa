"""Evaluate rules: observations in, state changes (transitions) out.

`advance()` is the pure heart: one rule's state for one subject, one observation,
the time; it returns the new state and the transition to record, if any. The rest
reads observations from the samples and stores what `advance()` decided.

Threshold rules run after every stored batch (monitoring calls `after_batch`
through PTRACKER_AFTER_INGEST); offline, missing-process and trend rules run on the
minute schedule (`evaluate_scheduled`).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from alerts.messages import describe, render_message
from alerts.models import (
    APP_RULES,
    HEARTBEAT_RULES,
    OPERATORS,
    PRESENCE_RULES,
    AlertState,
    Delivery,
    MaintenanceWindow,
    Rule,
    Silence,
    Transition,
)
from jobs.models import HeartbeatCheck, Run
from monitoring import background, host_store, process_store
from monitoring.models import Event, GpuSample, Host, HostSample, Process, ProcessSample
from monitoring.patterns import PatternError, compile_pattern, matches_process
from monitoring.recent import Recent

log = logging.getLogger(__name__)

SCHEDULED = {"host_offline", "process_missing", "service_inactive", "memory_growth",
             "disk_will_fill", *HEARTBEAT_RULES, *APP_RULES}  # fmt: skip
GPU_FIELDS = {
    "gpu_utilization": "utilization",
    "gpu_memory_percent": "memory_percent",
    "gpu_temperature": "temperature",
}
PROCESS_FIELDS = {
    "process_cpu_percent": "cpu_percent",
    "process_rss": "rss",
    "process_threads": "threads",
    "process_gpu_memory": "gpu_memory",
}


@dataclass(frozen=True)
class Decision:
    state: str
    since: datetime
    candidate_since: datetime | None
    transition: str | None  # firing | reminder | resolved


def advance(rule: Rule, current: AlertState, value: float | None, now: datetime) -> Decision:
    """The next state of one rule for one subject, given its newest value."""
    state, since, candidate = current.state, current.since, current.candidate_since
    if value is None:  # no data says nothing: keep the state
        return Decision(state, since, candidate, None)
    breach = breaching(rule, value)
    for_ = timedelta(seconds=rule.for_seconds)
    if state == AlertState.OK:
        if not breach:
            return Decision(state, since, None, None)
        if rule.for_seconds == 0:
            return Decision(AlertState.FIRING, now, None, "firing")
        return Decision(AlertState.PENDING, now, None, None)
    if state == AlertState.PENDING:
        if not breach:
            return Decision(AlertState.OK, now, None, None)
        if now - since >= for_:
            return Decision(AlertState.FIRING, now, None, "firing")
        return Decision(state, since, None, None)
    # firing: resolve only past the recovery threshold, held for the recovery time
    if recovered(rule, value):
        return recovering(rule, current, now)
    if rule.repeat_minutes and current.acknowledged_at is None:
        last = current.last_notified or current.fired_at or since
        if now - last >= timedelta(minutes=rule.repeat_minutes):
            return Decision(state, since, None, "reminder")
    return Decision(state, since, None, None)


def recovering(rule: Rule, current: AlertState, now: datetime) -> Decision:
    """A firing alert whose condition is gone: resolved once that held long enough."""
    candidate = current.candidate_since or now
    if now - candidate >= timedelta(seconds=rule.recovery_after):
        return Decision(AlertState.OK, now, None, "resolved")
    return Decision(current.state, current.since, candidate, None)


def breaching(rule: Rule, value: float) -> bool:
    if rule.metric in PRESENCE_RULES:
        return value == 0  # value: how many matching processes run, or 1 for an active unit
    return OPERATORS[rule.operator](value, rule.threshold)


def recovered(rule: Rule, value: float) -> bool:
    if rule.metric in PRESENCE_RULES:
        return value > 0
    limit = rule.threshold if rule.recovery_threshold is None else rule.recovery_threshold
    return not OPERATORS[rule.operator](value, limit)


# --- observations -------------------------------------------------------------------


def host_values(rule: Rule, sample: HostSample, host: Host) -> list[tuple[str, float | None]]:
    metric = rule.metric
    if metric == "disk_percent":
        return [
            (f"mount:{d['mount']}", d["percent"])
            for d in sample.disks
            if not rule.mount or d["mount"] == rule.mount
        ]
    if metric == "load_per_core":
        cores = host.inventory.get("cpu_count") or len(sample.per_cpu) or 1
        return [("host", None if sample.load1 is None else sample.load1 / cores)]
    return [("host", getattr(sample, metric))]


def gpu_values(rule: Rule, gpus: list[GpuSample]) -> list[tuple[str, float | None]]:
    field = GPU_FIELDS[rule.metric]
    return [(f"gpu:{g.index}", getattr(g, field)) for g in gpus]


def process_filter(rule: Rule) -> Callable[[Process], bool]:
    """Which stored processes a process rule covers: those of its watch, when it names
    one, that match its pattern, when it has one. The pattern is searched with RE2 in
    the name and, separately, in the command line (patterns.matches_process, the
    process table's rule too). A pattern RE2 refuses, saved before patterns were
    checked, covers no process and is logged."""
    regex = None
    if rule.process_pattern:
        try:
            regex = compile_pattern(rule.process_pattern)
        except PatternError as exc:
            log.warning("rule %r covers no process: %s", rule.name, exc)
            return lambda process: False

    def covers(process: Process) -> bool:
        if rule.watched_id and process.watched_id != rule.watched_id:
            return False
        return regex is None or matches_process(regex, process.name, process.cmdline)

    return covers


def process_subject(process: Process) -> str:
    return f"process:{process.pk} {process.name} (pid {process.pid})"


def process_values(rule: Rule, rows: list[ProcessSample]) -> list[tuple[str, float | None]]:
    field = PROCESS_FIELDS[rule.metric]
    covers = process_filter(rule)
    return [(process_subject(r.process), getattr(r, field)) for r in rows if covers(r.process)]


def slope_per_hour(points: list[tuple[datetime, float]]) -> float | None:
    """Least-squares slope of value over time, per hour; None with too little data."""
    if len(points) < 3:
        return None
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 3600 for t, _ in points]
    ys = [v for _, v in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def trend_values(rule: Rule, host: Host, now: datetime) -> list[tuple[str, float | None]]:
    since = now - timedelta(minutes=rule.window_minutes)
    if rule.metric == "memory_growth" and (rule.process_pattern or rule.watched_id):
        covers = process_filter(rule)
        rss = process_store.RAW.fields.index("rss")
        rows = [r for r in process_store.RAW.values(host.pk, since, None) if r[rss] is not None]
        identities = Process.objects.in_bulk({r[1] for r in rows})
        series: dict[str, list] = {}
        for row in rows:
            process = identities.get(row[1])
            if process is not None and covers(process):
                series.setdefault(process_subject(process), []).append((row[0], row[rss]))
        return [(s, _mb(slope_per_hour(points))) for s, points in series.items()]
    # A window longer than the hot window reaches packed samples: read rows and chunks.
    if rule.metric == "memory_growth":
        samples = host_store.HOST.named(host.pk, since, None, ["mem_used"])
        points = [(s["ts"], s["mem_used"]) for s in samples if s["mem_used"] is not None]
        return [("host", _mb(slope_per_hour(points)))]
    # disk_will_fill: hours until full at the current rate, per mount
    usage: dict[str, list] = {}
    totals: dict[str, int] = {}
    for s in host_store.HOST.named(host.pk, since, None, ["disks"]):
        for d in s["disks"]:
            if not rule.mount or d["mount"] == rule.mount:
                usage.setdefault(d["mount"], []).append((s["ts"], d["used"]))
                totals[d["mount"]] = d["total"]
    values = []
    for mount, points in usage.items():
        slope = slope_per_hour(points)
        hours = None
        if slope is not None:
            hours = (totals[mount] - points[-1][1]) / slope if slope > 0 else float("inf")
        values.append((f"mount:{mount}", hours))
    return values


def _mb(per_hour: float | None) -> float | None:
    return None if per_hour is None else per_hour / 2**20


def missing_values(rule: Rule, host: Host, now: datetime) -> list[tuple[str, float]]:
    fresh = now - host.offline_after()
    running = Process.objects.filter(
        host=host, watched=rule.watched_id, exited_at__isnull=True, last_seen__gte=fresh
    ).count()
    return [(f"watch:{rule.watched.name}", float(running))]


# --- storing decisions ------------------------------------------------------------------


def muted(rule: Rule, host: Host, now: datetime) -> bool:
    silences = Silence.objects.filter(starts__lte=now, ends__gt=now)
    if any(s.matches(rule, host, now) for s in silences):
        return True
    windows = MaintenanceWindow.objects.prefetch_related("hosts", "rules")
    return any(w.matches(rule, host, now) for w in windows)


def apply(rule: Rule, host: Host, subject: str, value, now: datetime) -> Transition | None:
    current, _ = AlertState.objects.get_or_create(
        rule=rule, host=host, subject=subject[:300], defaults={"since": now}
    )
    return store(rule, host, current, advance(rule, current, value, now), value, now)


def store(
    rule: Rule, host: Host, current: AlertState, decision: Decision, value, now: datetime
) -> Transition | None:
    """Save what advance() decided about `current`; record its transition, if any."""
    current.value = value
    changed = ["value"]
    if (decision.state, decision.since, decision.candidate_since) != (
        current.state,
        current.since,
        current.candidate_since,
    ):
        if current.state == AlertState.OK and decision.state != AlertState.OK:
            current.details = describe(rule, host, current.subject, now)
            changed.append("details")
        current.state, current.since = decision.state, decision.since
        current.candidate_since = decision.candidate_since
        changed += ["state", "since", "candidate_since"]
    duration = None
    if decision.transition == "firing":
        current.fired_at, current.acknowledged_at, current.acknowledged_by = now, None, None
        changed += ["fired_at", "acknowledged_at", "acknowledged_by"]
    if decision.transition == "resolved" and current.fired_at:
        duration = now - current.fired_at
    if decision.transition is not None:
        current.last_notified = now
        changed.append("last_notified")
    current.save(update_fields=changed)
    if decision.transition is None:
        return None
    return record(rule, host, current.subject, decision.transition, value, now, duration)


def record(rule, host, subject, kind, value, now, duration=None) -> Transition:
    silenced = muted(rule, host, now)
    details = describe(rule, host, subject, now)
    transition = Transition.objects.create(
        rule=rule,
        host=host,
        subject=subject[:300],
        kind=kind,
        ts=now,
        value=value,
        message=render_message(rule, kind, host, value, details, duration),
        details=details,
        duration=duration,
        silenced=silenced,
    )
    if kind in ("firing", "resolved"):
        Event.record(
            host,
            "alert_firing" if kind == "firing" else "alert_resolved",
            transition.message,
            ts=now,
            data={"rule": rule.name, "value": value, **details},
        )
    if not silenced:
        channels = rule.channels.filter(enabled=True)
        Delivery.objects.bulk_create(
            Delivery(transition=transition, channel=c, next_try=now) for c in channels
        )
        if channels:
            transaction.on_commit(queue_sending)
    return transition


def queue_sending() -> None:
    background.enqueue("alerts.tasks.send_due", task_name="alerts-send")


def _threshold_rules() -> list[Rule]:
    rules = list(
        Rule.objects.filter(enabled=True).exclude(metric__in=SCHEDULED).prefetch_related("hosts")
    )
    for rule in rules:
        rule._host_ids = {h.pk for h in rule.hosts.all()}
    return rules


# Asked for after every stored batch: read at most once a second (monitoring.recent).
threshold_rules = Recent(_threshold_rules)


def evaluate_host(host: Host, sample: HostSample, now: datetime | None = None) -> list[Transition]:
    """Threshold rules against one new sample of `host`."""
    now = now or sample.ts
    rules = [r for r in threshold_rules.get() if r.applies_to(host)]
    if not rules:
        return []
    gpus = processes = None
    transitions = []
    for rule in rules:
        scope = rule.scope
        if scope in ("host", "mount"):
            values = host_values(rule, sample, host)
        elif scope == "gpu":
            if gpus is None:
                gpus = list(GpuSample.objects.filter(host=host, ts=sample.ts))
            values = gpu_values(rule, gpus)
        else:
            if processes is None:
                processes = process_store.RAW.at(host, sample.ts)
            values = process_values(rule, processes)
            transitions += resolve_gone(rule, host, {s for s, _ in values}, now)
        with transaction.atomic():
            for subject, value in values:
                if (t := apply(rule, host, subject, value, now)) is not None:
                    transitions.append(t)
    return transitions


def resolve_gone(rule: Rule, host: Host, present: set[str], now: datetime) -> list[Transition]:
    """Subjects with no value any more (a process left the sample, a unit is gone): a
    pending one just ends; a firing one resolves once gone for the recovery time, so a
    process missing from one sample and back in the next stays one alert."""
    done = []
    gone = AlertState.objects.filter(rule=rule, host=host).exclude(state=AlertState.OK)
    for state in gone.exclude(subject__in=present):
        if state.state == AlertState.PENDING:
            decision = Decision(AlertState.OK, now, None, None)
        else:
            decision = recovering(rule, state, now)
        if (t := store(rule, host, state, decision, None, now)) is not None:
            done.append(t)
    return done


def evaluate_scheduled(now: datetime | None = None) -> list[Transition]:
    """Offline, missing-process and trend rules, for every host in their scope."""
    now = now or timezone.now()
    transitions = []
    rules = Rule.objects.filter(enabled=True, metric__in=SCHEDULED).select_related("watched")
    hosts = list(Host.objects.filter(enabled=True))
    checks = None
    for rule in rules:
        if rule.metric in HEARTBEAT_RULES:
            checks = checks if checks is not None else heartbeat_checks()
            with transaction.atomic():
                for host, subject, value in heartbeat_values(rule, checks):
                    if rule.applies_to(host) and (t := apply(rule, host, subject, value, now)):
                        transitions.append(t)
            continue
        for host in hosts:
            if not rule.applies_to(host):
                continue
            if rule.metric == "host_offline":
                if host.last_seen is None:
                    continue
                silent = (now - host.last_seen).total_seconds()
                values = [("host", silent / max(host.sample_interval, 1))]
            elif rule.metric == "process_missing":
                values = missing_values(rule, host, now)
            elif rule.metric in APP_RULES:
                values = app_values(rule, host, now)
            elif rule.metric == "service_inactive":
                values = [
                    (f"unit:{unit}", float(state == "active"))
                    for unit, state in host.services.values_list("unit", "active_state")
                ]
                transitions += resolve_gone(rule, host, {s for s, _ in values}, now)
            else:
                values = trend_values(rule, host, now)
            with transaction.atomic():
                for subject, value in values:
                    if (t := apply(rule, host, subject, value, now)) is not None:
                        transitions.append(t)
    return transitions


APP_WINDOW = timedelta(minutes=5)


def app_values(rule: Rule, host: Host, now: datetime) -> list[tuple[str, float]]:
    """Per app that sent LLM calls from this host in the last 5 minutes: its error
    rate in % or its p95 latency in seconds (from merged minute histograms)."""
    from appmetrics.summary import llm_by_app  # an app of its own, beside alerts

    return [
        (f"app:{app}", value)
        for app, value in llm_by_app(host, now - APP_WINDOW, now, rule.metric).items()
    ]


def heartbeat_checks() -> list[tuple[HeartbeatCheck, Host]]:
    """Every heartbeat check with the host it runs on: its last run's, else the hub's."""
    hosts = {}
    for run in Run.objects.exclude(host=None).select_related("host").order_by("started_at"):
        hosts[run.heartbeat_id] = run.host
    here = None
    checks = []
    for check in HeartbeatCheck.objects.all():
        if check.pk not in hosts:
            here = here or Host.local()
        checks.append((check, hosts.get(check.pk) or here))
    return checks


def heartbeat_values(rule: Rule, checks) -> list[tuple[Host, str, float | None]]:
    """A presence value per check: 0 while it is in a state the rule fires on, 1 in any
    other, nothing for a check never pinged."""
    bad = HEARTBEAT_RULES[rule.metric]
    return [
        (
            host,
            f"check:{check.name}",
            None if check.state == "new" else float(check.state not in bad),
        )
        for check, host in checks
    ]


def after_batch(host: Host, sample: HostSample) -> None:
    """PTRACKER_AFTER_INGEST hook: called by monitoring.ingest after each stored batch."""
    evaluate_host(host, sample)
