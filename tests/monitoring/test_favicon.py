"""Every page links a favicon, and /favicon.ico (asked for where none is linked) finds it."""

import pytest

pytestmark = pytest.mark.django_db


def test_pages_link_the_svg_favicon(alice_client):
    html = alice_client.get("/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html


def test_the_favicon_is_served(client):
    response = client.get("/static/favicon.svg")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/svg+xml")


def test_favicon_ico_redirects_to_the_svg(client):
    response = client.get("/favicon.ico")
    assert (response.status_code, response["Location"]) == (301, "/static/favicon.svg")
