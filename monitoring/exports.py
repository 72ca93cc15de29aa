"""CSV and JSON exports of samples and events, streamed row by row.

Columns carry their unit in their name (rss_bytes, net_rx_bytes_per_s) and are
declared once here. Rows come from a database iterator (a server-side cursor on
PostgreSQL) and leave as an async iterator: under ASGI Django would read a sync
iterator to the end into memory before sending a byte.
"""

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from asgiref.sync import sync_to_async

from appmetrics.models import AppMetric
from monitoring import host_store, process_store
from monitoring.models import (
    Event,
    GpuSample,
    Host,
    HostSample,
    Process,
    ProcessSample,
)
from monitoring.params import BadParameter


@dataclass(frozen=True)
class Export:
    model: type
    columns: dict[str, str]  # column name -> ORM path
    time_field: str = "ts"
    # Host samples and process history, by tier: read through a Store (rows and packed
    # chunks alike: monitoring.host_store, monitoring.process_store), each tier's rows
    # under the raw samples' names.
    stores: dict[str, process_store.Store] = field(default_factory=dict)


TIERS = ("raw", "minute", "hour")


EXPORTS = {
    "host-samples": Export(
        HostSample,
        {
            "ts": "ts",
            "host": "host__name",
            "cpu_percent": "cpu_percent",
            "load1": "load1",
            "load5": "load5",
            "load15": "load15",
            "mem_total_bytes": "mem_total",
            "mem_used_bytes": "mem_used",
            "mem_available_bytes": "mem_available",
            "swap_total_bytes": "swap_total",
            "swap_used_bytes": "swap_used",
            "disk_read_bytes_per_s": "disk_read_bps",
            "disk_write_bytes_per_s": "disk_write_bps",
            "net_rx_bytes_per_s": "net_rx_bps",
            "net_tx_bytes_per_s": "net_tx_bps",
            "process_count": "process_count",
            "thread_count": "thread_count",
            "other_cpu_percent": "other_cpu_percent",
            "other_rss_bytes": "other_rss",
            "uptime_s": "uptime",
        },
        stores={"raw": host_store.HOST},
    ),
    "process-samples": Export(
        ProcessSample,
        {
            "ts": "ts",
            "host": "host__name",
            "process_id": "process_id",
            "pid": "process__pid",
            "name": "process__name",
            "username": "process__username",
            "cpu_percent": "cpu_percent",
            "rss_bytes": "rss",
            "vms_bytes": "vms",
            "mem_percent": "mem_percent",
            "threads": "threads",
            "read_bytes_per_s": "read_bps",
            "write_bytes_per_s": "write_bps",
            "gpu_memory_bytes": "gpu_memory",
            "status": "status",
        },
        stores={
            "raw": process_store.RAW,
            "minute": process_store.MINUTE,
            "hour": process_store.HOUR,
        },  # fmt: skip
    ),
    "gpu-samples": Export(
        GpuSample,
        {
            "ts": "ts",
            "host": "host__name",
            "gpu_index": "index",
            "gpu_name": "name",
            "utilization_percent": "utilization",
            "memory_used_bytes": "memory_used",
            "memory_total_bytes": "memory_total",
            "temperature_c": "temperature",
            "power_w": "power_w",
        },
    ),
    "events": Export(
        Event,
        {
            "ts": "ts",
            "host": "host__name",
            "kind": "kind",
            "message": "message",
            "count": "count",
            "process_id": "process_id",
        },
    ),
    # What apps sent through ptracker.sdk (appmetrics); host: the name the app reported.
    "app-metrics": Export(
        AppMetric,
        {
            "ts": "ts",
            "host": "hostname",
            "app": "app",
            "kind": "kind",
            "name": "name",
            "model": "model",
            "provider": "provider",
            "duration_s": "duration",
            "value": "value",
            "size_bytes": "size",
            "input_tokens": "input_tokens",
            "output_tokens": "output_tokens",
            "total_tokens": "total_tokens",
            "time_to_first_token_s": "ttft",
            "success": "success",
            "pid": "pid",
            "process_create_time": "create_time",
        },
    ),
}
FIXED = ("ts", "host")  # always first, whatever columns are asked for
FORMATS = {"csv": "text/csv", "json": "application/json", "jsonl": "application/x-ndjson"}
CHUNK = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def columns_for(export: Export, wanted: list[str]) -> list[str]:
    if not wanted:
        return list(export.columns)
    unknown = [c for c in wanted if c not in export.columns]
    if unknown:
        raise BadParameter(
            "metric",
            f"unknown column {unknown[0][:60]!r}: choose from {', '.join(export.columns)}",
        )
    return list(dict.fromkeys([*FIXED, *wanted]))


