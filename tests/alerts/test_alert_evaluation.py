"""advance(): the rule state machine, as a table of observations over time."""

from datetime import timedelta

import pytest

from alerts.evaluation import advance
from alerts.models import AlertState, Rule
from tests.conftest import T0


def run(rule: Rule, values: list[tuple[int, float | None]]) -> list[str]:
    """Feed (seconds, value) pairs; return the state after each, with transitions."""
    state = AlertState(state=AlertState.OK, since=T0)
    out = []
    for seconds, value in values:
        now = T0 + timedelta(seconds=seconds)
        d = advance(rule, state, value, now)
        state.state, state.since, state.candidate_since = d.state, d.since, d.candidate_since
        if d.transition == "firing":
            state.fired_at = state.last_notified = now
        if d.transition in ("reminder", "resolved"):
            state.last_notified = now
        out.append(d.state + (f"+{d.transition}" if d.transition else ""))
    return out


def rule(**kw) -> Rule:
    fields = {
        "name": "r",
        "metric": "cpu_percent",
        "operator": ">",
        "threshold": 90,
        "for_seconds": 60,
    }
    fields.update(kw)
    return Rule(**fields)


def test_it_fires_only_after_the_condition_held_for_its_duration():
    assert run(rule(), [(0, 95), (30, 96), (59, 97), (60, 95)]) == [
        "pending",
        "pending",
        "pending",
        "firing+firing",
    ]


def test_a_short_spike_never_fires():
    assert run(rule(), [(0, 95), (30, 50), (40, 95), (90, 95)]) == [
        "pending",
        "ok",
        "pending",
        "pending",
    ]


def test_zero_duration_fires_at_once():
    assert run(rule(for_seconds=0), [(0, 91)]) == ["firing+firing"]


def test_it_does_not_flap_around_the_threshold():
    r = rule(for_seconds=0, recovery_threshold=80)
    # 89 and 85 are under the threshold but above the recovery value: still firing.
    assert run(r, [(0, 95), (5, 89), (10, 91), (15, 85), (20, 79)]) == [
        "firing+firing",
        "firing",
        "firing",
        "firing",
        "ok+resolved",
    ]


def test_recovery_must_hold_for_its_duration():
    r = rule(for_seconds=0, recovery_seconds=30)
    assert run(r, [(0, 95), (10, 50), (20, 95), (30, 50), (59, 50), (60, 50)]) == [
        "firing+firing",
        "firing",
        "firing",
        "firing",
        "firing",
        "ok+resolved",
    ]


def test_reminders_come_at_the_repeat_interval():
    r = rule(for_seconds=0, repeat_minutes=10)
    values = [(0, 95), (300, 95), (600, 95), (900, 95), (1200, 95)]
    assert run(r, values) == [
        "firing+firing",
        "firing",
        "firing+reminder",
        "firing",
        "firing+reminder",
    ]


def test_an_acknowledged_alert_sends_no_reminders():
    r = rule(for_seconds=0, repeat_minutes=1)
    state = AlertState(
        state=AlertState.FIRING, since=T0, fired_at=T0, last_notified=T0, acknowledged_at=T0
    )
    assert advance(r, state, 95, T0 + timedelta(minutes=5)).transition is None


def test_missing_data_changes_nothing():
    assert run(rule(for_seconds=0), [(0, 95), (10, None), (20, None)]) == [
        "firing+firing",
        "firing",
        "firing",
    ]


@pytest.mark.parametrize(
    ("operator", "threshold", "value", "fires"),
    [(">", 10, 10, False), (">=", 10, 10, True), ("<", 10, 9, True), ("<=", 10, 11, False)],
)
def test_operators(operator, threshold, value, fires):
    r = rule(operator=operator, threshold=threshold, for_seconds=0)
    assert (run(r, [(0, value)])[0] == "firing+firing") is fires


def test_a_below_rule_recovers_above_its_recovery_value():
    r = rule(metric="process_count", operator="<", threshold=5, recovery_threshold=8, for_seconds=0)
    assert run(r, [(0, 3), (5, 6), (10, 9)]) == ["firing+firing", "firing", "ok+resolved"]
