"""Special rules (offline, missing process, memory growth, disk fill), validation, pages."""

from datetime import timedelta

import pytest
from django.test import Client

from alerts.evaluation import evaluate_scheduled, slope_per_hour
from alerts.models import AlertState, Rule, Transition
from monitoring import ingest
from monitoring.models import WatchedProcess
from tests.conftest import T0, batch, proc

pytestmark = pytest.mark.django_db


def rule(**kw) -> Rule:
    fields = {"name": "r", "for_seconds": 0, "operator": ">"}
    fields.update(kw)
    return Rule.objects.create(**fields)


def fired(r: Rule) -> list[str]:
    return list(Transition.objects.filter(rule=r, kind="firing").values_list("subject", flat=True))


def test_host_offline_after_n_silent_intervals(host):
    r = rule(metric="host_offline", threshold=3, operator=">=")
    ingest.store(host, batch(T0, []))  # interval 5 s
    evaluate_scheduled(now=T0 + timedelta(seconds=14))
    assert fired(r) == []
    evaluate_scheduled(now=T0 + timedelta(seconds=15))
    assert fired(r) == ["host"]
    ingest.store(host, batch(T0 + timedelta(seconds=60), []))
    evaluate_scheduled(now=T0 + timedelta(seconds=61))
    assert Transition.objects.filter(rule=r, kind="resolved").exists()


def test_a_missing_watched_process_fires_and_its_return_resolves(host):
    watch = WatchedProcess.objects.create(name="nginx", pattern="^nginx$")
    r = rule(metric="process_missing", watched=watch)
    ct = (T0 - timedelta(hours=1)).timestamp()
    ingest.store(host, batch(T0, [proc(80, create_time=ct, name="nginx", watched_id=watch.id)]))
    evaluate_scheduled(now=T0 + timedelta(seconds=1))
    assert fired(r) == []
    ingest.store(host, batch(T0 + timedelta(seconds=5), []))  # nginx died
    evaluate_scheduled(now=T0 + timedelta(seconds=6))
    assert fired(r) == ["watch:nginx"]
    assert Transition.objects.get(rule=r, kind="firing").message.startswith(
        "[FIRING] r on gpu-box: watch nginx: not running — http://"
    )
    new = (T0 + timedelta(seconds=8)).timestamp()
    ingest.store(
        host,
        batch(
            T0 + timedelta(seconds=10),
            [proc(81, create_time=new, name="nginx", watched_id=watch.id)],
        ),
    )
    evaluate_scheduled(now=T0 + timedelta(seconds=11))
    assert Transition.objects.filter(rule=r, kind="resolved").count() == 1


def test_memory_growth_of_a_process_fires_on_a_leak(host):
    r = rule(metric="memory_growth", threshold=100, process_pattern="^leaky", window_minutes=60)
    for minute in range(0, 61, 5):
        ingest.store(
            host,
            batch(
                T0 + timedelta(minutes=minute),
                [
                    proc(9, name="leaky", rss=(500 + 3 * minute) * 2**20),  # 180 MB per hour
                    proc(10, name="steady", rss=500 * 2**20),
                ],
            ),
        )
    evaluate_scheduled(now=T0 + timedelta(minutes=61))
    (subject,) = fired(r)
    assert "leaky (pid 9)" in subject
    value = Transition.objects.get(rule=r, kind="firing").value
    assert value == pytest.approx(180, rel=1e-6)


def test_host_memory_growth_ignores_a_flat_host(host):
    r = rule(metric="memory_growth", threshold=100)
    for minute in range(0, 61, 5):
        ingest.store(host, batch(T0 + timedelta(minutes=minute), []))
    evaluate_scheduled(now=T0 + timedelta(minutes=61))
    assert fired(r) == [] and AlertState.objects.get(rule=r).value == 0


def test_disk_fill_fires_when_the_trend_reaches_full_in_time(host):
    r = rule(metric="disk_will_fill", operator="<", threshold=24, window_minutes=60)
    gib = 2**30
    for minute in range(0, 61, 10):
        disks = [
            # /data gains 10 GiB an hour with 100 GiB free at the end: full in 10 h.
            {
                "mount": "/data",
                "device": "/dev/sdb",
                "fstype": "ext4",
                "total": 1000 * gib,
                "used": (890 + minute / 6) * gib,
                "percent": 0,
            },
            {
                "mount": "/",
                "device": "/dev/sda",
                "fstype": "ext4",
                "total": 100 * gib,
                "used": 50 * gib,
                "percent": 50,
            },
        ]
        ingest.store(host, batch(T0 + timedelta(minutes=minute), [], disks=disks))
    evaluate_scheduled(now=T0 + timedelta(minutes=61))
    assert fired(r) == ["mount:/data"]
    assert Transition.objects.get(rule=r).value == pytest.approx(10, rel=1e-6)


def test_slope_needs_enough_points():
    assert slope_per_hour([(T0, 1.0), (T0 + timedelta(hours=1), 2.0)]) is None
    points = [(T0 + timedelta(hours=h), 5.0 + 2 * h) for h in range(4)]
    assert slope_per_hour(points) == pytest.approx(2.0)


