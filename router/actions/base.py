"""What every action shares: its settings model, the context it runs in, and its result."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from router.pipeline.outbound import OutboundClient
from router.pipeline.results import StepResult
from router.settings import Settings

__all__ = ["Action", "ActionConfig", "ActionContext", "EmitFn", "StepResult"]

EmitFn = Callable[[str, Any, dict[str, str], str], Awaitable[str]]


class ActionConfig(BaseModel):
    """Base of every action's settings; unknown keys are errors.

    A string setting that is exactly one ``{{ expr }}`` keeps the expression's type, so a number
    (an order number, a count) reaching a text field is turned into its text instead of failing.
    """

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


@dataclass
class ActionContext:
    """What an action may use while it runs."""

    http: OutboundClient
    settings: Settings
    idempotency_key: str
    event_id: str
    chain_depth: int
    step_ref: str
    emit: EmitFn | None = None


class Action(ABC):
    """An action type. ``name`` is its registry key and equals its module name."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[ActionConfig]]

    @abstractmethod
    async def execute(self, config: Any, ctx: ActionContext) -> StepResult:
        """Run once with rendered, validated settings; raise TransientError or PermanentError on failure."""
