"""Firing alerts on monitoring's pages, without monitoring importing alerts."""

from django import template

from alerts.models import AlertState

register = template.Library()


@register.simple_tag
def firing_alerts(host=None):
    """Firing alert states, of one host or of all: one query."""
    rows = AlertState.objects.filter(state=AlertState.FIRING).select_related("rule", "host")
    if host is not None:
        rows = rows.filter(host=host)
    return list(rows)


@register.filter
def for_host(states, host) -> list:
    return [s for s in states if s.host_id == host.pk]
