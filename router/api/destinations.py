"""``/api/destinations``: paused destinations and tripped circuit breakers, and resuming them."""

from __future__ import annotations

from typing import Any

from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from pydantic import BaseModel, ConfigDict, Field

from router.api.routes import Routes, SignedIn
from router.pipeline.destinations import overview, resume
from router.pipeline.queue import enqueuer
from router.runtime import Runtime

delivery = Routes("delivery")


class ResumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: str = Field(description="The destination as listed, e.g. https://api.example.com:443.")


@delivery.get("/api/destinations", operation_id="ListDestinations")
async def list_destinations(runtime: Runtime) -> dict[str, Any]:
    """Paused destinations and failing ones (circuit breakers)."""
    return {"destinations": await overview(runtime.engine, runtime.redis)}


@delivery.post("/api/destinations/resume", operation_id="ResumeDestination")
async def resume_destination(principal: SignedIn, runtime: Runtime, data: JSONBody[ResumeRequest]) -> dict[str, Any]:
    """Resume a paused destination; its held steps are sent again."""
    result = await resume(runtime.engine, enqueuer(runtime.redis), data.destination, actor=principal.actor)
    if not result["resumed"]:
        raise NotFoundException(f"destination {data.destination!r} is not paused")
    return result
