"""``/api/dead-letters``, replay and retry: thin handlers over ``router.records.replay`` (each change audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from litestar import Request, Response, get, post
from litestar.params import JSONBody, PathParameter, QueryParameter
from pydantic import BaseModel, ConfigDict, Field

from router.access.guard import principal_of
from router.pipeline import runwait
from router.pipeline.queue import enqueuer
from router.records.deadletters import Filters, bulk_retry, dead_letters, preview
from router.records.replay import replay_event, retry_run
from router.records.status import RUN_FAILED
from router.runtime import Runtime

RunFailure = Literal["failed", "dead"]


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


@get(
    "/api/dead-letters",
    operation_id="ListDeadLetters",
    tags=["delivery"],
    summary="Failed and dead runs with every attempt's error",
)
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
    limit: Annotated[int, QueryParameter(ge=1, le=1000, description="At most this many, newest first.")] = 100,
    tests: Annotated[
        bool, QueryParameter(description="Include the runs of the rule builder's Send test (left out by default).")
    ] = False,
) -> dict[str, Any]:
    f = Filters(rule, source, since, until, (status,) if status else RUN_FAILED, tests=tests)
    return {"dead_letters": await dead_letters(runtime.engine, f, limit)}


@post(
    "/api/events/{event_id:str}/replay",
    operation_id="ReplayEvent",
    tags=["delivery"],
    status_code=202,
    summary="Route a stored event again through the rules in force",
)
async def replay(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    event_id: Annotated[str, PathParameter(description="Event id.")],
    data: JSONBody[ReplayRequest | None] = None,
) -> Response[Any]:
    body = await replay_event(
        runtime.engine,
        enqueuer(runtime.redis),
        runtime.rules.current,
        event_id,
        resend=bool(data and data.resend),
        actor=principal_of(request).actor,
    )
    return Response(body, status_code=202)


@post(
    "/api/runs/{run_id:str}/retry",
    operation_id="RetryRun",
    tags=["delivery"],
    status_code=202,
    summary="Retry a failed or dead run from its failed step, or from the start",
)
async def retry(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    run_id: Annotated[str, PathParameter(description="Run id.")],
    data: JSONBody[RetryRequest | None] = None,
) -> Response[Any]:
    req = data or RetryRequest()
    body = await retry_run(
        runtime.engine,
        enqueuer(runtime.redis),
        runtime.rules.current,
        run_id,
        start=req.from_ == "start",
        resend=req.resend,
        actor=principal_of(request).actor,
    )
    return Response(body, status_code=202)


@post(
    "/api/runs/{run_id:str}/retry-now",
    operation_id="RetryRunNow",
    tags=["delivery"],
    status_code=202,
    summary="Try a retrying or held run now instead of waiting (the same run; its attempts count on)",
)
async def retry_now(
    request: Request[Any, Any, Any], runtime: Runtime, run_id: Annotated[str, PathParameter(description="Run id.")]
) -> Response[Any]:
    body = await runwait.retry_now(runtime.engine, enqueuer(runtime.redis), run_id, actor=principal_of(request).actor)
    return Response(body, status_code=202)


@post(
    "/api/runs/retry",
    operation_id="RetryRuns",
    tags=["delivery"],
    status_code=200,
    summary="Retry many failed or dead runs: a preview with a count, then a confirmed run",
)
async def retry_bulk(request: Request[Any, Any, Any], runtime: Runtime, data: JSONBody[BulkRequest]) -> Response[Any]:
    f = Filters(data.rule, data.source, data.since, data.until, tuple(data.status), tuple(data.run_ids), data.tests)
    start = data.from_ == "start"
    if data.confirm is None:
        found = await preview(runtime.engine, f, start=start, ruleset=runtime.rules.current)
        return Response(found | {"done": False})
    body = await bulk_retry(
        runtime.engine,
        enqueuer(runtime.redis),
        runtime.rules.current,
        f,
        data.confirm,
        start=start,
        resend=data.resend,
        actor=principal_of(request).actor,
    )
    return Response(body | {"done": True}, status_code=202)
