"""The builder's "Send test": one rule, saved or not, run once for real against a sample event.

It goes through the normal pipeline, restricted to that rule: the sample is stored as a new event of
the rule's source (marked with the header ``X-Router-Test: 1``, and never deduplicated), then routed
and delivered by the worker's own job function (``router.pipeline.jobs.process_event``) in this process, with a
rule set that holds only this rule. So the event page shows the run, its steps and every attempt as
for any event, and the rule needs no saving first. A test tries each step once (no retries); an
``emit`` step's new event is routed by the workers as usual.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from router.access import audit
from router.errors import TemplateRenderError
from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.jobs import process_event
from router.pipeline.match import build_context, rule_matches
from router.pipeline.outbound import create_client
from router.pipeline.store import insert_events
from router.records.models import Event, Run
from router.rules.compiled import CompiledRule, RuleSet
from router.rules.holder import RulesHolder
from router.rules.stored import single_attempt
from router.runtime import WorkerState
from router.settings import Settings

TEST_HEADER = "x-router-test"


@dataclass
class TestSent:
    """What a test send did: the stored event (None when nothing was sent) and its final state."""

    __test__ = False  # not a pytest class

    event_id: str | None
    status: str
    message: str
    errors: tuple[str, ...] = ()  # each failed run's error ("step 'notify': POST … answered 500")


def _raw(body: Any) -> tuple[bytes, str]:
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body, ensure_ascii=False).encode("utf-8"), "application/json"


async def send_test(
    settings: Settings,
    engine: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    redis: Any,
    ruleset: RuleSet,
    rule: CompiledRule,
    event: Mapping[str, Any],
    actor: str,
) -> TestSent:
    """Store the sample as an event of the rule's source and run the rule on it, once, now."""
    rule = single_attempt(dataclasses.replace(rule, enabled=True))
    try:
        matched = rule_matches(rule, build_context(event, ruleset.secrets))
    except (TemplateRenderError, TypeError, ValueError) as exc:
        return TestSent(None, "not sent", f"the conditions fail on this sample ({exc}); nothing was sent")
    if not matched:
        return TestSent(None, "not sent", "the sample does not match the rule's conditions; nothing was sent")
    raw, content_type = _raw(event["body"])
    headers = {**event["headers"], TEST_HEADER: "1"}
    headers.setdefault("content-type", content_type)
    req = Incoming(
        source=rule.source,
        method="POST",
        path=f"/hooks/{rule.source}",
        headers=headers,
        query=dict(event["query"]),
        raw=raw,
    )
    row = new_event_row(None, req, event["body"])  # no source given: no dedupe key, a test is never a repeat
    row["test_send"] = True  # marked, so its runs stay out of the dead letters unless asked for
    async with sessions() as session:
        await insert_events(await session.connection(), [row])
        audit.record(session, actor, "rule_test_sent", rule.id, {"event_id": row["id"], "source": rule.source})
        await session.commit()
    only = RuleSet(
        sources=ruleset.sources,
        rules={rule.id: rule},
        by_source={rule.source: (rule,)},
        version=f"test:{ruleset.version}"[:64],
        files=ruleset.files,
        secrets=ruleset.secrets,
    )
    http = create_client(settings)
    state = WorkerState(
        settings=settings,
        engine=engine,
        http=http,
        sessions=sessions,
        rules=RulesHolder(current=only, loaded=True),
        redis=redis,
    )
    try:
        await process_event({"state": state, "redis": redis}, row["id"])
    finally:
        await http.aclose()
    async with sessions() as session:
        status = await session.scalar(select(Event.status).where(Event.id == row["id"])) or "unknown"
        errors = (
            await session.scalars(select(Run.error).where(Run.event_id == row["id"], Run.error.is_not(None)))
        ).all()
    return TestSent(row["id"], status, f"sent: the event is {status}", tuple(e for e in errors if e))
