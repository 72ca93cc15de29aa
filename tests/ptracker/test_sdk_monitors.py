"""ptracker.sdk with no hub: the seed's calls as written, never an exception, bounds."""

import json
import random
import subprocess
import sys
import time
from types import SimpleNamespace

import psutil
import pytest

from ptracker.sdk import (
    BasePerformanceMonitor,
    PerformanceMonitorFactory,
    load_config,
    monitor_checkpoint_performance,
    monitor_llm_call,
)
from ptracker.sdk import histogram as hist


@pytest.fixture
def factory():
    return PerformanceMonitorFactory()


def test_importing_the_sdk_imports_no_django():
    code = (
        "import sys; sys.modules['django'] = None\n"
        "from ptracker.sdk import PerformanceMonitorFactory, monitor_checkpoint_performance\n"
        "m = PerformanceMonitorFactory.get_instance().create_monitor('llm')\n"
        "m.record_llm_call(model='gpt-4', provider='openai', response_time=1.0)\n"
        "print(len(m.get_all_metrics()['history']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_the_seeds_example_runs_unchanged(factory, monkeypatch):
    monkeypatch.setattr(PerformanceMonitorFactory, "_instance", factory)
    factory = PerformanceMonitorFactory.get_instance()
    checkpoint_monitor = factory.create_monitor("checkpoint")
    llm_monitor = factory.create_monitor("llm")
    checkpoint_monitor.record_checkpoint_save(duration=0.5, size=1024, success=True)
    checkpoint_monitor.record_checkpoint_load(duration=0.3, size=1024, success=True)
    llm_monitor.record_llm_call(
        model="gpt-4",
        provider="openai",
        response_time=2.1,
        prompt_tokens=100,
        completion_tokens=200,
        total_tokens=300,
        success=True,
    )
    metrics = checkpoint_monitor.get_all_metrics()
    report = checkpoint_monitor.generate_report()

    @monitor_checkpoint_performance("checkpoint_save")
    def save_checkpoint(data):
        pass

    save_checkpoint({"w": 1})

    class CustomPerformanceMonitor(BasePerformanceMonitor):
        def __init__(self, max_history_size: int = 1000):
            super().__init__(max_history_size)

        def record_custom_metric(self, metric_name: str, value: float):
            self.set_gauge(f"custom.{metric_name}", value)

    custom = factory.create_monitor("custom", cls=CustomPerformanceMonitor)
    custom.record_custom_metric("queue", 7)

    assert [r["name"] for r in metrics["history"]] == ["save", "load"]
    assert metrics["counters"]["checkpoint_save.count"] == 1
    assert "checkpoint_save.duration" in report
    assert checkpoint_monitor.counters["checkpoint_save.count"] == 2  # the decorator's
    assert custom.get_all_metrics()["gauges"] == {"custom.queue": 7.0}
    llm = llm_monitor.get_all_metrics()
    assert llm["counters"]["llm.openai.gpt-4.tokens"] == 300
    me = psutil.Process()
    record = llm["history"][0]
    assert record["pid"] == me.pid and record["create_time"] == me.create_time()
    assert record["host"] and record["input_tokens"] == 100 and record["output_tokens"] == 200
    checkpoint_monitor.reset_metrics()
    assert checkpoint_monitor.get_all_metrics()["history"] == []


GARBAGE = [None, "x", object(), float("nan"), float("inf"), -1, [1], {"a": 1}, b"\xff", 10**400]


def test_garbage_arguments_never_raise_and_are_counted(factory):
    llm = factory.create_monitor("llm")
    ckpt = factory.create_monitor("checkpoint")
    calls = 0
    for g in GARBAGE:
        llm.record_llm_call(model=g, provider=g, response_time=g, prompt_tokens=g, success=g)
        llm.record_llm_call(g, g, g, g, g, g, g, g, unknown=g)
        ckpt.record_checkpoint_save(duration=g, size=g, success=g)
        ckpt.record_checkpoint_load(g)
        llm.set_gauge(g, g)
        llm.increment_counter(g, g, tags=g)
        llm.record_histogram(g, g)
        calls += 7
    assert llm.generate_report()
    assert json.dumps(llm.get_all_metrics(), default=str)
    assert llm.sdk_errors + ckpt.sdk_errors > 0
    for r in llm.history:  # what was kept is clean
        assert r["duration"] is None or r["duration"] >= 0 if "duration" in r else True


def test_a_failing_sink_does_not_reach_the_app():
    def broken(record):
        raise RuntimeError("hub code broke")

    m = BasePerformanceMonitor(sink=broken)
    m.increment_counter("requests")
    assert m.sdk_errors == 1 and m.counters["requests"] == 1


def test_history_is_bounded(factory):
    factory.configure({"max_history_size": 50})
    m = factory.create_monitor("llm")
    for i in range(1000):
        m.record_llm_call(model="m", provider="p", response_time=i / 1000)
    assert len(m.get_all_metrics()["history"]) == 50
    assert m.history[-1]["duration"] == 0.999


def test_opentelemetry_names_are_accepted(factory):
    m = factory.create_monitor("llm")
    m.record_llm_call(
        **{
            "gen_ai.request.model": "claude",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.usage.input_tokens": 11,
            "gen_ai.usage.output_tokens": 22,
        },
        response_time=0.4,
        time_to_first_token=0.1,
    )
    m.record_llm_call(model="m", provider="p", duration=0.2, input_tokens=1, output_tokens=2)
    a, b = m.history
    assert (a["model"], a["provider"], a["input_tokens"], a["output_tokens"]) == (
        "claude",
        "anthropic",
        11,
        22,
    )
    assert a["total_tokens"] == 33 and a["ttft"] == 0.1
    assert (b["duration"], b["total_tokens"]) == (0.2, 3)


def test_sampling_rate_per_module_holds_in_expectation(factory):
    factory.configure(
        {"monitoring": {"sampling_rate": 1.0, "modules": {"llm": {"sampling_rate": 0.25}}}}
    )
    m = factory.create_monitor("llm", rng=random.Random(17))
    c = factory.create_monitor("checkpoint")
    for _ in range(20000):
        m.record_llm_call(model="m", provider="p", response_time=0.1)
        c.record_checkpoint_save(duration=0.1)
    kept = m.counters.get("llm.p.m.calls", 0)
    # binomial(20000, 0.25): sd ≈ 61; 5 sd
    assert abs(kept - 5000) < 310
    assert kept + m.sampled_out == 20000
    assert c.counters["checkpoint_save.count"] == 20000


def test_disabled_module_records_nothing(factory):
    factory.configure({"enabled": True, "modules": {"checkpoint": {"enabled": False}}})
    c = factory.create_monitor("checkpoint")
    c.record_checkpoint_save(duration=1.0)
    assert c.history == type(c.history)([], maxlen=c.max_history_size)


def test_configuration_from_json_and_yaml_files(tmp_path, factory):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"monitoring": {"max_history_size": 3}}))
    assert load_config(str(path)) == {"max_history_size": 3}
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "m.yaml"
    path.write_text(
        yaml.safe_dump({"monitoring": {"max_history_size": 5, "modules": {"llm": {"enabled": 0}}}})
    )
    factory.configure(str(path))
    assert factory.create_monitor("llm").enabled is False
    assert factory.create_monitor("llm").max_history_size == 5


