"""``/api/dead-letters``, replay and retry: thin handlers over ``router.records.replay`` (each change audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Response
from litestar.params import JSONBody, QueryParameter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from router.api.params import EventId, NewestFirst, RunId
from router.api.routes import Routes, SignedIn
from router.pipeline import runwait
from router.pipeline.queue import Enqueue, enqueuer
from router.records.deadletters import Filters, bulk_retry, dead_letters, preview
from router.records.replay import replay_event, retry_run
from router.records.status import RUN_FAILED
from router.rules.compiled import RuleSet
from router.runtime import AppState, Runtime

RunFailure = Literal["failed", "dead"]
delivery = Routes("delivery")


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resend: bool = Field(False, description="Send again steps that already succeeded for this event.")


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: Literal["failed_step", "start"] = Field("failed_step", alias="from")
    resend: bool = False


class BulkRequest(RetryRequest):
    rule: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: list[RunFailure] = Field(default_factory=lambda: list[RunFailure](["failed", "dead"]))
    run_ids: list[str] = Field(default_factory=list, description="Only these runs (still within the rest).")
    tests: bool = Field(False, description="Include the runs of the rule builder's Send test (left out by default).")
    confirm: str | None = Field(None, description="The token from the preview; without it nothing is retried.")


def _redelivery(runtime: AppState) -> tuple[AsyncEngine, Enqueue, RuleSet]:
    """What sending runs again takes: the database, the queue and the rules in force."""
    return runtime.engine, enqueuer(runtime.redis), runtime.rules.current


@delivery.get("/api/dead-letters", operation_id="ListDeadLetters")
async def list_dead_letters(
    runtime: Runtime,
    rule: Annotated[str | None, QueryParameter(description="Only this rule.")] = None,
    source: Annotated[str | None, QueryParameter(description="Only events of this source.")] = None,
    since: Annotated[datetime | None, QueryParameter(description="Events received at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, QueryParameter(description="Events received before (ISO 8601).")] = None,
    status: Annotated[
        Literal["failed", "dead"] | None,
        QueryParameter(description="dead: retries exhausted; failed: a permanent error."),
    ] = None,
    limit: NewestFirst = 100,
    tests: Annotated[
        bool, QueryParameter(description="Include the runs of the rule builder's Send test (left out by default).")
    ] = False,
) -> dict[str, Any]:
    """Failed and dead runs with every attempt's error."""
    f = Filters(rule, source, since, until, (status,) if status else RUN_FAILED, tests=tests)
    return {"dead_letters": await dead_letters(runtime.engine, f, limit)}


@delivery.post("/api/events/{event_id:str}/replay", operation_id="ReplayEvent", status_code=202)
async def replay(
    principal: SignedIn, runtime: Runtime, event_id: EventId, data: JSONBody[ReplayRequest | None] = None
) -> Response[Any]:
    """Route a stored event again through the rules in force."""
    resend = bool(data and data.resend)
    body = await replay_event(*_redelivery(runtime), event_id, resend=resend, actor=principal.actor)
    return Response(body, status_code=202)


@delivery.post("/api/runs/{run_id:str}/retry", operation_id="RetryRun", status_code=202)
async def retry(
    principal: SignedIn, runtime: Runtime, run_id: RunId, data: JSONBody[RetryRequest | None] = None
) -> Response[Any]:
    """Retry a failed or dead run from its failed step, or from the start."""
    req = data or RetryRequest()
    start = req.from_ == "start"
    body = await retry_run(*_redelivery(runtime), run_id, start=start, resend=req.resend, actor=principal.actor)
    return Response(body, status_code=202)


@delivery.post("/api/runs/{run_id:str}/retry-now", operation_id="RetryRunNow", status_code=202)
async def retry_now(principal: SignedIn, runtime: Runtime, run_id: RunId) -> Response[Any]:
    """Try a retrying or held run now instead of waiting (the same run; its attempts count on)."""
    body = await runwait.retry_now(runtime.engine, enqueuer(runtime.redis), run_id, actor=principal.actor)
    return Response(body, status_code=202)


@delivery.post("/api/runs/retry", operation_id="RetryRuns")
async def retry_bulk(principal: SignedIn, runtime: Runtime, data: JSONBody[BulkRequest]) -> Response[Any]:
    """Retry many failed or dead runs: a preview with a count, then a confirmed run."""
    f = Filters(data.rule, data.source, data.since, data.until, tuple(data.status), tuple(data.run_ids), data.tests)
    start = data.from_ == "start"
    if data.confirm is None:
        found = await preview(runtime.engine, f, start=start, ruleset=runtime.rules.current)
        return Response(found | {"done": False})
    body = await bulk_retry(
        *_redelivery(runtime), f, data.confirm, start=start, resend=data.resend, actor=principal.actor
    )
    return Response(body | {"done": True}, status_code=202)
