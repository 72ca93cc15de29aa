"""System checks: bad configuration stops start-up with a message, not a traceback."""

import importlib.util

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_configuration(app_configs, **kwargs):
    errors = [
        Error(message, id=f"ptracker.E{i:03d}")
        for i, message in enumerate(getattr(settings, "CONFIG_ERRORS", []), start=1)
    ]
    if settings.PTRACKER_REDIS_URL and importlib.util.find_spec("channels_redis") is None:
        errors.append(
            Error(
                "PTRACKER_REDIS_URL is set but the Redis extras are not installed.",
                hint="pip install 'ptracker[redis]'",
                id="ptracker.E100",
            )
        )
    return errors