def test_llm_decorator_reads_openai_and_anthropic_usage(factory):
    m = factory.create_monitor("llm")

    @monitor_llm_call(provider="openai", monitor=m)
    def openai_call():
        usage = SimpleNamespace(prompt_tokens=5, completion_tokens=7, total_tokens=12)
        return SimpleNamespace(model="gpt-4o", usage=usage)

    @monitor_llm_call(provider="anthropic", monitor=m)
    def anthropic_call():
        time.sleep(0.01)
        return SimpleNamespace(
            model="claude-3", usage=SimpleNamespace(input_tokens=3, output_tokens=4)
        )

    @monitor_llm_call(model="x", provider="y", monitor=m)
    def failing():
        raise TimeoutError("upstream")

    openai_call()
    anthropic_call()
    with pytest.raises(TimeoutError):
        failing()
    o, a, f = m.history
    assert (o["model"], o["input_tokens"], o["output_tokens"], o["total_tokens"]) == (
        "gpt-4o",
        5,
        7,
        12,
    )
    assert (a["model"], a["input_tokens"], a["output_tokens"], a["total_tokens"]) == (
        "claude-3",
        3,
        4,
        7,
    )
    assert a["duration"] >= 0.01
    assert f["success"] is False and f["model"] == "x"


def test_merged_histogram_quantiles_are_within_the_stated_error():
    rng = random.Random(4)
    minutes = [[rng.lognormvariate(0, 1.2) for _ in range(rng.randint(1, 300))] for _ in range(60)]
    merged: dict = {}
    for values in minutes:
        h: dict = {}
        for v in values:
            hist.add(h, v)
        hist.merge(merged, json.loads(json.dumps(h)))  # as stored and read back
    everything = [v for values in minutes for v in values]
    for q in (0.5, 0.95, 0.99):
        exact = hist.exact_quantile(everything, q)
        assert abs(hist.quantile(merged, q) - exact) <= exact * hist.RELATIVE_ERROR + 1e-12
    assert hist.quantile({}, 0.5) is None
    assert hist.quantile(hist.add({}, 0), 0.5) == 0.0
