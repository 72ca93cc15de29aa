"""Charts that say what they mean (round binary steps on byte axes, whole counts, one
time format, no GPU chart without a GPU), a range and zoom that live in the address,
and pages no wider than a phone."""

import re

import pytest
from django.utils import timezone

from monitoring import ingest
from monitoring.models import ApiToken, Process
from tests.browser.conftest import LATEST, processes, wait_until, why_no_browser
from tests.conftest import batch

if why_no_browser():
    pytest.skip(f"browser tests need Chromium and Playwright: {why_no_browser()}",
                allow_module_level=True)  # fmt: skip

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1440, "height": 900}}
CHART_POINTS = (
    "() => [...document.querySelectorAll('canvas')].some("
    "c => Chart.getChart(c) && Chart.getChart(c).data.datasets.some(d => d.data.length))"
)
WIDTH = "async () => { await document.fonts.ready; return document.documentElement.scrollWidth; }"


def ticks(page, chart: str, axis: str = "y") -> list[dict]:
    """The ticks Chart.js drew on an axis of the chart in figure #chart-<chart>."""
    return page.evaluate(
        """([chart, axis]) => Chart.getChart(document.querySelector('#chart-' + chart + ' canvas'))
            .scales[axis].ticks.map((t) => ({value: t.value, label: t.label}))""",
        [chart, axis],
    )


def x_range(page, chart: str = "cpu") -> list[float]:
    return page.evaluate(
        """(chart) => {
            const c = Chart.getChart(document.querySelector('#chart-' + chart + ' canvas'));
            return [c.scales.x.min, c.scales.x.max]; }""",
        chart,
    )


def open_charts(page, path: str) -> None:
    page.goto(path)
    wait_until(page, CHART_POINTS)


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["1440px", "390px"])
def test_no_page_is_wider_than_the_screen(new_page, alice, events, screen):
    host = events[0].host
    trainer = Process.objects.get(host=host, pid=101)
    ApiToken.issue(alice, "a token with a rather long name for a grafana dashboard")
    width = screen["viewport"]["width"]
    anonymous = new_page(**screen)
    anonymous.goto("/login/")
    assert anonymous.evaluate(WIDTH) <= width, "/login/"
    page = new_page(alice, **screen)
    for path, ready in {
        "/": ".host-card",
        f"/hosts/{host.pk}/": CHART_POINTS,
        f"/processes/{trainer.pk}/": CHART_POINTS,
        "/events/": ".event-list tbody tr",
        "/alerts/": "h1",
        "/account/tokens/": "table tbody tr",
        "/api/docs/": "#docs-nav",
    }.items():
        page.goto(path)
        if ready.startswith("()"):
            wait_until(page, ready)
        else:
            expect(page.locator(ready).first).to_be_visible()
        assert page.evaluate(WIDTH) <= width, path


def test_the_process_table_puts_name_cpu_and_memory_first(page, sampled_host):
    page.goto(f"/hosts/{sampled_host.pk}/")
    headers = page.locator("#processes table.procs thead th")
    expect(headers.nth(0)).to_have_text("Name")
    expect(headers.nth(1)).to_have_text("CPU ▼")
    expect(headers.nth(2)).to_have_text("Memory")


def test_byte_axes_step_in_round_binary_units_one_unit_per_axis(page, sampled_host):
    rates = {"net_rx_bps": 2048.0, "net_tx_bps": 1000.0}  # never "1000 B/s, 2.0 KiB/s"
    ingest.store(sampled_host, batch(timezone.now(), processes(LATEST), **rates))
    open_charts(page, f"/hosts/{sampled_host.pk}/")
    # 2 GiB of memory used
    memory = ticks(page, "memory")
    assert [t["label"] for t in memory] == ["0 GiB", "0.5 GiB", "1 GiB", "1.5 GiB", "2 GiB"]
    assert [t["value"] for t in memory] == [i * 2**29 for i in range(5)]
    network = [t["label"] for t in ticks(page, "network")]
    assert network == ["0 KiB/s", "0.5 KiB/s", "1 KiB/s", "1.5 KiB/s", "2 KiB/s"]
    disk = [t["label"] for t in ticks(page, "disk")]  # nothing read or written
    assert disk == ["0 B/s", "1 B/s"]


def test_a_process_memory_axis_steps_in_whole_gibibytes(page, sampled_host):
    trainer = Process.objects.get(host=sampled_host, pid=101)  # 3 GiB resident
    open_charts(page, f"/processes/{trainer.pk}/")
    assert [t["label"] for t in ticks(page, "rss")] == ["0 GiB", "1 GiB", "2 GiB", "3 GiB"]


def test_count_axes_have_whole_ticks(page, sampled_host):
    trainer = Process.objects.get(host=sampled_host, pid=101)  # 4 threads
    open_charts(page, f"/processes/{trainer.pk}/")
    threads = ticks(page, "threads")
    assert [t["value"] for t in threads] == [0, 1, 2, 3, 4]
    assert [t["label"] for t in threads] == ["0", "1", "2", "3", "4"]
    open_charts(page, f"/hosts/{sampled_host.pk}/")
    processes = [t["value"] for t in ticks(page, "tasks")]
    assert processes and all(v == int(v) for v in processes)
    assert processes[1] - processes[0] >= 1


