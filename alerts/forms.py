"""The channel form of the admin: a field per setting, shown for the kinds that read it.

Settings are stored in Channel.config (JSON), as the transports read them; this form
only writes the keys of the chosen kind, validated, and keeps keys it does not know
(`api_base`, a PagerDuty `url`) as they were."""

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, validate_email

from alerts.models import Channel
from alerts.transports import TRANSPORTS

URL_KINDS = ("webhook", "slack", "discord", "teams", "dingtalk", "wecom", "feishu", "ntfy")
# Each group of settings, the kinds that read it, and its fields.
GROUPS = [
    ("Address", (*URL_KINDS, "pagerduty"), ["url"]),
    ("Request", ("webhook",), ["method", "headers", "body"]),
    ("Telegram", ("telegram",), ["bot_token", "chat_id"]),
    ("Email", ("email",), ["to"]),
    ("ntfy", ("ntfy",), ["token"]),
    ("PagerDuty", ("pagerduty",), ["routing_key"]),
]
KIND_FIELDS = {kind: [f for _, kinds, fs in GROUPS if kind in kinds for f in fs]
               for kind, _ in Channel.KINDS}  # fmt: skip
SETTINGS = [f for _, _, fs in GROUPS for f in fs]


class ChannelForm(forms.ModelForm):
    url = forms.URLField(
        required=False,
        assume_scheme="https",
        max_length=2000,
        help_text="The incoming-webhook address the service gave you (ntfy: "
        "https://ntfy.sh/your-topic; PagerDuty: empty for its Events API).",
    )
    method = forms.ChoiceField(
        required=False, choices=[("POST", "POST"), ("PUT", "PUT"), ("PATCH", "PATCH")]
    )
    headers = forms.JSONField(
        required=False, help_text='Extra HTTP headers: {"X-Api-Key": "…"}', initial=dict
    )
    body = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="A Django template with rule, severity, state, host, subject, value, "
        "message, ts; empty: the alert as JSON.",
    )
    bot_token = forms.CharField(
        required=False,
        validators=[RegexValidator(r"^\d+:[\w-]+$", "A bot token looks like 123456:ABC-def…")],
        help_text="From @BotFather.",
    )
    chat_id = forms.CharField(
        required=False,
        validators=[RegexValidator(r"^-?\d+$|^@\w+$", "A chat id is a number, or @channelname.")],
    )
    to = forms.CharField(required=False, help_text="Addresses, separated by commas.")
    token = forms.CharField(required=False, help_text="An access token, if the topic needs one.")
    routing_key = forms.CharField(
        required=False,
        validators=[
            RegexValidator(r"^[A-Za-z0-9]{32}$", "An integration key is 32 letters and digits.")
        ],
        help_text="The integration key of an Events API v2 integration.",
    )

    class Meta:
        model = Channel
        fields = ["name", "kind", "enabled"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, value in (self.instance.config or {}).items():
            if name in SETTINGS:
                self.initial[name] = (
                    ", ".join(value) if name == "to" and isinstance(value, list) else value
                )

    def clean_to(self) -> list[str]:
        addresses = [a.strip() for a in self.cleaned_data["to"].split(",") if a.strip()]
        for address in addresses:
            validate_email(address)
        return addresses

    def clean_headers(self) -> dict:
        headers = self.cleaned_data["headers"] or {}
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValidationError('Headers are a JSON object of names and texts: {"A": "b"}.')
        return headers

    def clean(self) -> dict:
        """The chosen kind's settings into config; Channel.clean then checks them whole
        (what each kind needs) and names the field at fault. A field that failed its own
        check keeps what was typed, so it is not also reported missing."""
        data = super().clean()
        kind = data.get("kind")
        if kind not in TRANSPORTS:
            return data
        config = {k: v for k, v in (self.instance.config or {}).items() if k not in SETTINGS}
        for name in KIND_FIELDS[kind]:
            value = self.data.get(self.add_prefix(name)) if name in self.errors else data.get(name)
            if value:
                config[name] = value
        self.instance.config = config
        return data
