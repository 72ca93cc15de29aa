"""Which processes of a host a table shows: the dashboard's and the API's, one rule."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from monitoring import host_store, process_store
from monitoring.models import Host, Rollup
from monitoring.params import BadParameter, text, whole_number
from monitoring.patterns import PatternError, Regex, compile_pattern, matches_process
from monitoring.redaction import may_see_full_cmdline, redact
from monitoring.rollups import floor

SORTS = {
    "cpu": lambda row: row.cpu_percent,
    "mem": lambda row: row.rss,
    "read": lambda row: row.read_bps,
    "write": lambda row: row.write_bps,
    "gpu": lambda row: row.gpu_memory,
    "threads": lambda row: row.threads,
    "name": lambda row: row.process.name,
    "user": lambda row: row.process.username,
    "pid": lambda row: row.process.pid,
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
    rows: list  # ProcessSample objects (a rollup tier's read as samples: process_store)
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
        rows = [r for r in rows if r.process.username == user]
    if pid:
        number = whole_number(str(pid), "pid")
        rows = [r for r in rows if r.process.pid == number]
    key = sort.lstrip("-")
    if key not in SORTS:
        raise BadParameter("sort", f"sort by one of {', '.join(SORTS)} (- for descending)")
    if regex is not None:
        full = may_see_full_cmdline(reader)
        rows = [r for r in rows if matching(r.process, regex, full)]
    selection.rows = ordered(rows, SORTS[key], descending=sort.startswith("-"))
    return selection


def ordered(rows: list, value, descending: bool) -> list:
    """Sorted by value(row), unknown values last either way, ties by pid."""
    rows = sorted(rows, key=lambda r: r.process.pid)
    known = [r for r in rows if value(r) is not None]
    known.sort(key=value, reverse=descending)  # stable: equal values stay by pid
    return known + [r for r in rows if value(r) is None]


def moment(host: Host, at=None) -> Selection:
    """The unfiltered rows of the moment `at` and the tier they come from."""
    if at is not None:
        at = at + timedelta(microseconds=999)  # the whole millisecond
    # The last raw sample at or before `at`, a row or packed (older than the hot window).
    ts = host_store.HOST.latest(host.pk, at)
    if ts is None:
        # Before the oldest raw sample, or a host silent for longer than raw samples are
        # kept: the rollup tiers.
        for tier in ("minute", "hour"):
            selection = _rollup_moment(host, at, tier)
            if selection is not None:
                return selection
    return Selection(ts=ts, rows=process_store.RAW.at(host, ts))


def _rollup_moment(host: Host, at: datetime | None, tier: str) -> Selection | None:
    """The latest bucket of `tier` at or before `at`, if one has rows near `at` (with
    no `at`, the latest bucket of all).

    Its rows are read as samples (process_store.SAMPLE_OF_ROLLUP): CPU the average,
    memory and threads and GPU memory the peak, I/O the averages; vms, mem_percent and
    status are not rolled up and read as null."""
    store = process_store.STORES[RESOLUTIONS[tier]]
    earliest = None
    if at is not None:
        earliest = floor(at, store.resolution) - timedelta(
            seconds=store.resolution * LOOK_BACK_BUCKETS
        )
    bucket = store.latest(host.pk, at, earliest)
    if bucket is None:
        return None
    return Selection(ts=bucket, rows=store.at(host, bucket), tier=tier)


def matching(process, regex: Regex, full: bool) -> bool:
    """Whether a process's name or command line (as the reader sees it: `full` or
    redacted) matches, tested here with RE2, not by the database.

    Not `__regex`: on SQLite Django runs it with Python's backtracking `re` inside the
    server process, and PostgreSQL's engine does not promise linear time either. One
    moment holds only the stored processes of one sample (top N by CPU and by memory,
    watched, GPU users: tens of rows), so testing them here is cheap. The command line
    is searched as the reader sees it: a search of the stored text would probe a masked
    secret a character at a time."""
    cmdline = process.cmdline if full else redact(process.cmdline)
    return matches_process(regex, process.name, cmdline)
