"""RFC 9457 problem responses for every error a client can cause, and no tracebacks."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from router.errors import ClientError
from router.ui.render import error_page, wants_html

log = structlog.get_logger("router.api")
MEDIA = "application/problem+json"


def problem_body(status: int, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document (``detail`` left out when empty)."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return body | extra


def problem(status: int, title: str, detail: str = "", **extra: Any) -> Response[dict[str, Any]]:
    body = problem_body(status, title, detail, **extra)
    headers = {"retry-after": "5"} if status == 503 else None
    return Response(body, status_code=status, media_type=MEDIA, headers=headers)


def client_problem(exc: ClientError) -> Response[dict[str, Any]]:
    """The RFC 9457 problem for a client error: its status, title, detail and any members of its own."""
    return problem(exc.status, exc.title, exc.detail, **exc.extra())


def on_client_error(request: Request[Any, Any, Any], exc: ClientError) -> Response[Any]:
    """The one answer to every ClientError a handler lets through: a problem for programs, a page for people."""
    if wants_html(request):
        return error_page(request, exc.status, exc.title, exc.detail)
    return client_problem(exc)


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