def test_rules_follow_host_scope_and_labels(host, cpu_rule):
    other = type(host).objects.create(name="db-1", machine_id="m-db", labels={"env": "prod"})
    cpu_rule.for_seconds = 0
    cpu_rule.host_labels = {"env": "prod"}
    cpu_rule.save()
    ingest.store(host, batch(T0, [], cpu_percent=99.0))
    ingest.store(other, batch(T0, [], cpu_percent=99.0))
    assert list(Transition.objects.filter(kind="firing").values_list("host__name", flat=True)) == [
        "db-1"
    ]


def test_gpu_and_disk_rules_have_one_subject_each(host):
    r = rule(metric="gpu_temperature", threshold=80)
    d = rule(name="disk", metric="disk_percent", threshold=90)
    b = batch(
        T0,
        [],
        disks=[
            {"mount": "/", "device": "a", "fstype": "x", "total": 1, "used": 1, "percent": 95.0},
            {
                "mount": "/boot",
                "device": "b",
                "fstype": "x",
                "total": 1,
                "used": 0,
                "percent": 10.0,
            },
        ],
    )
    b.gpus = [{"index": 0, "temperature": 85.0}, {"index": 1, "temperature": 60.0}]
    ingest.store(host, b)
    assert fired(r) == ["gpu:0"] and fired(d) == ["mount:/"]


@pytest.mark.parametrize(
    ("data", "field", "text"),
    [
        ({"metric": "cpu_percent"}, "threshold", "This metric needs a threshold."),
        ({"metric": "cpu_percent", "threshold": "150"}, "threshold", "must be 0 to 100"),
        (
            {"metric": "process_rss", "threshold": "1", "process_pattern": "a("},
            "process_pattern",
            "Not a valid regular expression",
        ),
        (
            {"metric": "process_rss", "threshold": "1", "process_pattern": r"(\w+) \1"},
            "process_pattern",
            r"Not a valid regular expression (RE2 syntax: no backreferences or lookarounds): "
            r"invalid escape sequence: \1",
        ),
        (
            {"metric": "process_rss", "threshold": "1", "process_pattern": "java(?!.*jenkins)"},
            "process_pattern",
            "invalid perl operator: (?!",
        ),
        ({"metric": "process_missing"}, "watched", "Choose the watched process"),
        (
            {"metric": "cpu_percent", "threshold": "90", "recovery_threshold": "95"},
            "recovery_threshold",
            "safe side",
        ),
        (
            {"metric": "cpu_percent", "threshold": "90", "message": "{% if %}"},
            "message",
            "Template error",
        ),
    ],
)
def test_the_admin_rejects_bad_rules_with_a_clear_message(alice_client, data, field, text):
    form = {
        "name": "bad",
        "enabled": "on",
        "operator": ">",
        "for_seconds": "60",
        "recovery_seconds": "0",
        "window_minutes": "60",
        "severity": "warning",
        "repeat_minutes": "0",
        "host_labels": "{}",
        **data,
    }
    response = alice_client.post("/admin/alerts/rule/add/", form)
    assert response.status_code == 200
    assert text in response.content.decode()
    assert not Rule.objects.exists()


def test_the_admin_saves_a_good_rule(alice_client, webhook):
    form = {
        "name": "hot gpu",
        "enabled": "on",
        "metric": "gpu_temperature",
        "operator": ">",
        "threshold": "85",
        "for_seconds": "120",
        "recovery_threshold": "80",
        "recovery_seconds": "60",
        "window_minutes": "60",
        "severity": "critical",
        "repeat_minutes": "30",
        "host_labels": "{}",
        "channels": [webhook.pk],
    }
    assert alice_client.post("/admin/alerts/rule/add/", form).status_code == 302
    assert Rule.objects.get().channels.get() == webhook


def test_the_alerts_page_shows_firing_alerts_history_and_rules(alice_client, host, cpu_rule):
    cpu_rule.for_seconds = 0
    cpu_rule.save()
    ingest.store(host, batch(T0, [], cpu_percent=97.0))
    html = alice_client.get("/alerts/").content.decode()
    assert "busy cpu" in html and "firing" in html and "[FIRING] busy cpu" in html
    assert "hook: pending" in html  # the delivery, not yet sent
    overview = alice_client.get("/").content.decode()
    assert "1 firing" in overview
    page = alice_client.get(f"/hosts/{host.pk}/").content.decode()
    assert 'class="firing-list"' in page


def test_acknowledging_stops_reminders(alice_client, alice, host, cpu_rule):
    cpu_rule.for_seconds, cpu_rule.repeat_minutes = 0, 1
    cpu_rule.save()
    ingest.store(host, batch(T0, [], cpu_percent=97.0))
    state = AlertState.objects.get()
    assert alice_client.post(f"/alerts/{state.pk}/acknowledge").status_code == 302
    state.refresh_from_db()
    assert state.acknowledged_by == alice
    ingest.store(host, batch(T0 + timedelta(minutes=5), [], cpu_percent=97.0))
    assert not Transition.objects.filter(kind="reminder").exists()


def test_the_alerts_page_needs_login_and_acknowledge_needs_post(alice_client, host):
    assert Client().get("/alerts/").status_code == 302
    assert alice_client.get("/alerts/1/acknowledge").status_code == 405
    assert alice_client.post("/alerts/999/acknowledge").status_code == 404
