import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ptracker.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_application = get_asgi_application()  # sets Django up before the imports below

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from monitoring.api.agents import KnownPushes  # noqa: E402
from monitoring.routing import websocket_urlpatterns  # noqa: E402
from ptracker.security import SameOriginOnly  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": KnownPushes(django_application),
        "websocket": SameOriginOnly(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
