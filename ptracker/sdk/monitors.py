"""Monitors, the factory, configuration and decorators of the app-metrics SDK.

Nothing here imports Django. Every public call returns at once and never raises
into the app: a failure is counted in `sdk_errors` and the call returns None.
History is a deque with a bound (`max_history_size`).
"""

import contextlib
import functools
import json
import os
import random
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path

import psutil

from ptracker.sdk import histogram as hist

DEFAULTS = {"max_history_size": 1000, "sampling_rate": 1.0, "enabled": True}
APP_ENV = "PTRACKER_APP"
MAX_TOKENS = 2**53  # what the hub accepts


def _identity() -> dict:
    try:
        create_time = psutil.Process().create_time()
    except Exception:
        create_time = None
    return {"host": socket.gethostname(), "pid": os.getpid(), "create_time": create_time}


_identity_now: dict | None = _identity()


def identity() -> dict:
    """This process's host, pid and start time, as each record carries them. Worked out
    again in a forked child (a DataLoader worker, a pre-fork server's worker): its
    records are its own process's, not the parent's."""
    global _identity_now
    known = _identity_now
    if known is None:
        known = _identity_now = _identity()
    return known


def _forget_identity() -> None:
    global _identity_now
    _identity_now = None  # read at the child's first record: no work in a fork + exec


os.register_at_fork(after_in_child=_forget_identity)


def default_app() -> str:
    name = os.environ.get(APP_ENV) or Path(sys.argv[0] if sys.argv else "").stem
    return (name if name and not name.startswith("-") else "python")[:100]


