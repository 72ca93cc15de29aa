"""The fleet overview: which enabled hosts a query shows, in what groups and order.

Three queries whatever the fleet's size (hosts, their newest samples, their newest
GPU readings); search, grouping and sorting then run in Python, which for a few
thousand hosts costs less than one more query. The page and its live partial both
come from here, so a card is drawn by one template only.
"""

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from urllib.parse import urlencode

from django.db.models import F

from monitoring.models import GpuSample, Host, HostSample
from monitoring.params import BadParameter, text

VIEWS = ("cards", "table")
# Numbers sort busiest first; a host without a sample goes last.
SORTS = {
    "state": "offline first",
    "name": "name",
    "cpu": "CPU",
    "mem": "memory",
    "disk": "fullest disk",
}
MAX_SEARCH = 200
MAX_GROUP = 100
# What a card or row shows of the newest sample: per_cpu and nets can be large.
SAMPLE_FIELDS = ("host_id", "ts", "cpu_percent", "mem_used", "mem_total", "load1", "load5",
                 "load15", "disks", "uptime")  # fmt: skip


@dataclass(frozen=True)
class FleetQuery:
    """A search, a label key to group by, a sort and a view: the page's parameters."""

    q: str = ""
    group: str = ""
    sort: str = "state"
    view: str = "cards"

    @classmethod
    def parse(cls, params) -> "FleetQuery":
        """From request parameters; raises BadParameter naming the one at fault."""
        q = text(params.get("q", ""), "q").strip()
        if len(q) > MAX_SEARCH:
            raise BadParameter("q", f"q must be at most {MAX_SEARCH} characters")
        group = text(params.get("group", ""), "group").strip()
        if len(group) > MAX_GROUP:
            raise BadParameter(
                "group", f"group must be a label key of {MAX_GROUP} characters or less"
            )
        sort = params.get("sort") or "state"
        if sort not in SORTS:
            raise BadParameter("sort", f"sort must be one of {', '.join(SORTS)}, got {sort[:40]!r}")
        view = params.get("view") or "cards"
        if view not in VIEWS:
            raise BadParameter("view", f"view must be cards or table, got {view[:40]!r}")
        return cls(q, group, sort, view)

    def url(self, **changes) -> str:
        """`?…` for this query with `changes`, defaults left out ("" if all are): a link
        to share."""
        values = {"q": self.q, "group": self.group, "sort": self.sort, "view": self.view}
        values.update(changes)
        defaults = FleetQuery()
        kept = {k: v for k, v in values.items() if v and v != getattr(defaults, k)}
        return "?" + urlencode(kept) if kept else ""

    def matches(self, host: Host) -> bool:
        # Every word must be in the name, the hostname or a label value.
        if not self.q:
            return True
        values = map(str, labels(host).values())
        haystack = " ".join([host.name, host.hostname, *values]).lower()
        return all(word in haystack for word in self.q.lower().split())


def labels(host: Host) -> dict:
    # The admin's JSON field takes any JSON; only an object has keys to group by.
    return host.labels if isinstance(host.labels, dict) else {}


@dataclass
class Row:
    """One host as the overview shows it."""

    host: Host
    sample: HostSample | None
    online: bool
    gpus: list[GpuSample] = field(default_factory=list)

    @cached_property
    def tags(self) -> list[str]:
        return [f"{k}={v}" for k, v in labels(self.host).items()]

    @cached_property
    def disk(self) -> dict | None:
        """The fullest disk of the newest sample."""
        disks = self.sample.disks if self.sample else []
        return max(disks, key=lambda d: d.get("percent") or 0, default=None)

    @property
    def gpu_utilization(self) -> float | None:
        """Mean utilization of the host's GPUs that report one."""
        values = [g.utilization for g in self.gpus if g.utilization is not None]
        return sum(values) / len(values) if values else None

    def sort_key(self, sort: str) -> tuple:
        name = self.host.name.lower()
        if sort == "state":
            return (self.online, name)
        if sort == "name":
            return (name,)
        value = self.measure(sort)
        return (value is None, -(value or 0), name)

    def measure(self, sort: str) -> float | None:
        """The number that sort key `sort` (cpu, mem, disk) orders by."""
        if self.sample is None:
            return None
        if sort == "cpu":
            return self.sample.cpu_percent
        if sort == "mem":
            return self.sample.mem_percent
        return (self.disk or {}).get("percent")


@dataclass
class Group:
    value: str | None  # None: the hosts without the label (or the only group)
    rows: list[Row]


@dataclass
class Fleet:
    query: FleetQuery
    groups: list[Group]
    hosts: int  # enabled hosts, before the search
    label_keys: list[str]
    # Seconds until the first shown online host would turn offline if silent: the page
    # redraws then, so the offline rule stays the model's (Host.offline_after).
    refresh_in: float | None

    @property
    def shown(self) -> int:
        return sum(len(g.rows) for g in self.groups)

    @property
    def sort_links(self) -> dict[str, str]:
        return {key: self.query.url(sort=key) for key in SORTS}


def load(query: FleetQuery, now: datetime) -> Fleet:
    """The enabled hosts that `query` finds, with their newest numbers."""
    hosts = list(Host.objects.filter(enabled=True).defer("inventory"))
    newest = {"host__enabled": True, "ts": F("host__last_seen")}
    samples = {s.host_id: s for s in HostSample.objects.filter(**newest).only(*SAMPLE_FIELDS)}
    gpus: dict[int, list[GpuSample]] = {}
    for gpu in GpuSample.objects.filter(**newest).order_by("index"):
        gpus.setdefault(gpu.host_id, []).append(gpu)
    rows = [
        Row(h, samples.get(h.pk), h.is_online(now), gpus.get(h.pk, []))
        for h in hosts
        if query.matches(h)
    ]
    rows.sort(key=lambda r: r.sort_key(query.sort))
    keys = sorted({str(k) for h in hosts for k in labels(h)})
    return Fleet(query, grouped(rows, query.group), len(hosts), keys, refresh_in(rows, now))


def grouped(rows: list[Row], key: str) -> list[Group]:
    """One group per value of label `key`, A to Z; hosts without it last."""
    if not key:
        return [Group(None, rows)] if rows else []
    groups: dict[str | None, list[Row]] = {}
    for row in rows:
        value = labels(row.host).get(key)
        groups.setdefault(None if value is None else str(value), []).append(row)
    order = sorted((v for v in groups if v is not None), key=str.lower)
    if None in groups:
        order.append(None)
    return [Group(v, groups[v]) for v in order]


def refresh_in(rows: list[Row], now: datetime) -> float | None:
    deadlines = [
        (r.host.last_seen + r.host.offline_after() - now).total_seconds() for r in rows if r.online
    ]
    return max(0.0, min(deadlines)) if deadlines else None
