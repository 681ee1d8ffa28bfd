"""One pass over a polled API's pages: render the request, fetch, read items, ids, cursor and the next page.

The HTTP call is a parameter (``Fetch``): workers and ``router poll`` use ``http_fetch`` (router.pipeline.outbound.send,
so the egress guard, timeouts and error classing are the actions'); ``router test`` replays recorded
responses. Nothing here touches the database: the caller stores what a pass found.

A pass stops at the last page (``next`` gives nothing), at ``max_pages`` or the time budget (the pass
goes on from the page after at the next poll), at a 304 (the ETag says nothing changed), at a page
holding an item already stored (``stop_at_seen``), or at an error (the pages before it are kept).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from router.errors import ActionError, PermanentError, TemplateRenderError
from router.pipeline.outbound import retry_after_seconds, send
from router.polling.compile import CompiledPoll
from router.rules.templating import render_tree

OK_STATUSES = [*range(200, 300), 304]
_LINK_PART = re.compile(r"<(?P<url>[^>]*)>(?P<params>[^,<]*)")
_REL = re.compile(r"""rel\s*=\s*(?:"(?P<q>[^"]*)"|(?P<t>[^\s;,]+))""", re.IGNORECASE)


@dataclass
class PageRequest:
    """One request of a pass: the first (rendered from the block) or a next page."""

    method: str
    url: str
    headers: dict[str, str]
    query: dict[str, Any]
    json: Any = None

    def key(self) -> str:
        """What identifies the request (the ETag of its answer belongs to it)."""
        data = json.dumps([self.method, self.url, self.query, self.json], sort_keys=True, default=str)
        return hashlib.sha256(data.encode()).hexdigest()[:32]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    url: str


Fetch = Callable[[PageRequest, float], Awaitable[Reply]]


@dataclass
class Found:
    """An item to emit: its identity, the item, and the page it came from."""

    key: str
    item: Any
    page: int
    url: str
    headers: dict[str, str]
    query: dict[str, Any]


@dataclass
class PassResult:
    pages: int = 0
    items: int = 0
    found: list[Found] = field(default_factory=list)
    complete: bool = False  # the pass reached its end: the cursor may move
    resume: dict[str, Any] | None = None  # where an unfinished pass goes on (url, query, page)
    cursor: Any = None  # the greatest cursor this poll's pages gave
    not_modified: bool = False
    etag: str | None = None
    etag_key: str | None = None
    status: int | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None
    poll_interval: float | None = None
    notes: list[str] = field(default_factory=list)
    requests: list[PageRequest] = field(default_factory=list)


def template_context(secrets: Mapping[str, str], source: str, cursor: Any, since: float, now: float) -> dict[str, Any]:
    """What a poll's request templates read; ``cursor`` is undefined until a pass has kept one."""
    from datetime import UTC, datetime

    ctx: dict[str, Any] = {
        "secrets": dict(secrets),
        "source": source,
        "now": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "now_unix": int(now),
        "since": datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z"),
        "since_unix": int(since),
    }
    if cursor is not None:
        ctx["cursor"] = cursor
    return ctx


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return [_param(v) for v in value if v is not None]
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render_request(poll: CompiledPoll, ctx: Mapping[str, Any]) -> PageRequest:
    """The first request of a pass; raises TemplateRenderError naming the field."""
    r = render_tree(poll.request, ctx)
    query = {str(k): _param(v) for k, v in (r.get("query") or {}).items() if v is not None}
    headers = {str(k).lower(): str(v) for k, v in (r.get("headers") or {}).items() if v is not None}
    url = str(r.get("url") or "")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TemplateRenderError(f"the url renders to {url!r}, not an http(s) URL", path="url")
    return PageRequest(str(r.get("method") or "GET"), url, headers, query, r.get("json"))


