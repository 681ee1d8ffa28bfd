"""``/api/ui-rules``: rules kept in the database (the ones the UI builds), as YAML in the rule-file format.

Reading needs the viewer role, changing the editor role; every change is audited and put in force at
once in this process (the workers reload within about two seconds).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Response
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody, PathParameter

from router.api.routes import Routes, SignedIn
from router.errors import ClientError
from router.records.db import unit_of_work
from router.records.models import UiRule
from router.rules import stored as uirules
from router.runtime import Runtime

RuleId = Annotated[str, PathParameter(description="The rule's id.")]
ui_rules = Routes("rules")


async def _found(session: Any, rule_id: str) -> UiRule:
    """The stored rule, or 404."""
    row = await uirules.get_rule(session, rule_id)
    if row is None:
        raise NotFoundException(f"no UI rule {rule_id!r}")
    return row


@ui_rules.get("/api/ui-rules", operation_id="ListUiRules")
async def list_ui_rules(runtime: Runtime) -> dict[str, Any]:
    """Rules built in the UI (stored in the database)."""
    async with runtime.sessions() as session:
        rows = await uirules.list_rules(session)
    return {"rules": [uirules.row_dict(row, runtime.rules.current) for row in rows]}


@ui_rules.get("/api/ui-rules/{rule_id:str}", operation_id="GetUiRule")
async def get_ui_rule(runtime: Runtime, rule_id: RuleId) -> Response[dict[str, Any]]:
    """One UI rule, with its YAML."""
    async with runtime.sessions() as session:
        row = await _found(session, rule_id)
    return Response(uirules.row_dict(row, runtime.rules.current, with_yaml=True))


@ui_rules.put("/api/ui-rules/{rule_id:str}", operation_id="PutUiRule")
async def put_ui_rule(
    principal: SignedIn, runtime: Runtime, rule_id: RuleId, data: JSONBody[dict[str, Any]]
) -> Response[dict[str, Any]]:
    """Create or replace a UI rule from its YAML or its JSON spec.

    Body: ``{"yaml": "<one rule>"}``, or the rule itself as JSON (``id`` defaults to the URL's).
    """
    if "yaml" in data:
        text = data["yaml"]
        if not isinstance(text, str) or len(data) != 1:
            detail = 'send {"yaml": "<the rule\'s YAML>"} alone, or the rule as JSON'
            raise ClientError(detail, status=422, title="Invalid rule")
    else:
        text = uirules.dump_rule({"id": rule_id, **data})
    async with unit_of_work(runtime.sessions) as session:
        row, created = await uirules.save_rule(session, runtime.rules.current, rule_id, text, principal.actor)
    await runtime.rules_watcher.reload()
    return Response(uirules.row_dict(row, runtime.rules.current, with_yaml=True), status_code=201 if created else 200)


def _switch(enabled: bool, path: str, **route: str) -> HTTPRouteHandler:
    """The operation at ``path`` that enables (or disables) a UI rule: two operations, one body."""

    @ui_rules.post(path, **route)
    async def switch(principal: SignedIn, runtime: Runtime, rule_id: RuleId) -> Response[Any]:
        async with unit_of_work(runtime.sessions) as session:
            row = await _found(session, rule_id)
            await uirules.switch_rule(session, runtime.rules.current, row, enabled, principal.actor)
        await runtime.rules_watcher.reload()
        return Response(uirules.row_dict(row, runtime.rules.current))

    return switch


enable_ui_rule = _switch(
    True,
    "/api/ui-rules/{rule_id:str}/enable",
    operation_id="EnableUiRule",
    summary="Enable a UI rule (it must still compile)",
)
disable_ui_rule = _switch(
    False, "/api/ui-rules/{rule_id:str}/disable", operation_id="DisableUiRule", summary="Disable a UI rule"
)


@ui_rules.delete("/api/ui-rules/{rule_id:str}", operation_id="DeleteUiRule")
async def delete_ui_rule(principal: SignedIn, runtime: Runtime, rule_id: RuleId) -> Response[Any]:
    """Delete a UI rule."""
    async with unit_of_work(runtime.sessions) as session:
        await uirules.delete_rule(session, await _found(session, rule_id), principal.actor)
    await runtime.rules_watcher.reload()
    return Response({"id": rule_id, "deleted": True})


HANDLERS = [list_ui_rules, get_ui_rule, put_ui_rule, enable_ui_rule, disable_ui_rule, delete_ui_rule]
