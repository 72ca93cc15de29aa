"""How the OpenAPI schema documents the API's answers beyond the happy path."""

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class Detail(serializers.Serializer):
    detail = serializers.CharField()


# A parameter's name -> what is wrong with it.
FIELD_ERRORS = {
    "type": "object",
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}
ANSWERS = {
    400: OpenApiResponse(FIELD_ERRORS, description="A parameter is malformed: it is named."),
    401: OpenApiResponse(Detail, description="No token, or a wrong or revoked one."),
    403: OpenApiResponse(Detail, description="Not allowed (a read-only token on a write)."),
    404: OpenApiResponse(Detail, description="No such object."),
}


def errors(*statuses: int) -> dict:
    """The listed error answers, and 401: every endpoint needs a token or a session."""
    return {status: ANSWERS[status] for status in (*statuses, 401)}


def answers(ok, *statuses: int) -> dict:
    """The `responses` of an operation: `ok` for 200, then `errors(*statuses)`."""
    return {200: ok, **errors(*statuses)}


def empty_means_absent(result, generator, request, public):
    """A postprocessing hook: an optional query parameter may be sent empty, and then
    counts as not sent (what an HTML form sends for a field left blank)."""
    for url, path in result["paths"].items():
        if not url.startswith("/api/"):
            continue  # the debug monitor reads its own
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and not parameter.get("required"):
                    parameter["allowEmptyValue"] = True
    return result


def without_switched_off(endpoints):
    """A preprocessing hook: the debug monitor's endpoints are documented only while
    PTRACKER_DEBUG_MONITOR is on; off, they answer 404 and a reader must not see them."""
    if settings.PTRACKER_DEBUG_MONITOR:
        return endpoints
    return [e for e in endpoints if not e[0].startswith("/debug/")]