def parse_link(header: str) -> dict[str, str]:
    """``Link: <url>; rel="next", <url>; rel="last"`` → {"next": url, "last": url} (RFC 8288)."""
    out: dict[str, str] = {}
    for match in _LINK_PART.finditer(header or ""):
        rel = _REL.search(match.group("params"))
        if rel:
            for name in (rel.group("q") or rel.group("t") or "").split():
                out.setdefault(name.lower(), match.group("url").strip())
    return out


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def next_request(poll: CompiledPoll, ctx: Mapping[str, Any], reply: Reply, first: PageRequest) -> PageRequest | None:
    """The request of the page after ``reply``, or None at the last page; raises TemplateRenderError."""
    if poll.follow_link:
        target: Any = parse_link(reply.headers.get("link", "")).get("next")
    else:
        assert poll.next is not None
        target = poll.next.search(ctx)
    if target is None or target is False or target == "" or target == {}:
        return None
    if isinstance(target, str):
        url = urljoin(reply.url, target)
        if _origin(url) != _origin(first.url):
            raise TemplateRenderError(
                f"the next page {url!r} is on another host than the poll's URL; not sending the poll's headers there",
                path="next",
            )
        return PageRequest(first.method, url, first.headers, {}, first.json)
    if isinstance(target, dict):
        query = first.query | {str(k): _param(v) for k, v in target.items() if v is not None}
        return PageRequest(first.method, first.url, first.headers, query, first.json)
    raise TemplateRenderError(
        f"next gave {json.dumps(target)}; give a URL, a mapping of query parameters "
        "(e.g. {page: body.next_page}) or null at the last page",
        path="next",
    )


