"""Quiet by default: pending is a state, one burst of a steady condition is one firing
and one resolved message, and a process missing from one sample stays one alert."""

from datetime import timedelta

import pytest

from alerts.models import AlertState, Rule, Transition
from monitoring import ingest
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db


def kinds(rule: Rule) -> list[str]:
    return list(Transition.objects.filter(rule=rule).order_by("ts").values_list("kind", flat=True))


def burner_rule(**fields) -> Rule:
    values = {"name": "burner", "metric": "process_cpu_percent", "operator": ">",
              "threshold": 50, "for_seconds": 10, "process_pattern": "burn"}  # fmt: skip
    return Rule.objects.create(**{**values, **fields})


def cpu_at(host, seconds: int, cpu: float | None, present: bool = True) -> None:
    rows = [proc(55, name="python3", cmdline="python burn.py", cpu_percent=cpu)] if present else []
    ingest.store(host, batch(T0 + timedelta(seconds=seconds), rows))


def test_a_new_rule_recovers_after_its_for_duration():
    assert Rule(for_seconds=10).recovery_after == 10
    assert Rule(for_seconds=10, recovery_seconds=0).recovery_after == 0


def test_pending_is_a_state_not_a_history_row(host):
    rule = burner_rule()
    for seconds, cpu in [(0, 90), (2, 10), (4, 90), (6, 10)]:  # brief spikes
        cpu_at(host, seconds, cpu)
    assert kinds(rule) == []
    cpu_at(host, 8, 90)
    assert AlertState.objects.get(rule=rule).state == "pending"
    assert kinds(rule) == []


def test_one_steady_burst_with_dips_is_one_firing_and_one_resolved(host):
    rule = burner_rule()
    # 100 s of burning, each sample 1 s apart, with a starved tick now and then.
    for second in range(100):
        cpu_at(host, second, 30.0 if second % 13 == 12 else 99.0)
    for second in range(100, 112):
        cpu_at(host, second, 0.5)
    assert kinds(rule) == ["firing", "resolved"]
    resolved = Transition.objects.get(rule=rule, kind="resolved")
    assert resolved.ts == T0 + timedelta(seconds=110)  # 10 s of calm, as long as `for`


def test_a_process_missing_from_one_sample_stays_one_alert(host):
    rule = burner_rule(for_seconds=2)
    for second in range(3):
        cpu_at(host, second, 99.0)
    cpu_at(host, 3, None, present=False)  # not in this sample's top processes
    cpu_at(host, 4, 99.0)
    assert kinds(rule) == ["firing"]
    for second in range(5, 8):
        cpu_at(host, second, None, present=False)
    assert kinds(rule) == ["firing", "resolved"]


def test_a_process_gone_for_the_recovery_time_resolves(host):
    rule = burner_rule(for_seconds=2)
    for second in range(4):
        cpu_at(host, second, 99.0)
    for second in range(4, 8):
        cpu_at(host, second, None, present=False)
    assert kinds(rule) == ["firing", "resolved"]
    assert Transition.objects.get(kind="resolved").ts == T0 + timedelta(seconds=6)


def test_hysteresis_still_holds_with_a_recovery_time(host):
    rule = burner_rule(for_seconds=0, recovery_seconds=1, recovery_threshold=20)
    for second, cpu in [(0, 99), (1, 40), (2, 40), (3, 10)]:
        cpu_at(host, second, cpu)
    assert kinds(rule) == ["firing"]  # 40 is under 50 but above the recovery value
    cpu_at(host, 4, 10)
    assert kinds(rule) == ["firing", "resolved"]


def test_reminders_still_come_while_firing(host):
    rule = burner_rule(for_seconds=0, repeat_minutes=1)
    for second in range(0, 130, 10):
        cpu_at(host, second, 99.0)
    assert kinds(rule) == ["firing", "reminder", "reminder"]
