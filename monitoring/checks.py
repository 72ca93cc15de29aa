"""System checks: bad configuration stops start-up with a message, not a traceback."""

import importlib.util

from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.checks import Error, Warning, register

from ptracker.assets import NPM_ASSETS


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


@register()
def check_front_end_assets(app_configs, **kwargs):
    missing = [
        package
        for package, (_folder, files) in NPM_ASSETS.items()
        if not all(finders.find(f"vendor/{package}/{name}") for name in files)
    ]
    if not missing:
        return []
    return [
        Warning(
            f"front-end libraries are not installed ({', '.join(missing)}): "
            "the dashboard's charts will not draw.",
            hint="run `npm ci` in the project directory (`make run` does it)",
            id="ptracker.W001",
        )
    ]
