"""Request parameters: one time rule, ids that fit 64 bits, and a 400 naming the
parameter for every malformed one, on the API and on the pages."""

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken, Event, Process
from monitoring.params import BadParameter, parse_offset, parse_time
from monitoring.timeseries import MAX_SERIES
from tests.conftest import batch, proc

pytestmark = pytest.mark.django_db

HUGE = str(2**64)  # one bit past what a signed 64-bit column holds
LAST_MOMENT = "9999-12-31T23:59:59.999999"
FIRST_DAY = "0001-01-01"


def cursor(**fields) -> str:
    """A cursor as DRF writes one: base64 of a query string (o offset, r reverse, p position)."""
    return base64.b64encode("&".join(f"{k}={v}" for k, v in fields.items()).encode()).decode()


@pytest.fixture
def sampled(host):
    now = timezone.now()
    ingest.store(host, batch(now - timedelta(seconds=5), [proc(10, name="trainer")]))
    Event.record(host, "process_exited", "trainer exited", process=Process.objects.get())
    return host


# --- the rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-02T03:00:00+00:00", datetime(2026, 11, 2, 3, tzinfo=UTC)),
        ("2026-11-02T03:00:00Z", datetime(2026, 11, 2, 3, tzinfo=UTC)),
        ("2026-11-02T13:00:00+10:00", datetime(2026, 11, 2, 3, tzinfo=UTC)),
        ("2026-11-02T03:00", datetime(2026, 11, 2, 3, tzinfo=UTC)),  # no zone: UTC
        ("1793588400", datetime(2026, 11, 2, 3, tzinfo=UTC)),  # epoch seconds
        ("1793588400.25", datetime(2026, 11, 2, 3, 0, 0, 250000, tzinfo=UTC)),
        ("1793588400123", datetime(2026, 11, 2, 3, 0, 0, 123000, tzinfo=UTC)),  # ms
        ("99999999999", datetime(5138, 11, 16, 9, 46, 39, tzinfo=UTC)),  # still seconds
        ("100000000000", datetime(1973, 3, 3, 9, 46, 40, tzinfo=UTC)),  # now ms
    ],
)
def test_a_time_is_iso_8601_or_epoch_seconds_or_milliseconds(value, expected):
    assert parse_time(value, "at") == expected


def test_a_time_without_zone_is_local_to_the_page_that_sent_its_offset():
    # JavaScript's getTimezoneOffset in UTC+10 is -600: 13:00 there is 03:00 UTC.
    offset = parse_offset("-600")
    assert parse_time("2026-11-02T13:00", "from", offset) == datetime(2026, 11, 2, 3, tzinfo=UTC)
    assert parse_time("2026-11-02T13:00+00:00", "from", offset).hour == 13  # a zone wins


@pytest.mark.parametrize(
    "value",
    [
        FIRST_DAY,
        LAST_MOMENT,
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
        "1969-12-31T23:59:59Z",
        "-1",
        "1" + "0" * 400,
        "noon",
        "nan",
        "inf",
        "1e9",
    ],
)
def test_times_outside_the_range_or_unreadable_name_the_parameter(value):
    with pytest.raises(BadParameter) as raised:
        parse_time(value, "to")
    assert raised.value.field == "to" and str(raised.value).startswith("to: ")


@pytest.mark.parametrize("value", ["1441", "-1441", HUGE, "ten", "1.5"])
def test_an_offset_beyond_a_day_or_not_whole_is_bad(value):
    with pytest.raises(BadParameter) as raised:
        parse_offset(value)
    assert raised.value.field == "tz"


# --- the API: a 400 {parameter: [message]} -------------------------------------------

API_CASES = [
    # (path after /api/v1/, parameters, the parameter named)
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "to": FIRST_DAY}, "to"),
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "from": LAST_MOMENT}, "from"),
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "to": "0001-01-01T00:00+14:00"}, "to"),
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "from": "1" + "0" * 30}, "from"),
    ("hosts/{host}/timeseries", {"metric": f"process:{HUGE}:rss"}, "metric"),
    ("hosts/{host}/timeseries", {"metric": "gpu:99999:utilization"}, "metric"),
    (
        "hosts/{host}/timeseries",
        {"metric": [f"process:{i}:rss" for i in range(MAX_SERIES + 1)]},
        "metric",
    ),
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "step": HUGE}, "step"),
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "step": "0"}, "step"),
    ("hosts/{host}/timeseries", {"metric": "cpu_percent", "step": "²"}, "step"),
    ("hosts/{host}/processes", {"at": LAST_MOMENT}, "at"),
    ("hosts/{host}/processes", {"at": FIRST_DAY}, "at"),
    ("hosts/{host}/processes", {"pid": HUGE}, "pid"),
    ("hosts/{host}/processes", {"pid": "²"}, "pid"),
    ("hosts/{host}/processes", {"user": "ana\x00"}, "user"),
    ("hosts/{host}/processes", {"q": "\x00"}, "q"),
    ("hosts/{host}/processes", {"page": "first"}, "page"),
    ("hosts/{host}/processes", {"page_size": "0"}, "page_size"),
    ("events/", {"host": HUGE}, "host"),
    ("events/", {"host": "²"}, "host"),
    ("events/", {"kind": "volcano"}, "kind"),
    ("events/", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
    ("events/", {"to": LAST_MOMENT}, "to"),
    ("events/", {"cursor": "junk!"}, "cursor"),
    ("events/", {"cursor": cursor(o=0, r=0, p="not-a-time")}, "cursor"),
    ("events/", {"cursor": cursor(o=-1, r=0)}, "cursor"),
    ("export/host-samples", {"host": HUGE}, "host"),
    ("export/process-samples", {"process": HUGE}, "process"),
    ("export/host-samples", {"to": FIRST_DAY}, "to"),
    ("export/events", {"from": LAST_MOMENT}, "from"),
    ("export/events", {"from": "2026-11-02T10:00", "to": "2026-11-02T09:00"}, "to"),
    ("export/gpu-samples", {"metric": "colour"}, "metric"),
    ("export/gpu-samples", {"format": "xlsx"}, "format"),
]


