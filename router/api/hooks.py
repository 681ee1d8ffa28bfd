"""``POST /hooks/{source}``: verify, store durably, answer 202; and the built-in request inbox."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, post, route
from litestar.datastructures import State
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect

from router.api.ingest_asgi import WebhookRequest, count, fast_ingest, serve_webhook
from router.api.ingest_asgi import read_body as read_limited
from router.api.problems import client_problem
from router.api.routes import Routes
from router.errors import IngestError
from router.pipeline.ingest import Incoming, find_source, fold_headers, fold_pairs, parse_body
from router.records.inbox import is_page_view, request_dict
from router.records.inbox import requests as inbox_requests
from router.records.models import InboxRequest, new_id, utcnow

inbox = Routes("inbox")


def headers_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Every header, a repeated one joined with ', ' (so a second Content-Encoding is not overlooked)."""
    return fold_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"])


def incoming(request: Request[Any, Any, Any], source: str, raw: bytes) -> Incoming:
    return Incoming(
        source=source,
        method=request.method,
        path=request.scope["path"],
        headers=headers_of(request),
        query=fold_pairs(request.query_params.multi_items()),
        raw=raw,
    )


@post(
    "/hooks/{source:str}",
    operation_id="ReceiveWebhook",
    tags=["ingest"],
    status_code=202,
    summary="Receive a webhook",
    opt={"public": True},  # authenticated by the source's own signature scheme
    middleware=[fast_ingest],  # answers at the ASGI layer (router/api/ingest_asgi.py)
)
async def receive(
    request: Request[Any, Any, Any],
    source: Annotated[str, PathParameter(description="The source id from the rule files.")],
) -> Response[Any]:
    """Verify the request against its source, commit it to the database, then answer 202 with its id.

    Requests are answered by the route's middleware before this handler would run; both call
    ``serve_webhook`` (this body is what answers when the middleware is not in front of it).
    """
    started = time.perf_counter()
    req = WebhookRequest(
        source=source,
        method=request.method,
        path=request.scope["path"],
        raw_headers=request.scope["headers"],
        query_string=request.scope.get("query_string", b""),
        client=request.client.host if request.client else None,
        chunks=_stream(request),
    )
    answer = await serve_webhook(request.app.state, req)
    count(request.app.state, source, answer.status, started)
    headers = {k.decode(): v.decode() for k, v in answer.headers() if k != b"content-length"}
    return Response(answer.body, status_code=answer.status, headers=headers)


async def _stream(request: Request[Any, Any, Any]) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except RequestEntityTooLarge:  # Litestar's own limit, set to ROUTER_MAX_BODY_BYTES too
        limit = request.app.state.settings.max_body_bytes
        raise IngestError(
            413, "Request body too large", f"the body is over the limit of {limit} bytes (ROUTER_MAX_BODY_BYTES)"
        ) from None


def unread(exc: IngestError) -> Response[Any]:
    """A refusal sent before the whole body was read: close the connection, or the server drains the rest."""
    response = client_problem(exc)
    response.headers["connection"] = "close"
    return response


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """Read the body (the inbox catcher), refusing (413) as soon as it is known to be over the limit."""
    req = WebhookRequest(
        "", request.method, request.scope["path"], request.scope["headers"], b"", None, _stream(request)
    )
    return await read_limited(req, headers_of(request), limit)


@route(
    "/inbox/{name:str}",
    http_method=["GET", "POST", "PUT", "PATCH", "DELETE"],
    opt={"public": True},
    operation_id=lambda _handler, method, _path: f"CatchRequest{str(method).title()}",
    tags=["inbox"],
    status_code=200,
    summary="Catch any request in the built-in inbox",
)
async def catch(
    request: Request[Any, Any, Any], state: State, name: Annotated[str, PathParameter(description="Inbox name.")]
) -> Response[Any] | dict[str, Any]:
    """Store any request under ``name``, so deliveries can be seen without an outside service."""
    if not name or len(name) > 64:
        raise IngestError(400, "Bad inbox name", "use 1 to 64 characters")
    if request.method == "GET" and is_page_view(request.headers):  # a person looking, not a request to catch
        return Redirect(f"/inboxes/{quote(name, safe='')}", status_code=303)
    try:
        raw = await read_body(request, state.settings.max_body_bytes)
    except IngestError as exc:
        return unread(exc)
    req = incoming(request, name, raw)
    try:
        body = parse_body(raw, req.content_type)
    except IngestError:
        body = None
    row = InboxRequest(
        id=new_id(),
        name=name,
        received_at=utcnow(),
        method=request.method,
        path=req.path,
        headers=req.headers,
        query=req.query,
        body_text=raw.decode("utf-8", errors="replace"),
        body=body,
    )
    async with state.sessions.begin() as session:
        session.add(row)
    return {"id": row.id, "name": name}


@inbox.get("/api/inbox/{name:str}", operation_id="ListInbox")
async def list_inbox(
    state: State,
    name: Annotated[str, PathParameter(description="Inbox name.")],
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="How many, newest first.")] = 50,
) -> dict[str, Any]:
    """List what an inbox caught."""
    async with state.sessions() as session:
        rows = await inbox_requests(session, name, limit=limit)
    return {"name": name, "requests": [request_dict(r) for r in rows]}


__all__ = ["catch", "find_source", "list_inbox", "receive"]
