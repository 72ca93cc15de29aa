"""Figures from the lease history (LeaseRecord): requests, outcomes, hold and wait
times, GPU hours per user.

A request asks for a count of a host's GPUs, not for one GPU, so attempts and their
outcomes belong to hosts; hold times and hours are per GPU. An attempt is a request
that ended: granted (`acquire`, once per lease however many GPUs), refused at once
(`refused`: asked not to wait) or given up after waiting (`timeout`). A request
still waiting is in none of them.
"""

from datetime import timedelta

from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from jobs.models import GpuLease, LeaseRecord


def summary(records=None, now=None) -> dict:
    """The seed's statistics (total_attempts … average_execution_time) and more."""
    now = now or timezone.now()
    records = LeaseRecord.objects.all() if records is None else records
    counts = dict(records.values_list("action").annotate(n=Count("id")).order_by())
    granted = records.filter(action="acquire").aggregate(n=Count("handle", distinct=True))["n"]
    refused, timed_out = counts.get("refused", 0), counts.get("timeout", 0)
    attempts = granted + refused + timed_out
    held = records.filter(action__in=LeaseRecord.ENDINGS).aggregate(avg=Avg("held"))["avg"]
    waits = records.filter(action="acquire", waited__gt=0).aggregate(
        n=Count("handle", distinct=True), avg=Avg("waited")
    )
    recent = records.filter(ts__gte=now - timedelta(hours=1))
    recent_granted = recent.filter(action="acquire").aggregate(n=Count("handle", distinct=True))
    recent_failed = recent.filter(action__in=("refused", "timeout")).count()
    recent_attempts = recent_granted["n"] + recent_failed
    return {
        "total_attempts": attempts,
        "success_count": granted,
        "timeout_count": timed_out,
        "failure_count": refused,
        "average_execution_time": _round(held),
        "success_rate": _ratio(granted, attempts),
        "timeout_rate": _ratio(timed_out, attempts),
        "recent_success_rate": _ratio(recent_granted["n"], recent_attempts),
        "released_count": counts.get("release", 0),
        "expired_count": counts.get("expire", 0),
        "holder_gone_count": counts.get("holder_gone", 0),
        "force_released_count": counts.get("force_release", 0),
        "wait_count": waits["n"],
        "average_wait_time": _round(waits["avg"]),
    }


def hours_per_user(records=None, leases=None, now=None) -> dict[str, float]:
    """GPU hours held per user: ended leases, plus what is held now so far."""
    now = now or timezone.now()
    records = LeaseRecord.objects.all() if records is None else records
    leases = GpuLease.objects.all() if leases is None else leases
    seconds: dict[str, float] = {}
    ended = records.filter(action__in=LeaseRecord.ENDINGS).values("user").annotate(s=Sum("held"))
    for row in ended:
        seconds[row["user"]] = seconds.get(row["user"], 0.0) + (row["s"] or 0.0)
    for lease in leases.filter(~Q(handle=""), acquired_at__isnull=False):
        held = (now - lease.acquired_at).total_seconds()
        seconds[lease.user] = seconds.get(lease.user, 0.0) + held
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    return {user or "(unknown)": round(s / 3600, 2) for user, s in ranked}


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
