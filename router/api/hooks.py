"""``POST /hooks/{source}``: verify, store durably, answer 202; and the built-in request inbox."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from litestar import MediaType, Request, Response, get, post, route
from litestar.datastructures import State
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect

from router.api.problems import problem
from router.errors import IngestError
from router.inbox import is_page_view, request_dict
from router.inbox import requests as inbox_requests
from router.ingest import Incoming, accept, check_content_encoding, find_source, fold_headers, fold_pairs, parse_body
from router.metrics import ingest_metrics
from router.models import InboxRequest, new_id, utcnow


def headers_of(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Every header, a repeated one joined with ', ' (so a second Content-Encoding is not overlooked)."""
    return fold_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"])


def incoming(
    request: Request[Any, Any, Any], source: str, raw: bytes, headers: dict[str, str] | None = None
) -> Incoming:
    return Incoming(
        source=source,
        method=request.method,
        path=request.scope["path"],
        headers=headers if headers is not None else headers_of(request),
        query=fold_pairs(request.query_params.multi_items()) if request.scope["query_string"] else {},
        raw=raw,
    )


@post(
    "/hooks/{source:str}",
    operation_id="ReceiveWebhook",
    tags=["ingest"],
    status_code=202,
    summary="Receive a webhook",
    opt={"public": True},  # authenticated by the source's own signature scheme
    middleware=[ingest_metrics],  # router_events_received_total and router_ingest_seconds, from the status
)
async def receive(
    request: Request[Any, Any, Any],
    source: Annotated[str, PathParameter(description="The source id from the rule files.")],
) -> Response[Any]:
    """Verify the request against its source, commit it to the database, then answer 202 with its id."""
    state = request.app.state  # read in place: an injected ``State`` is a copy made per request
    ruleset = state.rules.current
    headers = headers_of(request)
    try:
        find_source(ruleset, source)  # 404 and 415 before reading the body
        check_content_encoding(headers)
        raw = await read_body(request, state.settings.max_body_bytes)
    except IngestError as exc:
        note_rejection(request, state, source, exc)
        return unread(exc)
    try:
        row = accept(ruleset, incoming(request, source, raw, headers))
    except IngestError as exc:  # 401 signature, 400 body
        note_rejection(request, state, source, exc, raw)
        return problem(exc.status, exc.title, exc.detail)
    try:
        event_id, duplicate = await state.writer.store(row)
    except Exception:
        down = IngestError(503, "Storage unavailable", "the event could not be stored; retry later")
        note_rejection(request, state, source, down, raw)
        return problem(down.status, down.title, down.detail)
    if duplicate:
        return Response({"event_id": event_id, "duplicate": True}, status_code=200)
    return Response(b'{"event_id":"%s"}' % event_id.encode(), status_code=202, media_type=MediaType.JSON)


def note_rejection(
    request: Request[Any, Any, Any], state: State, source: str, exc: IngestError, raw: bytes | None = None
) -> None:
    """Record a refused request (router.rejections: no await, bounded); only refusals come here."""
    length = request.headers.get("content-length")
    ruleset = state.rules.current
    state.rejections.note(
        source=source,
        status=exc.status,
        title=exc.title,
        reason=exc.detail,
        remote_addr=request.client.host if request.client else None,
        headers=headers_of(request),
        body_size=len(raw) if raw is not None else int(length) if length and length.isdigit() else None,
        body=raw or b"",
        known=ruleset.sources.get(source),
        secrets=ruleset.secrets,
    )


def unread(exc: IngestError) -> Response[Any]:
    """A refusal sent before the whole body was read: close the connection, or the server drains the rest."""
    response = problem(exc.status, exc.title, exc.detail)
    response.headers["connection"] = "close"
    return response


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it is known to be over the limit."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise IngestError(
            413, "Request body too large", f"the body is {length} bytes; the limit is {limit} (ROUTER_MAX_BODY_BYTES)"
        )
    too_large = IngestError(
        413, "Request body too large", f"the body is over the limit of {limit} bytes (ROUTER_MAX_BODY_BYTES)"
    )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except RequestEntityTooLarge:  # Litestar's own limit, set to the same value
        raise too_large from None
    return b"".join(chunks)


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


@get("/api/inbox/{name:str}", operation_id="ListInbox", tags=["inbox"], summary="List what an inbox caught")
async def list_inbox(
    state: State,
    name: Annotated[str, PathParameter(description="Inbox name.")],
    limit: Annotated[int, QueryParameter(ge=1, le=500, description="How many, newest first.")] = 50,
) -> dict[str, Any]:
    async with state.sessions() as session:
        rows = await inbox_requests(session, name, limit=limit)
    return {"name": name, "requests": [request_dict(r) for r in rows]}


__all__ = ["catch", "find_source", "list_inbox", "receive"]
