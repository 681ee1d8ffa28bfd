"""``POST /hooks/{source}`` answered at the ASGI layer: verify, store durably, 202.

The route is declared to Litestar (router/api/hooks.py: its path, parameters and answers are in the API
reference), and its own middleware, ``fast_ingest``, answers every request to it. Measured on this
machine, Litestar's per-request machinery (the request object, the handler's signature, the response
object) costs about 65 µs of the ~90 µs a parse-only Litestar route takes, while the same work as a
plain ASGI app takes ~25 µs; on the router's hottest path that is most of its CPU. The work itself is
``serve_webhook``, a plain function the Litestar handler calls too, so both answer exactly alike.

The order of checks is the contract (router/pipeline/ingest.py): unknown source 404, Content-Encoding 415 (both
before reading), 413 while reading, 401 signature, 400 body, 503 when the database cannot store it;
202 with the event's id once it is committed, 200 ``duplicate`` for a repeat of a dedupe key.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import structlog

from router import metrics
from router.api.problems import problem_body
from router.errors import IngestError
from router.pipeline.ingest import Incoming, accept, check_content_encoding, find_source, fold_headers, fold_pairs

log = structlog.get_logger("router.api")

JSON = b"application/json"
PROBLEM = b"application/problem+json"
_encode = msgspec.json.Encoder().encode


@dataclass
class WebhookRequest:
    """What ingest reads of a request, whichever way it came in."""

    source: str
    method: str
    path: str
    raw_headers: Iterable[tuple[bytes, bytes]]
    query_string: bytes
    client: str | None
    chunks: AsyncIterator[bytes]

    def headers(self) -> dict[str, str]:
        """Every header, a repeated one joined with ', ' (so a second Content-Encoding is not overlooked)."""
        return fold_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers)

    def query(self) -> dict[str, Any]:
        if not self.query_string:
            return {}
        return fold_pairs(parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True))


@dataclass
class Answer:
    status: int
    body: bytes
    media_type: bytes = JSON
    close: bool = False  # refused before the body was read: the server must not drain the rest

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", self.media_type), (b"content-length", str(len(self.body)).encode())]
        if self.status == 503:
            out.append((b"retry-after", b"5"))
        if self.close:
            out.append((b"connection", b"close"))
        return out


def problem_answer(exc: IngestError, close: bool = False) -> Answer:
    return Answer(exc.status, _encode(problem_body(exc.status, exc.title, exc.detail)), PROBLEM, close)


async def serve_webhook(state: Any, req: WebhookRequest) -> Answer:
    """Verify the request against its source, commit it to the database, then answer 202 with its id."""
    ruleset = state.rules.current
    headers = req.headers()
    try:
        find_source(ruleset, req.source)  # 404 and 415 before reading the body
        check_content_encoding(headers)
        raw = await read_body(req, headers, state.settings.max_body_bytes)
    except IngestError as exc:
        note_rejection(state, req, headers, exc)
        return problem_answer(exc, close=True)
    try:
        row = accept(ruleset, Incoming(req.source, req.method, req.path, headers, req.query(), raw))
    except IngestError as exc:  # 401 signature, 400 body
        note_rejection(state, req, headers, exc, raw)
        return problem_answer(exc)
    try:
        event_id, duplicate = await state.writer.store(row)
    except Exception:
        down = IngestError(503, "Storage unavailable", "the event could not be stored; retry later")
        note_rejection(state, req, headers, down, raw)
        return problem_answer(down)
    if duplicate:
        return Answer(200, _encode({"event_id": event_id, "duplicate": True}))
    return Answer(202, b'{"event_id":"%s"}' % event_id.encode())


async def read_body(req: WebhookRequest, headers: dict[str, str], limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it is known to be over the limit."""
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise IngestError(
            413, "Request body too large", f"the body is {length} bytes; the limit is {limit} (ROUTER_MAX_BODY_BYTES)"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in req.chunks:
        size += len(chunk)
        if size > limit:
            raise IngestError(
                413, "Request body too large", f"the body is over the limit of {limit} bytes (ROUTER_MAX_BODY_BYTES)"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def note_rejection(
    state: Any, req: WebhookRequest, headers: dict[str, str], exc: IngestError, raw: bytes | None = None
) -> None:
    """Record a refused request (router.records.rejections: no await, bounded); only refusals come here."""
    length = headers.get("content-length")
    ruleset = state.rules.current
    state.rejections.note(
        source=req.source,
        status=exc.status,
        title=exc.title,
        reason=exc.detail,
        remote_addr=req.client,
        headers=headers,
        body_size=len(raw) if raw is not None else int(length) if length and length.isdigit() else None,
        body=raw or b"",
        known=ruleset.sources.get(req.source),
        secrets=ruleset.secrets,
    )


async def _asgi_chunks(receive: Any) -> AsyncIterator[bytes]:
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise IngestError(400, "Body incomplete", "the client went away before sending the whole body")
        yield message.get("body", b"")
        more = message.get("more_body", False)


def fast_ingest(app: Any) -> Any:
    """The ingest route's middleware: answers the request itself from ASGI (the handler is not called)."""

    async def middleware(scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        client = scope.get("client")
        req = WebhookRequest(
            source=scope["path_params"]["source"],
            method=scope["method"],
            path=scope["path"],
            raw_headers=scope["headers"],
            query_string=scope.get("query_string", b""),
            client=client[0] if client else None,
            chunks=_asgi_chunks(receive),
        )
        try:
            answer = await serve_webhook(scope["app"].state, req)
        except Exception as exc:  # never a traceback to the sender; the same answer the app gives elsewhere
            log.exception("unhandled_error", path=scope["path"], error=str(exc))
            answer = problem_answer(
                IngestError(500, "Internal error", "the error was logged; nothing about it is shown here")
            )
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers()})
        await send({"type": "http.response.body", "body": answer.body})
        count(scope["app"].state, req.source, answer.status, started)

    return middleware


def count(state: Any, source: str, status: int, started: float) -> None:
    """router_events_received_total and router_ingest_seconds, from the status answered."""
    holder = getattr(state, "rules", None)  # absent only before the app has started
    sources = holder.current.sources if holder is not None else {}
    metrics.ingest_finished(sources, source, status, time.perf_counter() - started)
