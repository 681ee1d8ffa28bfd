"""``/rules``: every rule in force. File rules are read-only (with their file and line) and can be
duplicated as a UI rule; UI rules can be edited in the builder, enabled, disabled, duplicated, deleted,
and exported or imported as YAML.

Changes are plain ``<form method=post>`` requests carrying ``_csrf``; each redirects back to the list
with a notice chosen by the server (``?done=<what>&rule=<id>``), or renders the list with the error.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from router.access.guard import principal_of
from router.errors import ClientError, RuleSetError
from router.records.db import unit_of_work
from router.rules import stored as uirules
from router.rules.schema import SLUG
from router.rules.yamlfile import parse_yaml
from router.runtime import Runtime
from router.ui.builder import render_builder, yaml_attachment
from router.ui.builder_form import text
from router.ui.builder_state import state_from_spec
from router.ui.forms import Form, refusals
from router.ui.render import page

_SLUG = re.compile(SLUG)

NOTICES = {
    "created": "Rule {rule} saved: it is in force now.",
    "saved": "Rule {rule} saved: the new version is in force now.",
    "enabled": "Rule {rule} enabled.",
    "disabled": "Rule {rule} disabled: it matches nothing until enabled again.",
    "deleted": "Rule {rule} deleted.",
    "duplicated": "Saved the copy {rule}, disabled so that it does not deliver twice: edit it, then enable it.",
}


async def render_list(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    *,
    notice: str = "",
    error: str = "",
    errors: list[str] | None = None,
    import_text: str = "",
    status: int = 200,
) -> Template:
    rs = runtime.rules.current
    async with runtime.sessions() as session:
        rows = await uirules.list_rules(session)
    file_rules = [r for r in rs.rules.values() if not uirules.is_ui(r)]
    return page(
        request,
        "rules/list.html",
        status=status,
        file_rules=file_rules,
        ui_rules=[(row, rs.rules.get(row.id)) for row in rows],
        rule_errors=runtime.rules.errors,
        version=rs.version,
        notice=notice,
        error=error,
        errors=errors or [],
        import_text=import_text,
    )


@get("/rules", include_in_schema=False)
async def rules_page(
    request: Request[Any, Any, Any], runtime: Runtime, done: FromQuery[str] = "", rule: FromQuery[str] = ""
) -> Template:
    notice = NOTICES[done].format(rule=rule) if done in NOTICES and _SLUG.match(rule) else ""  # no free text
    return await render_list(request, runtime, notice=notice)


@get("/rules/{name:str}", include_in_schema=False)
async def rule_yaml(runtime: Runtime, name: FromPath[str]) -> Response[str]:
    """``/rules/<id>.yaml``: a rule's YAML as a download (a UI rule's stored text; a file rule's own lines)."""
    rule_id = name.removesuffix(".yaml")
    if rule_id == name:
        raise NotFoundException(f"no page /rules/{name}; a rule's YAML is at /rules/<id>.yaml")
    async with runtime.sessions() as session:
        row = await uirules.get_rule(session, rule_id)
    if row is not None:
        return yaml_attachment(row.yaml, row.id)
    loaded = runtime.rules.current.rules.get(rule_id)
    if loaded is None or uirules.is_ui(loaded):
        raise NotFoundException(f"no rule {rule_id!r}")
    try:
        return yaml_attachment(uirules.file_rule_yaml(loaded), rule_id)
    except RuleSetError as exc:
        raise NotFoundException(str(exc)) from None


async def _refused(
    exc: ClientError,
    *,
    request: Request[Any, Any, Any],
    runtime: Runtime,
    heading: str,
    data: dict[str, Any] | None = None,
    **arguments: Any,
) -> Template:
    """The list again, with each problem under ``heading`` (formatted with the path's values) and the YAML pasted."""
    problems = exc.errors if isinstance(exc, RuleSetError) else [exc]
    return await render_list(
        request,
        runtime,
        error=heading.format(**arguments),
        errors=[str(e) for e in problems],
        import_text=text(data, "yaml") if data is not None else "",
        status=exc.status,
    )


