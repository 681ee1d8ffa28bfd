"""Rules built in the UI: stored in the database as the YAML of one rule, loaded beside the rule files.

A UI rule is one mapping in exactly the rule-file format (one item of a file's ``rules:`` list). It is
compiled by the same code as a file rule, against the sources the rule files define; its problems are
reported as ``ui:<rule-id>:line:col: path: message`` and its runs record the location ``ui:<rule-id>``.

The rule set in force, the rule files plus the enabled UI rules, is made by router.rules.merged.
Saving validates fully, so a broken UI rule cannot be saved in the first place.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import LiteralScalarString
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from router.access import audit
from router.errors import RuleError, RuleSetError
from router.pipeline.retry import RetrySpec
from router.records.models import UiRule, utcnow
from router.rules.compile import _Loader
from router.rules.compiled import CompiledRule, RuleSet
from router.rules.ruleset import _model_at
from router.rules.schema import Rule
from router.rules.yamlfile import parse_yaml

log = structlog.get_logger("router.uirules")

PREFIX = "ui:"
RULE_KEYS = ("id", "source", "description", "enabled", "filter", "steps", "retry")
STEP_KEYS = ("id", "action", "when", "with", "retry", "limits")


def location(rule_id: str) -> str:
    """Where a UI rule lives, as runs record it."""
    return f"{PREFIX}{rule_id}"


def is_ui(rule: CompiledRule) -> bool:
    return rule.location.startswith(PREFIX)


def file_rule_ids(ruleset: RuleSet) -> dict[str, str]:
    """The ids of the rules that come from files, with their locations."""
    return {rid: r.location for rid, r in ruleset.rules.items() if not is_ui(r)}


# -- YAML ------------------------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


def _dump(node: Any) -> str:
    buffer = io.StringIO()
    _yaml().dump(node, buffer)
    return buffer.getvalue()


def _load(text: str) -> Any:
    return _yaml().load(text)


def _ordered(value: Any, keys: Sequence[str] = ()) -> Any:
    """Plain data as ruamel nodes, known keys first in the rule-file order, multi-line text as ``|``."""
    if isinstance(value, Mapping):
        out = CommentedMap()
        for key in [*[k for k in keys if k in value], *[k for k in value if k not in keys]]:
            child_keys = STEP_KEYS if key == "steps" else ()
            item = value[key]
            if key == "steps" and isinstance(item, list):
                out[key] = CommentedSeq([_ordered(s, STEP_KEYS) for s in item])
            else:
                out[key] = _ordered(item, child_keys)
        return out
    if isinstance(value, list):
        return CommentedSeq([_ordered(v) for v in value])
    if isinstance(value, str) and "\n" in value and not value.endswith((" ", "\t")) and "\r" not in value:
        return LiteralScalarString(value)
    return value


def dump_rule(spec: Mapping[str, Any]) -> str:
    """One rule as rule-file YAML (``id``, ``source``, … ``steps`` in that order)."""
    return _dump(_ordered(spec, RULE_KEYS))


def set_enabled(text: str, enabled: bool) -> str:
    """The rule's YAML with ``enabled: false`` written (or removed when enabled), comments kept."""
    node = _load(text)
    if not isinstance(node, CommentedMap):
        return text
    if enabled:
        node.pop("enabled", None)
    else:
        keys = list(node)
        after = next((k for k in ("source", "id") if k in node), None)
        position = keys.index(after) + 1 if after is not None else 0
        if "enabled" in node:
            node["enabled"] = False
        else:
            node.insert(position, "enabled", False)
    return _dump(node)


def set_id(text: str, rule_id: str) -> str:
    node = _load(text)
    if isinstance(node, CommentedMap):
        node["id"] = rule_id
    return _dump(node)