def test_chart_labels_and_units_come_from_the_api(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/")
    labels = page.evaluate(
        """() => Chart.getChart(document.querySelector('#chart-memory canvas'))
            .data.datasets.map((d) => [d.label, d.unit])"""
    )
    assert labels == [["Memory used", "bytes"], ["Swap used", "bytes"]]


def test_every_time_on_the_page_has_one_format(page, events):
    host = events[0].host
    open_charts(page, f"/hosts/{host.pk}/")
    mismatched = page.evaluate(
        """() => [...document.querySelectorAll('time[datetime]:not([data-relative])')]
            .filter((t) => t.textContent !== PT.time(t.dateTime))
            .map((t) => t.dateTime + ' shown as ' + t.textContent)"""
    )
    assert mismatched == []
    tooltip = page.evaluate(
        """() => { const chart = Chart.getChart(document.querySelector('#chart-cpu canvas'));
            const x = chart.data.datasets[0].data[0].x;
            const title = chart.options.plugins.tooltip.callbacks.title;
            return [title([{parsed: {x: x}}]), PT.time(x)]; }"""
    )
    assert tooltip[0] == tooltip[1]


def test_no_gpu_chart_without_a_gpu(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/")
    expect(page.locator("figure.chart")).not_to_have_count(0)
    expect(page.locator("figure[id^=chart-gpu]")).to_have_count(0)
    trainer = Process.objects.get(host=sampled_host, pid=101)
    open_charts(page, f"/processes/{trainer.pk}/")
    expect(page.locator("#chart-rss")).to_be_visible()
    expect(page.locator("#chart-gpu")).to_have_count(0)


def test_per_core_cpu_has_history_from_the_first_draw(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/?range=1h")
    cores = page.evaluate(
        """() => Chart.getChart(document.querySelector('#chart-cores canvas'))
            .data.datasets.map((d) => [d.label, d.data.filter((p) => p.y !== null).length])"""
    )
    assert [label for label, _ in cores] == ["CPU 0", "CPU 1"]
    assert all(count >= 10 for _, count in cores), cores


def drag_across(page, chart: str, start: float, end: float) -> None:
    """Drag across a chart's plot area from one fraction of its width to another."""
    box = page.evaluate(
        """(chart) => {
            const c = Chart.getChart(document.querySelector('#chart-' + chart + ' canvas'));
            const r = c.canvas.getBoundingClientRect(), a = c.chartArea;
            const y = r.top + (a.top + a.bottom) / 2;
            return {left: r.left + a.left, width: a.right - a.left, y: y}; }""",
        chart,
    )
    page.mouse.move(box["left"] + box["width"] * start, box["y"])
    page.mouse.down()
    page.mouse.move(box["left"] + box["width"] * end, box["y"], steps=8)
    page.mouse.up()


def test_a_range_is_kept_in_the_address_and_survives_a_reload(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/")
    page.locator('button[data-range="6h"]').click()
    expect(page).to_have_url(f"/hosts/{sampled_host.pk}/?range=6h")
    page.reload()
    wait_until(page, CHART_POINTS)
    expect(page.locator(".range-picker button.active")).to_have_text("6 h")
    low, high = x_range(page)
    assert high - low == 6 * 3600e3


def address_range(page) -> list[float]:
    """The from/to of the page's address, in epoch ms, as the page reads them."""
    return page.evaluate(
        """() => { const q = new URLSearchParams(location.search);
            return [Date.parse(q.get('from')), Date.parse(q.get('to'))]; }"""
    )


def shows(page, low: float, high: float) -> None:
    wait_until(
        page,
        "() => { const x = Chart.getChart(document.querySelector('#chart-cpu canvas')).scales.x;"
        f" return x.min === {low} && x.max === {high}; }}",
    )


def test_a_zoom_fills_the_boxes_shows_a_reset_and_survives_a_reload(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/?range=1h")
    reset = page.get_by_role("button", name="Reset zoom")
    expect(reset).to_be_hidden()
    page.locator("#chart-cpu canvas").scroll_into_view_if_needed()
    drag_across(page, "cpu", 0.5, 0.9)
    expect(reset).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?from=[^&]+&to=[^&]+$"))
    low, high = address_range(page)
    assert 0 < high - low < 3600e3 * 0.5
    shows(page, low, high)
    boxes = [page.locator(f'#custom-range input[name="{n}"]').input_value() for n in ("from", "to")]
    wanted = page.evaluate("(r) => r.map((ms) => PT.localInput(ms))", [low, high])

    def minute_seconds(value: str) -> str:  # the browser drops ":00" seconds from the value
        return value if len(value) > 16 else value + ":00"

    assert [minute_seconds(b) for b in boxes] == [minute_seconds(w) for w in wanted]
    url = page.url
    page.reload()
    shows(page, low, high)
    assert page.url == url
    page.goto(url)  # the address alone brings a colleague the same view
    shows(page, low, high)


def test_reset_zoom_goes_back_to_the_range_before_the_zoom(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/?range=1h")
    drag_across(page, "memory", 0.2, 0.8)
    reset = page.get_by_role("button", name="Reset zoom")
    expect(reset).to_be_visible()
    reset.click()
    expect(reset).to_be_hidden()
    expect(page).to_have_url(f"/hosts/{sampled_host.pk}/?range=1h")
    expect(page.locator(".range-picker button.active")).to_have_text("1 h")
    wait_until(
        page,
        "() => { const x = Chart.getChart(document.querySelector('#chart-cpu canvas')).scales.x;"
        " return x.max - x.min === 3600e3; }",
    )


def test_the_process_table_keeps_the_range_in_the_address(page, sampled_host):
    open_charts(page, f"/hosts/{sampled_host.pk}/?range=6h")
    page.locator('#processes a[data-sort="mem"]').click()
    expect(page).to_have_url(re.compile(r"\?range=6h&sort=-mem(&|$)"))
