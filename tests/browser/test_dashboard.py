"""The dashboard in a real browser: Chromium against Daphne, websockets and static files included.

Every test fails on a script error, a console error or a failed request (see
conftest.Problems). Screenshots go to test-output/screenshots/.
"""

import math
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Host, Process
from tests.browser.conftest import (
    INTERVAL,
    processes,
    sample_times,
    wait_until,
    why_no_browser,
)
from tests.conftest import batch

if why_no_browser():
    pytest.skip(f"browser tests need Chromium and Playwright: {why_no_browser()}",
                allow_module_level=True)  # fmt: skip

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CPU_POINTS = (
    "() => { const c = Chart.getChart(document.querySelector('#chart-cpu canvas'));"
    " return c ? c.data.datasets[0].data.length : 0; }"
)
BY_CPU = ["trainer", "data-loader", "postgres", "supervisord", "nginx"]
BY_RSS = ["trainer", "postgres", "data-loader", "supervisord", "nginx"]


def names(page):
    return page.locator("#processes table.procs tbody tr td.name a")


def open_host(page, host: Host):
    page.goto(f"/hosts/{host.pk}/")
    expect(page.locator("#live-state")).to_have_text("● live")
    wait_until(page, f"() => ({CPU_POINTS})() > 0")


class SampleWriter:
    """Stores a sample every second from another thread, as the sampler does from its
    own process, until stopped: the first one may land before the server's live poller
    has taken its starting point, and that one is (rightly) never pushed."""

    def __init__(self, host: Host, **fields) -> None:
        self.host_id, self.fields = host.pk, fields
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        try:
            host = Host.objects.get(pk=self.host_id)
            for _ in range(15):
                rows = processes([(101, "trainer", 100, "alice", 99.0, 3 * 2**30)])
                ingest.store(host, batch(timezone.now(), rows, **self.fields))
                if self.stop.wait(1.0):
                    break
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


# --- signing in, and what an anonymous browser gets ------------------------------------


def test_the_login_form_signs_in_and_lands_on_the_overview(new_page, sampled_host, screenshot):
    User.objects.create_user("bob", "bob@example.org", "bob-password")
    page = new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    screenshot(page, "login")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("bob-password")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"^http://[^/]+/$"))
    expect(page.locator(".host-card h2")).to_have_text("gpu-box")
    expect(page.get_by_role("button", name="Log out bob")).to_be_visible()


def test_a_wrong_password_stays_on_the_login_page(new_page, sampled_host):
    User.objects.create_user("bob", "bob@example.org", "bob-password")
    page = new_page()
    page.goto("/login/")
    page.get_by_label("Username").fill("bob")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".login .error")).to_contain_text("didn't match")
    assert "gpu-box" not in page.content()


def test_an_anonymous_browser_gets_the_login_page_and_never_data(new_page, sampled_host, problems):
    page = new_page()
    for path in ("/", f"/hosts/{sampled_host.pk}/", "/events/"):
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/login/\?next="))
        assert "gpu-box" not in page.content()
    api = page.request.get("/api/v1/hosts/")
    assert api.status in (401, 403) and "gpu-box" not in api.text()
    opened = page.evaluate(
        """() => new Promise((resolve) => {
            const ws = new WebSocket("ws://" + location.host + "/ws/live/");
            ws.onopen = () => ws.send(JSON.stringify({subscribe: "fleet"}));
            ws.onmessage = (event) => resolve("message: " + event.data);
            ws.onclose = () => resolve("closed");
        })"""
    )
    assert opened == "closed"
    problems.forgive(r"WebSocket connection to .*/ws/live/.* failed")


# --- the overview ----------------------------------------------------------------------


def test_the_overview_shows_a_card_per_host_that_opens_it(page, sampled_host, screenshot):
    page.goto("/")
    card = page.locator(".host-card")
    expect(card).to_have_count(1)
    expect(card.locator("h2")).to_have_text("gpu-box")
    expect(card.locator('[data-field="cpu"]')).to_have_text("20.0 %")
    expect(card.locator(".dot")).to_have_class("dot up")
    expect(page.locator("#live-state")).to_have_text("● live")
    screenshot(page, "overview")
    card.click()
    expect(page).to_have_url(re.compile(rf"/hosts/{sampled_host.pk}/$"))
    expect(page.locator("h1")).to_contain_text("gpu-box")


