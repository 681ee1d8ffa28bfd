"""RFC 9457 problem responses for every error a client can cause, and no tracebacks."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from router.errors import IngestError

log = structlog.get_logger("router.api")
MEDIA = "application/problem+json"


def problem(status: int, title: str, detail: str = "", **extra: Any) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {"retry-after": "5"} if status == 503 else None
    return Response(body, status_code=status, media_type=MEDIA, headers=headers)


def on_ingest_error(_request: Request[Any, Any, Any], exc: IngestError) -> Response[dict[str, Any]]:
    return problem(exc.status, exc.title, exc.detail)


def on_http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "Error"
    title = {413: "Request body too large", 400: "Invalid request"}.get(exc.status_code, phrase)
    detail = exc.detail if exc.detail and exc.detail != phrase else ""
    return problem(exc.status_code, title, detail, **extra)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled_error", path=request.url.path, error=str(exc))
    return problem(500, "Internal error", "the error was logged; nothing about it is shown here")
