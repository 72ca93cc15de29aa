from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alerts.models import SEVERITIES, AlertState, Rule, Transition
from monitoring.models import Host
from monitoring.params import BadParameter, parse_id, parse_offset, parse_time, whole_number

HISTORY_PAGE = 50
HISTORY_STATES = dict(Transition.KINDS)


def choice(params, name: str, choices) -> str:
    value = params.get(name) or ""
    if value and value not in choices:
        raise BadParameter(name, f"{name} must be one of {', '.join(choices)}")
    return value


def filter_history(rows, params, offset: timedelta = timedelta(0)):
    """Transitions of a `rule`, a `host`, a `severity`, a `state` (firing, reminder,
    resolved) and a time range (`from`, `to`): the page's and the API's filters.
    Raises BadParameter naming the parameter at fault."""
    if params.get("rule"):
        rows = rows.filter(rule_id=parse_id(params["rule"], "rule"))
    if params.get("host"):
        rows = rows.filter(host_id=parse_id(params["host"], "host"))
    if severity := choice(params, "severity", dict(SEVERITIES)):
        rows = rows.filter(rule__severity=severity)
    if state := choice(params, "state", HISTORY_STATES):
        rows = rows.filter(kind=state)
    if params.get("from"):
        rows = rows.filter(ts__gte=parse_time(params["from"], "from", offset))
    if params.get("to"):
        rows = rows.filter(ts__lt=parse_time(params["to"], "to", offset))
    return rows


def active_states():
    """What is pending or firing now, firing first."""
    return (
        AlertState.objects.exclude(state=AlertState.OK)
        .select_related("rule", "host", "acknowledged_by")
        .order_by("-state", "-since")
    )


@require_GET
@login_required
def alerts(request):
    params, error = request.GET, None
    history = Transition.objects.select_related("rule", "host").prefetch_related(
        "deliveries__channel"
    )
    try:
        history = filter_history(history, params, parse_offset(params.get("tz")))
        number = whole_number(params.get("page") or "1", "page", 1)
    except BadParameter as exc:
        history, number, error = history.none(), 1, str(exc)
    context = {
        "active": active_states(),
        "page": Paginator(history.order_by("-ts", "-id"), HISTORY_PAGE).get_page(number),
        "error": error,
        "rules": Rule.objects.prefetch_related("channels"),
        "hosts": Host.objects.all(),
        "severities": SEVERITIES,
        "states": Transition.KINDS,
        "chosen": {k: params.get(k, "") for k in ("rule", "host", "severity", "state")},
    }
    return render(request, "alerts/alerts.html", context, status=400 if error else 200)


def acknowledge_state(state: AlertState, user) -> None:
    """Stop reminders of a firing alert; the first acknowledgement counts."""
    AlertState.objects.filter(pk=state.pk, acknowledged_at__isnull=True).update(
        acknowledged_at=timezone.now(), acknowledged_by=user
    )


@require_POST
@login_required
def acknowledge(request, state_id: int):
    acknowledge_state(
        get_object_or_404(AlertState, pk=state_id, state=AlertState.FIRING), request.user
    )
    return redirect("alerts")
