"""``/api/rules``: the loaded rules and sources, the side-effect-free dry run and the what-if replay."""

from __future__ import annotations

from typing import Any

from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import JSONBody

from router.api.routes import Routes
from router.errors import RuleSetError
from router.pipeline.ingest import fold_headers
from router.pipeline.match import event_dict, event_from_row
from router.records.models import Event
from router.rules.compiled import CompiledRule, RuleSet
from router.rules.ruleset import compile_rule_spec
from router.runtime import Runtime
from router.tryout.dryrun import dry_run
from router.tryout.whatif import DEFAULT_LAST, MAX_LAST, what_if

rules = Routes("rules")


@rules.get("/api/rules", operation_id="ListRules")
async def list_rules(runtime: Runtime) -> dict[str, Any]:
    """Loaded rules and sources, with file:line."""
    rs = runtime.rules.current
    return {
        "version": rs.version,
        "files": list(rs.files),
        "errors": runtime.rules.errors,
        "sources": [
            {
                "id": s.id,
                "description": s.description,
                "url": f"/hooks/{s.id}",
                "verify": s.verify.scheme if s.verify else "none",
                "dedupe": s.dedupe.source if s.dedupe else None,
                "preset": s.preset,
                "event_type": s.event_type.source if s.event_type else None,
                "location": s.location,
            }
            for s in rs.sources.values()
        ],
        "rules": [
            {
                "id": r.id,
                "source": r.source,
                "description": r.description,
                "enabled": r.enabled,
                "filter": r.filter.source if r.filter else None,
                "location": r.location,
                "steps": [{"id": s.id, "action": s.action} for s in r.steps],
                "spec": r.spec,
            }
            for r in rs.rules.values()
        ],
    }


def _rule_from(data: dict[str, Any], rs: RuleSet) -> CompiledRule:
    """The rule a request names: ``rule`` (a rule as JSON, compiled here) or ``rule_id`` (a loaded rule)."""
    if "rule" in data:
        if not isinstance(data["rule"], dict):
            raise ValidationException("`rule` must be an object: a rule as JSON")
        try:
            return compile_rule_spec(data["rule"], rs)
        except RuleSetError as exc:
            raise ValidationException("the rule is not valid", extra=[e.as_dict() for e in exc.errors]) from None
    if "rule_id" in data:
        rule = rs.rules.get(str(data["rule_id"]))
        if rule is None:
            raise NotFoundException(f"no loaded rule {data['rule_id']!r}")
        return rule
    raise ValidationException("give `rule_id` or `rule`")


@rules.post("/api/rules/dry-run", operation_id="DryRunRule")
async def dry_run_rule(runtime: Runtime, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    """Would a rule match an event, and what would each step send?

    Body: ``rule_id`` or ``rule``; ``event_id`` or ``event`` ({body, headers, query}); optional ``step_outputs``.
    """
    rs = runtime.rules.current
    rule = _rule_from(data, rs)
    if "event_id" in data:
        async with runtime.sessions() as session:
            row = await session.get(Event, str(data["event_id"]))
        if row is None:
            raise NotFoundException(f"no event {data['event_id']!r}")
        event = event_from_row(row)
    elif "event" in data and isinstance(data["event"], dict):
        given = data["event"]
        headers = given.get("headers") or {}
        query = given.get("query") or {}
        if not isinstance(headers, dict) or not isinstance(query, dict):
            raise ValidationException("`event.headers` and `event.query` must be objects")
        event = event_dict(
            id="dry-run",
            source=rule.source,
            received_at="1970-01-01T00:00:00+00:00",
            path=f"/hooks/{rule.source}",
            headers=fold_headers((str(k), str(v)) for k, v in headers.items()),
            query=query,
            body=given.get("body"),
        )
    else:
        raise ValidationException("give `event_id` or `event` ({body, headers, query})")
    outputs = data.get("step_outputs") or {}
    if not isinstance(outputs, dict):
        raise ValidationException("`step_outputs` must be an object of step id → {status, headers, body}")
    return dry_run(rule, event, rs.secrets, outputs)


@rules.post("/api/rules/what-if", operation_id="WhatIfRule")
async def what_if_rule(runtime: Runtime, data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    """What would a new or edited rule do on the last N stored events, next to what the current rule did?

    Body: ``rule`` or ``rule_id``; ``last`` (1-1000, default 100); optional ``source`` (default: the rule's).
    """
    rs = runtime.rules.current
    rule = _rule_from(data, rs)
    last = data.get("last", DEFAULT_LAST)
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= MAX_LAST:
        raise ValidationException(f"`last` must be a whole number from 1 to {MAX_LAST}")
    source = data.get("source")
    if source is not None and (not isinstance(source, str) or not source):
        raise ValidationException("`source` must be a source id")
    return await what_if(runtime.sessions, rule, rs.secrets, last, source)
