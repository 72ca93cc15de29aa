"""The reports of `ptracker record`: JSON, CSV and one self-contained HTML file.

The JSON report is the recording itself (schema below, documented in the README);
CSV and HTML are made from it, so a saved JSON can be turned into the others. The
HTML page inlines Chart.js and ptracker/static/js/recording.js: it opens offline,
from a file, with no server. Rendered with string.Template: no Django, no Jinja.

JSON schema, version 1:
    format "ptracker-recording", version 1, command (str|null), pids [int],
    exit_code (int|null; negative: killed by that signal), end_reason
    ("process ended" | "duration" | "interrupted" | "stopped"), started, ended (ISO
    8601 UTC), duration_s, interval_s, options {gpu, io, gpu_indices},
    host {hostname, os, cpu_model, cpu_count, mem_total, gpus [{index, name, uuid}]},
    fields ["cpu_percent", "rss", "threads", "read_bps", "write_bps", "gpu_memory"],
    summary {total {FIELD: {min, max, avg}|null, gpu_utilization, processes},
             processes: count, gpus {index: {name, utilization, memory_used}}},
    processes [{pid, ppid, name, cmdline, first_t, last_t, FIELD: {min,max,avg}|null}],
    samples [{t (s since start), ts, total {FIELD: value|null, processes},
              gpus [{index, utilization, memory_used, memory_total}],
              host {cpu_percent, mem_used, mem_total},
              processes {"<pid>": [values in `fields` order]}}]
Units: percent, bytes, bytes per second; CPU % is of one core (200 = two cores busy).
"""

import csv
import io
import json
import string
from html import escape
from pathlib import Path

from ptracker.assets import NPM_ASSETS

VERSION = 1
PACKAGE = Path(__file__).resolve().parent
TEMPLATE = PACKAGE / "templates" / "record" / "report.html"
SCRIPT = PACKAGE / "static" / "js" / "recording.js"


def recording_dict(monitor) -> dict:
    from ptracker.record import FIELDS

    summary = monitor.get_summary()
    config = monitor.config
    inventory = monitor.inventory
    return {
        "format": "ptracker-recording",
        "version": VERSION,
        "command": monitor.command,
        "pids": monitor.pids,
        "exit_code": monitor.exit_code,
        "end_reason": monitor.end.reason,
        "started": monitor.started.isoformat() if monitor.started else None,
        "ended": monitor.ended.isoformat() if monitor.ended else None,
        "duration_s": monitor.duration(),
        "interval_s": config.interval,
        "options": {
            "gpu": config.enable_gpu,
            "io": config.enable_io,
            "gpu_indices": list(config.gpu_indices) if config.gpu_indices is not None else None,
        },
        "host": {
            k: inventory.get(k)
            for k in ("hostname", "os", "cpu_model", "cpu_count", "mem_total", "gpus")
        },
        "fields": list(FIELDS),
        "summary": {
            "total": summary["total"],
            "processes": summary["process_count"],
            "gpus": {str(i): g for i, g in summary["gpus"].items()},
        },
        "processes": list(summary["processes"].values()),
        "samples": [
            {
                "t": s.t,
                "ts": s.ts.isoformat(),
                "total": {**s.total, "processes": len(s.processes)},
                "gpus": [
                    {k: g[k] for k in ("index", "utilization", "memory_used", "memory_total")}
                    for g in s.gpus
                ],
                "host": s.host,
                "processes": {str(pid): list(values) for pid, values in s.processes.items()},
            }
            for s in monitor.samples
        ],
    }


def render(recording: dict, format: str) -> str:
    if format == "json":
        return json.dumps(recording, indent=1)
    if format == "csv":
        return to_csv(recording)
    if format == "html":
        return to_html(recording)
    raise ValueError(f"no report format {format!r}: html, json or csv")


def save(recording: dict, path: Path, format: str) -> list[Path]:
    """Write the report; `both` writes the HTML at `path` and the JSON beside it."""
    targets = (
        [(path.with_suffix(".html"), "html"), (path.with_suffix(".json"), "json")]
        if format == "both"
        else [(path, format)]
    )
    for target, fmt in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(recording, fmt), encoding="utf-8")
    return [t for t, _ in targets]


