"""Links of the process table: they keep its filters and change one thing."""

from urllib.parse import urlencode

from django import template
from django.utils.html import format_html

register = template.Library()
KEPT = ("sort", "q", "user", "pid", "at", "view", "program")


@register.simple_tag
def table_url(table: dict, **changes) -> str:
    params = {key: table.get(key, "") for key in KEPT}
    params.update(changes)
    return "?" + urlencode({k: v for k, v in params.items() if v not in ("", None)})


@register.simple_tag
def sort_header(table: dict, key: str, label: str, numeric: bool = True) -> str:
    """A column header that sorts by `key`; numbers sort biggest first, text A to Z."""
    current = table.get("sort", "")
    first, second = (f"-{key}", key) if numeric else (key, f"-{key}")
    target = second if current == first else first
    arrow = {f"-{key}": " ▼", key: " ▲"}.get(current, "")
    return format_html(
        '<th class="{}"><a data-sort="{}" href="{}">{}{}</a></th>',
        "n" if numeric else "",
        key,
        table_url(table, sort=target, page=""),
        label,
        arrow,
    )
