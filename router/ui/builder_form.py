"""The rule builder's form: what the HTML form holds, read into a rule spec and back.

The state of a rule being built lives in the page's form (no server session): every htmx request
posts the whole form, and these plain functions turn it into a ``BuilderState`` (conditions, steps,
rule settings, with the raw text each field showed), into the rule spec that is saved as YAML, and a
spec back into a state (to edit, import or duplicate a rule). Field names:

- ``rule_id``, ``original_id`` (editing), ``description``, ``enabled``, ``source``, ``rule_extra``;
- conditions: ``group-mode`` (the top group), ``group-<key>-mode`` and ``cond-<key>-path|op|value|type``
  where ``<key>`` is the item's position, nested with ``_`` (``1_0`` is item 0 of the group at 1);
  ``filter_mode`` (``visual`` or ``advanced``) and ``advanced`` (raw JMESPath);
- steps: ``step-<n>-id|action|kind|when|extra`` and ``step-<n>-f-<setting>`` for the action's settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from router.errors import ConditionError, RuleSetError
from router.rules.conditions import Condition, Group, coerce_value, compile_group, parse_expression

OP_LABELS = {
    "equals": "equals",
    "not_equals": "does not equal",
    "contains": "contains",
    "starts_with": "starts with",
    "greater_than": "greater than",
    "less_than": "less than",
    "greater_or_equal": "at least",
    "less_or_equal": "at most",
    "exists": "exists",
    "not_exists": "does not exist",
    "one_of": "is one of",
}
NO_VALUE = frozenset({"exists", "not_exists"})
TYPE_LABELS = {
    "auto": "auto",
    "string": "text",
    "number": "number",
    "boolean": "true/false",
    "null": "null",
    "json": "JSON",
}
_COND = re.compile(r"^cond-(\d+(?:_\d+)*)-(path|op|value|type)$")
_GROUP = re.compile(r"^group-(\d+(?:_\d+)*)-mode$")
MAX_ITEMS = 100


def text(form: Mapping[str, Any], name: str) -> str:
    """A form field as text with browser line ends (CR LF) made plain."""
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return str(value).replace("\r\n", "\n")


# -- conditions ----------------------------------------------------------------------------------------


@dataclass
class Row:
    """One condition row as the form shows it (raw text), with its error."""

    path: str = ""
    op: str = "equals"
    value: str = ""
    type: str = "auto"
    error: str = ""
    kind: str = "row"


@dataclass
class GroupView:
    mode: str = "all"
    items: list[Row | GroupView] = field(default_factory=list)
    kind: str = "group"


@dataclass
class FilterState:
    mode: str = "visual"  # visual: the rows are the filter; advanced: the raw text is
    group: GroupView = field(default_factory=GroupView)
    advanced: str = ""
    error: str = ""
    notice: str = ""

    def expression(self) -> str | None:
        """The filter text, or None for "every event" (or when a row has an error)."""
        return self.compiled()[0]

    def compiled(self) -> tuple[str | None, str]:
        """(the filter text or None for "every event", an error when a row is wrong)."""
        if self.mode == "advanced":
            return self.advanced.strip() or None, ""
        group = build_group(self.group)
        if group is None:
            return None, "fix the conditions marked below"
        return (compile_group(group) if group.items else None), ""


def _key(raw: str) -> tuple[int, ...]:
    return tuple(int(p) for p in raw.split("_"))


def group_from_form(form: Mapping[str, Any]) -> GroupView:
    """The nested rows the form posted, in key order (gaps left by removed rows are fine)."""
    rows: dict[tuple[int, ...], Row] = {}
    groups: dict[tuple[int, ...], GroupView] = {(): GroupView(mode=_mode(text(form, "group-mode")))}
    for name in form:
        if m := _COND.match(name):
            row = rows.setdefault(_key(m.group(1)), Row())
            setattr(row, m.group(2), text(form, name))
        elif m := _GROUP.match(name):
            groups[_key(m.group(1))] = GroupView(mode=_mode(text(form, name)))
    items: dict[tuple[int, ...], Row | GroupView] = {**rows, **groups}
    for key in sorted(k for k in items if k)[: MAX_ITEMS * 2]:
        parent = groups.get(key[:-1])
        if parent is not None:
            parent.items.append(items[key])
    for row in rows.values():
        row.op = row.op if row.op in OP_LABELS else "equals"
        row.type = row.type if row.type in TYPE_LABELS else "auto"
    return groups[()]


def _mode(value: str) -> str:
    return "any" if value == "any" else "all"


def _find(group: GroupView, key: tuple[int, ...]) -> Row | GroupView | None:
    node: Row | GroupView = group
    for index in key:
        if not isinstance(node, GroupView) or not 0 <= index < len(node.items):
            return None
        node = node.items[index]
    return node


def apply_row_action(group: GroupView, action: str) -> None:
    """``add:<group key>``, ``addgroup:<group key>`` or ``remove:<item key>`` (an empty key is the top group)."""
    verb, _, raw = action.partition(":")
    try:
        key = _key(raw) if raw else ()
    except ValueError:
        return
    target = _find(group, key)
    if verb in ("add", "addgroup") and isinstance(target, GroupView) and len(target.items) < MAX_ITEMS:
        target.items.append(Row() if verb == "add" else GroupView(mode="any", items=[Row()]))
    elif verb == "remove" and key:
        parent = _find(group, key[:-1])
        if isinstance(parent, GroupView) and 0 <= key[-1] < len(parent.items):
            del parent.items[key[-1]]


def build_group(view: GroupView) -> Group | None:
    """The conditions group of the rows, marking each bad row's error; None when any row is wrong.

    Rows with no field and no value are skipped (a row just added); so are groups left empty.
    """
    ok = True

    def walk(node: GroupView) -> Group:
        nonlocal ok
        items: list[Condition | Group] = []
        for item in node.items:
            if isinstance(item, GroupView):
                sub = walk(item)
                if sub.items:
                    items.append(sub)
                continue
            item.error = ""
            if not item.path.strip():
                if item.value.strip() and item.op not in NO_VALUE:
                    item.error = "choose a field: type its path, or click it in the sample"
                    ok = False
                continue
            try:
                value = coerce_value(item.op, item.value, item.type, field="value")  # type: ignore[arg-type]
                items.append(Condition.model_validate({"path": item.path.strip(), "op": item.op, "value": value}))
            except ConditionError as exc:
                item.error, ok = str(exc), False
            except ValidationError as exc:
                item.error, ok = _validation_message(exc), False
        return Group(mode=node.mode, items=items)

    group = walk(view)
    return group if ok else None


def _validation_message(exc: ValidationError) -> str:
    messages = []
    for err in exc.errors():
        cause = err.get("ctx", {}).get("error")
        where = str(err["loc"][0]) if err["loc"] else ""
        message = str(cause) if isinstance(cause, ConditionError) else err["msg"]
        messages.append(f"{where}: {message}" if where else message)
    return "; ".join(messages)


def value_text(op: str, value: Any) -> tuple[str, str]:
    """How a condition's value shows in the form: (text, value type) that ``coerce_value`` reads back."""
    if op in NO_VALUE:
        return "", "auto"
    if op == "starts_with":
        return str(value), "auto"
    if isinstance(value, str):
        try:
            same = coerce_value(op, value, "auto") == value  # type: ignore[arg-type]
        except ConditionError:
            same = False
        return value, "auto" if same else "string"
    if isinstance(value, list) and op == "one_of":
        return json.dumps(value, ensure_ascii=False), "auto"
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return json.dumps(value), "auto"
    return json.dumps(value, ensure_ascii=False), "json"


