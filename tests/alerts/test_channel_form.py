"""The admin's channel form: a field per setting, checked per kind, stored as the
transports read it in Channel.config."""

import pytest

from alerts.forms import ChannelForm
from alerts.models import Channel

pytestmark = pytest.mark.django_db

KEY = "0123456789abcdef0123456789ABCDEF"


def form(kind: str, instance=None, **settings) -> ChannelForm:
    return ChannelForm(
        {"name": "ops", "kind": kind, "enabled": "on", **settings}, instance=instance
    )


@pytest.mark.parametrize(
    ("kind", "settings", "config"),
    [
        ("slack", {"url": "https://hooks.slack.com/services/T/B/x"},
         {"url": "https://hooks.slack.com/services/T/B/x"}),
        ("telegram", {"bot_token": "123456:ABC-def_9", "chat_id": "-100200"},
         {"bot_token": "123456:ABC-def_9", "chat_id": "-100200"}),
        ("email", {"to": "ops@example.org, ana@example.org"},
         {"to": ["ops@example.org", "ana@example.org"]}),
        ("ntfy", {"url": "https://ntfy.sh/ops", "token": "tk_1"},
         {"url": "https://ntfy.sh/ops", "token": "tk_1"}),
        ("pagerduty", {"routing_key": KEY}, {"routing_key": KEY}),
        ("webhook", {"url": "https://example.org/hook", "method": "PUT",
                     "headers": '{"X-Key": "k"}', "body": "{{ message }}"},
         {"url": "https://example.org/hook", "method": "PUT", "headers": {"X-Key": "k"},
          "body": "{{ message }}"}),
    ],
)  # fmt: skip
def test_a_valid_form_stores_the_kinds_settings_in_config(kind, settings, config):
    f = form(kind, **settings)
    assert f.is_valid(), f.errors
    assert Channel.objects.get(pk=f.save().pk).config == config


@pytest.mark.parametrize(
    ("kind", "settings", "field", "message"),
    [
        ("slack", {}, "url", "This channel needs: url."),
        ("slack", {"url": "not a url"}, "url", "Enter a valid URL."),
        ("telegram", {"bot_token": "123456:ABC"}, "chat_id", "This channel needs: chat_id."),
        ("telegram", {"bot_token": "nope", "chat_id": "5"}, "bot_token", "123456:ABC"),
        ("telegram", {"bot_token": "1:a", "chat_id": "#x"}, "chat_id", "a number, or @channel"),
        ("email", {"to": "ops@example.org, nobody"}, "to", "Enter a valid email address."),
        ("email", {}, "to", "This channel needs: to."),
        ("pagerduty", {"routing_key": "short"}, "routing_key", "32 letters and digits"),
        ("webhook", {"url": "https://x.org", "body": "{% if %}"}, "body", "Template error"),
        ("webhook", {"url": "https://x.org", "headers": "[1]"}, "headers", "JSON object"),
    ],
)  # fmt: skip
def test_an_invalid_setting_is_reported_on_its_field(kind, settings, field, message):
    f = form(kind, **settings)
    assert not f.is_valid()
    assert any(message in m for m in f.errors[field]), f.errors
    assert not Channel.objects.exists()


def test_a_bad_value_is_not_also_reported_missing():
    f = form("telegram", bot_token="1:a", chat_id="#x")
    assert not f.is_valid()
    assert len(f.errors["chat_id"]) == 1


def test_settings_of_other_kinds_are_dropped_and_unknown_keys_kept():
    channel = Channel.objects.create(
        name="ops",
        kind="telegram",
        config={"bot_token": "1:a", "chat_id": "5", "api_base": "http://127.0.0.1:9"},
    )
    f = form("slack", instance=channel, url="https://hooks.example.org/x", chat_id="5")
    assert f.is_valid(), f.errors
    f.save()
    channel.refresh_from_db()
    assert channel.config == {
        "api_base": "http://127.0.0.1:9",
        "url": "https://hooks.example.org/x",
    }


def test_the_form_shows_the_stored_settings(alice_client):
    channel = Channel.objects.create(
        name="mail", kind="email", config={"to": ["a@example.org", "b@example.org"]}
    )
    html = alice_client.get(f"/admin/alerts/channel/{channel.pk}/change/").content.decode()
    assert 'value="a@example.org, b@example.org"' in html


def test_the_admin_groups_settings_by_the_kinds_that_read_them(alice_client):
    html = alice_client.get("/admin/alerts/channel/add/").content.decode()
    assert "channel-settings for-telegram" in html
    assert 'name="bot_token"' in html and 'name="routing_key"' in html
    assert 'name="config"' not in html
    assert "/static/js/channel_form.js" in html


def test_the_admin_saves_a_channel_from_its_fields(alice_client):
    response = alice_client.post(
        "/admin/alerts/channel/add/",
        {"name": "pd", "kind": "pagerduty", "enabled": "on", "routing_key": KEY},
    )
    assert response.status_code == 302
    assert Channel.objects.get(name="pd").config == {"routing_key": KEY}
