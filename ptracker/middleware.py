"""How Django runs the middleware under ASGI (Daphne): in one thread per request.

Django runs a middleware that can be async as async, and from there each sync
process_request or process_response of the ones above it (all of Django's own, and
django-csp's) is a hop to the request's thread and back: about a dozen hops a
request, 0.6 to 1 ms of CPU, where an agent's whole push costs ~8. With the innermost
middleware sync only, Django runs the whole chain in the request's thread, entered
once; views are unchanged (a sync view runs in that thread, an async one on the event
loop, as before).
"""


class SyncChain:
    """The innermost middleware: passes each request on as it is, and is sync only."""

    sync_capable, async_capable = True, False

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
