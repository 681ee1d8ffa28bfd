"""A rule being built: the whole builder form as one state, its rule spec and YAML, and back.

``state_from_form`` reads a posted form, ``state_from_spec`` a rule (to edit, import or duplicate it);
``rule_spec`` gives the spec that is saved (as ``uirules.dump_rule`` YAML) and ``place_errors`` puts
the loader's errors next to the fields they are about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.errors import RuleSetError
from router.rules import stored as uirules
from router.rules.schema import SLUG
from router.ui.builder_form import FilterState, error_targets, filter_from_form, filter_from_text, text
from router.ui.builder_steps import StepView, step_from_spec, step_spec, steps_from_form

_SLUG = re.compile(SLUG)


@dataclass
class BuilderState:
    rule_id: str = ""
    original_id: str = ""  # set when editing a saved UI rule: its id cannot change
    description: str = ""
    enabled: bool = True
    source: str = ""
    filter: FilterState = field(default_factory=FilterState)
    steps: list[StepView] = field(default_factory=list)
    rule_extra: str = ""  # the rule's `retry` as JSON: kept as it was, not edited here
    sample: str = ""
    sample_json: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)  # by field ("" for the rule as a whole)

    def error(self, target: str) -> str:
        return "; ".join(self.errors.get(target, []))

    def add_error(self, target: str, message: str) -> None:
        self.errors.setdefault(target, []).append(message)

    @property
    def editing(self) -> bool:
        return bool(self.original_id)


def state_from_form(form: Mapping[str, Any], sources: list[str], *, rows: bool = False) -> BuilderState:
    """The builder's state as the form posted it (``rows``: the condition rows are the filter)."""
    original = text(form, "original_id").strip()
    source = text(form, "source").strip()
    shown_for = text(form, "sample_source").strip()
    return BuilderState(
        rule_id=original or text(form, "rule_id").strip(),
        original_id=original,
        description=text(form, "description"),
        enabled=text(form, "enabled") in ("on", "true", "1"),
        source=source,
        filter=filter_from_form(form, rows=rows),
        steps=steps_from_form(form, sources),
        rule_extra=text(form, "rule_extra"),
        sample=text(form, "sample") if not shown_for or shown_for == source else "",  # a new source: its sample
        sample_json=text(form, "sample_json"),
    )


def state_from_spec(spec: Mapping[str, Any], sources: list[str], *, original_id: str = "") -> BuilderState:
    extra = {k: spec[k] for k in ("retry",) if k in spec}
    steps = spec.get("steps")
    return BuilderState(
        rule_id=str(spec.get("id", "")),
        original_id=original_id,
        description=str(spec.get("description") or ""),
        enabled=spec.get("enabled") is not False,
        source=str(spec.get("source", "")),
        filter=filter_from_text(spec.get("filter") if isinstance(spec.get("filter"), str) else None),
        steps=[step_from_spec(s, sources) for s in steps if isinstance(s, dict)] if isinstance(steps, list) else [],
        rule_extra=json.dumps(extra) if extra else "",
    )


def rule_spec(state: BuilderState) -> dict[str, Any]:
    """The rule the form describes (field errors are left on the state and its rows and fields)."""
    spec: dict[str, Any] = {"id": state.rule_id, "source": state.source}
    if state.description.strip():
        spec["description"] = state.description.strip()
    if not state.enabled:
        spec["enabled"] = False
    expression = state.filter.expression()
    if expression:
        spec["filter"] = expression
    spec["steps"] = [step_spec(s) for s in state.steps]
    if state.rule_extra.strip():
        try:
            extra = json.loads(state.rule_extra)
        except ValueError:
            extra = {}
        if isinstance(extra, dict) and "retry" in extra:
            spec["retry"] = extra["retry"]
    return spec


def form_problems(state: BuilderState) -> bool:
    """Check what the form itself can get wrong (before the loader); True when something is wrong."""
    wrong = False
    if not state.rule_id:
        state.add_error("rule_id", "give the rule an id, e.g. github-push-to-slack")
        wrong = True
    elif not _SLUG.match(state.rule_id):
        state.add_error(
            "rule_id", "must be a slug: lower-case letters, digits, '-' and '_', starting with a letter or digit"
        )
        wrong = True
    if not state.steps:
        state.add_error("steps", "add at least one step: what should happen when an event matches?")
        wrong = True
    if state.filter.mode == "visual" and state.filter.expression() is None:
        wrong = wrong or any(_row_errors(state.filter.group))
    return wrong or any(f.error for s in state.steps for f in s.fields)


def _row_errors(group: Any) -> list[str]:
    out: list[str] = []
    for item in group.items:
        out += _row_errors(item) if item.kind == "group" else ([item.error] if item.error else [])
    return out


def yaml_of(state: BuilderState) -> tuple[str, dict[str, Any]]:
    spec = rule_spec(state)
    return uirules.dump_rule(spec), spec


def place_errors(state: BuilderState, exc: RuleSetError) -> None:
    """Put each loader error beside its field: rule settings, a step, or a step's setting."""
    for target, messages in error_targets(exc).items():
        if target.startswith("step-") and "-f-" in target:
            n, _, name = target.removeprefix("step-").partition("-f-")
            if n.isdigit() and int(n) < len(state.steps):
                for f in state.steps[int(n)].fields:
                    if f.name == name:
                        f.error = "; ".join([f.error, *messages]) if f.error else "; ".join(messages)
                        break
                else:
                    state.steps[int(n)].errors += messages
                continue
        if target.startswith("step-"):
            n, _, part = target.removeprefix("step-").partition("-")
            if n.isdigit() and int(n) < len(state.steps):
                label = {"id": "step id: ", "when": "only when: "}.get(part, "")
                state.steps[int(n)].errors += [label + m for m in messages]
                continue
        for message in messages:
            state.add_error(target, message)
