"""Rule tests for polled sources: a case's ``poll:`` runs the source's poll on recorded pages.

The pass is the one the workers run (``router.polling.fetch.run_pass``), with the recorded responses
in place of the network: what it requested, which ids it would emit, the cursor it would keep, and the
emitted item that becomes the case's event for ``matches`` and ``steps``.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from router.errors import PermanentError
from router.pipeline.ingest import parse_body
from router.pipeline.match import event_dict
from router.polling.compile import CompiledPoll
from router.polling.fetch import PageRequest, Reply, greater, run_pass, template_context
from router.tryout.ruletest_compare import compare

if TYPE_CHECKING:
    from router.tryout.ruletest import _CaseRun


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Drive a coroutine that never waits on I/O (recorded responses) to its end, in or out of an event loop."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("a recorded poll waited on I/O")


def _recorded_replies(run: _CaseRun) -> list[Reply] | None:
    """The case's recorded pages as the fetcher's replies; None (and the case fails) when a body file is missing."""
    assert run.case.poll is not None
    replies: list[Reply] = []
    for i, page in enumerate(run.case.poll.pages):
        body = page.body
        if page.body_file is not None:
            file = run.base / page.body_file
            if not file.is_file():
                run.fail(("poll", "pages", i, "body_file"), f"no such file: {file}")
                return None
            body = parse_body(file.read_bytes(), "application/json")
        replies.append(Reply(page.status, {k.lower(): v for k, v in page.headers.items()}, body, ""))
    return replies


def _check_requests(run: _CaseRun, sent: list[PageRequest]) -> None:
    """The case's ``requests`` against the requests the poll sent."""
    for i, want in enumerate(run.case.requests or []):
        if i >= len(sent):
            run.fail(("requests", i), f"the poll sent {len(sent)} request(s), not {i + 1}")
            break
        got = sent[i]
        view = {"method": got.method, "url": got.url, "query": got.query, "headers": got.headers}
        given = {k: v for k, v in want.model_dump(exclude_none=True).items()}
        for m in compare(given, view, (), headers_at=("headers",)):
            run.fail(("requests", i, *m.path), m.describe(""))


def poll_event(run: _CaseRun, secrets: dict[str, str]) -> tuple[dict[str, Any], bytes] | None:
    """Run the case's poll on its recorded pages, check what it did; the chosen emitted item as the event."""
    case = run.case
    assert case.poll is not None
    poll = run.rs.sources[case.source].pull
    if not isinstance(poll, CompiledPoll):
        run.fail(("poll",), f"source {case.source!r} does not poll; `poll:` is for sources with poll or reconcile")
        return None
    replies = _recorded_replies(run)
    if replies is None:
        return None
    sent: list[PageRequest] = []

    async def fetch(request: PageRequest, timeout: float) -> Reply:
        if len(sent) >= len(replies):
            raise PermanentError(
                f"no recorded page for request {len(sent) + 1} ({request.method} {request.url}); "
                "add a page to `poll.pages`, or make the last one end the paging"
            )
        reply = replies[len(sent)]
        sent.append(request)
        if reply.status >= 400:
            message = f"{request.method} {request.url} answered {reply.status}"
            raise PermanentError(message, response={"status": reply.status})
        reply.url = request.url
        return reply

    async def seen(keys: list[str]) -> set[str]:
        return set(keys) & set(case.poll.stored if case.poll else [])

    when = datetime.fromisoformat(case.received_at).timestamp()
    ctx = template_context(secrets, case.source, case.poll.cursor, when, when)
    result = _run(run_pass(poll, ctx, fetch, budget=float("inf"), seen=seen))
    if result.error:
        run.fail(("poll",), f"the poll failed: {result.error}")
        return None
    emitted = [f for f in result.found if f.key not in set(case.poll.stored)]
    keys = [f.key for f in emitted]
    if case.emits is not None and case.emits != keys:
        run.fail(("emits",), f"expected {json.dumps(case.emits)} to be emitted, the poll emits {json.dumps(keys)}")
    if "next_cursor" in case.model_fields_set:
        cursor = greater(case.poll.cursor, result.cursor) if result.complete else case.poll.cursor
        if cursor != case.next_cursor:
            run.fail(("next_cursor",), f"expected {json.dumps(case.next_cursor)}, the poll keeps {json.dumps(cursor)}")
    _check_requests(run, sent)
    needs_event = case.matches is not None or case.not_matches or case.steps
    if not needs_event:
        return None
    if case.item >= len(emitted):
        run.fail(("item",), f"the poll emits {len(emitted)} event(s); there is no item {case.item}")
        return None
    found = emitted[case.item]
    event = event_dict(
        id="01TESTCASE" + str(run.path[-1]).zfill(16),
        source=case.source,
        received_at=case.received_at,
        method=str(poll.request.get("method") or "GET"),
        path=urlsplit(found.url).path,
        headers=found.headers,
        query=found.query,
        body=found.item,
        via=poll.kind,
    )
    return event, json.dumps(found.item).encode()
