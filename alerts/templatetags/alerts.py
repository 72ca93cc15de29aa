"""Firing alerts on monitoring's pages, without monitoring importing alerts."""

from django import template
from django.db.models import Count

from alerts.models import AlertState

register = template.Library()


@register.simple_tag
def firing_alerts(host=None):
    """Firing alert states, of one host or of all: one query."""
    rows = AlertState.objects.filter(state=AlertState.FIRING).select_related("rule", "host")
    if host is not None:
        rows = rows.filter(host=host)
    return list(rows)


@register.simple_tag
def firing_counts() -> dict[int, int]:
    """{host id: firing alert states} for every host with one: one query."""
    rows = AlertState.objects.filter(state=AlertState.FIRING).values("host_id")
    return dict(rows.annotate(n=Count("id")).values_list("host_id", "n"))


@register.filter
def count_for(counts: dict, host) -> int:
    return counts.get(host.pk, 0)
