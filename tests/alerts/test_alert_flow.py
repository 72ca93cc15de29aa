"""From samples to notifications: transitions, deliveries, retries, silences."""

from datetime import timedelta

import pytest

from alerts import sending
from alerts.models import AlertState, Delivery, MaintenanceWindow, Rule, Silence, Transition
from monitoring import ingest
from monitoring.models import Event
from tests.conftest import T0, batch

pytestmark = pytest.mark.django_db


def sample(host, seconds: int, cpu: float):
    """Store a sample; ingest runs the rules (PTRACKER_AFTER_INGEST)."""
    return ingest.store(host, batch(T0 + timedelta(seconds=seconds), [], cpu_percent=cpu))


def test_a_rule_fires_after_its_duration_and_notifies_once(host, cpu_rule, receiver):
    for seconds in (0, 30, 60, 90):
        sample(host, seconds, 95.0)
    kinds = list(Transition.objects.order_by("ts").values_list("kind", flat=True))
    assert kinds == ["firing"]  # pending is a state, not history
    assert sending.send_due(now=T0 + timedelta(seconds=91)) == 1
    assert sending.send_due(now=T0 + timedelta(seconds=92)) == 0  # nothing twice
    receiver.wait_for(1)
    body = receiver.json()
    assert body["state"] == "firing" and body["rule"] == "busy cpu" and body["value"] == 95.0
    assert body["message"] == (
        f"[FIRING] busy cpu on gpu-box: CPU 95 % > 90 % for 1 min — "
        f"http://127.0.0.1:8000/hosts/{host.pk}/?at={int((T0.timestamp() + 60) * 1000)}"
    )
    assert Event.objects.filter(kind="alert_firing").count() == 1


def test_it_resolves_past_the_recovery_value_with_its_duration(host, cpu_rule, receiver):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    sample(host, 0, 95.0)
    sample(host, 5, 85.0)  # under 90, above the recovery value 80: still firing
    sample(host, 10, 70.0)
    resolved = Transition.objects.get(kind="resolved")
    assert resolved.duration == timedelta(seconds=10)
    sending.send_due(now=T0 + timedelta(seconds=11))
    receiver.wait_for(2)
    assert [receiver.json(i)["state"] for i in (0, 1)] == ["firing", "resolved"]
    assert AlertState.objects.get().state == "ok"


def test_a_silence_mutes_notifications_but_keeps_history(host, cpu_rule, receiver):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    Silence.objects.create(host=host, starts=T0 - timedelta(hours=1), ends=T0 + timedelta(hours=1))
    sample(host, 0, 99.0)
    firing = Transition.objects.get(kind="firing")
    assert firing.silenced and not Delivery.objects.exists()
    assert AlertState.objects.get().state == "firing"  # evaluation goes on
    assert sending.send_due(now=T0 + timedelta(seconds=1)) == 0
    assert receiver.requests == []


def test_a_maintenance_window_recurs_weekly(host, cpu_rule):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    window = MaintenanceWindow.objects.create(
        name="Monday backups",
        weekdays=str(T0.weekday()),
        start_time=(T0 - timedelta(minutes=5)).time(),
        duration_minutes=30,
    )
    window.hosts.add(host)
    sample(host, 0, 99.0)  # inside the window
    assert Transition.objects.get(kind="firing").silenced
    week_later = T0 + timedelta(days=7, seconds=10)
    ingest.store(host, batch(week_later - timedelta(seconds=5), [], cpu_percent=10.0))
    ingest.store(host, batch(week_later + timedelta(hours=1), [], cpu_percent=99.0))
    assert not Transition.objects.filter(kind="firing").order_by("-ts").first().silenced


def test_a_failing_receiver_is_retried_with_backoff(host, cpu_rule, receiver):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    receiver.statuses = [500, 503]
    sample(host, 0, 99.0)
    now = T0 + timedelta(seconds=1)
    assert sending.send_due(now=now) == 0
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert "answered HTTP 500" in delivery.error
    assert sending.send_due(now=now + timedelta(seconds=10)) == 0  # not due yet (30 s)
    assert sending.send_due(now=now + timedelta(seconds=31)) == 0  # 503
    assert sending.send_due(now=now + timedelta(seconds=31 + 61)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 3, "")
    assert len(receiver.requests) == 3


