"""Bearer tokens for the API (`Authorization: Bearer pt_…`), beside browser sessions."""

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from monitoring.models import ApiToken


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None  # no token: session authentication may still apply
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Authorization header must be: Bearer <token>")
        token = ApiToken.find(header[1].decode(errors="replace"))
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if token.last_used is None or now - token.last_used > timedelta(minutes=1):
            ApiToken.objects.filter(pk=token.pk).update(last_used=now)  # at most once a minute
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword  # makes DRF answer 401 with WWW-Authenticate, not 403


class ReadOnlyTokens(permissions.BasePermission):
    """A read-only token may GET, HEAD and OPTIONS; anything else is 403."""

    message = "This token is read-only."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if isinstance(token, ApiToken) and token.read_only:
            return request.method in permissions.SAFE_METHODS
        return True


class JobTokens(permissions.BasePermission):
    """A jobs token (ApiToken.JOBS) reaches only views with `jobs_scope = True`: the
    GPU leases a batch job takes and its heartbeat checks, nothing else of the API."""

    message = "This token only takes GPU leases and reports job heartbeats."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if isinstance(token, ApiToken) and token.scope == ApiToken.JOBS:
            return getattr(view, "jobs_scope", False)
        return True


class ApiDocsAccess(permissions.BasePermission):
    """The schema and its docs page: signed in or with a token, unless
    PTRACKER_PUBLIC_API_DOCS opens them (read per request, so tests can flip it)."""

    def has_permission(self, request, view) -> bool:
        return settings.PTRACKER_PUBLIC_API_DOCS or bool(
            request.user and request.user.is_authenticated
        )


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the token scheme."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token made in the admin (API tokens): `Bearer pt_…`",
        }
