"""Raw process samples packed: one host's samples over one stretch of time in one blob.

A row per process sample costs ~155 B on SQLite with its two indexes (~210 B on
PostgreSQL), most of it row header, timestamps and index entries, not values. Packed,
the same samples take a few bytes each: they are sorted by process and time, every
metric becomes a column of integers (at the precision the sampler stores: CPU to
0.01 %, memory share to 0.001 %, I/O to 1 B/s, the rest exact), each column is stored as
differences from the previous value (a process's RSS changes little from tick to tick),
its bytes are regrouped by significance (the high bytes of small numbers are all zero)
and the whole is zlib-compressed, whose checksum also catches a damaged blob.

No Django here: encode() and decode() take and give plain values.
"""

from __future__ import annotations

import json
import struct
import zlib
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate

VERSION = 1
# (name, scale): a stored integer is round(value * scale); None is kept apart from 0.
METRICS = (
    ("cpu_percent", 100),
    ("rss", 1),
    ("vms", 1),
    ("mem_percent", 1000),
    ("threads", 1),
    ("read_bps", 1),
    ("write_bps", 1),
    ("gpu_memory", 1),
)
INTEGER = {"rss", "vms", "threads", "gpu_memory"}
_HEADER = struct.Struct("<BIII")  # version, ticks, processes, entries


class ChunkError(ValueError):
    """A blob that is not a chunk this code can read (damaged, or a newer version)."""


def _code(value, scale: int) -> int:
    """0 for None; otherwise the zigzag of the scaled integer, plus one."""
    if value is None:
        return 0
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


def encode(rows) -> bytes:
    """rows: (ts_us, process_id, cpu_percent, rss, vms, mem_percent, threads, read_bps,
    write_bps, gpu_memory, status) with ts_us in integer microseconds since the epoch.
    A process sampled twice at one time keeps the last of the two."""
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
    statuses = sorted({r[10] or "" for r in ordered})
    status_code = {s: i for i, s in enumerate(statuses)}
    names = json.dumps(statuses, separators=(",", ":")).encode()
    parts = [
        _HEADER.pack(VERSION, len(ticks), len(processes), len(ordered)),
        struct.pack("<I", len(names)),
        names,
        _shuffle(_deltas(ticks)),
        _shuffle(_deltas(processes)),
        _shuffle(array("q", counts)),
        _shuffle(_deltas([tick_index[r[0]] for r in ordered])),
    ]
    for column, (_, scale) in enumerate(METRICS, start=2):
        parts.append(_shuffle(_deltas([_code(r[column], scale) for r in ordered])))
    parts.append(array("H", [status_code[r[10] or ""] for r in ordered]).tobytes())
    return zlib.compress(b"".join(parts), 6)


@dataclass
class Chunk:
    """A decoded blob: entries sorted by process, then time."""

    ticks: list[int]  # microseconds since the epoch, ascending
    processes: list[int]  # process ids, ascending
    offsets: list[int]  # entries of processes[i]: offsets[i] to offsets[i + 1]
    tick_of: list[int]  # per entry: its index in ticks
    columns: dict[str, list[int]]  # per metric, per entry: its code (see _value)
    status_of: array
    statuses: list[str]

    def __len__(self) -> int:
        return len(self.tick_of)

    def row(self, i: int) -> tuple:
        """Entry i as (ts_us, process_id, metrics…, status), the tuple encode() takes."""
        p = bisect_right(self.offsets, i) - 1
        return self._row(i, self.processes[p])

    def _row(self, i: int, process_id: int) -> tuple:
        values = [_value(self.columns[name][i], scale, name in INTEGER) for name, scale in METRICS]
        return (self.ticks[self.tick_of[i]], process_id, *values, self.statuses[self.status_of[i]])

    def rows(self, start_us=None, end_us=None, process_ids=None):
        """Entries with start_us <= ts < end_us, of the given processes, by process and
        time."""
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
            for i in range(begin, stop):
                yield self._row(i, self.processes[p])


def decode(blob: bytes) -> Chunk:
    try:
        data = zlib.decompress(blob)
        version, n_ticks, n_procs, n = _HEADER.unpack_from(data, 0)
        if version != VERSION:
            raise ChunkError(f"chunk version {version}; this ptracker reads {VERSION}")
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
        columns = {name: column(n) for name, _ in METRICS}
        status_of = array("H", data[at : at + 2 * n])
    except (zlib.error, struct.error, ValueError) as exc:
        if isinstance(exc, ChunkError):
            raise
        raise ChunkError(f"damaged chunk: {exc}") from None
    if len(status_of) != n or offsets[-1] != n:
        raise ChunkError("damaged chunk: its counts disagree")
    return Chunk(ticks, processes, offsets, tick_of, columns, status_of, statuses)
