"""Every page keeps to the Content-Security-Policy in Chromium, and a page of another
origin cannot read the live feed with the user's cookie.

A violation shows twice: as a `securitypolicyviolation` event, collected here, and as
a console error, which the `problems` fixture (conftest.py) turns into a failure.
"""

import http.server
import re
import threading

import pytest

from monitoring.models import Process
from tests.browser.conftest import wait_until, why_no_browser

if why_no_browser():
    pytest.skip(f"browser tests need Chromium and Playwright: {why_no_browser()}",
                allow_module_level=True)  # fmt: skip

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COLLECT = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline")));
"""
CHART_POINTS = (
    "() => [...document.querySelectorAll('canvas')].some("
    "c => Chart.getChart(c) && Chart.getChart(c).data.datasets.some(d => d.data.length))"
)


@pytest.fixture
def visit(page):
    """visit(path): open it in alice's page and return the policy violations so far."""
    page.add_init_script(COLLECT)

    def go(path: str, ready) -> list[str]:
        response = page.goto(path)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        ready()
        page.wait_for_timeout(300)  # late scripts, images and sockets get their chance
        return page.evaluate("window.cspViolations")

    return go


def test_the_dashboard_pages_keep_to_the_policy_and_draw(page, visit, events):
    host = events[0].host
    trainer = Process.objects.get(host=host, pid=101)
    live = page.locator("#live-state")
    pages = {
        "/": lambda: expect(live).to_have_text("● live"),  # the websocket is allowed
        f"/hosts/{host.pk}/": lambda: (
            expect(live).to_have_text("● live"),
            wait_until(page, CHART_POINTS),
        ),
        f"/processes/{trainer.pk}/": lambda: wait_until(page, CHART_POINTS),
        "/events/": lambda: expect(page.locator(".event-list tbody tr")).to_have_count(2),
        "/alerts/": lambda: expect(page.locator("h1")).to_have_text("Alerts"),
        "/account/tokens/": lambda: expect(page.locator("h1")).to_have_text("API tokens"),
    }
    for path, ready in pages.items():
        assert visit(path, ready) == [], path


def test_the_login_page_keeps_to_the_policy(new_page):
    page = new_page()
    page.add_init_script(COLLECT)
    page.goto("/login/")
    expect(page.get_by_label("Username")).to_be_visible()
    assert page.evaluate("window.cspViolations") == []


def test_the_admin_keeps_to_the_policy(page, visit, sampled_host):
    assert visit("/admin/", lambda: expect(page.locator("#site-name")).to_be_visible()) == []
    change = f"/admin/monitoring/host/{sampled_host.pk}/change/"
    assert visit(change, lambda: expect(page.locator("#host_form")).to_be_visible()) == []


def test_the_api_docs_keep_to_the_policy_and_show_the_api(page, visit):
    def ready():
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/hosts/")

    assert visit("/api/docs/", ready) == []


@pytest.fixture
def other_origin():
    """A page served on another port of the same host: the security probe's setup."""
    handler = type(
        "Blank",
        (http.server.BaseHTTPRequestHandler,),
        {
            "do_GET": lambda self: (
                self.send_response(200),
                self.send_header("Content-Type", "text/html"),
                self.end_headers(),
                self.wfile.write(b"<!doctype html><title>elsewhere</title>"),
            ),
            "log_message": lambda self, *args: None,
        },
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_page_on_another_port_cannot_open_the_live_feed(
    page, live_server_url, other_origin, sampled_host, problems
):
    page.goto(other_origin)  # alice's session cookie goes to every port of 127.0.0.1
    outcome = page.evaluate(
        """(url) => new Promise((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => ws.send(JSON.stringify({subscribe: "fleet"}));
            ws.onmessage = (event) => resolve("message: " + event.data);
            ws.onclose = () => resolve("closed");
        })""",
        re.sub(r"^http", "ws", live_server_url) + "/ws/live/",
    )
    assert outcome == "closed"
    problems.forgive(r"WebSocket connection to .*/ws/live/.* failed")


def test_the_jobs_page_keeps_to_the_policy_and_draws_durations(page, visit):
    from datetime import timedelta

    from django.utils import timezone

    from jobs import heartbeats
    from jobs.models import HeartbeatCheck

    check = HeartbeatCheck.objects.create(name="nightly", period=timedelta(days=1))
    now = timezone.now()
    for i, took in enumerate((40, 55)):
        start = now - timedelta(hours=2 - i)
        heartbeats.ping(check, "start", start, run_id=f"r{i}")
        heartbeats.ping(check, "success", start + timedelta(seconds=took), run_id=f"r{i}")
    assert visit(f"/jobs/?check={check.pk}", lambda: wait_until(page, CHART_POINTS)) == []


def test_the_recordings_pages_keep_to_the_policy_and_draw(page, visit):
    from jobs.models import Recording
    from tests.jobs.test_recordings import T_REPORT

    first = Recording.from_report(T_REPORT, None)
    first.save()
    second = Recording.from_report({**T_REPORT, "exit_code": 3}, None)
    second.save()
    drawn = "document.querySelectorAll('[data-recording][data-charts]').length"
    pages = {
        "/recordings/": lambda: expect(page.locator("#recordings tbody tr")).to_have_count(2),
        f"/recordings/{first.pk}/": lambda: wait_until(page, CHART_POINTS),
        f"/recordings/compare?a={first.pk}&b={second.pk}": lambda: wait_until(
            page, f"() => {drawn} === 2"
        ),
    }
    for path, ready in pages.items():
        assert visit(path, ready) == [], path
