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
    records = LeaseRecord.objects.all() if records is None else records
    return summaries(records, None, now)[None]


def summaries(records, by: str | None, now=None) -> dict:
    """summary() of the records grouped by the field `by` ({value: summary}), each
    figure one query for every group at once: the GPUs page shows one per host, and
    a fleet has hundreds. With `by` None, one group under the key None, empty or not."""
    now = now or timezone.now()

    def grouped(found, *fields, **figures) -> dict:
        """{(group, *fields' values): row of figures}"""
        group = [by, *fields] if by else list(fields)
        if not group:
            return {(None,): found.aggregate(**figures)}
        rows = found.values(*group).annotate(**figures).order_by()
        return {(r[by] if by else None, *(r[f] for f in fields)): r for r in rows}

    handles = Count("handle", distinct=True)
    counts = grouped(records, "action", n=Count("id"))
    granted = grouped(records.filter(action="acquire"), n=handles)
    held = grouped(records.filter(action__in=LeaseRecord.ENDINGS), avg=Avg("held"))
    waits = grouped(records.filter(action="acquire", waited__gt=0), n=handles, avg=Avg("waited"))
    recent = records.filter(ts__gte=now - timedelta(hours=1))
    recent_granted = grouped(recent.filter(action="acquire"), n=handles)
    recent_failed = grouped(recent.filter(action__in=("refused", "timeout")), n=Count("id"))
    keys = {key[0] for key in counts} | ({None} if by is None else set())

    def figure(found: dict, key, name: str, action: str | None = None, empty=0):
        row = found.get((key, action) if action else (key,))
        return empty if row is None else row[name]

    result = {}
    for key in keys:
        ok = figure(granted, key, "n")
        refused = figure(counts, key, "n", "refused")
        timed_out = figure(counts, key, "n", "timeout")
        attempts = ok + refused + timed_out
        recent_ok = figure(recent_granted, key, "n")
        recent_attempts = recent_ok + figure(recent_failed, key, "n")
        result[key] = {
            "total_attempts": attempts,
            "success_count": ok,
            "timeout_count": timed_out,
            "failure_count": refused,
            "average_execution_time": _round(figure(held, key, "avg", empty=None)),
            "success_rate": _ratio(ok, attempts),
            "timeout_rate": _ratio(timed_out, attempts),
            "recent_success_rate": _ratio(recent_ok, recent_attempts),
            "released_count": figure(counts, key, "n", "release"),
            "expired_count": figure(counts, key, "n", "expire"),
            "holder_gone_count": figure(counts, key, "n", "holder_gone"),
            "force_released_count": figure(counts, key, "n", "force_release"),
            "wait_count": figure(waits, key, "n"),
            "average_wait_time": _round(figure(waits, key, "avg", empty=None)),
        }
    return result


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
