"""/api/v1/: tokens, hosts, processes, events, exports and the schema."""

import csv
import io
import json
from datetime import timedelta

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken, Event, Host, Process
from tests.conftest import batch, proc, read_stream

pytestmark = pytest.mark.django_db


@pytest.fixture
def now():
    return timezone.now().replace(microsecond=0)


@pytest.fixture
def sampled(host, now):
    for i, seconds in enumerate((10, 5)):
        b = batch(
            now - timedelta(seconds=seconds),
            [
                proc(10, name="trainer", cpu_percent=90.0 + i, rss=2**30, username="ana"),
                proc(11, name="redis-server", cpu_percent=2.0, rss=2**20, username="redis"),
            ],
            cpu_percent=50.0 + i,
            net_rx_bps=1024.0,
        )
        b.gpus = [
            {
                "index": 0,
                "name": "H100",
                "utilization": 80.0 + i,
                "memory_used": 2**30,
                "memory_total": 80 * 2**30,
                "temperature": 60.0,
                "power_w": 300.0,
            }
        ]
        ingest.store(host, b)
    return host


# --- tokens ------------------------------------------------------------------------


def test_a_token_is_stored_hashed(alice):
    token, secret = ApiToken.issue(alice, "ci")
    assert secret.startswith("pt_") and len(secret) > 40
    assert secret not in (token.token_hash, token.prefix) and token.prefix == secret[:11]
    assert ApiToken.find(secret) == token


def test_a_token_works_without_a_session(api, sampled):
    response = api.get("/api/v1/hosts/")
    assert response.status_code == 200
    assert response.json()[0]["name"] == "gpu-box"
    assert ApiToken.objects.get().last_used is not None


def test_no_token_is_401_with_a_bearer_challenge(db):
    response = Client().get("/api/v1/hosts/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_wrong_token_is_401(db):
    response = Client(headers={"Authorization": "Bearer pt_not-a-real-one"}).get("/api/v1/hosts/")
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked token."


def test_a_malformed_header_is_401(db):
    response = Client(headers={"Authorization": "Bearer two parts"}).get("/api/v1/hosts/")
    assert response.status_code == 401


def test_a_revoked_token_is_401(api, token):
    ApiToken.objects.update(revoked_at=timezone.now())
    assert api.get("/api/v1/hosts/").status_code == 401


def test_a_read_only_token_cannot_write(api, host):
    assert api.post("/api/v1/hosts/", {}).status_code == 403


def test_a_write_token_passes_the_read_only_check(alice, host):
    secret = ApiToken.issue(alice, "agent", read_only=False)[1]
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    assert client.post("/api/v1/hosts/", {}).status_code == 405  # allowed in, no such method


def test_the_admin_shows_a_new_token_once(alice_client, alice):
    response = alice_client.post(
        "/admin/monitoring/apitoken/add/",
        {"name": "grafana", "user": alice.pk, "read_only": "on"},
    )
    secret = response.content.decode().split('<code id="new-token">')[1].split("<")[0]
    assert ApiToken.find(secret).name == "grafana"
    listing = alice_client.get("/admin/monitoring/apitoken/").content.decode()
    assert secret not in listing and secret[:11] in listing


def test_the_admin_revokes_tokens(alice_client, token):
    pk = ApiToken.objects.get().pk
    alice_client.post("/admin/monitoring/apitoken/", {"action": "revoke", "_selected_action": [pk]})
    assert ApiToken.find(token) is None


# --- hosts, processes, events -------------------------------------------------------------


def test_hosts_list_latest_values_and_online_state(api, sampled):
    (host,) = api.get("/api/v1/hosts/").json()
    assert host["online"] is True
    assert host["latest"]["cpu_percent"] == 51.0
    assert host["latest"]["mem_percent"] == 25.0


def test_host_detail_has_the_inventory(api, host):
    Host.objects.filter(pk=host.pk).update(inventory={"cpu_model": "EPYC", "cpu_count": 96})
    body = api.get(f"/api/v1/hosts/{host.pk}/").json()
    assert body["inventory"] == {"cpu_model": "EPYC", "cpu_count": 96}
    assert api.get("/api/v1/hosts/999/").status_code == 404


def test_processes_at_a_moment_sorted_and_filtered(api, sampled, now):
    url = f"/api/v1/hosts/{sampled.pk}/processes"
    body = api.get(url).json()
    assert [r["name"] for r in body["results"]] == ["trainer", "redis-server"]
    assert body["results"][0]["cpu_percent"] == 91.0
    earlier = api.get(url, {"at": (now - timedelta(seconds=8)).isoformat()}).json()
    assert earlier["results"][0]["cpu_percent"] == 90.0
    assert [r["pid"] for r in api.get(url, {"sort": "pid", "user": "redis"}).json()["results"]] == [
        11
    ]
    assert api.get(url, {"q": "train"}).json()["count"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "("}, "q"),
        ({"pid": "x"}, "pid"),
        ({"sort": "colour"}, "sort"),
        ({"at": "noon"}, "at"),
    ],
)
def test_bad_process_filters_are_400(api, sampled, params, field):
    response = api.get(f"/api/v1/hosts/{sampled.pk}/processes", params)
    assert response.status_code == 400 and field in response.json()


