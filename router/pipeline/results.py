"""The result of one step: its output and a summary of the request that made it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepResult:
    """A step's output ``{status, headers, body}`` (later steps read it) and a summary of the request."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    request: dict[str, Any] = field(default_factory=dict)

    def output(self) -> dict[str, Any]:
        return {"status": self.status, "headers": self.headers, "body": self.body}
