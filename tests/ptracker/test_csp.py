"""The Content-Security-Policy header: scripts only from our files or with the nonce.

That the pages keep to it is shown in Chromium (tests/browser/test_csp_pages.py).
"""

import re
import time

import pytest

from monitoring.debug_monitor import collector

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, list[str]]:
    directives = (d.split() for d in response["Content-Security-Policy"].split(";"))
    return {d[0]: d[1:] for d in directives if d}


def test_a_page_gets_the_policy(alice_client):
    csp = policy(alice_client.get("/"))
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no nonce: none asked
    assert csp["img-src"] == ["'self'", "data:"]
    assert csp["object-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]


def test_connect_src_names_the_pages_own_websocket(alice_client):
    assert policy(alice_client.get("/"))["connect-src"] == ["'self'", "ws://testserver"]


def test_behind_a_tls_proxy_the_websocket_is_wss(alice_client, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    response = alice_client.get("/", headers={"Host": "localhost", "X-Forwarded-Proto": "https"})
    assert policy(response)["connect-src"] == ["'self'", "wss://localhost"]


def test_the_login_page_gets_the_policy_too(client):
    assert policy(client.get("/login/"))["script-src"] == ["'self'"]


def nonces(html: str) -> set[str]:
    return set(re.findall(r'<script nonce="([^"]+)"', html))


def test_the_api_docs_start_up_script_carries_the_headers_nonce(alice_client):
    response = alice_client.get("/api/docs/")
    (nonce,) = nonces(response.content.decode())
    assert policy(response)["script-src"] == ["'self'", f"'nonce-{nonce}'"]
    assert nonce not in nonces(alice_client.get("/api/docs/").content.decode())  # fresh


def test_the_debug_reports_inline_scripts_carry_the_headers_nonce(alice_client, settings):
    settings.PTRACKER_DEBUG_MONITOR = True
    try:
        alice_client.post("/debug/monitor/start?interval=0.2")
        time.sleep(0.5)
        alice_client.post("/debug/monitor/stop")
        response = alice_client.get("/debug/monitor/report")
    finally:
        collector.stop()
    html = response.content.decode()
    (nonce,) = nonces(html)
    assert html.count(f'<script nonce="{nonce}">') == 2  # Chart.js and the page's own
    assert f"'nonce-{nonce}'" in policy(response)["script-src"]
