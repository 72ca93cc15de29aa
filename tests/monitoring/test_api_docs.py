"""/api/schema/ and /api/docs/: for signed-in users and tokens, unless made public."""

import pytest
from django.test import Client

from monitoring.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_client(bob) -> Client:
    secret = ApiToken.issue(bob, "docs", read_only=True)[1]
    return Client(headers={"Authorization": f"Bearer {secret}"})


def test_an_anonymous_schema_request_gets_401(client):
    response = client.get("/api/schema/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_an_anonymous_browser_is_sent_to_log_in_for_the_docs(client):
    response = client.get("/api/docs/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/api/docs/"


def test_a_wrong_token_gets_401_not_the_docs(client):
    response = client.get("/api/docs/", headers={"Authorization": "Bearer pt_wrong"})
    assert response.status_code == 401


def test_a_token_reads_the_schema_and_the_docs(token_client):
    schema = token_client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/hosts/" in schema.content
    assert token_client.get("/api/docs/").status_code == 200


def test_a_signed_in_user_reads_the_schema_and_the_docs(client, bob):
    client.force_login(bob)
    assert client.get("/api/schema/").status_code == 200
    assert b"swagger-ui-bundle.js" in client.get("/api/docs/").content


def test_public_api_docs_are_open_to_anyone(client, settings):
    settings.PTRACKER_PUBLIC_API_DOCS = True
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def debug_paths(client: Client) -> list[str]:
    schema = client.get("/api/schema/", headers={"Accept": "application/json"}).json()
    return [url for url in schema["paths"] if url.startswith("/debug/")]


def test_the_schema_leaves_out_the_debug_monitor_while_it_is_off(client, bob, settings):
    settings.PTRACKER_DEBUG_MONITOR = False
    client.force_login(bob)
    assert debug_paths(client) == []
    assert client.get("/debug/monitor/snapshot").status_code == 404


def test_the_schema_documents_the_debug_monitor_while_it_is_on(client, bob, settings):
    settings.PTRACKER_DEBUG_MONITOR = True
    client.force_login(bob)
    assert "/debug/monitor/snapshot" in debug_paths(client)


def test_the_docs_page_links_back_to_the_dashboard(client, bob):
    client.force_login(bob)
    html = client.get("/api/docs/").content.decode()
    nav = html[html.index('<nav id="docs-nav"') : html.index("</nav>")]
    assert '<a href="/"' in nav and "ptracker dashboard" in nav
