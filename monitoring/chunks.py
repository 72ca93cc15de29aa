"""History packed: one host's samples over one stretch of time in one blob.

A row per process sample costs ~155 B on SQLite with its two indexes (~210 B on
PostgreSQL), most of it row header, timestamps and index entries, not values. Packed,
the same samples take a few bytes each: they are sorted by process and time, every
metric becomes a column of integers (at the precision the sampler stores: CPU to
0.01 %, memory share to 0.001 %, I/O to 1 B/s, the rest exact), each column is stored as
differences from the previous value (a process's RSS changes little from tick to tick),
its bytes are regrouped by significance (the high bytes of small numbers are all zero)
and the whole is zlib-compressed, whose checksum also catches a damaged blob.

Raw host samples (HOST) are packed the same way, the host's id in place of a process
id: their scalar columns at the sampler's precision, the JSON lists (per-core CPU,
disks, interfaces) as a template (the value with every number set to 0 or 0.0, kept
once a chunk) plus a column per number's position, and the batch id as a text column
(None kept apart from ""), so a resent batch is still known once its hour is packed.

No Django here: encode() and decode() take and give plain values.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import accumulate

VERSION = 1


@dataclass(frozen=True)
class Layout:
    """What an entry holds after its time and key (a process id, or a host's): metrics
    as (name, scale), where a stored integer is round(value * scale) and None is kept
    apart from 0; JSON values as (name, scale of their non-integer numbers); and
    whether a text follows (`text`, the status of a process sample)."""

    id: int
    metrics: tuple[tuple[str, int], ...]
    integer: frozenset[str]  # read back as int, not float
    status: bool
    json: tuple[tuple[str, int], ...] = ()
    text: str = "status"
    text_none: bool = False  # None kept apart from "" (else None reads back as "")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.metrics)

    @property
    def fields(self) -> tuple[str, ...]:
        """What an entry holds after its time and key, in order."""
        text = (self.text,) if self.status else ()
        return (*self.names, *(name for name, _ in self.json), *text)


# A raw process sample (monitoring.models.ProcessSample's columns).
RAW = Layout(
    1,
    (
        ("cpu_percent", 100),
        ("rss", 1),
        ("vms", 1),
        ("mem_percent", 1000),
        ("threads", 1),
        ("read_bps", 1),
        ("write_bps", 1),
        ("gpu_memory", 1),
    ),
    frozenset({"rss", "vms", "threads", "gpu_memory"}),
    status=True,
)
# A process over a 1-minute or 1-hour bucket (monitoring.models.ProcessRollup's columns).
ROLLUP = Layout(
    2,
    (
        ("samples", 1),
        ("cpu_avg", 100),
        ("cpu_max", 100),
        ("rss_avg", 1),
        ("rss_max", 1),
        ("rss_last", 1),
        ("threads_max", 1),
        ("read_bps_avg", 1),
        ("write_bps_avg", 1),
        ("gpu_memory_max", 1),
    ),
    frozenset({"samples", "rss_avg", "rss_max", "rss_last", "threads_max", "gpu_memory_max"}),
    status=False,
)
# A raw host sample (monitoring.models.HostSample's columns): CPU and load to 0.01,
# rates to 1 B/s (as a process's I/O), uptime to 1 ms; per-core CPU to 0.1 % (the
# sampler's rounding), a disk's share to 0.01 %, an interface's rates to 1 B/s.
HOST = Layout(
    3,
    (
        ("cpu_percent", 100),
        ("load1", 100),
        ("load5", 100),
        ("load15", 100),
        ("mem_total", 1),
        ("mem_used", 1),
        ("mem_available", 1),
        ("swap_total", 1),
        ("swap_used", 1),
        ("disk_read_bps", 1),
        ("disk_write_bps", 1),
        ("net_rx_bps", 1),
        ("net_tx_bps", 1),
        ("process_count", 1),
        ("thread_count", 1),
        ("other_cpu_percent", 100),
        ("other_rss", 1),
        ("uptime", 1000),
    ),
    frozenset(
        {
            "mem_total",
            "mem_used",
            "mem_available",
            "swap_total",
            "swap_used",
            "process_count",
            "thread_count",
            "other_rss",
        }
    ),  # fmt: skip
    status=True,
    json=(("per_cpu", 10), ("disks", 100), ("nets", 1)),
    text="batch_id",
    text_none=True,
)
LAYOUTS = {layout.id: layout for layout in (RAW, ROLLUP, HOST)}
_HEADER = struct.Struct("<BBIII")  # version, layout, ticks, processes, entries


class ChunkError(ValueError):
    """A blob that is not a chunk this code can read (damaged, or a newer version)."""


def _code(value, scale: int) -> int:
    """0 for None; otherwise the zigzag of the scaled integer, plus one."""
    if value is None:
        return 0
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} has no place in a chunk")
    q = round(value * scale)
    return ((q << 1) ^ (q >> 63)) + 1


def _value(code: int, scale: int, integer: bool):
    if code == 0:
        return None
    z = code - 1
    q = (z >> 1) ^ -(z & 1)
    return q if integer else q / scale


def _deltas(values: list[int]) -> array:
    out = array("q", values)
    for i in range(len(values) - 1, 0, -1):
        out[i] -= out[i - 1]
    return out


def _shuffle(column: array) -> bytes:
    """The bytes of a column regrouped: every value's first byte, then every second…"""
    raw = column.tobytes()
    width = column.itemsize
    return b"".join(raw[i::width] for i in range(width))


def _unshuffle(data: bytes, width: int) -> bytes:
    n = len(data) // width
    out = bytearray(len(data))
    for i in range(width):
        out[i::width] = data[i * n : (i + 1) * n]
    return bytes(out)


def _template(value, numbers: list):
    """`value` with each number replaced by 0 (an int) or 0.0 (a float), which go to
    `numbers` in order."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        numbers.append(value)
        return 0 if isinstance(value, int) else 0.0
    if isinstance(value, list):
        return [_template(v, numbers) for v in value]
    if isinstance(value, dict):
        return {k: _template(v, numbers) for k, v in value.items()}
    raise ValueError(f"not a JSON value: {type(value).__name__}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _filled(template, values: dict, i: int, position: list):
    """A template with entry i's numbers put back (values: (position, is_float) ->
    the values by entry)."""
    if isinstance(template, bool) or template is None or isinstance(template, str):
        return template
    if isinstance(template, int | float):
        at = position[0]
        position[0] += 1
        return values[(at, isinstance(template, float))][i]
    if isinstance(template, list):
        return [_filled(v, values, i, position) for v in template]
    return {k: _filled(v, values, i, position) for k, v in template.items()}


def _json_column(values: list, scale: int) -> bytes:
    """Each entry's template (an index into the chunk's table of them), then a column
    of codes per number position and kind, integers exact, others at `scale`."""
    templates, numbers = [], []
    for value in values:
        found: list = []
        templates.append(json.dumps(_template(value, found), separators=(",", ":")))
        numbers.append(found)
    table = sorted(set(templates))
    index = {t: i for i, t in enumerate(table)}
    names = json.dumps(table, separators=(",", ":")).encode()
    kinds = sorted({(p, isinstance(v, float)) for row in numbers for p, v in enumerate(row)})
    parts = [struct.pack("<II", len(names), len(kinds)), names,
             _shuffle(_deltas([index[t] for t in templates]))]  # fmt: skip
    for at, is_float in kinds:
        factor = scale if is_float else 1
        codes = [
            _code(row[at], factor)
            if at < len(row) and isinstance(row[at], float) == is_float
            else 0
            for row in numbers
        ]
        parts.append(struct.pack("<IB", at, is_float))
        parts.append(_shuffle(_deltas(codes)))
    return b"".join(parts)


def encode(rows, layout: Layout = RAW) -> bytes:
    """rows: (ts_us, key, *the layout's fields) with ts_us in integer microseconds
    since the epoch and key a process id (or a host's). A key twice at one time keeps
    the last row. ValueError for a value no column holds (NaN, infinity)."""
    unique = {(r[1], r[0]): r for r in rows}
    ordered = [unique[k] for k in sorted(unique)]
    ticks = sorted({r[0] for r in ordered})
    tick_index = {t: i for i, t in enumerate(ticks)}
    processes: list[int] = []
    counts: list[int] = []
    for r in ordered:
        if processes and processes[-1] == r[1]:
            counts[-1] += 1
        else:
            processes.append(r[1])
            counts.append(1)
    status = 2 + len(layout.metrics) + len(layout.json)
    if layout.status:
        texts = [r[status] if layout.text_none else (r[status] or "") for r in ordered]
    else:
        texts = []
    statuses = sorted(set(texts), key=lambda s: (s is not None, s or ""))
    status_code = {s: i for i, s in enumerate(statuses)}
    names = json.dumps(statuses, separators=(",", ":")).encode()
    parts = [
        _HEADER.pack(VERSION, layout.id, len(ticks), len(processes), len(ordered)),
        struct.pack("<I", len(names)),
        names,
        _shuffle(_deltas(ticks)),
        _shuffle(_deltas(processes)),
        _shuffle(array("q", counts)),
        _shuffle(_deltas([tick_index[r[0]] for r in ordered])),
    ]
    for column, (_, scale) in enumerate(layout.metrics, start=2):
        parts.append(_shuffle(_deltas([_code(r[column], scale) for r in ordered])))
    for column, (_, scale) in enumerate(layout.json, start=2 + len(layout.metrics)):
        parts.append(_json_column([r[column] for r in ordered], scale))
    if layout.status:
        parts.append(array("H", [status_code[t] for t in texts]).tobytes())
    return zlib.compress(b"".join(parts), 6)


@dataclass
class Chunk:
    """A decoded blob: entries sorted by process, then time."""

    layout: Layout
    ticks: list[int]  # microseconds since the epoch, ascending
    processes: list[int]  # process ids, ascending
    offsets: list[int]  # entries of processes[i]: offsets[i] to offsets[i + 1]
    tick_of: list[int]  # per entry: its index in ticks
    columns: dict[str, list[int]]  # per metric, per entry: its code (see _value)
    status_of: array | None
    statuses: list[str | None]
    # per JSON column: (its templates, per entry the index of its own, its numbers:
    # (position, is_float) -> (codes by entry, scale))
    json: dict[str, tuple[list, list[int], dict]] = field(default_factory=dict)
    _json_values: dict = field(default_factory=dict, repr=False)  # decoded on first use

    def __len__(self) -> int:
        return len(self.tick_of)

    def row(self, i: int) -> tuple:
        """Entry i as (ts_us, process_id, metrics…, status), the tuple encode() takes."""
        p = bisect_right(self.offsets, i) - 1
        return self._row(i, self.processes[p])

    def _row(self, i: int, process_id: int) -> tuple:
        layout = self.layout
        values = [
            _value(self.columns[name][i], scale, name in layout.integer)
            for name, scale in layout.metrics
        ]
        for name, _ in layout.json:
            values.append(self._json_value(name, i))
        if self.status_of is not None:
            values.append(self.statuses[self.status_of[i]])
        return (self.ticks[self.tick_of[i]], process_id, *values)

    def _json_value(self, name: str, i: int):
        templates, template_of, numbers = self.json[name]
        if name not in self._json_values:
            values = {key: [_value(c, scale, not key[1]) for c in codes]
                      for key, (codes, scale) in numbers.items()}  # fmt: skip
            # A list of numbers only (per-core CPU), the common case: filled directly.
            flat = [
                [(p, isinstance(t, float)) for p, t in enumerate(template)]
                if isinstance(template, list) and all(map(_is_number, template))
                else None
                for template in templates
            ]
            self._json_values[name] = (values, flat)
        values, flat = self._json_values[name]
        t = template_of[i]
        if flat[t] is not None:
            return [values[key][i] for key in flat[t]]
        return _filled(templates[t], values, i, [0])

    def _field(self, i: int, name: str, scales: dict):
        if name in self.json:
            return self._json_value(name, i)
        if name == self.layout.text and self.status_of is not None:
            return self.statuses[self.status_of[i]]
        return _value(self.columns[name][i], scales[name], name in self.layout.integer)

    def rows(self, start_us=None, end_us=None, process_ids=None, columns=None):
        """Entries with start_us <= ts < end_us, of the given processes, by process and
        time; with `columns` (names of the layout's fields), only those after the time
        and key (the others are not decoded)."""
        if process_ids is None:
            wanted = range(len(self.processes))
        else:
            wanted = []
            for pid in sorted(set(process_ids)):
                p = bisect_left(self.processes, pid)
                if p < len(self.processes) and self.processes[p] == pid:
                    wanted.append(p)
        low = 0 if start_us is None else bisect_left(self.ticks, start_us)
        high = len(self.ticks) if end_us is None else bisect_left(self.ticks, end_us)
        for p in wanted:
            first, last = self.offsets[p], self.offsets[p + 1]
            entries = self.tick_of[first:last]
            begin = first + bisect_left(entries, low)
            stop = first + bisect_left(entries, high)
            if columns is None:
                for i in range(begin, stop):
                    yield self._row(i, self.processes[p])
                continue
            scales = dict(self.layout.metrics)
            for i in range(begin, stop):
                values = [self._field(i, name, scales) for name in columns]
                yield (self.ticks[self.tick_of[i]], self.processes[p], *values)


def decode(blob: bytes) -> Chunk:
    try:
        data = zlib.decompress(blob)
        version, layout_id, n_ticks, n_procs, n = _HEADER.unpack_from(data, 0)
        if version != VERSION or layout_id not in LAYOUTS:
            raise ChunkError(f"chunk version {version}.{layout_id}; this ptracker reads "
                             f"{VERSION}.{'/'.join(map(str, LAYOUTS))}")  # fmt: skip
        layout = LAYOUTS[layout_id]
        at = _HEADER.size
        (size,) = struct.unpack_from("<I", data, at)
        at += 4
        statuses = json.loads(data[at : at + size])
        at += size

        def column(count: int, summed: bool = True) -> list[int]:
            nonlocal at
            raw = _unshuffle(data[at : at + 8 * count], 8)
            if len(raw) != 8 * count:
                raise ChunkError("chunk is shorter than its header says")
            at += 8 * count
            values = array("q", raw)
            return list(accumulate(values)) if summed else values.tolist()

        ticks = column(n_ticks)
        processes = column(n_procs)
        offsets = [0, *accumulate(column(n_procs, summed=False))]
        tick_of = column(n)
        columns = {name: column(n) for name in layout.names}
        json_columns = {}
        for name, scale in layout.json:
            size, kinds = struct.unpack_from("<II", data, at)
            at += 8
            templates = [json.loads(t) for t in json.loads(data[at : at + size])]
            at += size
            template_of = column(n)
            numbers = {}
            for _ in range(kinds):
                position, is_float = struct.unpack_from("<IB", data, at)
                at += 5
                numbers[(position, bool(is_float))] = (column(n), scale if is_float else 1)
            if any(not 0 <= t < len(templates) for t in template_of):
                raise ChunkError("damaged chunk: a template out of range")
            json_columns[name] = (templates, template_of, numbers)
        status_of = array("H", data[at : at + 2 * n]) if layout.status else None
    except (zlib.error, struct.error, ValueError, TypeError) as exc:
        if isinstance(exc, ChunkError):
            raise
        raise ChunkError(f"damaged chunk: {exc}") from None
    if (status_of is not None and len(status_of) != n) or offsets[-1] != n:
        raise ChunkError("damaged chunk: its counts disagree")
    return Chunk(layout, ticks, processes, offsets, tick_of, columns, status_of, statuses,
                 json_columns)  # fmt: skip