def test_an_overview_card_follows_new_samples(page, sampled_host):
    page.goto("/")
    expect(page.locator("#live-state")).to_have_text("● live")
    page.evaluate("window.notReloaded = true")
    with SampleWriter(sampled_host, cpu_percent=61.7):
        expect(page.locator('[data-field="cpu"]')).to_have_text("61.7 %")
    assert page.evaluate("window.notReloaded") is True


# --- the host page: charts and live numbers -----------------------------------------------


def test_the_chart_libraries_are_served(page, sampled_host):
    scripts = []
    page.on("response", lambda r: scripts.append((r.url, r.status)) if "/static/" in r.url else 0)
    open_host(page, sampled_host)
    vendor = [(url, status) for url, status in scripts if "/static/vendor/" in url]
    assert {url.rsplit("/", 1)[1] for url, _ in vendor} == {
        "chart.umd.min.js",
        "chartjs-adapter-date-fns.bundle.min.js",
        "hammer.min.js",
        "chartjs-plugin-zoom.min.js",
    }
    assert all(status == 200 for _, status in vendor), vendor
    assert page.evaluate("typeof Chart.registry.plugins.get('zoom')") == "object"


def test_the_charts_draw_the_last_ten_minutes(page, sampled_host, screenshot):
    open_host(page, sampled_host)
    expect(page.locator("#range-info")).to_have_text("live, last 10 minutes")
    # 21 samples 30 s apart; the oldest may fall just outside the window.
    assert page.evaluate(CPU_POINTS) >= 20
    expect(page.locator(".range-picker button.active")).to_have_text("Live")
    expect(page.locator("#chart-cores")).to_be_visible()


def test_a_new_sample_shows_on_the_host_page_without_a_reload(page, sampled_host, screenshot):
    open_host(page, sampled_host)
    cpu = page.locator('[data-live="cpu_percent"]')
    expect(cpu).to_have_text("20.0 %")
    page.evaluate("window.notReloaded = true")
    with SampleWriter(sampled_host, cpu_percent=73.4, per_cpu=[73.4, 73.4]):
        expect(cpu).to_have_text("73.4 %")
    assert page.evaluate("window.notReloaded") is True
    last = page.evaluate(
        "() => { const d = Chart.getChart(document.querySelector('#chart-cpu canvas'))"
        ".data.datasets[0].data; return d[d.length - 1].y; }"
    )
    assert last == 73.4
    screenshot(page, "host-live")


def test_the_24_hour_range_reloads_the_charts(page, sampled_host, screenshot):
    open_host(page, sampled_host)
    expect(page.locator("#range-info")).to_have_text("live, last 10 minutes")
    page.locator('button[data-range="24h"]').click()
    expect(page.locator("#range-info")).to_have_text(re.compile(r"^one point per \d+(\.\d+)? "))
    expect(page.locator(".range-picker button.active")).to_have_text("24 h")
    expect(page.locator("#chart-cores")).to_be_visible()  # per-core history, not live only
    span = page.evaluate(
        "() => { const x = Chart.getChart(document.querySelector('#chart-cpu canvas'))"
        ".options.scales.x; return x.max - x.min; }"
    )
    assert span == 24 * 3600 * 1000
    assert page.evaluate(CPU_POINTS) > 0
    expect(page.locator("#download-csv")).to_have_attribute("href", re.compile(r"&from=\d+&to=\d+"))
    screenshot(page, "host-24h")


def test_the_range_info_names_a_readable_step(page, sampled_host):
    """With 8-second samples, 24 h are read raw in steps of 88 s: the page must not
    print "one point per 1.4666666666666666 min"."""
    Host.objects.filter(pk=sampled_host.pk).update(sample_interval=8)
    open_host(page, sampled_host)
    page.locator('button[data-range="24h"]').click()
    expect(page.locator("#range-info")).to_have_text(re.compile(r"^one point per \d+(\.\d)? "))


# --- the process table ------------------------------------------------------------------


