"""Dry run: would a rule match an event, and what would each step send? No side effects."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from router.errors import TemplateRenderError
from router.pipeline.match import build_context, redact, render_step, rule_matches
from router.rules.compiled import CompiledRule, CompiledStep
from router.rules.templating import Compiled, step_references

_WHEN_REF = re.compile(r"""\bsteps\s*\.\s*(?:"([^"]+)"|([A-Za-z_][A-Za-z0-9_-]*))""")


def _tree_refs(tree: Any) -> set[str]:
    if isinstance(tree, Compiled):
        return step_references(tree.source)
    if isinstance(tree, dict):
        return set().union(*(_tree_refs(v) for v in tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*(_tree_refs(v) for v in tree)) if tree else set()
    return set()


def step_inputs(step: CompiledStep) -> set[str]:
    """Ids of earlier steps whose output this step reads, in ``when`` or in its templates."""
    refs = _tree_refs(step.with_tree)
    if step.when is not None:
        refs |= {a or b for a, b in _WHEN_REF.findall(step.when.source)}
    return refs


def dry_run(
    rule: CompiledRule,
    event: Mapping[str, Any],
    secrets: Mapping[str, str],
    step_outputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate the filter, then render every step; report instead of sending."""
    outputs = dict(step_outputs or {})
    ctx = build_context(event, secrets, outputs)
    try:
        matched = rule_matches(rule, ctx)
        filter_error = None
    except TemplateRenderError as exc:
        matched, filter_error = False, str(exc)
    steps = []
    for step in rule.steps:
        missing = sorted(step_inputs(step) - set(outputs))
        entry: dict[str, Any] = {
            "id": step.id,
            "action": step.action,
            "skipped": False,
            "rendered": False,
            "with": None,
            "error": None,
        }
        if missing:
            names = ", ".join(f"steps.{m}" for m in missing)
            entry["error"] = (
                f"not rendered: reads {names}, which exists only once that step has run; "
                f"pass its output as step_outputs.{missing[0]} = {{status, headers, body}}"
            )
            steps.append(entry)
            continue
        rendered = render_step(step, ctx)
        entry["skipped"] = rendered.skipped
        entry["rendered"] = not rendered.skipped and rendered.error is None
        entry["with"] = redact(rendered.with_, secrets)
        entry["error"] = str(rendered.error) if rendered.error else None
        steps.append(entry)
    result: dict[str, Any] = {"rule_id": rule.id, "matched": matched, "steps": steps}
    if filter_error:
        result["filter_error"] = filter_error
    return result
