"""Which processes of a host a table shows: the dashboard's and the API's, one rule."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Q, QuerySet

from monitoring.models import Host, HostSample, ProcessSample
from monitoring.params import BadParameter, text, whole_number

SORTS = {
    "cpu": "cpu_percent",
    "mem": "rss",
    "read": "read_bps",
    "write": "write_bps",
    "gpu": "gpu_memory",
    "threads": "threads",
    "name": "process__name",
    "user": "process__username",
    "pid": "process__pid",
}


@dataclass
class Selection:
    ts: datetime | None  # the sample shown
    rows: QuerySet


def select(host: Host, at=None, q="", user="", pid="", sort="-cpu") -> Selection:
    """The processes of the last sample at or before `at` (default: the newest).

    `at` counts to the millisecond, as browsers and epoch-ms clients give it, while
    samples are stored to the microsecond: a sample inside `at`'s millisecond counts.

    Raises BadParameter naming the parameter for a bad regex, user, pid or sort key."""
    samples = HostSample.objects.filter(host=host)
    if at is not None:
        samples = samples.filter(ts__lt=at + timedelta(milliseconds=1))
    ts = samples.order_by("-ts").values_list("ts", flat=True).first()
    rows = ProcessSample.objects.filter(host=host, ts=ts).select_related("process")
    if text(q, "q"):
        try:
            re.compile(q)
        except re.error as exc:
            raise BadParameter("q", f"Not a valid regular expression: {exc}") from None
        rows = rows.filter(Q(process__name__regex=q) | Q(process__cmdline__regex=q))
    if text(user, "user"):
        rows = rows.filter(process__username=user)
    if pid:
        rows = rows.filter(process__pid=whole_number(str(pid), "pid"))
    key = sort.lstrip("-")
    if key not in SORTS:
        raise BadParameter("sort", f"sort by one of {', '.join(SORTS)} (- for descending)")
    field = F(SORTS[key])
    order = field.desc(nulls_last=True) if sort.startswith("-") else field.asc(nulls_last=True)
    return Selection(ts=ts, rows=rows.order_by(order, "process__pid"))