def test_one_process_with_its_events(api, sampled):
    process = Process.objects.get(pid=10)
    Event.record(sampled, "process_exited", "trainer exited (pid 10)", process=process)
    body = api.get(f"/api/v1/processes/{process.pk}/").json()
    assert body["name"] == "trainer" and body["host"] == "gpu-box"
    assert [e["kind"] for e in body["events"]] == ["process_exited"]
    assert api.get("/api/v1/processes/999999/").status_code == 404


def test_events_page_with_a_cursor_and_filters(api, host, now):
    for i in range(60):
        Event.objects.create(
            host=host, kind="process_exited", message=f"job {i}", ts=now - timedelta(minutes=i)
        )
    Event.objects.create(host=host, kind="host_down", message="down", ts=now - timedelta(days=3))
    first = api.get("/api/v1/events/").json()
    assert len(first["results"]) == 50 and first["results"][0]["message"] == "job 0"
    second = api.get(first["next"]).json()
    assert [e["message"] for e in second["results"]][-1] == "down"
    assert (
        api.get("/api/v1/events/", {"kind": "host_down"}).json()["results"][0]["message"] == "down"
    )
    recent = api.get(
        "/api/v1/events/", {"from": (now - timedelta(minutes=5, seconds=1)).isoformat()}
    )
    assert len(recent.json()["results"]) == 6
    assert api.get("/api/v1/events/", {"kind": "volcano"}).status_code == 400
    assert api.get("/api/v1/events/", {"host": "x"}).status_code == 400


# --- exports --------------------------------------------------------------------------------


def test_host_samples_as_csv_equal_the_rows(api, sampled, now):
    response = api.get(
        "/api/v1/export/host-samples",
        {"host": sampled.pk, "from": (now - timedelta(minutes=1)).isoformat()},
    )
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"].startswith(
        'attachment; filename="ptracker-host-samples-gpu-box-'
    )
    rows = list(csv.DictReader(io.StringIO(read_stream(response))))
    assert [r["cpu_percent"] for r in rows] == ["50.0", "51.0"]
    assert rows[0]["ts"] == (now - timedelta(seconds=10)).isoformat()
    assert rows[0]["net_rx_bytes_per_s"] == "1024.0" and rows[0]["host"] == "gpu-box"


def test_export_of_chosen_columns_as_json_lines(api, sampled):
    response = api.get(
        "/api/v1/export/process-samples",
        {"format": "jsonl", "metric": ["cpu_percent", "rss_bytes"]},
    )
    lines = [json.loads(line) for line in read_stream(response).splitlines()]
    assert len(lines) == 4
    assert set(lines[0]) == {"ts", "host", "cpu_percent", "rss_bytes"}


def test_export_of_gpu_samples_and_events_as_json(api, sampled):
    gpus = json.loads(read_stream(api.get("/api/v1/export/gpu-samples", {"format": "json"})))
    assert [g["utilization_percent"] for g in gpus] == [80.0, 81.0]
    Event.record(sampled, "host_down", "gone")
    events = json.loads(read_stream(api.get("/api/v1/export/events", {"format": "json"})))
    assert events[0]["kind"] == "host_down"


def test_an_empty_export_is_valid(api, host):
    assert json.loads(read_stream(api.get("/api/v1/export/events", {"format": "json"}))) == []
    assert read_stream(api.get("/api/v1/export/events")).startswith("ts,host,kind")


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("host-samples", {"format": "xml"}, 400, "format"),
        ("host-samples", {"metric": "cpu_temp"}, 400, "metric"),
        ("host-samples", {"from": "2026-11-02T10:00", "to": "2026-11-02T09:00"}, 400, "to"),
        ("host-samples", {"host": "abc"}, 400, "host"),
        ("host-samples", {"process": "1"}, 400, "process"),
        ("host-samples", {"host": "999"}, 404, None),
        ("sensor-samples", {}, 404, None),
    ],
)
def test_bad_exports_say_what_is_wrong(api, host, path, params, status, field):
    response = api.get(f"/api/v1/export/{path}", params)
    assert response.status_code == status
    if field:
        assert field in response.json()


def test_exports_need_auth(db):
    assert Client().get("/api/v1/export/host-samples").status_code == 401


# --- schema -----------------------------------------------------------------------


def test_the_schema_is_valid_openapi_3_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/export/{kind}" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_docs_page_loads_swagger_from_our_static_files(alice_client):
    html = alice_client.get("/api/docs/").content.decode()
    assert "/static/vendor/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
