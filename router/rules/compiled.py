"""A compiled rule set: immutable sources, rules and steps, with their filters and templates compiled.

router.rules.ruleset builds one from the rule files; matching (router.pipeline.match) and delivery
read it and never parse again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from router.pipeline.limits import LimitSpec
from router.pipeline.retry import RetrySpec
from router.pipeline.signatures import VerifyConfig
from router.rules.filters import Expression
from router.rules.index import RuleIndex

if TYPE_CHECKING:
    from router.polling.compile import Pull

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class CompiledSource:
    id: str
    description: str
    verify: VerifyConfig | None
    dedupe: Expression | None
    location: str
    preset: str | None = None
    event_type: Expression | None = None
    pull: Pull | None = None  # poll, reconcile or schedule (router.polling); None: webhooks only
    expect_at_least: int = 0  # `expect`: at least this many events…
    expect_every: float = 0.0  # …in every window this long (seconds); 0: no expectation
    retention_days: float | None = None  # `retention`: overrides of ROUTER_RETENTION_*
    retention_max_events: int | None = None

    @property
    def kind(self) -> str:
        """webhook, poll, reconcile (webhooks, and a poll for the missed ones) or schedule."""
        return self.pull.kind if self.pull is not None else "webhook"

    @property
    def takes_webhooks(self) -> bool:
        return self.kind in ("webhook", "reconcile")


@dataclass(frozen=True)
class CompiledStep:
    id: str
    action: str
    when: Expression | None
    with_tree: Any
    location: str
    retry: RetrySpec | None = None
    limits: LimitSpec | None = None


@dataclass(frozen=True)
class CompiledRule:
    id: str
    source: str
    description: str
    enabled: bool
    filter: Expression | None
    steps: tuple[CompiledStep, ...]
    location: str
    spec: dict[str, Any]
    retry: RetrySpec | None = None


@dataclass(frozen=True)
class RuleSet:
    sources: dict[str, CompiledSource] = field(default_factory=dict)
    rules: dict[str, CompiledRule] = field(default_factory=dict)
    by_source: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    version: str = "empty"
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    secrets: Mapping[str, str] = field(default_factory=dict)
    _indexes: dict[str, RuleIndex] = field(default_factory=dict, init=False, compare=False, repr=False)

    def index(self, source: str) -> RuleIndex:
        """The rule index of a source's enabled rules (built on first use, or by ``build_indexes``)."""
        found = self._indexes.get(source)
        if found is None:
            found = self._indexes[source] = RuleIndex.build(self.by_source.get(source, ()))
        return found

    def build_indexes(self) -> RuleSet:
        """Index every source now (rule loading does, off the event loop), so no event pays for it."""
        for source in self.by_source:
            self.index(source)
        return self

    def candidates(self, source: str, ctx: Mapping[str, Any]) -> list[CompiledRule]:
        """The enabled rules of ``source`` whose filters could be true for ``ctx``, in load order."""
        return self.index(source).candidates(ctx)

    alerts: Mapping[str, Any] = field(default_factory=dict)  # id: router.rules.alerts.CompiledAlert


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def by_source(rules: Mapping[str, CompiledRule]) -> dict[str, tuple[CompiledRule, ...]]:
    """The enabled rules of each source, in load order: what matching walks."""
    out: dict[str, list[CompiledRule]] = {}
    for compiled in rules.values():
        if compiled.enabled:
            out.setdefault(compiled.source, []).append(compiled)
    return {k: tuple(v) for k, v in out.items()}
