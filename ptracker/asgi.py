import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ptracker.settings")

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

# Websocket routes join this router with the live dashboard.
application = ProtocolTypeRouter({"http": get_asgi_application()})
