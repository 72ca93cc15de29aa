"""Readable units: binary sizes (KiB, MiB, GiB), rates, percentages, durations."""

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
    return "–" if value is None else f"{float(value):.{int(digits)}f} %"


@register.filter
def duration(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{seconds} s"


@register.filter
def num(value, digits: int = 2) -> str:
    return "–" if value is None else f"{float(value):.{int(digits)}f}"
