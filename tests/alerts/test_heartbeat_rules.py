"""Alert rules on heartbeat checks (heartbeat late, run failed, run too long, run too
short): they fire through the rules and channels like any other, on the minute
schedule, and resolve when the check is back."""

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.evaluation import evaluate_scheduled
from alerts.models import Delivery, Rule, Transition
from jobs import heartbeats
from jobs.models import HeartbeatCheck

pytestmark = pytest.mark.django_db


def rule_on(metric: str, channel=None) -> Rule:
    rule = Rule.objects.create(name=metric, metric=metric, for_seconds=0, recovery_seconds=0)
    rule.full_clean()  # no threshold needed
    if channel:
        rule.channels.add(channel)
    return rule


@pytest.fixture
def check(db) -> HeartbeatCheck:
    return HeartbeatCheck.objects.create(
        name="nightly",
        period=timedelta(hours=1),
        grace=timedelta(minutes=5),
        max_duration=timedelta(minutes=10),
        min_duration=timedelta(seconds=30),
    )


def test_a_failed_run_fires_through_the_channel_and_a_success_resolves(check, webhook):
    rule_on("run_failed", webhook)
    now = timezone.now()
    heartbeats.ping(check, "fail", now, exit_status=2)
    fired = evaluate_scheduled(now)
    assert [(t.kind, t.subject) for t in fired] == [("firing", "check:nightly")]
    assert "heartbeat check nightly" in fired[0].message or "nightly" in fired[0].message
    assert Delivery.objects.filter(transition=fired[0], channel=webhook).exists()
    heartbeats.ping(check, "start", now + timedelta(minutes=1))
    heartbeats.ping(check, "success", now + timedelta(minutes=2))
    resolved = evaluate_scheduled(now + timedelta(minutes=2))
    assert [t.kind for t in resolved] == ["resolved"]


def test_a_late_check_fires_the_late_rule_only(check):
    late, failed = rule_on("heartbeat_late"), rule_on("run_failed")
    now = timezone.now()
    heartbeats.ping(check, "success", now - timedelta(hours=2))
    assert evaluate_scheduled(now) == []  # the minute check has not marked it yet
    heartbeats.evaluate(now)
    fired = evaluate_scheduled(now)
    assert [(t.rule_id, t.kind) for t in fired] == [(late.pk, "firing")]
    assert not Transition.objects.filter(rule=failed).exists()


def test_too_long_and_too_short_runs_fire_their_rules(check):
    long_rule, short_rule = rule_on("run_too_long"), rule_on("run_too_short")
    now = timezone.now()
    heartbeats.ping(check, "start", now - timedelta(minutes=11))
    heartbeats.evaluate(now)
    assert [t.rule_id for t in evaluate_scheduled(now)] == [long_rule.pk]
    heartbeats.ping(check, "start", now, run_id="quick")
    heartbeats.ping(check, "success", now + timedelta(seconds=3), run_id="quick")
    kinds = {(t.rule_id, t.kind) for t in evaluate_scheduled(now + timedelta(seconds=3))}
    assert (short_rule.pk, "firing") in kinds


def test_a_check_never_pinged_is_no_alert(check):
    for metric in ("heartbeat_late", "run_failed", "run_too_long", "run_too_short"):
        rule_on(metric)
    assert evaluate_scheduled(timezone.now()) == []