def safe(method):
    """Never let the SDK raise into the app: count the failure instead."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception:
            with contextlib.suppress(Exception):
                self.sdk_errors += 1
            return None

    return wrapper


def _number(value, default=None):
    if type(value) is float:
        return value if value - value == 0 else default  # NaN and ±inf fail
    if value is None or isinstance(value, bool):
        return default if value is None else float(value)
    value = float(value)
    return value if value == value and abs(value) != float("inf") else default


def _tokens(value):
    if value is None:
        return None
    if type(value) is int:
        return value if 0 <= value <= MAX_TOKENS else None
    value = int(value)
    return value if 0 <= value <= MAX_TOKENS else None


class BasePerformanceMonitor:
    """Counters, gauges, histograms and a bounded history of records.

    Subclass it for a custom monitor; call `set_gauge`, `increment_counter`,
    `record_histogram` or `record(kind, **fields)` from your methods."""

    kind = "custom"

    def __init__(
        self,
        max_history_size: int = 1000,
        name: str | None = None,
        sampling_rate: float = 1.0,
        enabled: bool = True,
        app: str | None = None,
        sink=None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name or self.kind
        self.app = app or default_app()
        self.max_history_size = max(1, int(max_history_size))
        self.sampling_rate = min(1.0, max(0.0, float(sampling_rate)))
        self.enabled = bool(enabled)
        self.sink = sink  # a callable taking one record dict, or None
        self.rng = rng or random.Random()
        self.sdk_errors = 0
        self.sampled_out = 0
        self._lock = threading.Lock()
        self.reset_metrics()

    # --- the parts every monitor has -------------------------------------------------
    @safe
    def reset_metrics(self) -> None:
        with self._lock:
            self.history = deque(maxlen=self.max_history_size)
            self.counters: dict[str, float] = {}
            self.gauges: dict[str, float] = {}
            self.histograms: dict[str, deque] = {}
            self._series: dict = {}

    def _keep(self) -> bool:
        if not self.enabled:
            return False
        if self.sampling_rate >= 1.0 or self.rng.random() < self.sampling_rate:
            return True
        self.sampled_out += 1
        return False

    def record(self, kind: str, name: str, **fields) -> dict | None:
        """Add one record (after sampling) to the history and hand it to the sink."""
        return self._emit(kind, name, **fields) if self._keep() else None

    def _emit(self, kind: str, name: str, **fields) -> dict:
        if type(name) is not str or len(name) > 200:
            name = str(name)[:200]
        rec = {"app": self.app, "kind": kind, "name": name, "ts": time.time(), **fields,
               **identity()}  # fmt: skip
        self.history.append(rec)
        if self.sink is not None:
            self.sink(rec)
        return rec

    @safe
    def increment_counter(self, name: str, value: float = 1, tags: dict | None = None) -> None:
        if not self._keep():
            return
        name = _name(name)
        value = _number(value, 1.0)
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + value
        self._emit("counter", name, value=value, tags=_tags(tags))

    @safe
    def set_gauge(self, name: str, value: float, tags: dict | None = None) -> None:
        if not self._keep():
            return
        name = _name(name)
        value = _number(value)
        if value is None:
            raise ValueError("gauge value")
        self.gauges[name] = value
        self._emit("gauge", name, value=value, tags=_tags(tags))

    @safe
    def record_histogram(self, name: str, value: float, tags: dict | None = None) -> None:
        if not self._keep():
            return
        name = _name(name)
        value = _number(value)
        if value is None:
            raise ValueError("histogram value")
        with self._lock:
            self.histograms.setdefault(name, deque(maxlen=self.max_history_size)).append(value)
        self._emit("histogram", name, value=value, tags=_tags(tags))

    record_timer = record_histogram

    @safe
    def get_all_metrics(self) -> dict:
        return {
            "name": self.name,
            "app": self.app,
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
            "histograms": {k: _stats(list(v)) for k, v in self.histograms.items()},
            "history": list(self.history),
            "sdk_errors": self.sdk_errors,
            "sampled_out": self.sampled_out,
        }

    @safe
    def generate_report(self) -> str:
        metrics = self.get_all_metrics() or {}
        lines = [f"Performance report: {self.name} (app {self.app})"]
        for name, value in sorted(metrics.get("counters", {}).items()):
            lines.append(f"  counter {name}: {value:g}")
        for name, value in sorted(metrics.get("gauges", {}).items()):
            lines.append(f"  gauge {name}: {value:g}")
        for name, s in sorted(metrics.get("histograms", {}).items()):
            lines.append(
                f"  histogram {name}: n={s['count']} mean={s['mean']:.4g} "
                f"p50={s['p50']:.4g} p95={s['p95']:.4g} p99={s['p99']:.4g}"
            )
        lines.append(f"  records kept: {len(self.history)} (max {self.max_history_size})")
        if self.sdk_errors:
            lines.append(f"  calls refused by the SDK: {self.sdk_errors}")
        return "\n".join(lines)


def _name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError("a metric name must be a non-empty string")
    return name[:200]


def _tags(tags) -> dict | None:
    if not tags:
        return None
    return {str(k)[:100]: str(v)[:200] for k, v in dict(tags).items()}


def _stats(values: list) -> dict:
    if not values:
        return {"count": 0, "mean": 0.0, "min": 0.0, "max": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    q = hist.exact_quantile
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "min": min(values),
        "max": max(values),
        "p50": q(values, 0.5),
        "p95": q(values, 0.95),
        "p99": q(values, 0.99),
    }


class CheckpointPerformanceMonitor(BasePerformanceMonitor):
    kind = "checkpoint"

    def _checkpoint(self, operation, duration, size, success):
        duration = _number(duration)
        if duration is None or duration < 0:
            raise ValueError("duration")
        size = _number(size, 0.0)
        ok = bool(success)
        if not self._keep():
            return
        with self._lock:
            key = f"checkpoint_{operation}"
            self.counters[f"{key}.count"] = self.counters.get(f"{key}.count", 0) + 1
            if not ok:
                self.counters[f"{key}.errors"] = self.counters.get(f"{key}.errors", 0) + 1
            self.histograms.setdefault(
                f"{key}.duration", deque(maxlen=self.max_history_size)
            ).append(duration)
            self.gauges[f"{key}.last_size"] = size
        self._emit("checkpoint", operation, duration=duration, size=size, success=ok)

    @safe
    def record_checkpoint_save(self, duration: float, size: float = 0, success: bool = True):
        self._checkpoint("save", duration, size, success)

    @safe
    def record_checkpoint_load(self, duration: float, size: float = 0, success: bool = True):
        self._checkpoint("load", duration, size, success)


class LLMPerformanceMonitor(BasePerformanceMonitor):
    kind = "llm"

    @safe
    def record_llm_call(
        self,
        model: str = "",
        provider: str = "",
        response_time: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        total_tokens: int | None = None,
        success: bool = True,
        time_to_first_token: float | None = None,
        **otel,
    ) -> None:
        """The seed's names, or OpenTelemetry GenAI ones: `input_tokens`,
        `output_tokens`, `duration`, `time_to_first_token` (or their `gen_ai.*` keys,
        passed as `**{"gen_ai.usage.input_tokens": 10}`)."""
        if otel:
            otel = {
                k.removeprefix("gen_ai.").removeprefix("usage.").removeprefix("request."): v
                for k, v in otel.items()
            }
            model = model or otel.get("model", "")
            provider = provider or otel.get("provider.name", "") or otel.get("provider", "")
            if response_time is None:
                response_time = otel.get("duration", otel.get("operation.duration"))
            if prompt_tokens is None:
                prompt_tokens = otel.get("input_tokens")
            if completion_tokens is None:
                completion_tokens = otel.get("output_tokens")
        if not self.enabled or (self.sampling_rate < 1.0 and not self._keep()):
            return
        if type(model) is not str or len(model) > 200:
            model = str(model)[:200]
        if type(provider) is not str or len(provider) > 100:
            provider = str(provider)[:100]
        duration = _number(response_time)
        if duration is None or duration < 0:
            raise ValueError("response_time")
        inp = _tokens(prompt_tokens)
        out = _tokens(completion_tokens)
        total = _tokens(total_tokens)
        if total is None and (inp is not None or out is not None):
            total = (inp or 0) + (out or 0)
        ttft = None if time_to_first_token is None else _number(time_to_first_token)
        ok = bool(success)
        series = self._series.get((provider, model))
        if series is None:
            key = f"llm.{provider}.{model}"
            series = self._series[(provider, model)] = (
                f"{key}.calls",
                f"{key}.errors",
                f"{key}.tokens",
                f"{key}.response_time",
            )
        calls, errors, tokens, times = series
        counters = self.counters
        with self._lock:
            counters[calls] = counters.get(calls, 0) + 1
            if not ok:
                counters[errors] = counters.get(errors, 0) + 1
            counters[tokens] = counters.get(tokens, 0) + (total or 0)
            history = self.histograms.get(times)
            if history is None:
                history = self.histograms[times] = deque(maxlen=self.max_history_size)
            history.append(duration)
        self._emit(
            "llm",
            "call",
            model=model,
            provider=provider,
            duration=duration,
            input_tokens=inp,
            output_tokens=out,
            total_tokens=total,
            ttft=ttft,
            success=ok,
        )


# --- configuration ---------------------------------------------------------------------


def load_config(source=None) -> dict:
    """A dict, a JSON text, or a path to a .json or (with PyYAML) .yaml/.yml file.
    The settings may sit under a top-level `monitoring` key, as in the seed."""
    if source is None:
        return {}
    if isinstance(source, dict):
        data = source
    else:
        text = str(source)
        path = Path(text)
        if text.lstrip().startswith("{"):
            data = json.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError("YAML configuration needs PyYAML (pip install pyyaml)") from None
            data = yaml.safe_load(path.read_text()) or {}
        else:
            data = json.loads(path.read_text())
    if isinstance(data.get("monitoring"), dict):
        data = data["monitoring"]
    return data


class PerformanceMonitorFactory:
    """One per process (`get_instance()`); `create_monitor(name)` gives the same
    monitor for the same name."""

    _instance = None
    _instance_lock = threading.Lock()
    KINDS = {"checkpoint": CheckpointPerformanceMonitor, "llm": LLMPerformanceMonitor}

    def __init__(self, config=None, sender=None) -> None:
        self.monitors: dict[str, BasePerformanceMonitor] = {}
        self.kinds = dict(self.KINDS)
        self.config: dict = {}
        self.sender = sender
        self.sdk_errors = 0
        self.configure(config)

    @classmethod
    def get_instance(cls) -> "PerformanceMonitorFactory":
        with cls._instance_lock:
            if cls._instance is None:
                from ptracker.sdk.sender import sender_from_env

                factory = cls()
                try:
                    factory.configure(os.environ.get("PTRACKER_SDK_CONFIG"))
                    factory.sender = sender_from_env()
                except Exception:
                    factory.sdk_errors += 1
                cls._instance = factory
            return cls._instance

    @safe
    def configure(self, config=None) -> None:
        self.config = {**DEFAULTS, **load_config(config)} if config else {**DEFAULTS}

    def settings_for(self, name: str) -> dict:
        modules = self.config.get("modules") or {}
        chosen = {k: self.config[k] for k in DEFAULTS if k in self.config}
        chosen.update({k: v for k, v in (modules.get(name) or {}).items() if k in DEFAULTS})
        if "app" in self.config:
            chosen["app"] = self.config["app"]
        return chosen

    def register_monitor(self, name: str, cls: type) -> None:
        self.kinds[name] = cls

    def create_monitor(self, name: str, cls: type | None = None, **kwargs):
        try:
            if name in self.monitors and cls is None:
                return self.monitors[name]
            cls = cls or self.kinds.get(name, BasePerformanceMonitor)
            options = {**self.settings_for(name), **kwargs}
            monitor = cls(**{k: v for k, v in options.items() if k == "max_history_size"})
            monitor.name = name
            monitor.app = options.get("app") or monitor.app
            monitor.sampling_rate = min(1.0, max(0.0, float(options.get("sampling_rate", 1.0))))
            monitor.enabled = bool(options.get("enabled", True))
            if "rng" in options:
                monitor.rng = options["rng"]
            if self.sender is not None:
                monitor.sink = self.sender.put
        except Exception:
            self.sdk_errors += 1
            monitor = BasePerformanceMonitor(name=str(name))
        self.monitors[name] = monitor
        return monitor

    get_monitor = create_monitor

    def get_all_metrics(self) -> dict:
        return {name: m.get_all_metrics() for name, m in self.monitors.items()}

    def generate_report(self) -> str:
        return "\n".join(m.generate_report() or "" for m in self.monitors.values())

    def reset_metrics(self) -> None:
        for m in self.monitors.values():
            m.reset_metrics()


# --- decorators --------------------------------------------------------------------------


def monitor_checkpoint_performance(operation: str = "checkpoint_save", monitor=None):
    """Time the function as a checkpoint save or load (`checkpoint_save` or
    `checkpoint_load`); an exception is recorded as a failure and raised again. The
    size is the length of a bytes result, or the result itself when it is a number."""
    load = "load" in operation

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            started, ok, result = time.perf_counter(), False, None
            try:
                result = func(*args, **kwargs)
                ok = True
                return result
            finally:
                try:
                    m = monitor or PerformanceMonitorFactory.get_instance().create_monitor(
                        "checkpoint"
                    )
                    size = _result_size(result)
                    elapsed = time.perf_counter() - started
                    record = m.record_checkpoint_load if load else m.record_checkpoint_save
                    record(duration=elapsed, size=size, success=ok)
                except Exception:
                    pass

        return wrapper

    return decorate


def _result_size(result) -> float:
    if isinstance(result, bytes | bytearray | memoryview):
        return float(len(result))
    if isinstance(result, int | float) and not isinstance(result, bool):
        return float(result)
    return 0.0


def _usage(response) -> tuple:
    """(input, output, total) tokens from an OpenAI- or Anthropic-style response."""
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return None, None, None

    def read(*names):
        for name in names:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    inp = read("prompt_tokens", "input_tokens")
    out = read("completion_tokens", "output_tokens")
    return inp, out, read("total_tokens")


def monitor_llm_call(model: str = "", provider: str = "", monitor=None):
    """Time an LLM call; read tokens (and the model) from the response's `usage`."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            started, ok, result = time.perf_counter(), False, None
            try:
                result = func(*args, **kwargs)
                ok = True
                return result
            finally:
                try:
                    m = monitor or PerformanceMonitorFactory.get_instance().create_monitor("llm")
                    inp, out, total = _usage(result)
                    name = model or getattr(result, "model", None) or kwargs.get("model") or ""
                    m.record_llm_call(
                        model=str(name),
                        provider=provider,
                        response_time=time.perf_counter() - started,
                        prompt_tokens=inp,
                        completion_tokens=out,
                        total_tokens=total,
                        success=ok,
                    )
                except Exception:
                    pass

        return wrapper

    return decorate
