"""Readable units: binary sizes (KiB, MiB, GiB), rates, percentages, durations."""

from datetime import UTC, timedelta

from django import template

register = template.Library()

UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def human_bytes(value) -> str:
    if value is None or value == "":
        return "–"
    value = float(value)
    for unit in UNITS:
        if abs(value) < 1024 or unit == UNITS[-1]:
            if unit == "B":
                return f"{value:.0f} B"
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {UNITS[-1]}"


@register.filter
def bytes(value) -> str:  # noqa: A001  (template filter name)
    return human_bytes(value)


@register.filter
def rate(value) -> str:
    return "–" if value is None else human_bytes(value) + "/s"


@register.filter
def pct(value, digits: int = 1) -> str:
    return "–" if value is None or value == "" else f"{float(value):.{int(digits)}f} %"


def human_duration(seconds) -> str:
    """Two units at most, the smaller left out when zero: "1 min 40 s", "2 h 5 min"."""
    if seconds is None or seconds == "":
        return "–"
    if isinstance(seconds, timedelta):
        seconds = seconds.total_seconds()
    seconds = int(round(float(seconds)))
    for size, unit, smaller, small_unit in STEPS:
        if seconds >= size:
            big, rest = divmod(seconds, size)
            rest //= smaller
            return f"{big} {unit} {rest} {small_unit}" if rest else f"{big} {unit}"
    return f"{seconds} s"


STEPS = [(86400, "d", 3600, "h"), (3600, "h", 60, "min"), (60, "min", 1, "s")]


@register.filter
def duration(seconds) -> str:
    """Seconds or a timedelta, for people."""
    return human_duration(seconds)


def plain_number(value: float) -> str:
    """77.5, 50, 0.05: no trailing zeros, two decimals under 10, one above."""
    text = f"{value:.{2 if abs(value) < 10 else 1}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity(value, unit: str) -> str:
    """A value in a unit as declared with alert metrics: bytes in binary units, hours
    as a duration, percentages and the rest as a number and the unit."""
    if value is None or value == "":
        return "–"
    value = float(value)
    if unit == "bytes":
        return human_bytes(value)
    if unit == "bytes/s":
        return human_bytes(value) + "/s"
    if unit == "h":
        return "never" if value == float("inf") else human_duration(value * 3600)
    if value in (float("inf"), float("-inf")):
        return "never" if value > 0 else "–"
    return f"{plain_number(value)} {unit}".strip()


@register.filter(name="quantity")
def quantity_filter(value, unit: str = "") -> str:
    return quantity(value, unit)


@register.filter
def num(value, digits: int = 2) -> str:
    return "–" if value is None or value == "" else f"{float(value):.{int(digits)}f}"


@register.filter
def bar(value) -> str:
    """The width of a bar for a percentage, 0 to 100 (none: 0)."""
    if value is None or value == "":
        return "0"
    return f"{min(100.0, max(0.0, float(value))):.0f}"


@register.filter(expects_localtime=False)
def utc(value) -> str:
    """A time as `2026-11-26 10:50:56 UTC`: what a page shows until its script localizes
    it (and ten times quicker than the `date` filter, for pages of hundreds of times)."""
    return "–" if not value else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
