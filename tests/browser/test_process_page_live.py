"""The process page in Chromium: its facts follow new samples while the process runs,
its favicon loads, and nothing fails in the console."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import ingest
from monitoring.models import Host, Process
from tests.browser.conftest import wait_until, why_no_browser
from tests.conftest import batch, proc

if why_no_browser():
    pytest.skip(f"browser tests need Chromium and Playwright: {why_no_browser()}",
                allow_module_level=True)  # fmt: skip

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STARTED = (timezone.now() - timedelta(hours=1)).timestamp()


def trainer(threads: int, cpu: float):
    return proc(
        4242, STARTED, name="python3", threads=threads, cpu_percent=cpu,
        cmdline="/usr/bin/python3 train.py --epochs 3",
    )  # fmt: skip


@pytest.fixture
def fast_host(transactional_db) -> Host:
    host = Host.objects.create(name="fast-box", machine_id="m-fast-box", sample_interval=2)
    ingest.store(host, batch(timezone.now() - timedelta(seconds=2), [trainer(1, 5.0)]))
    return host


def test_the_process_page_follows_new_samples(page, fast_host):
    process = Process.objects.get(pid=4242)
    page.goto(f"/processes/{process.pk}/")
    facts = page.locator("#process-facts")
    expect(facts).to_contain_text("1 thread")
    expect(facts).not_to_contain_text("1 threads")
    ingest.store(fast_host, batch(timezone.now(), [trainer(8, 250.0)]))
    expect(facts).to_contain_text("8 threads")  # no reload: the partial came again
    expect(facts).to_contain_text("running")


def test_the_page_loads_its_favicon(page, fast_host):
    icons = []
    page.on("response", lambda r: icons.append((r.url, r.status)) if "favicon" in r.url else None)
    page.goto(f"/hosts/{fast_host.pk}/")
    expect(page.locator("link[rel=icon]")).to_have_attribute("href", "/static/favicon.svg")
    page.wait_for_timeout(500)
    assert icons and all(status == 200 for _, status in icons)


def test_the_process_page_charts_the_runs_of_its_program(page, fast_host):
    # an earlier run of the same program, an hour before, gone since
    earlier = proc(4100, STARTED - 3600, name="python3", cpu_percent=150.0, rss=2**30,
                   cmdline="/usr/bin/python3 train.py --epochs 9")  # fmt: skip
    ingest.store(fast_host, batch(timezone.now() - timedelta(minutes=50), [earlier]))
    ingest.store(fast_host, batch(timezone.now(), [trainer(2, 50.0)]))
    process = Process.objects.get(pid=4242)
    page.goto(f"/processes/{process.pk}/")
    runs = page.locator("#runs tbody tr")
    expect(runs).to_have_count(2)
    expect(runs.first).to_have_class("current")
    bars = "() => Chart.getChart(document.querySelector('#chart-runs canvas')).data.datasets"
    wait_until(page, bars + "[0].data.length === 2")
    assert page.evaluate(bars + ".map(d => d.data)") == [[2**30, 10 * 2**20], [150.0, 27.5]]
