"""What may leave the server of a command line or an environment, and for whom.

Command lines often carry secrets (`--password=…`, `postgres://user:pass@…`). Users
without the `monitoring.view_full_cmdline` permission (superusers have every
permission) see them with the secret parts replaced by `***`. Everything that shows a
command line asks here: pages through `cmdline_for` (the `shown_to` template filter),
the API and the websocket through the serializers' CmdlineField, the admin and the
process table's search through `may_see_full_cmdline`.

A pattern masks its first group when it has one, else its whole match. The defaults
below apply always; PTRACKER_REDACT_PATTERNS adds more (checked at start-up by
settings, compiled once here).
"""

import functools
import re
from collections.abc import Iterable

from django.conf import settings

MASK = "***"
FULL_CMDLINE = "monitoring.view_full_cmdline"
PROCESS_INTERNALS = "monitoring.view_process_internals"

_SECRET_WORDS = (
    r"password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|credentials?|auth"
)
DEFAULT_PATTERNS = [
    # --password=x, DB_PASSWORD=x, password=x (libpq conninfo), --auth-token=x
    rf"(?i)[\w.-]*(?:{_SECRET_WORDS})=(\S+)",
    # --password x, -token x: an option, then a value that is not the next option
    rf"(?i)(?<!\S)--?[\w-]*(?:{_SECRET_WORDS})\s+(?!-)(\S+)",
    # scheme://user:secret@host
    r"(?i)\b[a-z][a-z0-9+.-]*://[^\s/:@]*:([^\s/@]+)@",
    # -H "Authorization: Basic x", Bearer x
    r"(?i)\bauthorization:\s*(?:(?:basic|bearer|token)\s+)?(\S+)",
    r"(?i)\bbearer\s+(\S+)",
]
# Environment variables whose names say they hold a secret: masked whole, for everyone.
SECRET_NAME = re.compile(
    r"SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE|SALT", re.I
)


@functools.cache
def _compiled(extra: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p) for p in (*DEFAULT_PATTERNS, *extra))


def redact(text: str) -> str:
    for pattern in _compiled(tuple(settings.PTRACKER_REDACT_PATTERNS)):
        text = pattern.sub(_mask, text)
    return text


def _mask(match: re.Match) -> str:
    if not match.re.groups or match.group(1) is None:
        return MASK
    whole, offset = match.group(), match.start()
    return whole[: match.start(1) - offset] + MASK + whole[match.end(1) - offset :]


def may_see_full_cmdline(user) -> bool:
    return user is not None and user.has_perm(FULL_CMDLINE)


def cmdline_for(user, cmdline: str) -> str:
    """The command line as `user` may see it."""
    return cmdline if may_see_full_cmdline(user) else redact(cmdline)


# Values that are credentials whatever their variable is called: well-known token
# prefixes (GitHub, GitLab, Slack, OpenAI/Stripe, AWS, Google), JSON web tokens, PEM
# private keys, and long single words mixing letters and digits, as random keys do,
# ptracker's own tokens among them (a path starts with "/", prose has spaces; a UUID
# is masked too: over-masking costs a click, under-masking a leak).
CREDENTIAL_VALUE = re.compile(
    r"^(?:gh[pousr]_|github_pat_|glpat-|xox[abprs]-|sk-|sk_live_|rk_live_|AKIA|ASIA"
    r"|AIza|ya29\.)\S{6,}$"
    r"|^eyJ[\w-]+\.[\w-]+\.[\w-]*$"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    r"|^(?=[^/].*\d)(?=.*[A-Za-z])[\w+/=.-]{32,}$"
)


def looks_secret(name: str, value: str) -> bool:
    return bool(SECRET_NAME.search(name) or CREDENTIAL_VALUE.search(value))


def environment(items: Iterable[tuple[str, str]], reveal: bool = False) -> list[tuple[str, str]]:
    """Environment variables as shown: secret-looking ones masked, even to those
    allowed to see environments, unless they `reveal` them by an explicit request."""
    if reveal:
        return sorted(items)
    return sorted((k, MASK if looks_secret(k, v) else redact(v)) for k, v in items)
