"""Which processes of a host a table shows: the dashboard's and the API's, one rule."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, QuerySet

from monitoring.models import Host, HostSample, ProcessSample
from monitoring.params import BadParameter, text, whole_number
from monitoring.patterns import PatternError, Regex, compile_pattern, matches_process
from monitoring.redaction import may_see_full_cmdline, redact

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


def select(host: Host, at=None, q="", user="", pid="", sort="-cpu", reader=None) -> Selection:
    """The processes of the last sample at or before `at` (default: the newest).

    `at` counts to the millisecond, as browsers and epoch-ms clients give it, while
    samples are stored to the microsecond: a sample inside `at`'s millisecond counts.
    `q` searches the command line as `reader` (a user) sees it.

    Raises BadParameter naming the parameter for a bad regex, user, pid or sort key."""
    samples = HostSample.objects.filter(host=host)
    if at is not None:
        samples = samples.filter(ts__lt=at + timedelta(milliseconds=1))
    ts = samples.order_by("-ts").values_list("ts", flat=True).first()
    rows = ProcessSample.objects.filter(host=host, ts=ts).select_related("process")
    try:
        regex = compile_pattern(q) if text(q, "q") else None
    except PatternError as exc:
        raise BadParameter("q", str(exc)) from None
    if text(user, "user"):
        rows = rows.filter(process__username=user)
    if pid:
        rows = rows.filter(process__pid=whole_number(str(pid), "pid"))
    key = sort.lstrip("-")
    if key not in SORTS:
        raise BadParameter("sort", f"sort by one of {', '.join(SORTS)} (- for descending)")
    if regex is not None:
        rows = rows.filter(pk__in=matching(rows, regex, reader))
    field = F(SORTS[key])
    order = field.desc(nulls_last=True) if sort.startswith("-") else field.asc(nulls_last=True)
    return Selection(ts=ts, rows=rows.order_by(order, "process__pid"))


def matching(rows: QuerySet, regex: Regex, reader=None) -> list[int]:
    """ids of the rows whose process matches, tested here with RE2, not by the database.

    Not `__regex`: on SQLite Django runs it with Python's backtracking `re` inside the
    server process, and PostgreSQL's engine does not promise linear time either. One
    moment holds only the stored processes of one sample (top N by CPU and by memory,
    watched, GPU users: tens of rows), so reading their names here is cheap, and both
    databases then behave the same. The command line is searched as `reader` sees it:
    a search of the stored text would probe a masked secret a character at a time."""
    full = may_see_full_cmdline(reader)
    found = rows.values_list("pk", "process__name", "process__cmdline")
    return [
        pk
        for pk, name, cmdline in found
        if matches_process(regex, name, cmdline if full else redact(cmdline))
    ]