def rows(
    export: Export, columns: list[str], start, end, host=None, process=None, tier="raw"
) -> Iterator:
    if export.stores:
        if tier not in export.stores:
            kept = ", ".join(export.stores)
            raise BadParameter("tier", f"tier must be {kept} for this export, got {tier[:20]!r}")
        return _store_rows(export, columns, start, end, host, process, tier)
    if tier != "raw":
        raise BadParameter("tier", f"tier must be raw for this export, got {tier[:20]!r}")
    qs = export.model.objects.filter(
        **{f"{export.time_field}__gte": start, f"{export.time_field}__lt": end}
    )
    if host is not None:
        qs = qs.filter(host=host)
    paths = [export.columns[c] for c in columns]
    return qs.order_by(export.time_field, "pk").values_list(*paths).iterator(chunk_size=CHUNK)


def _store_rows(export: Export, columns, start, end, host, process, tier: str) -> Iterator:
    """A tier of a Store's history, a chunk's span at a time; with no host, host by
    host (by name), each in time order."""
    store = export.stores[tier]
    hosts = Host.objects.order_by("name")
    if process is not None:
        hosts = hosts.filter(pk=process.host_id)
    if host is not None:
        hosts = hosts.filter(pk=host.pk)
    paths = [export.columns[c] for c in columns]
    ids = None if process is None else [process.pk]
    for one in hosts.iterator():
        window = start
        while window < end:
            until = min(end, store.chunk_start(window) + store.span)
            found = store.values(one.pk, window, until, ids)
            if store.key != "process_id":
                for row in found:
                    named = store.as_sample(row)
                    yield tuple(_process_value(path, named, None, one) for path in paths)
            else:
                identities = Process.objects.in_bulk({r[1] for r in found})
                for row in found:
                    identity = identities.get(row[1])
                    if identity is not None:  # else forgotten by retention
                        named = store.as_sample(row)
                        yield tuple(_process_value(path, named, identity, one) for path in paths)
            window = until


def _process_value(path: str, row: dict, process: Process | None, host: Host):
    if path == "host__name":
        return host.name
    if path.startswith("process__"):
        return getattr(process, path.removeprefix("process__"))
    return row[path]


def _value(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _cell(value):
    """A CSV cell that a spreadsheet shows as text, never runs as a formula (OWASP's
    rule: quote text that starts like one). Numbers stay numbers, -1.5 included."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return _value(value)


def render(fmt: str, columns: list[str], source: Iterator) -> Iterator[str]:
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(columns)
        for row in source:
            writer.writerow([_cell(v) for v in row])
            if buffer.tell() > 64 * 1024:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()
    elif fmt == "jsonl":
        for row in source:
            yield json.dumps(dict(zip(columns, map(_value, row), strict=True))) + "\n"
    else:  # one JSON array, written as it goes
        yield "["
        for i, row in enumerate(source):
            prefix = "," if i else ""
            yield prefix + json.dumps(dict(zip(columns, map(_value, row), strict=True)))
        yield "]\n"


def _take(chunks: Iterator[str], max_parts: int, max_chars: int) -> list[str]:
    parts, size = [], 0
    for part in chunks:
        parts.append(part)
        size += len(part)
        if len(parts) >= max_parts or size >= max_chars:
            break
    return parts


async def stream(
    chunks: Iterator[str], max_parts: int = 500, max_chars: int = 256 * 1024
) -> AsyncIterator[bytes]:
    """Pull the sync generator forward in a worker thread, up to a few hundred pieces
    or 256 KiB at a time (CSV pieces are 64 KiB each, JSON pieces one row).

    thread_sensitive keeps every step on one thread, so the database cursor that the
    rows come from stays on the connection that opened it."""
    step = sync_to_async(lambda: _take(chunks, max_parts, max_chars))
    while True:
        parts = await step()
        if not parts:
            return
        yield "".join(parts).encode()
