"""``emit``: a new event into another source, so rules chain across sources (depth-limited)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from router.actions._fields import header_map
from router.actions.base import Action, ActionConfig, ActionContext, StepResult
from router.errors import PermanentError


class EmitConfig(ActionConfig):
    source: str = Field(description="Id of the source the new event goes into.", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    body: Any = Field(None, description="The new event's body.")
    headers: dict[str, str] = Field(default_factory=dict, description="The new event's headers.")

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> dict[str, str]:
        return header_map(value)


class EmitAction(Action):
    name = "emit"
    description = "Send a new event into another source, so rules chain."
    Config = EmitConfig

    async def execute(self, config: EmitConfig, ctx: ActionContext) -> StepResult:
        limit = ctx.settings.max_emit_depth
        if ctx.chain_depth + 1 > limit:
            raise PermanentError(
                f"emit depth limit reached: this event is {ctx.chain_depth} emits deep and the limit is {limit} "
                "(ROUTER_MAX_EMIT_DEPTH); a rule probably emits into a source that leads back to itself"
            )
        if ctx.emit is None:
            raise PermanentError("emit is not available here")
        request = {"source": config.source, "headers": config.headers}
        event_id = await ctx.emit(
            config.source, config.body, {k.lower(): v for k, v in config.headers.items()}, "emit:" + ctx.idempotency_key
        )
        return StepResult(status=202, body={"event_id": event_id, "source": config.source}, request=request)
