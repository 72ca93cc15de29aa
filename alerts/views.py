from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from alerts.models import AlertState, Rule, Transition


@require_GET
@login_required
def alerts(request):
    active = (
        AlertState.objects.exclude(state=AlertState.OK)
        .select_related("rule", "host", "acknowledged_by")
        .order_by("-state", "-since")
    )
    history = Transition.objects.select_related("rule", "host").prefetch_related(
        "deliveries__channel"
    )[:100]
    rules = Rule.objects.prefetch_related("channels")
    return render(
        request, "alerts/alerts.html", {"active": active, "history": history, "rules": rules}
    )


@require_POST
@login_required
def acknowledge(request, state_id: int):
    state = get_object_or_404(AlertState, pk=state_id, state=AlertState.FIRING)
    if state.acknowledged_at is None:
        AlertState.objects.filter(pk=state.pk).update(
            acknowledged_at=timezone.now(), acknowledged_by=request.user
        )
    return redirect("alerts")