def to_csv(recording: dict) -> str:
    """One row per process per sample, and a `total` row per sample (pid "total")
    that also carries each GPU's utilization and memory."""
    fields = recording["fields"]
    gpus = sorted({g["index"] for s in recording["samples"] for g in s["gpus"]})
    gpu_columns = [f"gpu{i}_{k}" for i in gpus for k in ("utilization", "memory_used")]
    names = {str(p["pid"]): p["name"] for p in recording["processes"]}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["t", "ts", "pid", "name", *fields, "processes", *gpu_columns])
    for s in recording["samples"]:
        by_index = {g["index"]: g for g in s["gpus"]}
        gpu_values = [
            by_index.get(i, {}).get(k) for i in gpus for k in ("utilization", "memory_used")
        ]
        total = s["total"]
        writer.writerow(
            [s["t"], s["ts"], "total", "", *(total[f] for f in fields), total["processes"]]
            + gpu_values
        )
        for pid, values in s["processes"].items():
            writer.writerow([s["t"], s["ts"], pid, names.get(pid, ""), *values, ""])
    return out.getvalue()


def chart_js() -> str | None:
    """Chart.js's UMD file: the wheel's copy, or node_modules' in a checkout."""
    folder, names = NPM_ASSETS["chart.js"]
    name = names[0]
    for path in (
        PACKAGE / "static" / "vendor" / "chart.js" / name,
        PACKAGE.parent / "node_modules" / "chart.js" / folder / name,
    ):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def _script(text: str) -> str:
    # Inside <script>, only "</script" (any case) could end the element early.
    return text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def _bytes(value) -> str:
    if value is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _stat(summary: dict | None, key: str, kind: str) -> str:
    if not summary:
        return "–"
    value = summary[key]
    if kind == "bytes":
        return _bytes(value)
    if kind == "rate":
        return _bytes(value) + "/s"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


KINDS = {
    "cpu_percent": "%",
    "rss": "bytes",
    "threads": "n",
    "read_bps": "rate",
    "write_bps": "rate",
    "gpu_memory": "bytes",
}
LABELS = {
    "cpu_percent": "CPU %",
    "rss": "RSS",
    "threads": "Threads",
    "read_bps": "Disk read",
    "write_bps": "Disk write",
    "gpu_memory": "GPU memory",
    "gpu_utilization": "GPU util %",
}


def summary_rows(recording: dict) -> str:
    total = recording["summary"]["total"]
    rows = []
    for key, label in LABELS.items():
        s = total.get(key)
        if s is None:
            continue
        kind = KINDS.get(key, "%")
        rows.append(
            f"<tr><th>{label}</th><td>{_stat(s, 'avg', kind)}</td>"
            f"<td>{_stat(s, 'max', kind)}</td></tr>"
        )
    return "\n".join(rows)


def process_rows(recording: dict) -> str:
    rows = []
    for p in sorted(
        recording["processes"], key=lambda p: -((p.get("cpu_percent") or {}).get("avg") or 0)
    ):
        rows.append(
            "<tr>"
            f"<td>{p['pid']}</td><td title='{escape(p['cmdline'] or '', quote=True)}'>"
            f"{escape(p['name'])}</td>"
            f"<td>{_stat(p['cpu_percent'], 'avg', '%')}</td>"
            f"<td>{_stat(p['cpu_percent'], 'max', '%')}</td>"
            f"<td>{_stat(p['rss'], 'max', 'bytes')}</td>"
            f"<td>{_stat(p['threads'], 'max', 'n')}</td>"
            f"<td>{_stat(p['gpu_memory'], 'max', 'bytes')}</td>"
            f"<td>{p['first_t']:.1f}–{p['last_t']:.1f} s</td>"
            "</tr>"
        )
    return "\n".join(rows)


def to_html(recording: dict) -> str:
    command = recording["command"] or "pids " + ", ".join(map(str, recording["pids"]))
    exit_code = recording["exit_code"]
    host = recording["host"] or {}
    data = json.dumps(recording, separators=(",", ":")).replace("<", "\\u003c")
    library = chart_js()
    return string.Template(TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=escape(command[:80]),
        command=escape(command),
        started=escape((recording["started"] or "")[:19].replace("T", " ") + " UTC"),
        duration=f"{recording['duration_s'] or 0:.1f}",
        interval=f"{recording['interval_s']:g}",
        end_reason=escape(recording["end_reason"] or ""),
        exit_code="–" if exit_code is None else str(exit_code),
        hostname=escape(host.get("hostname") or ""),
        process_count=recording["summary"]["processes"],
        summary_rows=summary_rows(recording),
        process_rows=process_rows(recording),
        no_charts=""
        if library
        else "<p class='warn'>Chart.js was not found next to ptracker: no charts.</p>",
        chart_js=_script(library or ""),
        recording_js=_script(SCRIPT.read_text(encoding="utf-8")),
        data=data,
    )
