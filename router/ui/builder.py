"""The no-code rule builder: ``/rules/new``, ``/rules/{id}/edit`` and the htmx fragments behind them.

Thin handlers: the form is read by ``builder_state``, the sample comes from ``builder_samples``, previews
from ``builder_preview``, saving is ``uirules.save_rule`` (the real loader, with an audit entry) and the test
send ``router.tryout.sendtest``.
Fragments that only read (previews, YAML) need the viewer role; saving and sending need an editor.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from router.access.guard import principal_of
from router.actions import ACTIONS
from router.errors import RuleSetError
from router.records.db import unit_of_work
from router.rules import stored as uirules
from router.runtime import Runtime
from router.tryout.sendtest import send_test
from router.ui.builder_form import OP_LABELS, TYPE_LABELS, apply_row_action, text
from router.ui.builder_preview import condition_result, field_tree, step_previews, variables
from router.ui.builder_samples import preset_samples, resolve_sample, sample_choices
from router.ui.builder_state import (
    BuilderState,
    form_problems,
    place_errors,
    state_from_form,
    state_from_spec,
    yaml_of,
)
from router.ui.builder_steps import KINDS, apply_step_action
from router.ui.forms import Form
from router.ui.render import page

READ = {"role": "viewer"}


def _sources(runtime: Runtime) -> list[str]:
    return sorted(runtime.rules.current.sources)


async def _sample(runtime: Runtime, b: BuilderState) -> tuple[dict[str, Any] | None, str]:
    rs = runtime.rules.current
    if not b.source and rs.sources:
        b.source = sorted(rs.sources)[0]
    b.sample, event, error = await resolve_sample(runtime.sessions, rs, b.source, b.sample, b.sample_json)
    return event, error


def _step_context(runtime: Runtime, b: BuilderState, event: dict[str, Any] | None) -> dict[str, Any]:
    rs = runtime.rules.current
    _yaml, spec = yaml_of(b)
    previews = step_previews(spec["steps"], rs, event)
    names = sorted(rs.secrets)
    picks = [variables(event or {}, [s.id for s in b.steps[:i]], names) for i in range(len(b.steps))]
    return {
        "previews": previews,
        "picks": picks,
        "kinds": KINDS,
        "actions": sorted(ACTIONS),
        "source_ids": _sources(runtime),
    }


async def _condition_context(runtime: Runtime, b: BuilderState, event: dict[str, Any] | None) -> dict[str, Any]:
    expression, error = b.filter.compiled()
    result = await condition_result(runtime.sessions, runtime.rules.current, b.source, expression, event, error)
    return {"cond": result, "op_labels": OP_LABELS, "type_labels": TYPE_LABELS}


async def _sample_context(
    runtime: Runtime, b: BuilderState, event: dict[str, Any] | None, error: str
) -> dict[str, Any]:
    rs = runtime.rules.current
    tree, cut = field_tree(event) if event is not None else ([], False)
    mine, _ = preset_samples(rs, b.source)
    groups: list[tuple[str, list[Any]]] = []
    for choice in await sample_choices(runtime.sessions, rs, b.source):
        if not groups or groups[-1][0] != choice.group:
            groups.append((choice.group, []))
        groups[-1][1].append(choice)
    return {
        "choice_groups": groups,
        "sample_error": error,
        "tree": tree,
        "tree_cut": cut,
        "source_info": rs.sources.get(b.source),
        "source_ids": _sources(runtime),
        "has_samples": bool(mine),
    }


async def render_builder(
    request: Request[Any, Any, Any], runtime: Runtime, b: BuilderState, *, status: int = 200
) -> Template:
    """The whole builder page for a state (a new rule, a rule to edit, an import, or a form with errors)."""
    event, error = await _sample(runtime, b)
    context = {"b": b, "yaml": yaml_of(b)[0], "test": None, "problem": "", "oob": False}
    context |= {"result_oob": False, "sync_advanced": False}
    context |= await _sample_context(runtime, b, event, error)
    context |= await _condition_context(runtime, b, event)
    context |= _step_context(runtime, b, event)
    return page(request, "rules/builder.html", status=status, **context)


def new_state(runtime: Runtime, source: str = "") -> BuilderState:
    sources = _sources(runtime)
    b = state_from_spec({"source": source if source in sources else (sources[0] if sources else "")}, sources)
    b.steps = []
    return b


@get("/rules/new", include_in_schema=False)
async def new_rule(request: Request[Any, Any, Any], runtime: Runtime, source: FromQuery[str] = "") -> Template:
    return await render_builder(request, runtime, new_state(runtime, source))


@get("/rules/{rule_id:str}/edit", include_in_schema=False)
async def edit_rule(request: Request[Any, Any, Any], runtime: Runtime, rule_id: FromPath[str]) -> Template:
    async with runtime.sessions() as session:
        row = await uirules.get_rule(session, rule_id)
    if row is None:
        loaded = runtime.rules.current.rules.get(rule_id)
        if loaded is not None:
            raise NotFoundException(
                f"{rule_id!r} is a rule file's rule ({loaded.location}): edit the file, or duplicate it as a UI rule"
            )
        raise NotFoundException(f"no UI rule {rule_id!r}")
    spec = _spec_of_yaml(row.yaml)
    b = state_from_spec(spec, _sources(runtime), original_id=row.id)
    b.rule_id = row.id
    return await render_builder(request, runtime, b)


def _spec_of_yaml(text_: str) -> dict[str, Any]:
    from router.rules.yamlfile import parse_yaml

    data, _locator, _errors = parse_yaml(text_.encode("utf-8"), "ui")
    return data if isinstance(data, dict) else {}


def _fragment(request: Request[Any, Any, Any], template: str, trigger: str, **context: Any) -> Template:
    """A fragment of the builder that tells the page (``HX-Trigger``) what changed."""
    response = page(request, template, **context)
    response.headers["hx-trigger"] = trigger
    return response


async def _conditions(
    request: Request[Any, Any, Any], runtime: Runtime, b: BuilderState, sync_advanced: bool
) -> Template:
    """The condition rows again, with the result for the sample (after they or the advanced text changed)."""
    event, _error = await _sample(runtime, b)
    context = await _condition_context(runtime, b, event)
    return _fragment(
        request,
        "rules/_conditions.html",
        "builder-changed",
        b=b,
        result_oob=True,
        sync_advanced=sync_advanced,
        **context,
    )


@post("/rules/builder/sample", include_in_schema=False, opt=READ, status_code=200)
async def sample_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """The source and sample section (after the source or the sample changed); tells the rest to refresh."""
    b = state_from_form(data, _sources(runtime))
    event, error = await _sample(runtime, b)
    context = await _sample_context(runtime, b, event, error)
    return _fragment(request, "rules/_sample.html", "sample-changed", b=b, oob=True, **context)


@post("/rules/builder/condition", include_in_schema=False, opt=READ, status_code=200)
async def condition_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """The compiled expression, whether the sample matches, and the count out of the last 100 events."""
    b = state_from_form(data, _sources(runtime))
    event, _error = await _sample(runtime, b)
    context = await _condition_context(runtime, b, event)
    return page(request, "rules/_condition_result.html", b=b, result_oob=False, sync_advanced=True, **context)


@post("/rules/builder/rows", include_in_schema=False, opt=READ, status_code=200)
async def rows_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Add or remove a condition row or group (``row_action``), or go back from raw text to rows."""
    action = text(data, "row_action")
    b = state_from_form(data, _sources(runtime), rows=True)
    if action == "reset":
        b.filter = state_from_spec({}, []).filter
    else:
        apply_row_action(b.filter.group, action)
    return await _conditions(request, runtime, b, sync_advanced=True)


