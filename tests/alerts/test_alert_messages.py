"""What an alert says: host, process by its redacted short command line, the value
with its unit against the threshold, and an absolute link to that moment."""

from datetime import timedelta

import pytest

from alerts.messages import short_cmdline
from alerts.models import Rule, Transition
from monitoring import ingest
from monitoring.models import Event, Process
from monitoring.templatetags.units import human_duration, quantity
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2.000120, "2 s"), (100, "1 min 40 s"), (120, "2 min"), (7500, "2 h 5 min"),
     (7200, "2 h"), (90000, "1 d 1 h"), (timedelta(seconds=100), "1 min 40 s")],
)  # fmt: skip
def test_durations_read_as_people_say_them(seconds, text):
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(77.5, "%", "77.5 %"), (50.0, "%", "50 %"), (3 * 2**30, "bytes", "3.0 GiB"),
     (2**20, "bytes/s", "1.0 MiB/s"), (0.05, "", "0.05"), (1.5, "h", "1 h 30 min")],
)  # fmt: skip
def test_values_carry_their_unit(value, unit, text):
    assert quantity(value, unit) == text


def test_a_command_line_is_shortened_and_redacted():
    assert short_cmdline("/usr/bin/python3 train.py --epochs 3") == "python3 train.py --epochs 3"
    assert short_cmdline("psql --password=hunter2") == "psql --password=***"
    assert len(short_cmdline("x " + "a" * 500)) == 80
    assert short_cmdline("", "kworker") == "kworker"


def fire_on_a_process(host, **rule_fields) -> Transition:
    rule = Rule.objects.create(name="hot", metric="process_cpu_percent", operator=">",
                               threshold=50, for_seconds=0, **rule_fields)  # fmt: skip
    row = proc(5555, name="python3", username="alice", cpu_percent=77.5,
               cmdline="/usr/bin/python3 train.py --epochs 3 --token=s3cret")  # fmt: skip
    ingest.store(host, batch(T0, [row]))
    return Transition.objects.get(rule=rule, kind="firing")


def test_a_process_alert_names_host_process_value_threshold_and_link(host, settings):
    settings.PTRACKER_LINK_URL = "https://mon.example.com"
    firing = fire_on_a_process(host)
    process = Process.objects.get(pid=5555)
    link = f"https://mon.example.com/processes/{process.pk}/?at={int(T0.timestamp() * 1000)}"
    assert firing.message == (
        "[FIRING] hot on gpu-box: python3 train.py --epochs 3 --token=*** (pid 5555, alice): "
        f"CPU 77.5 % > 50 % — {link}"
    )
    assert "s3cret" not in str(firing.details) and f"process:{process.pk}" not in firing.message
    cmdline = "python3 train.py --epochs 3 --token=***"
    assert firing.details["process"] == {
        "id": process.pk, "pid": 5555, "user": "alice", "cmdline": cmdline
    }  # fmt: skip
    event = Event.objects.get(kind="alert_firing")
    assert event.message == firing.message and event.data["url"] == link


def test_memory_thresholds_are_in_binary_units(host):
    rule = Rule.objects.create(name="fat", metric="process_rss", operator=">",
                               threshold=2**30, for_seconds=30)  # fmt: skip
    for seconds in (0, 30):
        ingest.store(host, batch(T0 + timedelta(seconds=seconds), [proc(7, rss=3 * 2**30)]))
    firing = Transition.objects.get(rule=rule, kind="firing")
    assert "RSS 3.0 GiB > 1.0 GiB for 30 s" in firing.message


def test_a_resolved_message_says_how_long_it_lasted(host):
    rule = Rule.objects.create(name="busy", metric="cpu_percent", threshold=90, for_seconds=0)
    ingest.store(host, batch(T0, [], cpu_percent=95.0))
    ingest.store(host, batch(T0 + timedelta(seconds=100), [], cpu_percent=20.0))
    resolved = Transition.objects.get(rule=rule, kind="resolved")
    assert "CPU 20 % (fired at > 90 %), lasted 1 min 40 s — http://" in resolved.message


def test_the_webhook_gets_the_message_and_the_same_facts_as_fields(host, receiver, webhook):
    from alerts import sending

    firing = fire_on_a_process(host)
    firing.rule.channels.add(webhook)
    firing.deliveries.create(channel=webhook, next_try=T0)
    sending.send_due(now=T0 + timedelta(seconds=1))
    receiver.wait_for(1)
    body = receiver.json()
    assert body["message"] == firing.message
    assert body["process"] == {"pid": 5555, "user": "alice",
                               "cmdline": "python3 train.py --epochs 3 --token=***"}  # fmt: skip
    assert (body["host"], body["value"], body["unit"], body["threshold"]) == (
        "gpu-box",
        77.5,
        "%",
        50.0,
    )
    assert (body["operator"], body["for_seconds"]) == (">", 0)
    assert body["url"] == firing.details["url"] and "s3cret" not in str(receiver.requests)
