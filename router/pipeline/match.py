"""Matching and rendering as plain functions: the context rules see, which rules match, what a step renders.

The worker and the dry-run API both use these, so a dry run shows exactly what delivery would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from router.actions import ACTIONS
from router.errors import RouterError, TemplateRenderError
from router.records.models import Event
from router.rules.compiled import CompiledRule, CompiledStep, RuleSet
from router.rules.publicurl import public_url
from router.rules.templating import render_tree


def event_dict(
    *,
    id: str,
    source: str,
    received_at: datetime | str,
    method: str = "POST",
    path: str = "",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, Any] | None = None,
    body: Any = None,
    via: str | None = None,
) -> dict[str, Any]:
    """The ``event`` object rules see. ``via``: webhook, emit, poll, reconcile or schedule."""
    when = received_at.isoformat() if isinstance(received_at, datetime) else received_at
    return {
        "id": id,
        "source": source,
        "received_at": when,
        "method": method,
        "path": path,
        "headers": dict(headers or {}),
        "query": dict(query or {}),
        "body": body,
        "via": via or "webhook",
    }


EVENT_FIELDS = ("id", "source", "received_at", "method", "path", "headers", "query", "body")
EVENT_COLUMNS = tuple(getattr(Event, name) for name in EVENT_FIELDS)  # what event_from_row reads of a row


def event_from_row(row: Any) -> dict[str, Any]:
    """The ``event`` object of a stored event (an ORM ``Event`` or a row with its columns)."""
    return event_dict(**{name: getattr(row, name) for name in EVENT_FIELDS}, via=getattr(row, "via", None))


def build_context(
    event: Mapping[str, Any], secrets: Mapping[str, str], steps: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What ``filter``, ``when`` and templates see: event, body, headers, query, steps, secrets, now, router."""
    return {
        "event": event,
        "body": event["body"],
        "headers": event["headers"],
        "query": event["query"],
        "steps": dict(steps or {}),
        "secrets": dict(secrets),
        "now": datetime.now(UTC).isoformat(),
        "router": {"public_url": public_url()},
    }


def rule_matches(rule: CompiledRule, ctx: Mapping[str, Any]) -> bool:
    if not rule.enabled:
        return False
    return rule.filter is None or rule.filter.test(ctx)


def match_rules(ruleset: RuleSet, source: str, ctx: Mapping[str, Any]) -> list[CompiledRule]:
    """The enabled rules of the source whose filter is truthy, in load order.

    Only the rule index's candidates are evaluated (router/rules/index.py): the others' filters require a
    value the event does not have. A filter that fails to evaluate (a type error at run time) does not
    match; the dry run reports why.
    """
    matched = []
    for rule in ruleset.candidates(source, ctx):
        try:
            if rule_matches(rule, ctx):
                matched.append(rule)
        except TemplateRenderError:
            continue
    return matched


@dataclass
class Rendered:
    """A step after ``when`` and rendering: skipped, or its validated settings (or the error)."""

    step: CompiledStep
    skipped: bool = False
    with_: Any = None
    config: Any = None
    error: RouterError | None = None


def render_step(step: CompiledStep, ctx: Mapping[str, Any]) -> Rendered:
    """Evaluate ``when``, render ``with`` and validate it with the action's settings model."""
    try:
        if step.when is not None and not step.when.test(ctx):
            return Rendered(step, skipped=True)
        rendered = render_tree(step.with_tree, ctx, "with")
    except TemplateRenderError as exc:
        return Rendered(step, error=exc)
    action = ACTIONS[step.action]
    try:
        config = action.Config.model_validate(rendered)
    except ValidationError as exc:
        problems = "; ".join(
            f"with.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in exc.errors()
        )
        return Rendered(
            step,
            with_=rendered,
            error=TemplateRenderError(f"invalid settings after rendering: {problems}", location=step.location),
        )
    return Rendered(step, with_=rendered, config=config)


def redact(value: Any, secrets: Mapping[str, str]) -> Any:
    """Replace every secret's value with ``[secret:NAME]`` before it is stored or shown."""
    needles = [(v, f"[secret:{k}]") for k, v in secrets.items() if len(v) >= 4]
    if not needles:
        return value

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            for needle, mask in needles:
                if needle in node:
                    node = node.replace(needle, mask)
            return node
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(value)
