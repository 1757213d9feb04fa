"""A spec-only server for client tests: our real server app with every extension route
cut off, and a log of the requests made.

Only the operations listed in the shared OpenAPI spec reach the app (matched by method
and path template); anything else is answered 404 with the spec's ``Error`` body, as a
server implementing the spec and nothing more would. ``requests`` records every
``(method, path)`` asked for, so a test can also assert which operations a command used.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import httpx

from tests.spec import load_spec


def spec_routes() -> list[tuple[str, re.Pattern[str]]]:
    """(METHOD, path regex) for every operation in the spec, paths relative to /v1."""
    routes = []
    for path, item in load_spec()["paths"].items():
        pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                routes.append((method.upper(), pattern))
    return routes


class SpecOnlyTransport(httpx.BaseTransport):
    """Forwards spec operations to ``inner`` (e.g. a TestClient's transport); 404 for the rest."""

    def __init__(self, inner: httpx.BaseTransport, base_path: str = "/v1") -> None:
        self.inner = inner
        self.base_path = base_path.rstrip("/")
        self.routes = spec_routes()
        self.requests: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def is_spec(self, method: str, path: str) -> bool:
        return any(m == method and pattern.match(path) for m, pattern in self.routes)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith(self.base_path):
            path = path[len(self.base_path) :] or "/"
        with self._lock:
            self.requests.append((request.method, path))
        if not self.is_spec(request.method, path):
            with self._lock:
                self.refused.append((request.method, path))
            body: dict[str, Any] = {"code": 404, "message": "not found", "details": path}
            return httpx.Response(404, content=json.dumps(body).encode(), request=request)
        return self.inner.handle_request(request)