def test_a_4xx_is_not_retried(host, cpu_rule, receiver):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    receiver.statuses = [400]
    sample(host, 0, 99.0)
    sending.send_due(now=T0 + timedelta(seconds=1))
    delivery = Delivery.objects.get()
    assert delivery.status == "failed" and "HTTP 400" in delivery.error
    assert sending.send_due(now=T0 + timedelta(hours=1)) == 0
    assert len(receiver.requests) == 1


def test_a_timeout_is_retried(host, cpu_rule, receiver, monkeypatch):
    from alerts import transports

    monkeypatch.setattr(transports, "TIMEOUT", 0.3)  # our own setting, not a fake
    receiver.delay = 1.0
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    sample(host, 0, 99.0)
    sending.send_due(now=T0 + timedelta(seconds=1))
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and "did not answer" in delivery.error


@pytest.mark.django_db(transaction=True)
def test_two_senders_send_each_notification_once(host, cpu_rule, receiver):
    import threading

    cpu_rule.for_seconds = 0
    cpu_rule.save()
    sample(host, 0, 99.0)
    receiver.delay = 0.3
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(sending.send_due())) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 1]
    assert len(receiver.requests) == 1


def test_errors_never_show_the_secret_part_of_a_url(host, cpu_rule, receiver, webhook):
    webhook.config = {"url": receiver.url + "/services/T000/B000/SECRETxyz?token=abc"}
    webhook.save()
    receiver.statuses = [403]
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    sample(host, 0, 99.0)
    sending.send_due(now=T0 + timedelta(seconds=1))
    error = Delivery.objects.get().error
    assert error == f"{receiver.url} answered HTTP 403"
    assert "SECRET" not in error and "token" not in error


def test_process_rules_follow_each_process_and_resolve_when_it_is_gone(host, webhook):
    from alerts.models import Rule
    from tests.conftest import proc

    rule = Rule.objects.create(
        name="hog",
        metric="process_cpu_percent",
        operator=">",
        threshold=80,
        for_seconds=0,
        process_pattern="^burn",
    )
    ingest.store(
        host,
        batch(T0, [proc(5, name="burn", cpu_percent=99.0), proc(6, name="idle", cpu_percent=99.0)]),
    )
    (firing,) = Transition.objects.filter(rule=rule, kind="firing")
    assert "burn (pid 5)" in firing.subject
    ingest.store(host, batch(T0 + timedelta(seconds=5), [proc(6, name="idle")]))
    assert Transition.objects.filter(rule=rule, kind="resolved").count() == 1


def test_unknown_values_do_not_resolve(host, cpu_rule):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    sample(host, 0, 99.0)
    ingest.store(host, batch(T0 + timedelta(seconds=5), [], cpu_percent=None))
    assert AlertState.objects.get().state == "firing"


def test_evaluation_is_quick_when_there_are_no_rules(host, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):  # the hook adds one query: the enabled rules
        sample(host, 0, 50.0)


def test_a_rule_changed_by_another_process_applies_within_a_second(host, cpu_rule):
    """Threshold rules are read once a second per process (monitoring.recent), not per
    batch: a change made elsewhere (a queryset update sends no signal) waits that long."""
    from alerts.evaluation import threshold_rules

    Rule.objects.filter(pk=cpu_rule.pk).update(for_seconds=0)  # read by nobody yet
    sample(host, 0, 95.0)
    assert Transition.objects.filter(kind="firing").count() == 1
    Rule.objects.filter(pk=cpu_rule.pk).update(threshold=99, recovery_threshold=98)
    sample(host, 5, 96.0)
    assert AlertState.objects.get().state == "firing"  # the rules read at 0 s still hold
    threshold_rules.read_at -= threshold_rules.MAX_AGE + 0.01
    sample(host, 10, 96.0)
    assert AlertState.objects.get().state == "ok"  # 96 % is under the new recovery value
    assert Transition.objects.filter(kind="resolved").count() == 1


def test_a_rule_deleted_here_is_not_evaluated_again(host, cpu_rule):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    sample(host, 0, 95.0)
    cpu_rule.delete()
    sample(host, 5, 99.0)  # would fail on the deleted rule's state if it were evaluated
    assert not AlertState.objects.exists() and not Transition.objects.exists()
