"""Application metrics without Django: checkpoints, LLM calls, counters, gauges,
histograms, kept in memory and (with PTRACKER_HUB and PTRACKER_TOKEN) sent to the hub.

    from ptracker.sdk import PerformanceMonitorFactory, monitor_checkpoint_performance

    llm = PerformanceMonitorFactory.get_instance().create_monitor("llm")
    llm.record_llm_call(model="gpt-4", provider="openai", response_time=2.1,
                        prompt_tokens=100, completion_tokens=200, total_tokens=300)
"""

from ptracker.sdk.monitors import (
    BasePerformanceMonitor,
    CheckpointPerformanceMonitor,
    LLMPerformanceMonitor,
    PerformanceMonitorFactory,
    load_config,
    monitor_checkpoint_performance,
    monitor_llm_call,
)


def get_checkpoint_monitor() -> CheckpointPerformanceMonitor:
    return PerformanceMonitorFactory.get_instance().create_monitor("checkpoint")


def get_llm_monitor() -> LLMPerformanceMonitor:
    return PerformanceMonitorFactory.get_instance().create_monitor("llm")


__all__ = [
    "BasePerformanceMonitor",
    "CheckpointPerformanceMonitor",
    "LLMPerformanceMonitor",
    "PerformanceMonitorFactory",
    "get_checkpoint_monitor",
    "get_llm_monitor",
    "load_config",
    "monitor_checkpoint_performance",
    "monitor_llm_call",
]