def rules_in_text(text: str) -> list[tuple[str, str]]:
    """Each rule of a YAML text (one rule, or a rule file with ``rules:``) as (id, that rule's YAML).

    The text is checked by the rule-file parser first (anchors, tags and size are refused as in files);
    raises RuleSetError located as ``import:line:col``.
    """
    _data, _locator, errors = parse_yaml(text.encode("utf-8"), "import")
    if errors:
        raise RuleSetError(errors)
    node = _load(text)
    if isinstance(node, CommentedMap) and "sources" in node and "rules" not in node:
        raise RuleSetError(
            [RuleError("this YAML defines sources but no rules; UI rules use the rule files' sources", file="import")]
        )
    if isinstance(node, CommentedMap) and "rules" in node:
        items = node["rules"]
        if not isinstance(items, CommentedSeq) or not items:
            raise RuleSetError([RuleError("the file's `rules:` list is empty", file="import", path="rules")])
        found = [item for item in items if isinstance(item, CommentedMap)]
    elif isinstance(node, CommentedMap):
        found = [node]
    else:
        raise RuleSetError([RuleError("expected one rule (id, source, steps) or a rule file", file="import")])
    return [(str(item.get("id", "")), _dump(item)) for item in found]


def file_rule_yaml(rule: CompiledRule) -> str:
    """A file rule's own YAML, re-read from its file with comments and formatting (round trip)."""
    file, _, _ = rule.location.rsplit(":", 2) if rule.location.count(":") >= 2 else (rule.location, "", "")
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleSetError([RuleError(f"cannot read the rule file: {exc.strerror or exc}", file=file)]) from None
    for rule_id, yaml_text in rules_in_text(text):
        if rule_id == rule.id:
            return yaml_text
    raise RuleSetError([RuleError(f"rule {rule.id!r} is no longer in this file; reload the page", file=file)])


# -- compiling ---------------------------------------------------------------------------------------


def compile_ui_rule(text: str, rule_id: str, ruleset: RuleSet) -> CompiledRule:
    """Compile one UI rule's YAML against the rule set's sources; raise RuleSetError (``ui:<id>:…``).

    Refused: anything but one rule mapping, an id other than ``rule_id``, an id a rule file uses.
    """
    file = location(rule_id)
    data, locator, errors = parse_yaml(text.encode("utf-8"), file)
    if errors:
        raise RuleSetError(errors)
    loader = _Loader(os.environ, allow_missing_secrets=True)
    if not isinstance(data, dict):
        loader.error("expected the mapping of one rule: id, source, steps", locator, ())
        raise RuleSetError(loader.errors)
    if "rules" in data or "sources" in data:
        loader.error(
            "a UI rule is one rule (id, source, steps), not a rule file with `rules:`/`sources:`; "
            "sources are defined in the rule files",
            locator,
            ("rules",) if "rules" in data else ("sources",),
        )
        raise RuleSetError(loader.errors)
    try:
        rule = Rule.model_validate(data)
    except ValidationError as exc:
        loader.validation_errors(exc, locator, (), lambda loc: _model_at(Rule, loc))
        raise RuleSetError(loader.errors) from None
    if rule.id != rule_id:
        loader.error(
            f"the rule's id is {rule.id!r} but it is saved as {rule_id!r}; make them the same", locator, ("id",)
        )
    taken = file_rule_ids(ruleset).get(rule.id)
    if taken is not None:
        loader.error(
            f"rule id {rule.id!r} is already defined at {taken} (a rule file); choose another id", locator, ("id",)
        )
    compiled = loader.compile_rule(rule, locator, (), ruleset.sources)
    if loader.errors:
        raise RuleSetError(loader.errors)
    return dataclasses.replace(compiled, location=file)


def single_attempt(rule: CompiledRule) -> CompiledRule:
    """The rule as a test send runs it: each step tried once, no retries."""
    once = RetrySpec(max_attempts=1)
    steps = tuple(dataclasses.replace(s, retry=once) for s in rule.steps)
    return dataclasses.replace(rule, retry=once, steps=steps)


# -- the store -----------------------------------------------------------------------------------------


