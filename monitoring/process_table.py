"""Which processes of a host a table shows: the dashboard's and the API's, one rule."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import BigIntegerField, CharField, F, FloatField, QuerySet, Value

from monitoring.models import Host, HostSample, ProcessRollup, ProcessSample, Rollup
from monitoring.params import BadParameter, text, whole_number
from monitoring.patterns import PatternError, Regex, compile_pattern, matches_process
from monitoring.redaction import may_see_full_cmdline, redact
from monitoring.rollups import floor

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


TIERS = {
    "raw": "raw samples",
    "minute": "1-minute averages, peaks",
    "hour": "1-hour averages, peaks",
}
RESOLUTIONS = {"minute": Rollup.MINUTE, "hour": Rollup.HOUR}
# How far before the bucket holding `at` a rollup tier may look for the latest bucket
# with rows: an agent's short gap still shows its processes, a long one shows none.
LOOK_BACK_BUCKETS = 5


@dataclass
class Selection:
    ts: datetime | None  # the sample or bucket (its start) shown
    rows: QuerySet
    tier: str = "raw"  # a key of TIERS

    @property
    def label(self) -> str:
        return TIERS[self.tier]


def select(host: Host, at=None, q="", user="", pid="", sort="-cpu", reader=None) -> Selection:
    """The processes of a host at `at` (default: the newest sample), from the finest
    tier that holds it: the last raw sample at or before `at` while raw samples reach
    back that far, else the latest 1-minute bucket, else the latest 1-hour bucket.

    `at` counts to the millisecond, as browsers and epoch-ms clients give it, while
    samples are stored to the microsecond: a sample inside `at`'s millisecond counts.
    `q` searches the command line as `reader` (a user) sees it.

    Raises BadParameter naming the parameter for a bad regex, user, pid or sort key."""
    selection = moment(host, at)
    rows = selection.rows
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
    selection.rows = rows.order_by(order, "process__pid")
    return selection


def moment(host: Host, at=None) -> Selection:
    """The unfiltered rows of the moment `at` and the tier they come from."""
    if at is not None:
        at = at + timedelta(microseconds=999)  # the whole millisecond
        oldest = HostSample.objects.filter(host=host).order_by("ts").values_list("ts").first()
        if oldest is None or at < oldest[0]:
            for tier in ("minute", "hour"):
                selection = _rollup_moment(host, at, tier)
                if selection is not None:
                    return selection
    samples = HostSample.objects.filter(host=host)
    if at is not None:
        samples = samples.filter(ts__lte=at)
    ts = samples.order_by("-ts").values_list("ts", flat=True).first()
    if ts is None and at is None:
        # A host silent for longer than raw samples are kept: its last known processes.
        for tier in ("minute", "hour"):
            selection = _rollup_moment(host, None, tier)
            if selection is not None:
                return selection
    rows = ProcessSample.objects.filter(host=host, ts=ts).select_related("process")
    return Selection(ts=ts, rows=rows)


def _rollup_moment(host: Host, at: datetime | None, tier: str) -> Selection | None:
    """The latest bucket of `tier` at or before `at`, if one has rows near `at` (with
    no `at`, the latest bucket of all).

    Its rows carry the raw samples' column names, each meaning what the table means by
    it: CPU the average, memory and threads and GPU memory the peak, I/O the averages;
    vms, mem_percent and status are not rolled up and read as null."""
    resolution = RESOLUTIONS[tier]
    buckets = ProcessRollup.objects.filter(host=host, resolution=resolution)
    if at is not None:
        earliest = floor(at, resolution) - timedelta(seconds=resolution * LOOK_BACK_BUCKETS)
        buckets = buckets.filter(bucket__lte=at, bucket__gte=earliest)
    bucket = buckets.order_by("-bucket").values_list("bucket", flat=True).first()
    if bucket is None:
        return None
    rows = ProcessRollup.objects.filter(host=host, resolution=resolution, bucket=bucket)
    return Selection(ts=bucket, rows=as_samples(rows.select_related("process")), tier=tier)


def as_samples(rollups: QuerySet) -> QuerySet:
    """ProcessRollup rows under the raw samples' column names, each meaning what a
    process table means by it in every tier (see _rollup_moment)."""
    return rollups.annotate(
        cpu_percent=F("cpu_avg"),
        rss=F("rss_max"),
        threads=F("threads_max"),
        read_bps=F("read_bps_avg"),
        write_bps=F("write_bps_avg"),
        gpu_memory=F("gpu_memory_max"),
        vms=Value(None, BigIntegerField()),
        mem_percent=Value(None, FloatField()),
        status=Value(None, CharField()),
    )


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
