"""The fleet overview in Chromium with 30 hosts: the controls, the address that keeps
them, live redraws from the server's partial, the content policy and a phone's width."""

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import AlertState, Rule
from monitoring import ingest
from monitoring.models import Host
from tests.browser.conftest import why_no_browser
from tests.browser.test_csp_pages import COLLECT
from tests.browser.test_dashboard import OVERFLOW, PHONE
from tests.conftest import batch

if why_no_browser():
    pytest.skip(f"browser tests need Chromium and Playwright: {why_no_browser()}",
                allow_module_level=True)  # fmt: skip

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

HOSTS = 30
LIVE_MS = 3500  # the partial is asked for at most every 2 s, then drawn


def store(host: Host, ts=None, **fields) -> None:
    ingest.store(host, batch(ts or timezone.now(), **fields))


@pytest.fixture
def hosts(transactional_db) -> list[Host]:
    rows = []
    for i in range(HOSTS):
        host = Host.objects.create(
            name=f"node-{i:02d}",
            hostname=f"node-{i:02d}.dc1.example.org",
            machine_id=f"m-node-{i:02d}",
            labels={"env": "prod" if i % 3 else "staging", "rack": f"r{i % 4}"},
        )
        store(host, cpu_percent=float(i))
        rows.append(host)
    return rows


def open_overview(page, path: str = "/") -> None:
    page.goto(path)
    expect(page.locator("#live-state")).to_have_text("● live")
    page.evaluate("window.notReloaded = true")
    # The server's poller takes its starting point just after the subscription: a sample
    # stored before that is (rightly) never pushed.
    page.wait_for_timeout(1500)


def rows(page):
    return page.locator("#fleet [data-host]")


def test_a_search_and_the_table_show_in_the_address_without_a_reload(page, hosts, screenshot):
    open_overview(page)
    expect(rows(page)).to_have_count(HOSTS)
    page.get_by_label("Search").fill("node-1")
    expect(rows(page)).to_have_count(10)  # node-10 to node-19
    expect(page).to_have_url(re.compile(r"/\?q=node-1$"))
    page.get_by_label("View").select_option("table")
    expect(page.locator(".fleet-table tbody tr[data-host]")).to_have_count(10)
    expect(page).to_have_url(re.compile(r"/\?q=node-1&view=table$"))
    page.locator(".fleet-table th a", has_text="CPU").click()
    expect(page).to_have_url(re.compile(r"/\?q=node-1&sort=cpu&view=table$"))
    expect(rows(page).first.locator("td").nth(1)).to_have_text("node-19")
    screenshot(page, "fleet-table")
    assert page.evaluate("window.notReloaded") is True
    page.reload()  # the address alone brings the same view back
    expect(page.locator(".fleet-table tbody tr[data-host]")).to_have_count(10)
    expect(page.get_by_label("Search")).to_have_value("node-1")
    expect(rows(page).first.locator("td").nth(1)).to_have_text("node-19")


def test_grouping_by_a_label_shows_a_section_per_value(page, hosts, screenshot):
    open_overview(page, "/?group=env")
    expect(page.locator(".fleet-group > h2")).to_have_text(
        ["env = prod (20)", "env = staging (10)"]
    )
    screenshot(page, "fleet-cards-by-env", full_page=False)


def test_a_new_sample_updates_its_row_within_seconds(page, hosts):
    open_overview(page, "/?view=table")
    cpu = page.locator(f'tr[data-host="{hosts[7].pk}"] [data-field="cpu"]')
    expect(cpu).to_have_text("7.0 %")
    started = time.monotonic()
    store(hosts[7], cpu_percent=77.7)
    expect(cpu).to_have_text("77.7 %", timeout=LIVE_MS)
    assert time.monotonic() - started < LIVE_MS / 1000
    assert page.evaluate("window.notReloaded") is True


def test_a_new_host_and_an_alert_badge_appear_without_a_reload(page, hosts):
    open_overview(page, "/?sort=name")
    rule = Rule.objects.create(name="cpu", metric="cpu_percent", threshold=80)
    AlertState.objects.create(rule=rule, host=hosts[3], subject="host", state="firing")
    newcomer = Host.objects.create(name="node-99", machine_id="m-node-99")
    store(newcomer, cpu_percent=12.5)
    card = page.locator(f'.host-card[data-host="{newcomer.pk}"]')
    expect(card.locator('[data-field="cpu"]')).to_have_text("12.5 %", timeout=LIVE_MS)
    expect(rows(page)).to_have_count(HOSTS + 1)
    badge = page.locator(f'.host-card[data-host="{hosts[3].pk}"] [data-field="alerts"]')
    expect(badge).to_have_text("1 firing")
    assert page.evaluate("window.notReloaded") is True


def test_a_silent_host_turns_offline_by_the_models_rule(page, transactional_db):
    # Every 5 s, so offline after 15 s of silence (Host.offline_after): here in about 2 s.
    host = Host.objects.create(name="quiet", machine_id="m-quiet")
    store(host, ts=timezone.now() - timedelta(seconds=13))
    page.goto("/")
    dot = page.locator(f'[data-host="{host.pk}"] .dot')
    expect(dot).to_have_class("dot up")
    expect(dot).to_have_class("dot down", timeout=5000)


def test_the_overview_keeps_to_the_content_policy(page, hosts):
    page.add_init_script(COLLECT)
    open_overview(page, "/?group=rack")
    page.get_by_label("Search").fill("prod")
    page.get_by_label("View").select_option("table")
    expect(page.locator(".fleet-table")).to_be_visible()
    store(hosts[1], cpu_percent=55.5)
    expect(page.locator(f'tr[data-host="{hosts[1].pk}"] [data-field="cpu"]')).to_have_text(
        "55.5 %", timeout=LIVE_MS
    )
    assert page.evaluate("window.cspViolations") == []


@pytest.mark.parametrize("view", ["cards", "table"])
def test_the_overview_fits_a_phone(new_page, alice, hosts, screenshot, view):
    page = new_page(alice, **PHONE)
    page.goto(f"/?view={view}&group=env")
    expect(rows(page)).to_have_count(HOSTS)
    screenshot(page, f"phone-fleet-{view}")
    assert page.evaluate(OVERFLOW) <= 392
