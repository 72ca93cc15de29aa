"""What the Apps page and GET /api/v1/app-metrics/summary show, from merged minutes."""

from datetime import datetime

from appmetrics.rollups import merge_stats, new_stats, series_stats
from ptracker.sdk import histogram as hist

QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def _quantiles(h: dict) -> dict:
    return {k: hist.quantile(h, q) for k, q in QUANTILES.items()}


def _row(key: dict, s: dict, minutes: float) -> dict:
    count = s["count"]
    return {
        **key,
        "count": count,
        "errors": s["errors"],
        "error_rate": s["errors"] / count if count else 0.0,
        "mean_duration": s["sum_duration"] / count if count else None,
        **_quantiles(s["histogram"]),
        "ttft_p50": hist.quantile(s["ttft_histogram"], 0.5),
        "ttft_p95": hist.quantile(s["ttft_histogram"], 0.95),
        "input_tokens": s["input_tokens"],
        "output_tokens": s["output_tokens"],
        "input_tokens_per_min": s["input_tokens"] / minutes,
        "output_tokens_per_min": s["output_tokens"] / minutes,
        "sum_size": s["sum_size"],
        "mean_size": s["sum_size"] / count if count else None,
        "sum_value": s["sum_value"],
        "last_value": s["last_value"],
    }


def _prices() -> dict:
    from appmetrics.models import LlmPrice

    return {(p.provider, p.model): p for p in LlmPrice.objects.all()}


def summary(start: datetime, end: datetime, app: str = "") -> dict:
    """{"from", "to", "apps": [{app, llm, checkpoint, counter, gauge, histogram,
    dropped, series}]}: totals per series over the range, and per minute for LLM calls
    and checkpoints (count, errors, p95 of duration in seconds)."""
    minutes = max((end - start).total_seconds() / 60, 1 / 60)
    per_app: dict = {}
    for (minute, a, kind, name, model, provider), s in sorted(
        series_stats(start, end, app).items(), key=lambda kv: kv[0][0]
    ):
        entry = per_app.setdefault(a, {"totals": {}, "series": {}})
        series_key = (kind, name, model, provider)
        merge_stats(entry["totals"].setdefault(series_key, new_stats()), s)
        if kind in ("llm", "checkpoint"):
            label = f"{provider}/{model}" if kind == "llm" else f"checkpoint {name}"
            point = entry["series"].setdefault(label, {})
            merged = point.setdefault(minute, new_stats())
            merge_stats(merged, s)
    prices = _prices()
    apps = []
    for a in sorted(per_app):
        entry = per_app[a]
        out = {"app": a, "llm": [], "checkpoint": [], "counter": [], "gauge": []}
        out["histogram"] = []
        out["dropped"] = 0
        for (kind, name, model, provider), s in sorted(entry["totals"].items()):
            if kind == "dropped":
                out["dropped"] += int(s["sum_value"])
                continue
            key = {"model": model, "provider": provider} if kind == "llm" else {"name": name}
            row = _row(key, s, minutes)
            if kind == "llm":
                price = prices.get((provider, model)) or prices.get(("", model))
                row["cost"] = price.cost(s["input_tokens"], s["output_tokens"]) if price else None
                row["currency"] = price.currency if price else None
            out[kind].append(row)
        out["series"] = [
            {
                "label": label,
                "points": [
                    {
                        "t": minute.isoformat(),
                        "count": s["count"],
                        "errors": s["errors"],
                        "p95": hist.quantile(s["histogram"], 0.95),
                    }
                    for minute, s in sorted(points.items())
                ],
            }
            for label, points in sorted(entry["series"].items())
        ]
        apps.append(out)
    return {"from": start.isoformat(), "to": end.isoformat(), "apps": apps}


def llm_by_app(host, start: datetime, end: datetime, metric: str) -> dict[str, float]:
    """{app: value} for an alert rule: `app_llm_error_rate` (%) or
    `app_llm_p95_latency` (s), over the LLM calls a host's apps made in [start, end)."""
    from appmetrics.models import AppMetric
    from appmetrics.rollups import add_record

    merged: dict[str, dict] = {}
    rows = AppMetric.objects.filter(host=host, kind="llm", ts__gte=start, ts__lt=end)
    for r in rows.values("kind", "value", "duration", "size", "input_tokens", "output_tokens",
                         "ttft", "success", "app"):  # fmt: skip
        add_record(merged.setdefault(r["app"], new_stats()), r)
    values = {}
    for app, s in merged.items():
        if metric == "app_llm_error_rate":
            values[app] = 100.0 * s["errors"] / s["count"]
        else:
            values[app] = hist.quantile(s["histogram"], 0.95)
    return values


def for_process(host_id: int, pid: int, create_time: datetime) -> list[dict]:
    """What one process sent: per app, kind and series, the number of records, the
    failures and the mean duration (AppMetric.SAME_START)."""
    from django.db.models import Avg, Count, Q

    from appmetrics.models import AppMetric

    rows = AppMetric.of_process(host_id, pid, create_time).exclude(kind="dropped")
    return list(
        rows.values("app", "kind", "name", "model", "provider")
        .annotate(count=Count("id"), errors=Count("id", filter=Q(success=False)))
        .annotate(mean_duration=Avg("duration"))
        .order_by("app", "kind", "model", "name")[:100]
    )