@post("/rules/builder/advanced", include_in_schema=False, opt=READ, status_code=200)
async def advanced_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Raw JMESPath typed in the advanced box: the rows rebuilt from it, or a note that it stays raw."""
    form = {**data, "filter_last": "advanced"}
    b = state_from_form(form, _sources(runtime))
    return await _conditions(request, runtime, b, sync_advanced=False)


@post("/rules/builder/steps", include_in_schema=False, opt=READ, status_code=200)
async def steps_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Add, remove or move a step (``step_action``: add, remove:<n>, up:<n>, down:<n>)."""
    sources = _sources(runtime)
    b = state_from_form(data, sources)
    apply_step_action(b.steps, text(data, "step_action"), text(data, "new_kind"), sources)
    event, _error = await _sample(runtime, b)
    return _fragment(request, "rules/_steps.html", "builder-changed", b=b, **_step_context(runtime, b, event))


@post("/rules/builder/preview", include_in_schema=False, opt=READ, status_code=200)
async def preview_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Every step rendered against the sample, as out-of-band swaps into each field's preview slot."""
    b = state_from_form(data, _sources(runtime))
    event, _error = await _sample(runtime, b)
    return page(request, "rules/_step_previews.html", b=b, **_step_context(runtime, b, event))


@post("/rules/builder/yaml", include_in_schema=False, opt=READ, status_code=200)
async def yaml_fragment(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """The rule's YAML as it would be saved."""
    b = state_from_form(data, _sources(runtime))
    return page(request, "rules/_yaml.html", b=b, yaml=yaml_of(b)[0])


@post("/rules/builder/download", include_in_schema=False, opt=READ, status_code=200)
async def yaml_download(runtime: Runtime, data: Form) -> Response[str]:
    b = state_from_form(data, _sources(runtime))
    name = b.rule_id if b.rule_id and uirules.PREFIX not in b.rule_id else "rule"
    return yaml_attachment(yaml_of(b)[0], name)


def yaml_attachment(body: str, rule_id: str) -> Response[str]:
    safe = "".join(c for c in rule_id if c.isalnum() or c in "-_") or "rule"
    return Response(
        body,
        media_type="application/yaml; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{safe}.yaml"', "cache-control": "no-store"},
    )


def _check(runtime: Runtime, b: BuilderState) -> tuple[str, Any]:
    """The rule's YAML and its compiled form; problems are placed on the state (compiled is then None)."""
    yaml_text, _spec = yaml_of(b)
    if form_problems(b):
        return yaml_text, None
    try:
        return yaml_text, uirules.compile_ui_rule(yaml_text, b.rule_id, runtime.rules.current)
    except RuleSetError as exc:
        place_errors(b, exc)
        return yaml_text, None


@post("/rules/save", include_in_schema=False, status_code=200)
async def save(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    """Validate with the real loader and store the UI rule; back to /rules with a notice, or the form with errors."""
    b = state_from_form(data, _sources(runtime))
    yaml_text, compiled = _check(runtime, b)
    if compiled is None:
        return await render_builder(request, runtime, b, status=422)
    principal = principal_of(request)
    try:
        async with unit_of_work(runtime.sessions) as session:
            _row, created = await uirules.save_rule(
                session,
                runtime.rules.current,
                b.rule_id,
                yaml_text,
                principal.actor,
                create_only=not b.editing,
                via="builder",
            )
    except RuleSetError as exc:
        place_errors(b, exc)
        return await render_builder(request, runtime, b, status=exc.status)
    await runtime.rules_watcher.reload()
    return Redirect(f"/rules?done={'created' if created else 'saved'}&rule={b.rule_id}", status_code=303)


@post("/rules/builder/test", include_in_schema=False, status_code=200)
async def test_send(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Send test: store the sample as an event and run this rule (as it is in the form) on it, for real."""
    b = state_from_form(data, _sources(runtime))
    _yaml, compiled = _check(runtime, b)
    event, error = await _sample(runtime, b)
    if compiled is None or event is None:
        messages = [m for ms in b.errors.values() for m in ms]
        messages += [f"step {s.id}: {m}" for s in b.steps for m in s.errors]
        messages += [f"{s.id}.{f.name}: {f.error}" for s in b.steps for f in s.fields if f.error]
        detail = error or "; ".join(messages) or "fix the marked fields first"
        return page(request, "rules/_test_result.html", test=None, problem=detail)
    sent = await send_test(
        runtime.settings,
        runtime.engine,
        runtime.sessions,
        runtime.redis,
        runtime.rules.current,
        compiled,
        event,
        principal_of(request).actor,
    )
    return page(request, "rules/_test_result.html", test=sent, problem="")


HANDLERS = [
    new_rule,
    edit_rule,
    sample_fragment,
    condition_fragment,
    rows_fragment,
    advanced_fragment,
    steps_fragment,
    preview_fragment,
    yaml_fragment,
    yaml_download,
    save,
    test_send,
]
