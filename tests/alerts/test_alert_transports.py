"""Each channel kind sends exactly what its service expects, through one HTTP function."""

import json
import socket
import threading

import pytest
from django.core import mail
from django.utils import timezone

from alerts.models import Channel, Rule, Transition
from alerts.transports import TRANSPORTS, TransportError

pytestmark = pytest.mark.django_db


@pytest.fixture
def transition(host):
    rule = Rule.objects.create(
        name="disk full", metric="disk_percent", threshold=90, severity="critical"
    )
    return Transition.objects.create(
        rule=rule,
        host=host,
        subject="mount:/",
        kind="firing",
        value=97.5,
        message="[FIRING] disk full: Disk used % (per mount) on gpu-box mount:/ (97.5 %)",
        ts=timezone.now(),
    )


def send(kind: str, config: dict, transition) -> None:
    TRANSPORTS[kind](Channel(name=kind, kind=kind, config=config)).notify(transition)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("slack", lambda m: {"text": m}),
        ("discord", lambda m: {"content": m}),
        ("teams", lambda m: {"text": m}),
        ("dingtalk", lambda m: {"msgtype": "text", "text": {"content": m}}),
        ("wecom", lambda m: {"msgtype": "text", "text": {"content": m}}),
        ("feishu", lambda m: {"msg_type": "text", "content": {"text": m}}),
    ],
)
def test_chat_services_get_their_own_json(receiver, transition, kind, expected):
    send(kind, {"url": receiver.url + "/x"}, transition)
    assert receiver.json() == expected(transition.message)
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"


def test_the_generic_webhook_sends_the_alert_as_json(receiver, transition):
    send("webhook", {"url": receiver.url + "/alerts"}, transition)
    body = receiver.json()
    assert receiver.requests[0]["path"] == "/alerts"
    assert {k: body[k] for k in ("rule", "severity", "state", "host", "subject", "value")} == {
        "rule": "disk full",
        "severity": "critical",
        "state": "firing",
        "host": "gpu-box",
        "subject": "mount:/",
        "value": 97.5,
    }


def test_the_webhook_body_template_method_and_headers(receiver, transition):
    config = {
        "url": receiver.url + "/in",
        "method": "PUT",
        "headers": {"X-Api-Key": "k1"},
        "body": '{"title": "{{ rule }} is {{ state }}", "where": "{{ host }}"}',
    }
    send("webhook", config, transition)
    request = receiver.requests[0]
    assert request["method"] == "PUT" and request["headers"]["X-Api-Key"] == "k1"
    assert json.loads(request["body"]) == {"title": "disk full is firing", "where": "gpu-box"}


def test_telegram_posts_to_the_bot_api(receiver, transition):
    send(
        "telegram",
        {"bot_token": "123:ABC", "chat_id": "-1001", "api_base": receiver.url},
        transition,
    )
    assert receiver.requests[0]["path"] == "/bot123:ABC/sendMessage"
    assert receiver.json() == {"chat_id": "-1001", "text": transition.message}


def test_ntfy_sends_text_with_title_and_priority(receiver, transition):
    send("ntfy", {"url": receiver.url + "/ptracker-alerts", "token": "tk"}, transition)
    request = receiver.requests[0]
    assert request["body"].decode() == transition.message
    assert request["headers"]["Title"] == "disk full firing"
    assert request["headers"]["Priority"] == "urgent"
    assert request["headers"]["Authorization"] == "Bearer tk"


def test_pagerduty_triggers_then_resolves_the_same_incident(receiver, transition):
    config = {"routing_key": "R0UT1NG", "url": receiver.url + "/v2/enqueue"}
    send("pagerduty", config, transition)
    transition.kind = "resolved"
    send("pagerduty", config, transition)
    trigger, resolve = receiver.json(0), receiver.json(1)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert trigger["routing_key"] == "R0UT1NG"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["source"] == "gpu-box"
    assert "payload" not in resolve


def test_email_goes_to_every_recipient(settings, transition):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    send("email", {"to": ["ops@example.org", "ana@example.org"]}, transition)
    (message,) = mail.outbox
    assert message.to == ["ops@example.org", "ana@example.org"]
    assert message.subject == transition.message
    assert "host: gpu-box" in message.body and "value: 97.5" in message.body


def test_email_through_a_real_smtp_server(settings, transition):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:  # a free port: the controller checks it when ready
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        send("email", {"to": "ops@example.org"}, transition)
    finally:
        controller.stop()
    (envelope,) = received
    assert envelope.rcpt_tos == ["ops@example.org"]
    assert b"Subject: [FIRING] disk full" in envelope.content


def test_an_unreachable_smtp_server_is_a_retryable_error(settings, transition):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", 1
    with pytest.raises(TransportError) as error:
        send("email", {"to": "ops@example.org"}, transition)
    assert not error.value.permanent and "ConnectionRefusedError" in str(error.value)


def test_a_refused_connection_is_a_retryable_error(transition):
    with pytest.raises(TransportError) as error:
        send("slack", {"url": "http://127.0.0.1:1/services/SECRET"}, transition)
    assert not error.value.permanent
    assert "cannot reach http://127.0.0.1:1" in str(error.value) and "SECRET" not in str(
        error.value
    )


@pytest.mark.parametrize(
    ("kind", "config", "problem"),
    [
        ("slack", {}, "This channel needs: url."),
        ("webhook", {"url": "ftp://x"}, "url must start with http:// or https://"),
        ("telegram", {"bot_token": "1"}, "This channel needs: chat_id."),
        ("pagerduty", {}, "This channel needs: routing_key."),
        ("webhook", {"url": "http://x", "body": "{% if %}"}, "Template error"),
    ],
)
def test_channel_config_is_checked_on_save(kind, config, problem):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as error:
        Channel(name="c", kind=kind, config=config).full_clean()
    assert problem in str(error.value)


def test_the_admin_sends_a_test_notification_and_shows_the_outcome(alice_client, receiver):
    good = Channel.objects.create(name="Ops hook", kind="webhook", config={"url": receiver.url})
    bad = Channel.objects.create(
        name="Broken hook", kind="slack", config={"url": "http://127.0.0.1:1/hooks/SECRET"}
    )
    response = alice_client.post(
        "/admin/alerts/channel/",
        {"action": "send_test", "_selected_action": [good.pk, bad.pk]},
        follow=True,
    )
    text = response.content.decode()
    assert "Ops hook: test notification sent." in text
    assert "Broken hook: not sent: cannot reach http://127.0.0.1:1" in text
    assert "SECRET" not in text
    assert receiver.json()["message"].startswith("[TEST] ptracker test notification to Ops hook")


def test_threads_do_not_matter_to_transports(receiver, transition):
    threads = [
        threading.Thread(target=send, args=("slack", {"url": receiver.url}, transition))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(receiver.requests) == 3