def test_the_process_table_sorts_by_memory(page, sampled_host):
    open_host(page, sampled_host)
    expect(names(page)).to_have_text(BY_CPU)
    page.locator('#processes a[data-sort="mem"]').click()
    expect(names(page)).to_have_text(BY_RSS)
    memory = page.locator("#processes table.procs tbody tr td:nth-child(3)")
    expect(memory).to_have_text(["3.0 GiB", "1.5 GiB", "900.0 MiB", "40.0 MiB", "12.0 MiB"])
    expect(page.locator('#processes a[data-sort="mem"]')).to_have_text("Memory ▼")
    assert "sort=-mem" in page.url
    page.locator('#processes a[data-sort="mem"]').click()
    expect(names(page)).to_have_text(list(reversed(BY_RSS)))


def test_the_process_table_filters_by_regex(page, sampled_host):
    open_host(page, sampled_host)
    page.locator('#processes input[name="q"]').fill("train|loader")
    page.locator("#processes").get_by_role("button", name="Filter").click()
    expect(names(page)).to_have_text(["trainer", "data-loader"])
    assert "q=train%7Cloader" in page.url


def test_a_bad_regex_is_explained(page, sampled_host, problems):
    open_host(page, sampled_host)
    page.locator('#processes input[name="q"]').fill("(train")
    page.locator("#processes").get_by_role("button", name="Filter").click()
    expect(page.locator("#processes .error")).to_contain_text("Not a valid regular expression")
    expect(page.locator("#processes tbody")).to_have_text("no processes match")
    problems.forgive(r"HTTP 400: .*/processes\?")  # the table's answer to a bad filter


def test_the_tree_view_indents_children_and_sums_subtrees(page, sampled_host, screenshot):
    open_host(page, sampled_host)
    page.locator('#processes select[name="view"]').select_option("tree")
    page.locator("#processes").get_by_role("button", name="Filter").click()
    expect(names(page)).to_have_text(["supervisord", "trainer", "data-loader", "postgres", "nginx"])
    headers = page.locator("#processes table.procs thead th")
    expect(headers.nth(9)).to_have_text("Subtree CPU")
    expect(headers.nth(10)).to_have_text("Subtree memory")
    indent = page.evaluate(
        """() => [...document.querySelectorAll("#processes tbody tr td.name")]
              .map((td) => parseFloat(getComputedStyle(td).paddingLeft))"""
    )
    assert indent[0] < indent[1] < indent[2] and indent[3] == indent[4] == indent[0]
    supervisord = page.locator('#processes tr[data-pid="100"] td')
    expect(supervisord.nth(9)).to_have_text("110.0 %")  # 0.5 + 97.5 + 12.0
    expect(supervisord.nth(10)).to_have_text("3.9 GiB")  # 40 MiB + 3 GiB + 900 MiB
    page.locator("#processes").scroll_into_view_if_needed()
    screenshot(page, "process-tree")


def test_a_past_moment_from_the_url_shows_its_processes(page, sampled_host):
    old = sample_times(sampled_host)[3]  # backup-job still ran then
    at = math.ceil(old.timestamp() * 1000)  # whole ms at or after it: ts has microseconds
    page.goto(f"/hosts/{sampled_host.pk}/?at={at}")
    expect(names(page)).to_contain_text(["backup-job"])
    table_time = page.locator("#processes h2 time")
    assert table_time.get_attribute("datetime") == old.isoformat()
    page.locator("#processes a[data-latest]").click()
    expect(names(page)).to_have_text(BY_CPU)
    assert "at=" not in page.url


def click_cpu_point(page, index: int) -> float:
    """Click point `index` of the CPU chart; its x (epoch ms)."""
    page.locator("#chart-cpu canvas").scroll_into_view_if_needed()
    point = page.evaluate(
        """(index) => {
            const chart = Chart.getChart(document.querySelector('#chart-cpu canvas'));
            const p = chart.data.datasets[0].data[index];
            const box = chart.canvas.getBoundingClientRect();
            return {x: box.left + chart.scales.x.getPixelForValue(p.x),
                    y: box.top + chart.scales.y.getPixelForValue(p.y), ms: p.x};
        }""",
        index,
    )
    page.mouse.click(point["x"], point["y"])
    return point["ms"]


def test_clicking_a_chart_point_shows_the_processes_of_that_moment(page, sampled_host):
    open_host(page, sampled_host)
    click_cpu_point(page, 4)
    expect(page.locator("#processes a[data-latest]")).to_be_visible()
    expect(names(page)).to_contain_text(["backup-job"])
    assert re.search(r"[?&]at=\d+", page.url)