def _switch(verb: str, what: str) -> HTTPRouteHandler:
    """The handler of a UI rule's button that enables, disables or deletes it (``what``: the notice's key)."""

    @post(f"/rules/{{rule_id:str}}/{verb}", include_in_schema=False, status_code=303, name=f"rule-{verb}")
    @refusals(_refused, heading="Rule {rule_id} cannot be enabled:")
    async def switch(request: Request[Any, Any, Any], runtime: Runtime, rule_id: FromPath[str]) -> Response[Any]:
        principal = principal_of(request)
        async with unit_of_work(runtime.sessions) as session:
            row = await uirules.get_rule(session, rule_id)
            if row is None:
                return await render_list(request, runtime, error=f"There is no UI rule {rule_id!r}.", status=404)
            if what == "deleted":
                await uirules.delete_rule(session, row, principal.actor)
            else:
                await uirules.switch_rule(session, runtime.rules.current, row, what == "enabled", principal.actor)
        await runtime.rules_watcher.reload()
        return Redirect(f"/rules?done={what}&rule={rule_id}", status_code=303)

    return switch


enable, disable, delete = (
    _switch(verb, what) for verb, what in (("enable", "enabled"), ("disable", "disabled"), ("delete", "deleted"))
)


@post("/rules/{rule_id:str}/duplicate", include_in_schema=False, status_code=303)
@refusals(_refused, heading="Rule {rule_id} cannot be copied:")
async def duplicate(request: Request[Any, Any, Any], runtime: Runtime, rule_id: FromPath[str]) -> Response[Any]:
    """Save a copy (``<id>-copy``) of a file rule or a UI rule as a new, disabled UI rule, its YAML kept as is."""
    rs = runtime.rules.current
    principal = principal_of(request)
    async with unit_of_work(runtime.sessions) as session:
        row = await uirules.get_rule(session, rule_id)
        loaded = rs.rules.get(rule_id)
        if row is not None:
            original = row.yaml
        elif loaded is not None and not uirules.is_ui(loaded):
            original = uirules.file_rule_yaml(loaded)
        else:
            return await render_list(request, runtime, error=f"There is no rule {rule_id!r}.", status=404)
        copy_id = await uirules.free_copy_id(session, rs, rule_id)
        copy = uirules.set_enabled(uirules.set_id(original, copy_id), False)
        await uirules.save_rule(session, rs, copy_id, copy, principal.actor, create_only=True, via="duplicate")
    await runtime.rules_watcher.reload()
    return Redirect(f"/rules?done=duplicated&rule={copy_id}", status_code=303)


@post("/rules/import", include_in_schema=False, status_code=200)
@refusals(_refused, heading="The YAML does not parse:")
async def import_yaml(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Pasted YAML opens in the builder, not saved yet. A rule file with several rules: pick one (``choose``)."""
    pasted = text(data, "yaml")
    if not pasted.strip():
        return await render_list(request, runtime, error="Paste a rule's YAML first.", status=422)
    found = uirules.rules_in_text(pasted)
    chosen = text(data, "choose")
    if len(found) > 1 and not chosen:
        return page(request, "rules/import_choose.html", found=[rid for rid, _ in found], yaml_text=pasted)
    yaml_text = next((y for rid, y in found if rid == chosen), found[0][1])
    spec, _locator, errors = parse_yaml(yaml_text.encode("utf-8"), "import")
    if errors or not isinstance(spec, dict):
        return await render_list(
            request,
            runtime,
            error="The YAML is not a rule:",
            errors=[str(e) for e in errors],
            import_text=pasted,
            status=422,
        )
    b = state_from_spec(spec, sorted(runtime.rules.current.sources))
    if spec.get("id") in runtime.rules.current.rules:
        b.add_error("rule_id", f"rule {spec['id']!r} already exists: choose a new id for the imported rule")
    return await render_builder(request, runtime, b)


HANDLERS = [rules_page, rule_yaml, enable, disable, delete, duplicate, import_yaml]
