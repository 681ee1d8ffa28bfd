"""What the builder shows beside the form for its sample event (``builder_samples``): the sample's field
tree, the variables a template may use, whether the conditions match (the sample and the last 100
stored events) and each step rendered against the sample.

Matching and rendering are the worker's own code (``router.rules.filters``, ``router.pipeline.match``); rendered
values pass through ``redact`` so a secret's value never reaches the browser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from router.actions import ACTIONS
from router.errors import TemplateRenderError
from router.pipeline.match import build_context, redact
from router.rules.compile import _Loader, _pydantic_message
from router.rules.compiled import CompiledStep, RuleSet
from router.rules.conditions import path_from_parts
from router.rules.filters import compile_expression, syntax_error_message
from router.rules.schema import Step
from router.rules.templating import compile_tree, render_tree
from router.rules.yamlfile import Locator
from router.tryout.dryrun import _tree_refs as tree_refs
from router.tryout.whatif import load_events
from router.ui.builder_steps import settings_of

LAST = 100
MAX_NODES = 400
MAX_VARIABLES = 150
_DICT_NAMES = frozenset(dir(dict))
EVALUATION_ERRORS = (TemplateRenderError, TypeError, ValueError)


# -- the field tree and the variables --------------------------------------------------------------------


def jinja_path(parts: Sequence[str | int]) -> str:
    """A template expression for a field: ``body.repository.name``, ``headers["x-github-event"]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part.isascii() and part not in _DICT_NAMES and out:
            out += f".{part}"
        elif not out:
            out = part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


@dataclass
class Node:
    label: str
    path: str  # JMESPath, for conditions
    var: str  # Jinja expression, for templates
    kind: str  # object | array | value
    value: str = ""
    children: list[Node] = field(default_factory=list)


def field_tree(event: Mapping[str, Any]) -> tuple[list[Node], bool]:
    """The sample's body, headers and query as a tree of pickable fields; True when cut at MAX_NODES."""
    budget = [MAX_NODES]

    def build(label: str, parts: list[str | int], value: Any) -> Node:
        budget[0] -= 1
        node = Node(label, path_from_parts(parts), jinja_path(parts), "value")
        if isinstance(value, dict):
            node.kind = "object"
            for k, v in value.items():
                if budget[0] <= 0:
                    break
                node.children.append(build(str(k), [*parts, str(k)], v))
        elif isinstance(value, list):
            node.kind = "array"
            for i, v in enumerate(value):
                if budget[0] <= 0:
                    break
                node.children.append(build(f"[{i}]", [*parts, i], v))
        else:
            node.value = json.dumps(value, ensure_ascii=False)[:200]
        return node

    roots = [build(name, [name], event.get(name)) for name in ("body", "headers", "query")]
    return roots, budget[0] <= 0


def _leaves(parts: list[str | int], value: Any, found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(expression, ``{{ expression }}``) for each leaf below ``parts``; a list offers its first item."""
    if len(found) >= MAX_VARIABLES:
        return found
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _leaves([*parts, str(k)], v, found)
    elif isinstance(value, list) and value and len(parts) < 12:
        _leaves([*parts, 0], value[0], found)
    elif len(parts) > 1:
        var = jinja_path(parts)
        found.append((var, "{{ " + var + " }}"))
    return found


def variables(
    event: Mapping[str, Any], earlier: Sequence[str], secret_names: Sequence[str]
) -> list[tuple[str, list[tuple[str, str]]]]:
    """What a template may insert, grouped: sample fields, the event, earlier steps' output, secret names."""
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for root in ("body", "headers", "query"):
        found = _leaves([root], event.get(root), [])
        if found:
            groups.append((root.capitalize(), found))
    meta = [("event.id", "{{ event.id }}"), ("event.received_at", "{{ event.received_at }}"), ("now", "{{ now }}")]
    groups.append(("Event", meta))
    steps = []
    for step_id in earlier:
        ref = jinja_path(["steps", step_id])
        for part in ("status", "body", "headers"):
            steps.append((f"{ref}.{part}", "{{ " + f"{ref}.{part}" + " }}"))
    if steps:
        groups.append(("Earlier steps' output", steps))
    if secret_names:
        names = [(f"secrets.{n}", "{{ " + jinja_path(["secrets", n]) + " }}") for n in secret_names]
        groups.append(("Secrets (names only)", names))
    return groups


# -- conditions -------------------------------------------------------------------------------------------


@dataclass
class ConditionResult:
    expression: str | None
    error: str = ""
    sample: bool | None = None
    sample_error: str = ""
    matched: int = 0
    total: int = 0


async def condition_result(
    sessions: async_sessionmaker[AsyncSession],
    ruleset: RuleSet,
    source: str,
    expression: str | None,
    event: Mapping[str, Any] | None,
    error: str = "",
) -> ConditionResult:
    """The filter text, whether the sample matches it and how many of the source's last 100 events do."""
    result = ConditionResult(expression, error)
    if error:
        return result
    compiled = None
    if expression is not None:
        try:
            compiled = compile_expression(expression, "filter")
        except Exception as exc:  # jmespath raises several unrelated exception types
            result.error = syntax_error_message(exc)
            return result

    def test(ev: Mapping[str, Any]) -> bool:
        return compiled is None or compiled.test(build_context(ev, ruleset.secrets))

    if event is not None:
        try:
            result.sample = test(event)
        except EVALUATION_ERRORS as exc:
            result.sample, result.sample_error = False, str(exc)
    events = await load_events(sessions, source, LAST) if source else []
    result.total = len(events)
    for ev in events:
        try:
            result.matched += test(ev)
        except EVALUATION_ERRORS:
            continue
    return result


# -- steps -------------------------------------------------------------------------------------------------


@dataclass
class StepPreview:
    values: dict[str, str] = field(default_factory=dict)  # setting → rendered value as shown
    errors: dict[str, str] = field(default_factory=dict)  # setting → error
    note: str = ""
    error: str = ""  # about the step as a whole


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)


