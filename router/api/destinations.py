"""``/api/destinations``: paused destinations and tripped circuit breakers, and resuming them."""

from __future__ import annotations

from typing import Any

from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from pydantic import BaseModel, ConfigDict, Field

from router.access.guard import principal_of
from router.pipeline.destinations import overview, resume
from router.pipeline.queue import enqueuer
from router.runtime import Runtime


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: str = Field(description="The destination as listed, e.g. https://api.example.com:443.")


@get(
    "/api/destinations",
    operation_id="ListDestinations",
    tags=["delivery"],
    summary="Paused destinations and failing ones (circuit breakers)",
)
async def list_destinations(runtime: Runtime) -> dict[str, Any]:
    return {"destinations": await overview(runtime.engine, runtime.redis)}


@post(
    "/api/destinations/resume",
    operation_id="ResumeDestination",
    tags=["delivery"],
    status_code=200,
    summary="Resume a paused destination; its held steps are sent again",
)
async def resume_destination(
    request: Request[Any, Any, Any], runtime: Runtime, data: JSONBody[ResumeRequest]
) -> dict[str, Any]:
    result = await resume(runtime.engine, enqueuer(runtime.redis), data.destination, actor=principal_of(request).actor)
    if not result["resumed"]:
        raise NotFoundException(f"destination {data.destination!r} is not paused")
    return result