def greater(a: Any, b: Any) -> Any:
    """The greater of two cursor values (numbers with numbers, text with text); otherwise the later one."""
    if a is None:
        return b
    if b is None:
        return a
    numeric = (int, float)
    if isinstance(a, numeric) and isinstance(b, numeric) and not isinstance(a, bool) and not isinstance(b, bool):
        return max(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return max(a, b)
    return b


def identity(value: Any) -> str | None:
    """An item's id as a dedupe key, written as the webhook side writes it (router.pipeline.ingest.dedupe_key)."""
    if value is None or value == "" or value is False:
        return None
    key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return key[:512]


def _retry_after(exc: ActionError, now: float) -> float | None:
    if exc.retry_after is not None:
        return exc.retry_after
    headers = (exc.response or {}).get("headers") or {}
    if str(headers.get("x-ratelimit-remaining", "")).strip() == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return None
    return retry_after_seconds(headers.get("retry-after"))


def _resumed(first: PageRequest, resume: Mapping[str, Any] | None) -> tuple[PageRequest, int]:
    """The request a pass starts with and its page number: the first, or where the last pass stopped."""
    if not resume:
        return first, 0
    page = int(resume.get("page", 0))
    if resume.get("url"):
        return PageRequest(first.method, str(resume["url"]), first.headers, {}, first.json), page
    if resume.get("query") is not None:
        return PageRequest(first.method, first.url, first.headers, dict(resume["query"]), first.json), page
    return first, page


async def run_pass(
    poll: CompiledPoll,
    ctx: Mapping[str, Any],
    fetch: Fetch,
    *,
    resume: Mapping[str, Any] | None = None,
    etag: str | None = None,
    etag_key: str | None = None,
    budget: float = 20.0,
    seen: Callable[[list[str]], Awaitable[set[str]]] | None = None,
    lost: Callable[[], bool] = lambda: False,
) -> PassResult:
    """Fetch pages until the pass ends or this poll's share of it does (see the module doc)."""
    out = PassResult()
    started = time.monotonic()
    try:
        first = render_request(poll, ctx)
    except TemplateRenderError as exc:
        out.error, out.permanent = f"request: {exc}", True
        return out
    request, page = _resumed(first, resume)
    keys: set[str] = set()
    fetched: set[str] = set()
    while True:
        if out.pages >= poll.max_pages or (out.pages and time.monotonic() - started > budget) or lost():
            why = "max_pages" if out.pages >= poll.max_pages else ("lease lost" if lost() else "time budget")
            out.notes.append(f"stopped after {out.pages} page(s) ({why}); the next poll goes on from page {page + 1}")
            out.resume = _resume(request, first, page)
            return out
        if request is first and poll.etag and etag and etag_key == first.key():
            conditional = first.headers | {"if-none-match": etag}
            request = PageRequest(first.method, first.url, conditional, first.query, first.json)
        out.requests.append(request)
        try:
            reply = await fetch(request, poll.timeout)
        except ActionError as exc:
            out.error = exc.message
            out.permanent = isinstance(exc, PermanentError)
            out.status = (exc.response or {}).get("status")
            out.retry_after = _retry_after(exc, time.time())
            out.resume = _resume(request, first, page) if page or resume else None
            return out
        out.pages += 1
        out.status = reply.status
        fetched.add(request.key())
        interval = reply.headers.get("x-poll-interval", "")
        if interval.isdigit():
            out.poll_interval = float(interval)
        if reply.status == 304:
            out.not_modified = out.complete = True
            return out
        if page == 0 and poll.etag:
            out.etag, out.etag_key = reply.headers.get("etag"), first.key()
        page_ctx = {
            "status": reply.status,
            "headers": reply.headers,
            "body": reply.body,
            "url": reply.url,
            "page": page + 1,
            "cursor": ctx.get("cursor"),
        }
        try:
            page_keys = _read_page(poll, page_ctx, reply, request, page + 1, out, keys)
            if poll.cursor is not None:
                out.cursor = greater(out.cursor, poll.cursor.search(page_ctx))
            if poll.stop_at_seen and seen is not None and page_keys and await seen(page_keys):
                out.complete = True
                return out
            following = next_request(poll, page_ctx, reply, first)
        except TemplateRenderError as exc:
            out.error, out.permanent = f"page {page + 1}: {exc}", True
            out.resume = None  # the pages before are kept; the pass starts over next time
            return out
        if following is None:
            out.complete = True
            return out
        if following.key() in fetched:
            out.notes.append(f"page {page + 2} repeats a page already fetched in this poll; stopped there")
            out.complete = True
            return out
        request, page = following, page + 1


def _read_page(
    poll: CompiledPoll,
    page_ctx: dict[str, Any],
    reply: Reply,
    request: PageRequest,
    number: int,
    out: PassResult,
    keys: set[str],
) -> list[str]:
    items = poll.items.search(page_ctx)
    if items is None:
        items = []
    if not isinstance(items, list):
        raise TemplateRenderError(
            f"items ({poll.items.source}) gave {type(items).__name__}, not a list; point it at the list of items",
            path="items",
        )
    out.items += len(items)
    page_keys: list[str] = []
    missing = 0
    for item in items:
        key = identity(poll.id.search(item))
        if key is None:
            missing += 1
            continue
        page_keys.append(key)
        if key in keys:
            continue
        keys.add(key)
        out.found.append(Found(key, item, number, reply.url, reply.headers, request.query))
    if missing:
        out.notes.append(f"page {number}: {missing} item(s) had no id ({poll.id.source} gave null); not emitted")
    return page_keys


def _resume(request: PageRequest, first: PageRequest, page: int) -> dict[str, Any] | None:
    if page == 0 and request.url == first.url and request.query == first.query:
        return None  # nothing fetched yet in this pass: it starts from the first page anyway
    if request.url != first.url:
        return {"url": request.url, "page": page}
    return {"query": request.query, "page": page}


def http_fetch(client: Any) -> Fetch:
    """Fetch through ``router.pipeline.outbound.send``: the egress guard, the timeout, the error classes of actions."""

    async def fetch(request: PageRequest, timeout: float) -> Reply:
        result = await send(
            client,
            request.method,
            request.url,
            headers=request.headers,
            params=request.query or None,
            json_body=request.json,
            timeout=timeout,
            success=OK_STATUSES,
        )
        return Reply(result.status, result.headers, result.body, str(result.request.get("url", request.url)))

    return fetch