def test_a_clicked_chart_point_shows_the_sample_it_draws(page, sampled_host):
    """A point of a fetched series sits at the start of its step (30 s here) and draws
    the sample inside that step. The table must show that sample, not the one before."""
    open_host(page, sampled_host)
    ms = click_cpu_point(page, 4)
    expect(page.locator("#processes a[data-latest]")).to_be_visible()
    shown = datetime.fromisoformat(page.locator("#processes h2 time").get_attribute("datetime"))
    clicked = datetime.fromtimestamp(ms / 1000, UTC)
    assert clicked <= shown < clicked + timedelta(seconds=INTERVAL), (clicked, shown)


def test_a_clicked_live_point_shows_its_own_sample(page, sampled_host):
    """A live point sits at its sample's time, but in whole milliseconds while samples
    are stored to the microsecond: the table must still show that sample."""
    open_host(page, sampled_host)
    with SampleWriter(sampled_host, cpu_percent=73.4):
        expect(page.locator('[data-live="cpu_percent"]')).to_have_text("73.4 %")
    count = page.evaluate(CPU_POINTS)
    ms = click_cpu_point(page, count - 1)
    expect(page.locator("#processes a[data-latest]")).to_be_visible()
    shown = datetime.fromisoformat(page.locator("#processes h2 time").get_attribute("datetime"))
    assert math.floor(shown.timestamp() * 1000) == ms, (ms, shown)


# --- a process, events ----------------------------------------------------------------------


def test_a_process_name_opens_its_page_with_charts(page, sampled_host, screenshot):
    open_host(page, sampled_host)
    names(page).filter(has_text="trainer").click()
    trainer = Process.objects.get(host=sampled_host, pid=101)
    expect(page).to_have_url(re.compile(rf"/processes/{trainer.pk}/$"))
    expect(page.locator("h1")).to_contain_text("trainer")
    expect(page.locator("h1 .meta")).to_have_text("pid 101")
    expect(page.locator(".crumbs a")).to_have_text("gpu-box")
    expect(page.locator("#range-info")).to_have_text(re.compile(r"^one point per "))
    wait_until(page, f"() => ({CPU_POINTS})() > 0")
    expect(page.locator(".facts")).to_contain_text("data-loader (102)")  # its child
    screenshot(page, "process-detail")


def test_the_events_page_lists_events_and_filters_by_kind(page, events, screenshot):
    page.goto("/events/")
    rows = page.locator(".event-list tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("trainer exited (pid 101)")
    expect(rows.nth(1)).to_contain_text("gpu-box stopped reporting")
    screenshot(page, "events")
    page.get_by_label("Kind").select_option("process_exited")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"kind=process_exited"))
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("trainer exited (pid 101)")
    expect(rows.nth(0).locator(".kind")).to_have_text("process exited")


# --- theme and phone --------------------------------------------------------------------------


def test_the_theme_toggle_switches_to_dark_and_remembers_it(page, sampled_host):
    page.goto("/")
    background = "() => getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert page.evaluate(background) == "rgb(17, 21, 28)" != light
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    assert page.evaluate(background) == light


def test_the_theme_toggle_recolors_the_charts(page, sampled_host):
    open_host(page, sampled_host)
    tick_color = (
        "() => Chart.getChart(document.querySelector('#chart-cpu canvas'))"
        ".options.scales.x.ticks.color"
    )
    before = page.evaluate(tick_color)
    page.locator("#theme-toggle").click()
    assert page.evaluate(tick_color) == "#9aa3b2" != before


PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
# Measured once the fonts are in: text widths decide whether the header fits.
OVERFLOW = (
    "async () => { await document.fonts.ready; return document.documentElement.scrollWidth; }"
)


def test_the_overview_fits_a_phone(new_page, alice, sampled_host, screenshot):
    page = new_page(alice, **PHONE)
    page.goto("/")
    expect(page.locator(".host-card")).to_be_visible()
    screenshot(page, "phone-overview")
    assert page.evaluate(OVERFLOW) <= 392


def test_the_host_page_fits_a_phone(new_page, alice, sampled_host, screenshot):
    page = new_page(alice, **PHONE)
    open_host(page, sampled_host)
    screenshot(page, "phone-host")
    assert page.evaluate(OVERFLOW) <= 392
