"""The Apps page in Chromium: an app's LLM p95 latency per minute, overlaid with the
CPU of the host it ran on and of the process that sent it (from the time-series API),
under the CSP."""

from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from appmetrics.models import AppMetric
from tests.browser.conftest import STARTED, wait_until

READY = """() => {
  const f = document.getElementById("chart-latency");
  return !!(f && f.chart && f.chart.data.datasets.length === 3
            && f.chart.data.datasets[2].data.length > 0);
}"""


def test_llm_latency_chart_overlays_the_hosts_and_the_processs_cpu(page, sampled_host, screenshot):
    now = timezone.now()
    AppMetric.objects.bulk_create(
        AppMetric(app="trainer", kind="llm", model="gpt-4o", provider="openai",
                  duration=1.0 + (i % 5), ts=now - timedelta(seconds=10 * i), host=sampled_host,
                  hostname="gpu-box", pid=101, create_time=STARTED, input_tokens=50,
                  success=i % 9 != 0)
        for i in range(60)
    )  # fmt: skip
    page.goto("/apps/?app=trainer")
    expect(page.locator("#llm tbody tr td").nth(1)).to_have_text("gpt-4o")
    wait_until(page, READY)
    labels = page.evaluate(
        "() => document.getElementById('chart-latency').chart.data.datasets.map(d => d.label)"
    )
    assert labels == ["openai/gpt-4o p95", "gpu-box CPU", "trainer (pid 101) CPU"]
    screenshot(page, "apps-llm-latency-with-cpu")