def step_previews(
    steps: Sequence[Mapping[str, Any]], ruleset: RuleSet, event: Mapping[str, Any] | None
) -> list[StepPreview]:
    """Each step checked as the loader does and rendered against the sample as the worker does.

    Settings are compiled one by one, so one bad template does not hide the others' previews; a setting
    that reads an earlier step's output is not rendered (that output exists once the step has run).
    """
    loader = _Loader(os.environ, allow_missing_secrets=True)
    locator = Locator("builder")
    out: list[StepPreview] = []
    earlier: list[str] = []
    ctx = build_context(event, ruleset.secrets) if event is not None else None
    for i, raw in enumerate(steps):
        preview = StepPreview()
        out.append(preview)
        if isinstance(raw, dict) and raw.get("action") not in ACTIONS:
            earlier.append(str(raw.get("id", "")))
            continue  # an unknown action: the step's own error says so (once), beside its action picker
        try:
            step = Step.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"]]
                target = loc[1] if loc[:1] == ["with"] and len(loc) > 1 else ""
                if err["type"] == "missing" and target:
                    continue  # not filled in yet: the field's * says it is required; Save and Send test say so
                message = _pydantic_message(err)
                if target:
                    preview.errors[target] = message
                else:
                    preview.error = "; ".join(x for x in (preview.error, f"{'.'.join(loc)}: {message}") if x)
            continue
        before = len(loader.errors)
        compiled = loader.compile_step(step, locator, ("steps", i), list(earlier), ruleset.sources)
        earlier.append(step.id)
        filled = raw.get("with") or {} if isinstance(raw, dict) else {}
        for problem in loader.errors[before:]:
            parts = problem.path.split(".")
            target = parts[2].split("[", 1)[0] if len(parts) > 2 and parts[1] == "with" else ""
            if target and target not in filled:
                continue  # not filled in yet: its * says it is required; Save and Send test say so beside it
            if target:
                preview.errors.setdefault(target, problem.message)
            else:
                preview.error = "; ".join(x for x in (preview.error, problem.message) if x)
        if ctx is not None and compiled.action in ACTIONS:
            _render(preview, step.with_, compiled, ctx, ruleset)
    return out


def _render(
    preview: StepPreview, settings: Mapping[str, Any], step: CompiledStep, ctx: Mapping[str, Any], ruleset: RuleSet
) -> None:
    trees: dict[str, Any] = {}
    for name, value in settings.items():
        try:
            trees[name] = compile_tree(value, lambda _path: "builder")
        except TemplateSyntaxError as exc:
            preview.errors.setdefault(name, f"invalid template: {exc.message} (template line {exc.lineno})")
    reads = sorted({ref for tree in trees.values() for ref in tree_refs(tree)})
    if reads:
        names = ", ".join(f"steps.{r}" for r in reads)
        preview.note = f"reads {names}: shown once that step has run (Send test shows it for real)"
    try:
        if step.when is not None and "steps" not in step.when.source and not step.when.test(ctx):
            preview.note = "skipped for this sample: its `only when` condition is false"
    except EVALUATION_ERRORS as exc:
        preview.error = f"only when: {exc}"
    rendered: dict[str, Any] = {}
    for name, tree in trees.items():
        if name in preview.errors or tree_refs(tree):
            continue
        try:
            rendered[name] = render_tree(tree, ctx, f"with.{name}")
        except TemplateRenderError as exc:
            preview.errors[name] = exc.message.replace("the event has no field", "the sample has no field")
            continue
        preview.values[name] = _shown(redact(rendered[name], ruleset.secrets))
    if preview.errors or reads:
        return
    known = {s.name for s in settings_of(step.action)}
    try:
        ACTIONS[step.action].Config.model_validate(rendered)
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else ""
            if err["type"] == "missing":
                continue  # a required setting not filled in yet (said on Save and Send test)
            message = "after rendering: " + str(redact(_pydantic_message(err), ruleset.secrets))
            if name in known:
                preview.errors[name] = message
            else:
                preview.error = "; ".join(x for x in (preview.error, message) if x)
