"""Explain: why a rule matched an event or not, operand by operand, and what each step rendered.

The filter's parsed JMESPath tree is walked: every ``&&``, ``||``, ``!``, comparison and function call
becomes a node ``{"expression", "value", "truthy", "children"}``, each subtree evaluated on its own
against the event's context (``router.pipeline.match.build_context``). ``expression_text`` turns a parsed
subtree back into JMESPath text (not the original spelling, but text that parses to the same tree).
Values are shown with secrets redacted. Nothing is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from jmespath.parser import ParsedResult
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from router.errors import NotFoundError, TemplateRenderError
from router.pipeline.match import build_context, event_from_row, redact
from router.records.models import Event
from router.rules.compiled import CompiledRule, RuleSet
from router.rules.filters import Expression, truthy
from router.tryout.dryrun import dry_run

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS = {"eq": "==", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
# Nodes whose operands are explained one by one; everything else is a leaf with its value.
_BRANCHES = ("and_expression", "or_expression", "not_expression", "comparator", "function_expression")
# Nodes that need parentheses as the operand of an operator or as a link of a dotted path.
_COMPOUND = ("and_expression", "or_expression", "not_expression", "comparator", "pipe")


def _ident(name: str) -> str:
    return name if _IDENT.fullmatch(name) else json.dumps(name)


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "`" + json.dumps(value).replace("`", "\\`") + "`"


def _wrap(node: dict[str, Any], kinds: tuple[str, ...] = _COMPOUND) -> str:
    text = expression_text(node)
    return f"({text})" if node["type"] in kinds else text


_ATOMS = (
    "field",
    "current",
    "identity",
    "literal",
    "index_expression",
    "function_expression",
    "multi_select_list",
    "multi_select_dict",
)


def _atom(node: dict[str, Any]) -> str:
    """A node that brackets follow (``x[0]``, ``x[*]``, ``x[?…]``, ``x[]``): parenthesized unless it is simple."""
    text = expression_text(node)
    return text if node["type"] in _ATOMS else f"({text})"


def _rhs(node: dict[str, Any]) -> str:
    """The right side of a projection: nothing, a bracket that follows directly, or ``.`` and a path."""
    kind = node["type"]
    if kind == "identity":
        return ""
    if kind in ("index_expression", "projection", "filter_projection", "flatten"):
        text = expression_text(node)
        if text.startswith("["):
            return text
    return "." + _wrap(node)


def _slice(parts: list[Any]) -> str:
    start, stop, step = ("" if p is None else str(p) for p in parts)
    return f"[{start}:{stop}" + (f":{step}]" if step else "]")


def expression_text(node: dict[str, Any]) -> str:
    """JMESPath text for a parsed (sub)expression; it parses back to the same tree."""
    kind, children = node["type"], node.get("children", [])
    text = _path_text(kind, node, children)
    if text is None:
        text = _operator_text(kind, node, children)
    if text is None:
        raise ValueError(f"cannot print JMESPath node {kind!r}")
    return text


def _path_text(kind: str, node: dict[str, Any], children: list[dict[str, Any]]) -> str | None:
    """Fields, literals, indexes, projections and multi-selects; None for any other node."""
    if kind == "field":
        return _ident(node["value"])
    if kind == "current":
        return "@"
    if kind == "identity":
        return ""
    if kind == "literal":
        return _literal(node["value"])
    if kind == "subexpression":
        return ".".join(_wrap(c) for c in children)
    if kind == "index_expression":
        left, *rest = children
        return _atom(left) + "".join(_slice(r["children"]) if r["type"] == "slice" else f"[{r['value']}]" for r in rest)
    if kind == "flatten":
        return _atom(children[0]) + "[]"
    if kind == "projection":
        left, right = children
        is_slice = left["type"] == "index_expression" and left["children"][-1]["type"] == "slice"
        head = expression_text(left) if left["type"] == "flatten" or is_slice else _atom(left) + "[*]"
        return head + _rhs(right)
    if kind == "value_projection":
        left, right = children
        head = "*" if left["type"] == "identity" else _atom(left) + ".*"
        return head + _rhs(right)
    if kind == "filter_projection":
        left, right, cond = children
        return _atom(left) + f"[?{expression_text(cond)}]" + _rhs(right)
    if kind == "multi_select_list":
        return "[" + ", ".join(expression_text(c) for c in children) + "]"
    if kind == "multi_select_dict":
        pairs = (f"{_ident(c['value'])}: {expression_text(c['children'][0])}" for c in children)
        return "{" + ", ".join(pairs) + "}"
    return None


def _operator_text(kind: str, node: dict[str, Any], children: list[dict[str, Any]]) -> str | None:
    """Functions, references, comparisons, logic and pipes; None for any other node."""
    if kind == "function_expression":
        return f"{node['value']}(" + ", ".join(expression_text(c) for c in children) + ")"
    if kind == "expref":
        return "&" + _wrap(children[0])
    if kind == "comparator":
        left, right = children
        return f"{_wrap(left)} {_OPS.get(node['value'], node['value'])} {_wrap(right)}"
    if kind == "and_expression":
        left, right = children
        return (
            f"{_wrap(left, ('or_expression', 'pipe'))} && {_wrap(right, ('and_expression', 'or_expression', 'pipe'))}"
        )
    if kind == "or_expression":
        left, right = children
        return f"{_wrap(left, ('pipe',))} || {_wrap(right, ('or_expression', 'pipe'))}"
    if kind == "not_expression":
        child = children[0]
        simple = child["type"] in ("field", "current", "literal", "function_expression", "not_expression")
        return "!" + (expression_text(child) if simple else f"({expression_text(child)})")
    if kind == "pipe":
        left, right = children
        return f"{expression_text(left)} | {_wrap(right, ('pipe',))}"
    return None


def _evaluate(node: dict[str, Any], text: str, ctx: Mapping[str, Any]) -> tuple[Any, str | None]:
    try:
        return Expression(text, ParsedResult(text, node)).search(ctx), None
    except TemplateRenderError as exc:
        return None, exc.message


def explain_tree(
    node: dict[str, Any], ctx: Mapping[str, Any], secrets: Mapping[str, str], reached: bool = True
) -> dict[str, Any]:
    """One node of the explanation: its text, value, truthiness and, for operators, each operand's node.

    ``reached`` is false for an operand that JMESPath did not need (the right side of ``&&`` after a
    falsy left, of ``||`` after a truthy left); its value is still computed and shown.
    """
    text = expression_text(node)
    value, error = _evaluate(node, text, ctx)
    out: dict[str, Any] = {
        "expression": text,
        "type": node["type"],
        "value": redact(value, secrets),
        "truthy": truthy(value),
        "children": [],
    }
    if node["type"] == "comparator":
        out["operator"] = _OPS.get(node["value"], node["value"])
    if not reached:
        out["reached"] = False
    if error is not None:
        out["error"] = error
    if node["type"] in _BRANCHES:
        kids = [c for c in node["children"] if c["type"] != "expref"]
        explained: list[dict[str, Any]] = []
        for i, child in enumerate(kids):
            child_reached = reached
            if i == 1 and node["type"] == "and_expression":
                child_reached = reached and explained[0]["truthy"]
            elif i == 1 and node["type"] == "or_expression":
                child_reached = reached and not explained[0]["truthy"]
            explained.append(explain_tree(child, ctx, secrets, child_reached))
        out["children"] = explained
    return out


def explain(
    rule: CompiledRule,
    event: Mapping[str, Any],
    secrets: Mapping[str, str],
    step_outputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Why ``rule`` matched ``event`` or not, and what each step's ``when`` and ``with`` gave.

    ``step_outputs`` (the outputs the run recorded, by step id) let later steps render as they did.
    """
    outputs = dict(step_outputs or {})
    ctx = build_context(event, secrets, outputs)
    result = dry_run(rule, event, secrets, outputs)
    reasons = []
    if event.get("source") != rule.source:
        reasons.append(f"the event came in on source {event.get('source')!r}; the rule reads source {rule.source!r}")
    if not rule.enabled:
        reasons.append("the rule is disabled (enabled: false)")
    tree = explain_tree(rule.filter.parsed.parsed, ctx, secrets) if rule.filter is not None else None
    if result.get("filter_error"):
        reasons.append(f"the filter failed to evaluate: {result['filter_error']}")
    elif tree is not None and not tree["truthy"]:
        reasons.append(
            f"the filter gives {json.dumps(tree['value'])}, which counts as no "
            "(false, null, empty text, an empty list or object)"
        )
    matched = bool(result["matched"]) and event.get("source") == rule.source
    if matched:
        reasons.append("no filter: every event of the source matches" if tree is None else "the filter holds")
    steps = []
    by_id = {s.id: s for s in rule.steps}
    for entry in result["steps"]:
        step = by_id[entry["id"]]
        when = explain_tree(step.when.parsed.parsed, ctx, secrets) if step.when is not None else None
        steps.append(entry | {"when": when})
    return {
        "rule_id": rule.id,
        "rule_location": rule.location,
        "source": rule.source,
        "enabled": rule.enabled,
        "matched": matched,
        "reason": "; ".join(reasons),
        "filter": tree,
        "filter_error": result.get("filter_error"),
        "steps": steps,
    }


