"""Setting a host's pull URL and token on its admin page (the token is write-only)."""

import pytest

from monitoring.models import Host

pytestmark = pytest.mark.django_db

SECRET = "pta_the-agents-own-token"


@pytest.fixture
def remote(db) -> Host:
    return Host.add_remote("gpu-7")[0]


def change(client, host: Host, **fields):
    data = {
        "name": host.name,
        "hostname": host.hostname,
        "labels": "{}",
        "enabled": "on",
        "sample_interval": host.sample_interval,
        "service_patterns": "",
        "pull_url": "",
        "pull_token": "",
        **fields,
    }
    return client.post(f"/admin/monitoring/host/{host.pk}/change/", data)


def test_it_keeps_the_pull_token_sealed_and_never_shows_it(alice_client, remote):
    response = change(alice_client, remote, pull_url="https://gpu-7.lan:9100", pull_token=SECRET)
    assert response.status_code == 302
    remote.refresh_from_db()
    assert remote.pull_url == "https://gpu-7.lan:9100"
    assert remote.pull_token() == SECRET
    assert SECRET not in remote.pull_token_sealed

    page = alice_client.get(f"/admin/monitoring/host/{remote.pk}/change/").content.decode()
    assert 'type="password" name="pull_token"' in page
    assert SECRET not in page and remote.pull_token_sealed not in page


def test_an_empty_token_field_keeps_the_stored_token(alice_client, remote):
    change(alice_client, remote, pull_url="https://gpu-7.lan:9100", pull_token=SECRET)
    response = change(alice_client, remote, pull_url="https://gpu-7.lan:9200")
    assert response.status_code == 302
    remote.refresh_from_db()
    assert remote.pull_url == "https://gpu-7.lan:9200" and remote.pull_token() == SECRET


def test_a_pull_url_without_any_token_is_refused(alice_client, remote):
    response = change(alice_client, remote, pull_url="https://gpu-7.lan:9100")
    assert response.status_code == 200
    assert "Pulling needs the token the agent was started with." in response.content.decode()
    remote.refresh_from_db()
    assert remote.pull_url == ""


def test_only_http_and_https_pull_urls_are_taken(alice_client, remote):
    response = change(alice_client, remote, pull_url="ftp://gpu-7.lan/", pull_token=SECRET)
    assert response.status_code == 200
    remote.refresh_from_db()
    assert remote.pull_url == "" and remote.pull_token_sealed == ""


def test_clearing_the_pull_url_forgets_the_token(alice_client, remote):
    change(alice_client, remote, pull_url="https://gpu-7.lan:9100", pull_token=SECRET)
    assert change(alice_client, remote).status_code == 302
    remote.refresh_from_db()
    assert remote.pull_url == "" and remote.pull_token_sealed == ""
