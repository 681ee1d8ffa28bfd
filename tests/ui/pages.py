"""Walking the app's routes for the security tests: every UI page and every API read, with real ids filled in."""

from __future__ import annotations

import re
from typing import Any

from litestar.routes import HTTPRoute

NOT_PAGES = ("/api/", "/hooks/", "/inbox/", "/static/", "/schema", "/health")


def template(path: str) -> str:
    """``/api/events/{event_id:str}`` → ``/api/events/{event_id}``."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def handlers(app: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template, opt) of every handler but OPTIONS and the OpenAPI pages."""
    found = []
    for route in app.routes:
        assert isinstance(route, HTTPRoute), f"{route.path}: a {type(route).__name__} is not covered"
        path = template(route.path)
        if path.startswith("/schema"):
            continue
        for handler in route.route_handlers:
            found.extend((m, path, dict(handler.opt)) for m in sorted(handler.http_methods) if m != "OPTIONS")
    return found


def fill(path: str, values: dict[str, str]) -> str:
    """The path with each ``{param}`` replaced by ``values[param]`` (``x`` for a param not given)."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "x"), path)


def ui_pages(app: Any, values: dict[str, str]) -> list[str]:
    """Every GET page of the UI (not the API, ingest, static files or health), ids filled in."""
    return sorted(
        {
            fill(path, values)
            for method, path, opt in handlers(app)
            if method == "GET" and not path.startswith(NOT_PAGES) and path != "/login"
        }
    )


def api_reads(app: Any, values: dict[str, str]) -> list[str]:
    """Every GET route of the JSON API, ids filled in."""
    return sorted(
        {fill(path, values) for method, path, _ in handlers(app) if method == "GET" and path.startswith("/api/")}
    )


def mutations(app: Any) -> list[tuple[str, str]]:
    """Every non-public route that changes something (method, path template)."""
    return sorted((m, p) for m, p, opt in handlers(app) if m not in ("GET", "HEAD") and not opt.get("public"))