async def explain_stored(
    sessions: async_sessionmaker[AsyncSession], rule: CompiledRule, event_id: str, secrets: Mapping[str, str]
) -> dict[str, Any] | None:
    """Explain a stored event (None when there is no such event), with the rule's latest run beside it."""
    from router.tryout.whatif import latest_runs, recorded_outputs, run_summary

    async with sessions() as session:
        row = await session.get(Event, event_id)
    if row is None:
        return None
    event = event_from_row(row)
    run = (await latest_runs(sessions, rule.id, [row.id])).get(row.id)
    outputs = recorded_outputs(run) if run is not None else {}
    result = explain(rule, event, secrets, outputs)
    return (
        {"event_id": row.id, "event_source": row.source}
        | result
        | {"current": run_summary(run) if run is not None else None}
    )


async def explain_loaded(
    sessions: async_sessionmaker[AsyncSession],
    rules: RuleSet,
    rule_id: str,
    event_id: str,
    *,
    unloaded: str = "no loaded rule {rule!r}",
) -> dict[str, Any]:
    """Explain a stored event against a rule in force; NotFoundError (404) when either is missing.

    ``unloaded`` words the missing rule for the reader: a program gets the default, a person on the
    events page is told to reload it.
    """
    compiled = rules.rules.get(rule_id)
    if compiled is None:
        raise NotFoundError(unloaded.format(rule=rule_id))
    result = await explain_stored(sessions, compiled, event_id, rules.secrets)
    if result is None:
        raise NotFoundError(f"no event {event_id!r}")
    return result
