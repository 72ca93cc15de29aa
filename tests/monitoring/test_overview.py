"""The fleet overview (`/`) and its live partial (`/fleet`): search, group, sort, the
table, bad parameters, and a query count that does not grow with the fleet."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.models import AlertState, Rule
from monitoring import ingest
from monitoring.models import Host
from tests.conftest import batch

pytestmark = pytest.mark.django_db

DISK = {"device": "/dev/vda", "fstype": "ext4", "total": 2**40, "used": 2**39}


def add_host(name: str, labels=None, age: float | None = 1.0, hostname="", **sample) -> Host:
    """A host whose newest sample is `age` seconds old (None: it never reported)."""
    host = Host.objects.create(
        name=name, hostname=hostname or name, machine_id=f"m-{name}", labels=labels or {}
    )
    if age is not None:
        ingest.store(host, batch(timezone.now() - timedelta(seconds=age), **sample))
        host.refresh_from_db()
    return host


def shown(response) -> list[str]:
    """Names of the hosts an answer shows, in its order."""
    html = response.content.decode()
    ids = [int(i) for i in re.findall(r'data-host="(\d+)"', html)]
    names = dict(Host.objects.filter(pk__in=ids).values_list("pk", "name"))
    return [names[i] for i in ids]


@pytest.fixture
def fleet(db):
    """Four hosts: one offline, one that never reported, two busy to different degrees."""
    return {
        "web-1": add_host("web-1", {"env": "prod", "team": "web"}, cpu_percent=20.0,
                          mem_used=6 * 2**30, disks=[{**DISK, "mount": "/", "percent": 30.0}]),
        "gpu-7": add_host("gpu-7", {"env": "staging"}, hostname="gpu-7.lab.example.org",
                          cpu_percent=90.0, disks=[{**DISK, "mount": "/", "percent": 95.0}]),
        "db-2": add_host("db-2", {"env": "prod"}, age=600, cpu_percent=50.0,
                         disks=[{**DISK, "mount": "/", "percent": 60.0}]),
        "new-9": add_host("new-9", age=None),
    }  # fmt: skip


def test_it_requires_login(client, fleet):
    for path in ("/", "/fleet"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.url.startswith("/login/?next=")


def test_the_partial_rejects_post(alice_client):
    assert alice_client.post("/fleet").status_code == 405


def test_offline_hosts_come_first_then_by_name(alice_client, fleet):
    assert shown(alice_client.get("/")) == ["db-2", "new-9", "gpu-7", "web-1"]


def test_sorting_by_name(alice_client, fleet):
    assert shown(alice_client.get("/?sort=name")) == ["db-2", "gpu-7", "new-9", "web-1"]


def test_sorting_by_cpu_puts_the_busiest_first_and_hosts_without_samples_last(alice_client, fleet):
    assert shown(alice_client.get("/?sort=cpu")) == ["gpu-7", "db-2", "web-1", "new-9"]


def test_sorting_by_memory(alice_client, fleet):
    # web-1 uses 6 of 8 GiB; the others the 2 GiB of the default batch.
    assert shown(alice_client.get("/?sort=mem"))[0] == "web-1"


def test_sorting_by_the_fullest_disk(alice_client, fleet):
    assert shown(alice_client.get("/?sort=disk")) == ["gpu-7", "db-2", "web-1", "new-9"]


def test_a_search_finds_a_name(alice_client, fleet):
    assert shown(alice_client.get("/?q=WEB")) == ["web-1"]


def test_a_search_finds_a_hostname(alice_client, fleet):
    assert shown(alice_client.get("/?q=lab.example")) == ["gpu-7"]


def test_a_search_finds_a_label_value(alice_client, fleet):
    assert shown(alice_client.get("/?q=prod&sort=name")) == ["db-2", "web-1"]


def test_every_word_of_a_search_must_match(alice_client, fleet):
    assert shown(alice_client.get("/?q=prod+web")) == ["web-1"]


def test_a_search_that_finds_nothing_says_so(alice_client, fleet):
    response = alice_client.get("/?q=nothing-like-this")
    assert response.status_code == 200
    assert shown(response) == []
    assert "No host matches" in response.content.decode()


def test_grouping_makes_a_section_per_value_and_hosts_without_the_label_last(alice_client, fleet):
    html = alice_client.get("/?group=env&sort=name").content.decode()
    headings = re.findall(r"<h2>(\w+ = \w+|without env) <", html)
    assert headings == ["env = prod", "env = staging", "without env"]
    assert shown(alice_client.get("/?group=env&sort=name")) == ["db-2", "web-1", "gpu-7", "new-9"]


def test_grouping_by_a_key_no_host_has_puts_every_host_in_one_section(alice_client, fleet):
    html = alice_client.get("/?group=rack").content.decode()
    assert "without rack" in html and len(shown(alice_client.get("/?group=rack"))) == 4


def test_the_table_has_a_row_per_host_with_its_numbers(alice_client, fleet):
    b = batch(timezone.now(), cpu_percent=42.0, load1=3.25, disks=[{**DISK, "mount": "/",
              "percent": 71.0}])  # fmt: skip
    b.gpus = [
        {"index": i, "uuid": f"GPU-{i}", "name": "H100", "utilization": u,
         "memory_used": 2**30, "memory_total": 2**31}
        for i, u in ((0, 80.0), (1, 40.0))
    ]  # fmt: skip
    ingest.store(fleet["web-1"], b)
    response = alice_client.get("/?view=table&q=web-1")
    html = response.content.decode()
    row = re.search(r'<tr data-host="\d+">(.*?)</tr>', html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td.*?>(.*?)</td>", row, re.S)]
    assert cells[1:9] == ["web-1", "env=prod team=web", "42.0 %", "25.0 %", "71.0 %",
                          "60 % ×2", "3.25", ""]  # fmt: skip
    assert cells[9].endswith("UTC")
    assert 'class="dot up"' in row
    assert 'class="fleet-table"' in html and 'class="card host-card"' not in html


def test_the_cards_show_labels_and_numbers(alice_client, fleet):
    html = alice_client.get("/?q=gpu-7").content.decode()
    assert '<span class="tag">env=staging</span>' in html
    assert '<span data-field="cpu">90.0 %</span>' in html
    assert '<span data-field="disk">95.0 %</span>' in html


def test_the_alert_badge_counts_firing_alerts(alice_client, fleet):
    rule = Rule.objects.create(name="cpu", metric="cpu_percent", threshold=80)
    AlertState.objects.create(rule=rule, host=fleet["gpu-7"], subject="host", state="firing")
    AlertState.objects.create(rule=rule, host=fleet["gpu-7"], subject="gpu:0", state="firing")
    AlertState.objects.create(rule=rule, host=fleet["web-1"], subject="host", state="pending")
    for view in ("cards", "table"):
        html = alice_client.get(f"/fleet?view={view}").content.decode()
        assert html.count('<span class="badge firing">2 firing</span>') == 1, view
        assert html.count("badge firing") == 1, view


@pytest.mark.parametrize(
    "query, field",
    [
        ("sort=fastest", "sort"),
        ("view=grid", "view"),
        ("q=" + "x" * 201, "q"),
        ("q=a%00b", "q"),
        ("group=" + "k" * 101, "group"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(alice_client, fleet, query, field):
    for path in ("/", "/fleet"):
        response = alice_client.get(f"{path}?{query}")
        assert response.status_code == 400
        html = response.content.decode()
        assert re.search(rf'<p class="error">{field} must', html), html
        assert shown(response) == []


def test_the_page_keeps_its_query_in_the_controls(alice_client, fleet):
    html = alice_client.get("/?q=prod&group=env&sort=cpu&view=table").content.decode()
    assert 'name="q" value="prod"' in html
    assert '<option value="env" selected>' in html
    assert '<option value="cpu" selected>' in html
    assert '<option value="table" selected>' in html


def test_the_partial_is_the_hosts_alone_drawn_as_on_the_page(alice_client, fleet):
    def get(path: str) -> str:
        # Without the seconds to the next offline turn: they shrink between the requests.
        return re.sub(r' data-refresh-in="[\d.]+"', "", alice_client.get(path).content.decode())

    page, partial = get("/?view=table&sort=cpu"), get("/fleet?view=table&sort=cpu")
    assert "<html" not in partial and 'id="fleet-controls"' not in partial
    assert partial.strip() in page


def test_the_table_headers_sort_and_keep_the_query(alice_client, fleet):
    html = alice_client.get("/fleet?view=table&q=prod").content.decode()
    assert 'data-sort="cpu" href="/?q=prod&amp;sort=cpu&amp;view=table"' in html


def test_the_partial_says_when_the_first_shown_host_would_turn_offline(alice_client, db):
    add_host("a", age=4.0)  # every 5 s: offline after 15 s, so in about 11 s
    html = alice_client.get("/fleet").content.decode()
    seconds = float(re.search(r'data-refresh-in="([\d.]+)"', html).group(1))
    assert 9.0 <= seconds <= 11.0


def test_no_refresh_is_due_when_every_host_is_offline(alice_client, fleet):
    html = alice_client.get("/fleet?q=db-2").content.decode()
    assert "data-refresh-in" not in html


def test_disabled_hosts_are_left_out(alice_client, fleet):
    Host.objects.filter(name="web-1").update(enabled=False)
    assert "web-1" not in shown(alice_client.get("/"))


def queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(path).status_code == 200
    return len(ctx)


@pytest.mark.parametrize(
    "path",
    ["/", "/?view=table", "/fleet", "/fleet?view=table&group=env&sort=disk&q=h"],
)
def test_the_query_count_is_the_same_for_5_and_50_hosts(alice_client, db, path):
    rule = Rule.objects.create(name="cpu", metric="cpu_percent", threshold=80)

    def grow(upto: int) -> None:
        for i in range(Host.objects.count(), upto):
            b = batch(timezone.now(), disks=[{**DISK, "mount": "/", "percent": 10.0 + i}])
            b.gpus = [{"index": 0, "uuid": f"GPU-{i}", "name": "H100", "utilization": 5.0}]
            host = Host.objects.create(name=f"h{i}", machine_id=f"m{i}", labels={"env": str(i % 3)})
            ingest.store(host, b)
            AlertState.objects.update_or_create(
                rule=rule, host=host, subject="host", defaults={"state": "firing"}
            )

    grow(5)
    five = queries(alice_client, path)
    grow(50)
    assert queries(alice_client, path) == five
    assert len(shown(alice_client.get(path))) == 50
