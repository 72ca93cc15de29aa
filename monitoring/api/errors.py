"""How the API answers errors: a bad parameter, a URL that matches nothing."""

from django.http import JsonResponse
from django.views.defaults import page_not_found
from rest_framework.exceptions import ValidationError
from rest_framework.views import exception_handler as drf_exception_handler

from monitoring.params import BadParameter


def exception_handler(exc, context):
    """DRF's handler, plus BadParameter as a 400 `{field: [message]}`."""
    if isinstance(exc, BadParameter):
        exc = ValidationError({exc.field: [str(exc)]})
    return drf_exception_handler(exc, context)


def not_found(request, exception):
    """Django's 404 for a URL that matches nothing (a path id beyond 64 bits, say):
    under /api/ in the API's own shape, elsewhere the usual page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
