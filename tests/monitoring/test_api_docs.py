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
