"""The rule set in force, shared by a process's handlers and jobs; hot reload swaps ``current`` in place."""

from __future__ import annotations

from dataclasses import dataclass, field

from router.rules.compiled import RuleSet


@dataclass
class RulesHolder:
    """The rule set in force and the errors of the last load."""

    current: RuleSet = field(default_factory=RuleSet)
    errors: list[str] = field(default_factory=list)
    loaded: bool = False
    ui_stamp: str | None = None  # the UI rules' stamp read just before ``current`` was loaded (None: unknown)
