"""How a transition reaches people: one small class per channel kind.

Every HTTP request goes through `http_request()`, the one outbound function (tests
point channels at a local receiver; nothing here is patched). Errors say whether
they are permanent (a 4xx: retrying will not help) or worth a retry (5xx, timeout,
refused connection). Messages never contain a channel's URL path, query or token:
for Slack, Discord and the like the URL is the secret.
"""

import json
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.template import Context, Template

TIMEOUT = 10  # seconds for one request


class TransportError(Exception):
    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def where(url: str) -> str:
    """What an error may say about a URL: its scheme and host, never its secret parts."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{':' + str(parts.port) if parts.port else ''}"


def http_request(url: str, body: bytes, headers: dict, method: str = "POST") -> int:
    """Send one request; the status on 2xx, TransportError otherwise."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise TransportError(f"not an http(s) URL: {where(url)}", permanent=True)
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise TransportError(f"{where(url)} answered HTTP {exc.code}", permanent) from None
    except TimeoutError:
        raise TransportError(f"{where(url)} did not answer within {TIMEOUT} s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransportError(f"cannot reach {where(url)}: {reason}") from None


def post_json(url: str, payload: dict, headers: dict | None = None) -> int:
    body = json.dumps(payload).encode()
    return http_request(url, body, {"Content-Type": "application/json", **(headers or {})})


def alert_fields(t) -> dict:
    """What every transport may say about a transition (`t` is a Transition): its
    message (alerts.messages.render_message, the one text every channel sends) and the
    same facts as fields. The command line in them is already redacted."""
    details = t.details or {}
    process = details.get("process")
    return {
        "rule": t.rule.name,
        "severity": t.rule.severity,
        "state": t.kind,
        "host": t.host.name,
        "subject": details.get("what") or t.subject,
        "process": {k: process[k] for k in ("pid", "user", "cmdline")} if process else None,
        "value": t.value,
        "unit": details.get("unit"),
        "threshold": details.get("threshold"),
        "operator": details.get("operator"),
        "for_seconds": details.get("for_seconds"),
        "url": details.get("url"),
        "message": t.message,
        "ts": t.ts.isoformat(),
    }


class Transport:
    required: tuple[str, ...] = ("url",)

    def __init__(self, channel) -> None:
        self.channel = channel
        self.config = channel.config or {}

    @classmethod
    def check_config(cls, config: dict) -> str | None:
        missing = [k for k in cls.required if not config.get(k)]
        if missing:
            return f"This channel needs: {', '.join(missing)}."
        if "url" in cls.required and urlsplit(config["url"]).scheme not in ("http", "https"):
            return "url must start with http:// or https://"
        return None

    def notify(self, t) -> None:
        raise NotImplementedError


class Webhook(Transport):
    def notify(self, t) -> None:
        fields = alert_fields(t)
        headers = {"Content-Type": "application/json", **self.config.get("headers", {})}
        if self.config.get("body"):
            body = Template(self.config["body"]).render(Context(fields)).encode()
        else:
            body = json.dumps(fields).encode()
        http_request(self.config["url"], body, headers, self.config.get("method", "POST").upper())


class Slack(Transport):
    def notify(self, t) -> None:
        post_json(self.config["url"], {"text": t.message})


class Discord(Transport):
    def notify(self, t) -> None:
        post_json(self.config["url"], {"content": t.message[:2000]})


class Teams(Transport):
    def notify(self, t) -> None:
        post_json(self.config["url"], {"text": t.message})


class Telegram(Transport):
    required = ("bot_token", "chat_id")
    API = "https://api.telegram.org"

    def notify(self, t) -> None:
        base = self.config.get("api_base", self.API)
        url = f"{base}/bot{self.config['bot_token']}/sendMessage"
        post_json(url, {"chat_id": self.config["chat_id"], "text": t.message})


class Email(Transport):
    required = ("to",)

    def notify(self, t) -> None:
        to = self.config["to"]
        recipients = [to] if isinstance(to, str) else list(to)
        subject = t.message.split("\n", 1)[0][:150]
        body = "\n".join(f"{k}: {v}" for k, v in alert_fields(t).items())
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except OSError as exc:  # smtplib.SMTPException is an OSError too
            permanent = type(exc).__name__ in ("SMTPRecipientsRefused", "SMTPSenderRefused")
            raise TransportError(
                f"email not sent: {type(exc).__name__}: {exc}", permanent
            ) from None


class DingTalk(Transport):
    def notify(self, t) -> None:
        post_json(self.config["url"], {"msgtype": "text", "text": {"content": t.message}})


class WeCom(Transport):
    def notify(self, t) -> None:
        post_json(self.config["url"], {"msgtype": "text", "text": {"content": t.message}})


class Feishu(Transport):
    def notify(self, t) -> None:
        post_json(self.config["url"], {"msg_type": "text", "content": {"text": t.message}})


class Ntfy(Transport):
    PRIORITY = {"info": "default", "warning": "high", "critical": "urgent"}

    def notify(self, t) -> None:
        headers = {
            "Title": f"{t.rule.name} {t.kind}",
            "Priority": self.PRIORITY[t.rule.severity] if t.kind != "resolved" else "default",
            "Tags": "white_check_mark" if t.kind == "resolved" else "warning",
        }
        if self.config.get("token"):
            headers["Authorization"] = f"Bearer {self.config['token']}"
        http_request(self.config["url"], t.message.encode(), headers)


class PagerDuty(Transport):
    required = ("routing_key",)
    URL = "https://events.pagerduty.com/v2/enqueue"
    SEVERITY = {"info": "info", "warning": "warning", "critical": "critical"}

    def notify(self, t) -> None:
        payload = {
            "routing_key": self.config["routing_key"],
            "event_action": "resolve" if t.kind == "resolved" else "trigger",
            # One incident per rule and subject: a resolve closes what the trigger opened.
            "dedup_key": f"ptracker-{t.rule_id}-{t.host_id}-{t.subject}"[:255],
        }
        if t.kind != "resolved":
            payload["payload"] = {
                "summary": t.message[:1024],
                "source": t.host.name,
                "severity": self.SEVERITY[t.rule.severity],
                "custom_details": alert_fields(t),
            }
        post_json(self.config.get("url", self.URL), payload)


TRANSPORTS: dict[str, type[Transport]] = {
    "webhook": Webhook,
    "slack": Slack,
    "discord": Discord,
    "teams": Teams,
    "telegram": Telegram,
    "email": Email,
    "dingtalk": DingTalk,
    "wecom": WeCom,
    "feishu": Feishu,
    "ntfy": Ntfy,
    "pagerduty": PagerDuty,
}
