"""What an alert says, built once for the /alerts/ page, the host's event, the API
and every channel (transports send `Transition.message` and `details`).

A message names the host and what on it (a process by its short command line, pid
and user), the value with its unit against the threshold, and an absolute link to
the page at that moment. Messages leave the system, so command lines are always
redacted here, whoever reads them later.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.template import Context, Template
from django.urls import reverse

from alerts.models import METRICS, PRESENCE_RULES, Rule
from monitoring.models import Host, Process
from monitoring.redaction import redact
from monitoring.templatetags.units import human_duration, quantity

CMDLINE_LIMIT = 80  # characters of a command line in a message
WORDS = {"firing": "FIRING", "reminder": "STILL FIRING", "resolved": "RESOLVED"}
PLACES = {
    "mount": "mount",
    "gpu": "GPU",
    "watch": "watch",
    "unit": "unit",
    "check": "heartbeat check",
}


def short_cmdline(cmdline: str, name: str = "") -> str:
    """`/usr/bin/python3 train.py --epochs 3` as `python3 train.py --epochs 3`, redacted
    and cut to CMDLINE_LIMIT characters; the name when there is no command line."""
    text = redact(cmdline.strip()) or name
    program, _, args = text.partition(" ")
    text = f"{program.rsplit('/', 1)[-1]} {args}".strip()
    return text if len(text) <= CMDLINE_LIMIT else text[: CMDLINE_LIMIT - 1] + "…"


def subject_process(subject: str) -> Process | None:
    """The process of a subject `process:<id> …` (evaluation.process_subject)."""
    kind, _, rest = subject.partition(":")
    key = rest.split(" ", 1)[0]
    if kind != "process" or not key.isdigit():
        return None
    return Process.objects.filter(pk=int(key)).first()


def link(path: str, at: datetime) -> str:
    return f"{settings.PTRACKER_LINK_URL}{path}?at={int(at.timestamp() * 1000)}"


def describe(rule: Rule, host: Host, subject: str, at: datetime) -> dict:
    """The structured facts of an alert on `subject` at `at` (stored with it, so the
    history keeps the threshold and command line of that moment)."""
    metric = METRICS[rule.metric]
    details = {
        "what": "",
        "process": None,
        "metric": rule.metric,
        "unit": metric.unit,
        "threshold": rule.threshold,
        "operator": rule.operator,
        "for_seconds": rule.for_seconds,
        "url": link(reverse("host-detail", args=[host.pk]), at),
    }
    process = subject_process(subject)
    if process is not None:
        cmdline = short_cmdline(process.cmdline, process.name)
        details["process"] = {
            "id": process.pk,
            "pid": process.pid,
            "user": process.username,
            "cmdline": cmdline,
        }
        user = f", {process.username}" if process.username else ""
        details["what"] = f"{cmdline} (pid {process.pid}{user})"
        details["url"] = link(reverse("process-detail", args=[process.pk]), at)
    elif subject != "host":
        kind, _, name = subject.partition(":")
        details["what"] = f"{PLACES.get(kind, kind)} {name}"
    return details


def condition(rule: Rule, kind: str, value: float | None, details: dict) -> str:
    """`CPU 77.5 % > 50 % for 10 s`; for a resolved alert, the value now."""
    metric = METRICS[rule.metric]
    if rule.metric in PRESENCE_RULES:
        held = f" for {human_duration(details['for_seconds'])}" if details["for_seconds"] else ""
        return f"{metric.short} again" if kind == "resolved" else f"not {metric.short}{held}"
    unit = details["unit"]
    limit = f"{details['operator']} {quantity(details['threshold'], unit)}"
    if kind == "resolved":
        now = "gone" if value is None else quantity(value, unit)
        return f"{metric.short} {now} (fired at {limit})"
    held = f" for {human_duration(details['for_seconds'])}" if details["for_seconds"] else ""
    return f"{metric.short} {quantity(value, unit)} {limit}{held}"


def render_message(
    rule: Rule,
    kind: str,
    host: Host,
    value: float | None,
    details: dict,
    duration: timedelta | None = None,
) -> str:
    """The one text of a transition: its subject line, first, then the link."""
    text = condition(rule, kind, value, details)
    if rule.message:
        context = {
            "rule": rule.name,
            "state": kind,
            "subject": details["what"] or host.name,
            "host": host.name,
            "value": value,
            "severity": rule.severity,
            "condition": text,
            "url": details["url"],
        }
        return Template(rule.message).render(Context(context)).strip()
    what = f"{details['what']}: " if details["what"] else ""
    lasted = f", lasted {human_duration(duration)}" if duration is not None else ""
    return f"[{WORDS[kind]}] {rule.name} on {host.name}: {what}{text}{lasted} — {details['url']}"
