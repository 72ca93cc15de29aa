"""The process filter `q` (API and dashboard): RE2, so no pattern can stall the server.

Python's `re` took seconds to forever on these patterns against the command lines
below, and Daphne runs the views of every user on one thread: one such request
froze them all. The live tests send them to a real server, with an ordinary request
alongside that must still answer at once.
"""

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken
from tests.conftest import batch, proc

# pid, name, command line: ordinary ones, and one a user named oddly.
PROCESSES = [
    (100, "python3", "/usr/bin/python3 -m torch.distributed.run --nproc-per-node 8 train.py"),
    (200, "postgres", "postgres: 16/main: checkpointer process for the cluster"),
    (300, "nginx", "nginx: worker process #3 serving requests on port 8080"),
    (400, "runner", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"),
]
# Classic catastrophic-backtracking patterns and the pids RE2 finds with them.
PATHOLOGICAL = [
    ("(.+)+#", {300}),
    ("^(a+)+$", set()),
    ("(a|aa)+$", set()),
    ("(a|a?)+$", {100, 200, 300, 400}),
    (r"^(\w+\s?)*$", {100, 200, 300, 400}),  # every name is one word
    ("^(([a-z])+.)+[A-Z]([a-z])+$", set()),
]
PROMPT = 1.0  # seconds an ordinary request may take while the others run
TIMEOUT = 10.0  # seconds before a request counts as hung


@pytest.fixture
def sampled(host):
    rows = [proc(pid, name=name, cmdline=cmdline) for pid, name, cmdline in PROCESSES]
    ingest.store(host, batch(timezone.now(), rows))
    return host


def pids(html: str) -> set[int]:
    return {int(pid) for pid in re.findall(r'<tr data-pid="(\d+)"', html)}


# --- a live server -------------------------------------------------------------------


@pytest.fixture
def server(live_server_url, transactional_db, alice, sampled):
    """GET a path of the live server as alice (token for the API, session for pages):
    gives (status, body, seconds taken)."""
    token = ApiToken.issue(alice, "probe")[1]
    client = Client()
    client.force_login(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    def get(path: str, **params) -> tuple[int, str, float]:
        query = urllib.parse.urlencode(params)
        headers = {"Authorization": f"Bearer {token}"} if path.startswith("/api/") else {}
        request = urllib.request.Request(
            f"{live_server_url}{path}?{query}", headers={**headers, "Cookie": cookie}
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                status, body = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        return status, body, time.monotonic() - started

    get(f"/api/v1/hosts/{sampled.pk}/")  # the first request warms the server up
    return get


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("q", "expected"), PATHOLOGICAL)
def test_a_pathological_pattern_neither_hangs_nor_stalls_other_requests(
    server, sampled, q, expected
):
    api, page = f"/api/v1/hosts/{sampled.pk}/processes", f"/hosts/{sampled.pk}/processes"
    with ThreadPoolExecutor(max_workers=4) as pool:
        hostile = [pool.submit(server, api, q=q), pool.submit(server, page, q=q)]
        time.sleep(0.05)  # let them reach the server first
        ordinary = pool.submit(server, f"/api/v1/hosts/{sampled.pk}/processes", sort="pid")
        status, body, seconds = ordinary.result()
        assert status == 200 and seconds < PROMPT, f"ordinary request: {status} in {seconds:.2f} s"
        assert [r["pid"] for r in json.loads(body)["results"]] == [100, 200, 300, 400]
        (api_status, api_body, api_seconds), (page_status, page_body, page_seconds) = [
            f.result() for f in hostile
        ]
    assert api_status == 200 and api_seconds < PROMPT
    assert {r["pid"] for r in json.loads(api_body)["results"]} == expected
    assert page_status == 200 and page_seconds < PROMPT
    assert pids(page_body) == expected


# --- patterns RE2 refuses -------------------------------------------------------------

REFUSED = [r"(python)\1", "python(?=3)", "(?<!/)nginx", r"train\.py\Z"]


@pytest.fixture
def api(alice) -> Client:
    return Client(headers={"Authorization": f"Bearer {ApiToken.issue(alice, 'probe')[1]}"})


@pytest.mark.django_db
@pytest.mark.parametrize("q", REFUSED)
def test_the_api_refuses_a_pattern_re2_cannot_run_naming_q(api, sampled, q):
    response = api.get(f"/api/v1/hosts/{sampled.pk}/processes", {"q": q})
    assert response.status_code == 400
    (message,) = response.json()["q"]
    assert message.startswith("Not a valid regular expression (RE2 syntax")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/hosts/{}/processes", "/hosts/{}/"])
def test_the_dashboard_says_why_it_refuses_a_pattern(alice_client, sampled, path):
    response = alice_client.get(path.format(sampled.pk), {"q": r"(python)\1"})
    assert response.status_code == 400
    html = response.content.decode()
    assert '<p class="error">Not a valid regular expression (RE2 syntax' in html
    assert pids(html) == set()


@pytest.mark.django_db
def test_an_overlong_pattern_is_refused_naming_q(api, sampled):
    response = api.get(f"/api/v1/hosts/{sampled.pk}/processes", {"q": "a" * 501})
    assert response.status_code == 400
    assert response.json() == {"q": ["A regular expression may have at most 500 characters."]}


@pytest.mark.django_db
def test_the_filter_searches_the_name_and_separately_the_command_line(alice_client, sampled):
    response = alice_client.get(f"/hosts/{sampled.pk}/processes", {"q": "^runner$|^postgres: "})
    assert pids(response.content.decode()) == {200, 400}
