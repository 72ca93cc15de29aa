"""What keeps other origins out: the websocket's origin check and the CSP header.

A websocket is not covered by the browser's same-origin policy: any page may open one
to ptracker, and the browser sends the user's cookies with it (cookies are shared by
every port of a host). So the socket must check the Origin header itself, and match
it whole: scheme, host and port.
"""

from urllib.parse import urlsplit

import csp.middleware
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http.request import split_domain_port, validate_host

Origin = tuple[str, str, int]  # scheme, host, port


def parse_origin(value: str) -> Origin | None:
    """scheme://host[:port] as a tuple with the port filled in; None for anything else
    ("null" from a sandboxed frame or a file, a wildcard of CSRF_TRUSTED_ORIGINS)."""
    parts = urlsplit(value.strip().lower())
    try:
        port = parts.port
    except ValueError:
        return None
    ports = settings.DEFAULT_PORTS
    if parts.scheme not in ports or not parts.hostname or "*" in parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or ports[parts.scheme]


def header(scope: dict, name: bytes) -> list[str]:
    return [v.decode("latin1") for k, v in scope.get("headers", ()) if k == name]


def scheme(scope: dict) -> str:
    """The page's scheme as Django would see it (request.scheme), proxy header included."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure = settings.SECURE_PROXY_SSL_HEADER
        forwarded = header(scope, name.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if forwarded:
            return "https" if forwarded[0].split(",")[0].strip() == secure else "http"
    return "https" if scope.get("scheme") == "wss" else "http"


def own_origin(scope: dict) -> Origin | None:
    """The origin of a page of ours the socket was opened from: the Host it was sent to,
    when that is one of ALLOWED_HOSTS (else a rebound name could pass as our own)."""
    hosts = header(scope, b"host")
    if len(hosts) != 1:
        return None
    domain, _ = split_domain_port(hosts[0])
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    return parse_origin(f"{scheme(scope)}://{hosts[0]}")


def origin_allowed(scope: dict) -> bool:
    # No Origin header is refused too, as Channels' own validator does unless every host
    # is allowed. Browsers always send one on a websocket, so this refuses no page; a
    # script that wants the feed sends the dashboard's origin, or uses the REST API.
    origins = header(scope, b"origin")
    if len(origins) != 1:
        return False
    origin = parse_origin(origins[0])
    if origin is None:
        return False
    trusted = [parse_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS]
    return origin == own_origin(scope) or origin in trusted


class SameOriginOnly:
    """ASGI middleware: a websocket from any other origin is refused at the handshake
    (before the consumer sees it), like Channels' OriginValidator, but comparing ports
    and reading the settings per connection."""

    def __init__(self, application) -> None:
        self.application = application
        self.denier = WebsocketDenier.as_asgi()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            return await self.denier(scope, receive, send)
        return await self.application(scope, receive, send)


class CSPMiddleware(csp.middleware.CSPMiddleware):
    """django-csp, with the page's own websocket named in connect-src: CSP level 3
    counts ws:// and wss:// of the page's host as 'self', older browsers do not."""

    def get_policy_parts(self, request, response, report_only: bool = False):
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()  # validated: no header of the client's in the policy
        except DisallowedHost:
            return parts
        own = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), own]
        parts.update = update
        return parts