async def list_rules(session: AsyncSession) -> list[UiRule]:
    return list((await session.scalars(select(UiRule).order_by(UiRule.id))).all())


async def get_rule(session: AsyncSession, rule_id: str) -> UiRule | None:
    return await session.get(UiRule, rule_id)


def _enabled_in(text: str) -> bool:
    data, _locator, _errors = parse_yaml(text.encode("utf-8"), "ui")
    return not (isinstance(data, dict) and data.get("enabled") is False)


async def save_rule(
    session: AsyncSession,
    ruleset: RuleSet,
    rule_id: str,
    text: str,
    actor: str,
    *,
    create_only: bool = False,
    via: str = "api",
) -> tuple[UiRule, bool]:
    """Validate and store a UI rule (with its audit entry; the caller commits). Returns (row, created).

    ``create_only`` refuses an id a UI rule already has (the builder's "new rule").
    """
    compiled = compile_ui_rule(text, rule_id, ruleset)
    row = await session.get(UiRule, rule_id)
    if row is not None and create_only:
        raise RuleSetError(
            [
                RuleError(
                    f"a UI rule {rule_id!r} already exists; choose another id, or edit that rule",
                    file=location(rule_id),
                    path="id",
                )
            ]
        )
    now = utcnow()
    enabled = _enabled_in(text)
    created = row is None
    if row is None:
        row = UiRule(
            id=rule_id,
            source=compiled.source,
            yaml=text,
            enabled=enabled,
            version=1,
            created_at=now,
            updated_at=now,
            updated_by=actor,
        )
        session.add(row)
    else:
        row.source, row.yaml, row.enabled = compiled.source, text, enabled
        row.version, row.updated_at, row.updated_by = row.version + 1, now, actor
    audit.record(
        session,
        actor,
        "ui_rule_created" if created else "ui_rule_updated",
        rule_id,
        {"version": row.version, "source": compiled.source, "enabled": enabled, "via": via},
    )
    return row, created


async def switch_rule(session: AsyncSession, ruleset: RuleSet, row: UiRule, enabled: bool, actor: str) -> UiRule:
    """Enable or disable a UI rule (its YAML's ``enabled`` too); enabling checks that it still compiles."""
    text = set_enabled(row.yaml, enabled)
    if enabled:
        compile_ui_rule(text, row.id, ruleset)
    row.yaml, row.enabled = text, enabled
    row.version, row.updated_at, row.updated_by = row.version + 1, utcnow(), actor
    audit.record(session, actor, "ui_rule_enabled" if enabled else "ui_rule_disabled", row.id, {"version": row.version})
    return row


async def delete_rule(session: AsyncSession, row: UiRule, actor: str) -> None:
    await session.delete(row)
    audit.record(session, actor, "ui_rule_deleted", row.id, {"version": row.version, "source": row.source})


async def free_copy_id(session: AsyncSession, ruleset: RuleSet, base: str) -> str:
    """``<base>-copy``, ``<base>-copy-2``, … : the first id no file rule and no UI rule has (at most 64 chars)."""
    taken = set(ruleset.rules) | {r for r in (await session.scalars(select(UiRule.id))).all()}
    for n in range(1, 1000):
        suffix = "-copy" if n == 1 else f"-copy-{n}"
        candidate = base[: 64 - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
    raise RuleSetError([RuleError(f"no free id for a copy of {base!r}; rename some copies", file=location(base))])


def row_dict(row: UiRule, ruleset: RuleSet, *, with_yaml: bool = False) -> dict[str, Any]:
    """A UI rule as the API shows it; ``in_force`` says whether the rule set in force holds it."""
    loaded = ruleset.rules.get(row.id)
    out: dict[str, Any] = {
        "id": row.id,
        "source": row.source,
        "enabled": row.enabled,
        "version": row.version,
        "location": location(row.id),
        "in_force": loaded is not None and is_ui(loaded),
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "updated_by": row.updated_by,
    }
    if with_yaml:
        out["yaml"] = row.yaml
    return out
