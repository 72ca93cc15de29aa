"""Exports are safe to open in a spreadsheet: text that starts like a formula is
quoted (OWASP's CSV injection rule), numbers are left alone."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import ingest
from tests.conftest import batch, proc, read_stream

pytestmark = pytest.mark.django_db

FORMULA = "=2+5+cmd|'calc'!A0"


@pytest.fixture
def hostile(host):
    rows = [
        proc(10, name=FORMULA, username="@admin", cpu_percent=-1.5, rss=-4096),
        proc(11, name="-rm", username="\tsvc", cpu_percent=2.0),
        proc(12, name="+1", username="\rroot", cpu_percent=3.0),
        proc(13, name="plain", username="ana", cpu_percent=4.0),
    ]
    ingest.store(host, batch(timezone.now() - timedelta(seconds=5), rows))
    return host


def export(api, fmt: str) -> str:
    response = api.get("/api/v1/export/process-samples", {"format": fmt})
    assert response.status_code == 200
    return read_stream(response)


def test_a_csv_cell_that_starts_like_a_formula_is_quoted(api, hostile):
    rows = {r["pid"]: r for r in csv.DictReader(io.StringIO(export(api, "csv")))}
    assert rows["10"]["name"] == "'" + FORMULA and rows["10"]["username"] == "'@admin"
    assert rows["11"]["name"] == "'-rm" and rows["11"]["username"] == "'\tsvc"
    assert rows["12"]["name"] == "'+1" and rows["12"]["username"] == "'\rroot"
    assert rows["13"]["name"] == "plain" and rows["13"]["username"] == "ana"


def test_negative_numbers_stay_numbers_in_csv(api, hostile):
    rows = {r["pid"]: r for r in csv.DictReader(io.StringIO(export(api, "csv")))}
    assert rows["10"]["cpu_percent"] == "-1.5" and rows["10"]["rss_bytes"] == "-4096"


def test_json_exports_keep_names_as_they_are(api, hostile):
    rows = {r["pid"]: r for r in json.loads(export(api, "json"))}
    assert rows[10]["name"] == FORMULA and rows[12]["username"] == "\rroot"


@pytest.mark.parametrize(("tier", "bucket_s"), [("minute", 60), ("hour", 3600)])
def test_each_tier_of_process_samples_exports_the_documented_columns(api, host, tier, bucket_s):
    from monitoring import rollups

    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    for i in range(3):  # cpu 10, 20, 30; rss peaks at the second sample
        rss = [2**20, 3 * 2**20, 2 * 2**20][i]
        row = proc(10, name="web", cpu_percent=10.0 * (i + 1), rss=rss)
        ingest.store(host, batch(start + timedelta(seconds=5 * i), [row]), hooks=False)
    rollups.roll_up(timezone.now())

    def table(**params) -> list[dict]:
        response = api.get("/api/v1/export/process-samples",
                           {"from": start.isoformat(), "host": host.pk, **params})  # fmt: skip
        assert response.status_code == 200, response.content
        return list(csv.DictReader(io.StringIO(read_stream(response))))

    raw, rolled = table(), table(tier=tier)
    assert list(rolled[0]) == list(raw[0])  # the same columns, in the same order
    [row] = rolled
    assert row["ts"] == start.isoformat() and row["name"] == "web"
    assert float(row["cpu_percent"]) == 20.0  # the average
    assert int(row["rss_bytes"]) == 3 * 2**20  # the peak
    assert row["vms_bytes"] == row["status"] == ""


def test_a_tier_is_refused_where_there_is_none(api, host):
    response = api.get("/api/v1/export/host-samples", {"tier": "minute"})
    assert (
        response.status_code == 400
        and "tier must be raw for this export" in response.json()["tier"][0]
    )