@pytest.mark.parametrize(("path", "params", "field"), API_CASES)
def test_a_malformed_api_parameter_is_a_400_naming_it(api, sampled, path, params, field):
    response = api.get("/api/v1/" + path.format(host=sampled.pk), params)
    assert response.status_code == 400
    assert list(response.json()) == [field] and response.json()[field][0]


def test_a_cursor_the_api_gave_still_works(api, sampled, host):
    for i in range(60):
        Event.objects.create(host=host, kind="host_up", message=f"up {i}")
    second = api.get(api.get("/api/v1/events/").json()["next"])
    assert second.status_code == 200 and len(second.json()["results"]) == 11


@pytest.mark.parametrize(
    "path",
    [f"hosts/{HUGE}/", f"hosts/{HUGE}/timeseries", f"processes/{HUGE}/", "hosts/0/"],
)
def test_an_id_in_the_path_beyond_64_bits_is_404(api, sampled, path):
    assert api.get("/api/v1/" + path).status_code == 404


def test_a_well_formed_unknown_id_is_404(api, sampled):
    assert api.get("/api/v1/export/host-samples", {"host": str(2**63 - 1)}).status_code == 404
    assert api.get("/api/v1/export/process-samples", {"process": "999999"}).status_code == 404


# --- the pages: a 400 that shows the message ---------------------------------------


def error_of(html: str) -> str:
    return html.split('<p class="error">')[1].split("</p>")[0]


PAGE_CASES = [
    # (path, parameters, the parameter the message names)
    ("/hosts/{host}/processes", {"at": LAST_MOMENT}, "at"),
    ("/hosts/{host}/processes", {"at": FIRST_DAY}, "at"),
    ("/hosts/{host}/processes", {"at": "noon"}, "at"),
    ("/hosts/{host}/processes", {"pid": HUGE}, "pid"),
    ("/hosts/{host}/processes", {"user": "\x00"}, "user"),
    ("/hosts/{host}/processes", {"sort": "colour"}, "sort"),
    ("/hosts/{host}/processes", {"view": "graph"}, "view"),
    ("/hosts/{host}/processes", {"page": "last-but-one"}, "page"),
    ("/hosts/{host}/", {"at": "0001-01-01T00:00:00+14:00"}, "at"),
    ("/events/", {"tz": "100000"}, "tz"),
    ("/events/", {"tz": "east"}, "tz"),
    ("/events/", {"from": FIRST_DAY, "tz": "-1440"}, "from"),
    ("/events/", {"to": LAST_MOMENT, "tz": "60"}, "to"),
    ("/events/", {"from": "yesterday"}, "from"),
    ("/events/", {"host": HUGE}, "host"),
    ("/events/", {"kind": "volcano"}, "kind"),
    ("/events/", {"page": "2.5"}, "page"),
]


@pytest.mark.parametrize(("path", "params", "field"), PAGE_CASES)
def test_a_malformed_page_parameter_is_a_400_that_says_which(
    alice_client, sampled, path, params, field
):
    response = alice_client.get(path.format(host=sampled.pk), params)
    assert response.status_code == 400
    assert field in error_of(response.content.decode())


def test_a_page_past_the_last_shows_the_last(alice_client, sampled):
    response = alice_client.get("/events/", {"page": "99"})
    assert response.status_code == 200 and "trainer exited" in response.content.decode()


@pytest.mark.parametrize("path", [f"/hosts/{HUGE}/", f"/processes/{HUGE}/", "/hosts/0/processes"])
def test_a_page_of_an_id_beyond_64_bits_is_404(alice_client, path):
    assert alice_client.get(path).status_code == 404


def test_revoking_a_token_by_a_malformed_id_is_a_400_and_revokes_nothing(alice_client, alice):
    ApiToken.issue(alice, "laptop")
    response = alice_client.post("/account/tokens/", {"revoke": HUGE})
    assert response.status_code == 400 and "revoke" in error_of(response.content.decode())
    assert ApiToken.objects.get().revoked_at is None
