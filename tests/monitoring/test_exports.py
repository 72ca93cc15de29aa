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
