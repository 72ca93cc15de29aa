"""The Apps page: what each app sent through ptracker.sdk, beside its host's CPU."""

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from appmetrics.models import AppMetric
from appmetrics.summary import summary
from monitoring.params import BadParameter, single, whole_number


def sent_by(host_id: int, pid: int | None, create_time: float | None) -> dict | None:
    """The process (id, name, pid) that sent a record, when the hub tracks it."""
    if pid is None or create_time is None:
        return None
    return AppMetric.senders(host_id, pid, create_time).values("id", "name", "pid").first()


@login_required
def apps(request):
    now, error = timezone.now(), None
    try:
        app = single(request.GET, "app")
        hours = whole_number(single(request.GET, "hours") or "1", "hours", 1, 24 * 31)
    except BadParameter as exc:
        app, hours, error = "", 1, str(exc)
    start = now - timedelta(hours=hours)
    names = list(
        AppMetric.objects.filter(ts__gte=start).values_list("app", flat=True).distinct()[:200]
    )
    data = summary(start, now, app) if (app or names) and not error else {"apps": []}
    chosen = next((a for a in data["apps"] if a["app"] == app), None) or (
        data["apps"][0] if data["apps"] else None
    )
    host = process = None
    if chosen:
        latest = (
            AppMetric.objects.filter(app=chosen["app"], ts__gte=start, host__isnull=False)
            .order_by("-ts")
            .values_list("host_id", "host__name", "pid", "create_time")
            .first()
        )
        if latest:
            host = latest[:2]
            process = sent_by(*latest[0:1], *latest[2:])
    chart = {
        "from": int(start.timestamp() * 1000),
        "to": int(now.timestamp() * 1000),
        "series": chosen["series"] if chosen else [],
        "timeseries": reverse("api-timeseries", args=[host[0]]) if host else None,
        "host": host[1] if host else None,
        "process": process,
    }
    context = {
        "names": sorted(set(names)),
        "chosen": chosen,
        "hours": hours,
        "error": error,
        "chart": chart,
    }
    return render(request, "appmetrics/apps.html", context, status=400 if error else 200)
