"""/hosts/add/: a host for another machine, its agent token once, the lines to run."""

import re

import pytest
from django.contrib.auth.models import Permission, User

from monitoring.models import Host, hash_token

pytestmark = pytest.mark.django_db


def test_an_admin_adds_a_server_and_gets_its_token_once(alice_client):
    page = alice_client.get("/")
    assert b'href="/hosts/add/"' in page.content
    response = alice_client.post("/hosts/add/", {"name": "web-1", "labels": "env=prod, team=ml"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    html = response.content.decode()
    secret = re.search(r"pta_[\w-]+", html).group(0)
    host = Host.objects.get(name="web-1")
    assert host.agent_token_hash == hash_token(secret)
    assert host.labels == {"env": "prod", "team": "ml"}
    assert "ptracker agent --hub http://testserver/ --name web-1" in html
    assert "--print-systemd-unit" in html
    assert not any(secret in c.value for c in response.cookies.values())
    assert secret not in alice_client.get("/hosts/add/").content.decode()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": ""}, "1 to 100 characters"),
        ({"name": "x" * 101}, "1 to 100 characters"),
        ({"name": "web-2", "labels": "prod"}, "KEY=VALUE"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_adds_nothing(alice_client, data, message):
    response = alice_client.post("/hosts/add/", data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Host.objects.exists()


def test_a_taken_name_is_refused(alice_client, host):
    response = alice_client.post("/hosts/add/", {"name": host.name})
    assert response.status_code == 400 and "exists already" in response.content.decode()
    assert Host.objects.count() == 1


def test_it_needs_the_permission_to_add_hosts(client, bob):
    client.force_login(bob)
    assert b"/hosts/add/" not in client.get("/").content
    assert client.post("/hosts/add/", {"name": "web-1"}).status_code == 403
    bob.user_permissions.add(Permission.objects.get(codename="add_host"))
    bob = User.objects.get(pk=bob.pk)  # permissions are cached per user object
    client.force_login(bob)
    assert client.post("/hosts/add/", {"name": "web-1"}).status_code == 200


def test_anonymous_users_are_sent_to_log_in(client):
    assert client.get("/hosts/add/").status_code == 302


def test_the_admins_add_host_leads_to_this_page(alice_client):
    response = alice_client.get("/admin/monitoring/host/add/")
    assert response.status_code == 302 and response["Location"] == "/hosts/add/"


def test_a_host_page_warns_about_a_skewed_agent_clock(alice_client, host):
    Host.objects.filter(pk=host.pk).update(clock_offset=42.0)
    page = alice_client.get(f"/hosts/{host.pk}/").content.decode()
    assert "is 42 s behind the hub" in page
    Host.objects.filter(pk=host.pk).update(clock_offset=3.0)
    assert "clock-offset" not in alice_client.get(f"/hosts/{host.pk}/").content.decode()
