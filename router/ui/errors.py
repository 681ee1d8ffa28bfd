"""Errors for people and for programs: an HTML page (or a sign-in redirect) in the UI, a problem in the API."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.response import Redirect

from router.api.problems import problem
from router.ui.render import error_page, wants_html

Handler = Callable[[Request[Any, Any, Any], HTTPException], Response[Any]]


def on_not_signed_in(request: Request[Any, Any, Any], exc: NotAuthorizedException) -> Response[Any]:
    if not wants_html(request):
        return problem(
            401,
            "Not signed in",
            str(exc.detail),
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = f"/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):
        return Response("", status_code=401, headers={"HX-Redirect": login})
    return Redirect(login, status_code=303)


def on_forbidden(request: Request[Any, Any, Any], exc: PermissionDeniedException) -> Response[Any]:
    if not wants_html(request):
        return problem(403, "Forbidden", str(exc.detail))
    return error_page(request, 403, "Not allowed", str(exc.detail))


def on_page_error(api_handler: Handler) -> Handler:
    """HTTP errors on UI pages render as a page; everywhere else as the API's problem response."""

    def handle(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        if not wants_html(request):
            return api_handler(request, exc)
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = "Error"
        return error_page(request, exc.status_code, title, str(exc.detail) if exc.detail != title else "")

    return handle
