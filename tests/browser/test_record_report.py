"""The HTML report of `ptracker record` in Chromium: opened from a file with every
network request refused, no error, every chart drawn, and it fits a phone's width.
No server: the report is one file."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, why_no_browser
from tests.ptracker.test_record import env, record_command

JOB = Path(__file__).resolve().parents[1] / "ptracker" / "record_job.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    out = folder / "job.html"
    command = record_command(
        "--interval", 0.2, "--quiet", "-o", out, "--", sys.executable, JOB, 1.2, folder / "pids"
    )
    done = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    return out


@pytest.mark.parametrize("viewport", [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_the_report_opens_offline_and_draws_its_charts(report, viewport):
    reason = why_no_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    problems = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            requested = []

            def refuse(route):
                requested.append(route.request.url)
                route.abort()

            page.route("http*://**/*", refuse)  # nothing may come from the network
            page.on("pageerror", lambda error: problems.append(f"pageerror: {error}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.goto(report.as_uri())
            page.wait_for_function("document.getElementById('charts').dataset.charts")
            charts = int(page.eval_on_selector("#charts", "e => e.dataset.charts"))
            # CPU, memory, disk I/O, processes and threads (no GPU on the fake-less job)
            assert charts >= 4
            inked = page.evaluate(
                """() => [...document.querySelectorAll('#charts canvas')].map(c => {
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
                    return n; })"""
            )
            assert len(inked) == charts and all(n > 500 for n in inked), inked
            assert page.evaluate("document.documentElement.scrollWidth <= innerWidth + 1")
            assert page.locator("#exit-code").inner_text() == "3"
            assert page.locator("#processes tbody tr").count() >= 2
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOTS / f"record-report-{viewport[0]}.png", full_page=True)
            assert requested == []
        finally:
            browser.close()
    assert problems == []
