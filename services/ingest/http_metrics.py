"""An ASGI middleware counting and timing HTTP requests by route template, method and status.

Pure ASGI (no `BaseHTTPMiddleware`) so it costs one wrapper call per request. The route label
is the matched route's path template, `unmatched` for anything else, so fuzzed or scanned URLs
cannot grow the label set.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, requests: Counter, duration: Histogram) -> None:
        self._app = app
        self._requests = requests
        self._duration = duration
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (path, method, status)
            children = self._children.get(key)
            if children is None:
                children = self._children[key] = (
                    self._requests.labels(path, method, str(status)),
                    self._duration.labels(path, method),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - start)