def view_from_group(group: Group) -> GroupView:
    items: list[Row | GroupView] = []
    for item in group.items:
        if isinstance(item, Group):
            items.append(view_from_group(item))
        else:
            shown, kind = value_text(item.op, item.value)
            items.append(Row(path=item.path, op=item.op, value=shown, type=kind))
    return GroupView(mode=group.mode, items=items)


def filter_from_text(expression: str | None) -> FilterState:
    """The filter of a rule as the builder shows it: rows when the expression maps back, else raw text."""
    if not expression or not expression.strip():
        return FilterState(group=GroupView(items=[Row()]))
    group = parse_expression(expression)
    if group is None:
        return FilterState(
            mode="advanced", advanced=expression, notice="This expression cannot be shown visually; it is kept as is."
        )
    view = view_from_group(group)
    if not view.items:
        view.items.append(Row())
    return FilterState(group=view, advanced=expression)


def filter_from_form(form: Mapping[str, Any], *, rows: bool = False) -> FilterState:
    """The filter the form holds. The rows are it, unless the advanced box was edited last
    (``filter_last=advanced``, set by builder.js) or holds an expression the rows cannot show;
    ``rows`` forces the rows (adding or removing one)."""
    advanced = text(form, "advanced")
    if not rows and (text(form, "filter_last") == "advanced" or text(form, "filter_mode") == "advanced"):
        return filter_from_text(advanced)
    return FilterState(mode="visual", group=group_from_form(form), advanced=advanced)


# -- errors ------------------------------------------------------------------------------------------


_STEP_PATH = re.compile(r"^steps\[(\d+)\](?:\.(\w+))?(?:\.([^.\[]+))?")


def error_targets(exc: RuleSetError) -> dict[str, list[str]]:
    """Loader errors by the form field they belong to: ``rule_id``, ``source``, ``filter``,
    ``step-<n>`` (the step as a whole), ``step-<n>-id``, ``step-<n>-f-<setting>``; the rest under ``""``."""
    out: dict[str, list[str]] = {}
    for err in exc.errors:
        where = f"line {err.line}, column {err.col}: " if err.line else ""
        target = ""
        if err.path in ("id", "source", "filter", "description"):
            target = {"id": "rule_id"}.get(err.path, err.path)
        elif m := _STEP_PATH.match(err.path):
            n, part, setting = m.group(1), m.group(2), m.group(3)
            if part == "with" and setting:
                target = f"step-{n}-f-{setting}"
            elif part in ("id", "when"):
                target = f"step-{n}-{part}"
            else:
                target = f"step-{n}"
        out.setdefault(target, []).append(where + err.message)
    return out
