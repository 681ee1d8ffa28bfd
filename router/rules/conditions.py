"""The no-code condition builder: conditions and groups that compile to a JMESPath filter, and back.

A ``Group`` of ``Condition``\\ s (and nested groups) compiles to the JMESPath text a rule's ``filter``
holds; ``parse_expression`` maps such text (and common hand-written variants) back to a group, or
returns None when the expression is outside the builder's reach (the UI then keeps it in the
advanced box). Paths are JMESPath field paths over the filter context (``body.repository.name``,
``headers."x-github-event"``, ``body.commits[0].id``), kept in one canonical spelling.

JMESPath pitfalls this module avoids: a bare ``null`` or a ``"double-quoted"`` word is a *field*,
not a value (``a == null`` compares ``a`` with the field ``null``), so values are always written as
``'raw strings'`` or ```json``` literals. jmespath 1.0.1 unescapes only ``\\'`` in a raw string (not
``\\\\``), so a string holding a backslash is written as a JSON literal instead.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from typing import Annotated, Any, Literal, get_args

from jmespath.parser import Parser
from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError, ValidationInfo, field_validator

from router.errors import ConditionError
from router.rules.filters import MAX_EXPRESSION_CHARS

NumericOp = Literal["greater_than", "less_than", "greater_or_equal", "less_or_equal"]
OtherOp = Literal["equals", "not_equals", "contains", "starts_with", "exists", "not_exists", "one_of"]
Op = Literal[OtherOp, NumericOp]
Mode = Literal["all", "any"]
ValueType = Literal["auto", "string", "number", "boolean", "null", "json"]
OPS: tuple[str, ...] = (*get_args(OtherOp)[:4], *get_args(NumericOp), *get_args(OtherOp)[4:])  # form order
PathPart = str | int

_COMPARATORS = {"equals": ("==", "eq"), "not_equals": ("!=", "ne"), "greater_than": (">", "gt")}
_COMPARATORS |= {"less_than": ("<", "lt"), "greater_or_equal": (">=", "gte"), "less_or_equal": ("<=", "lte")}
_AST_COMPARATORS = {name: op for op, (_, name) in _COMPARATORS.items()}
_FLIPPED = {"gt": "lt", "lt": "gt", "gte": "lte", "lte": "gte", "eq": "eq", "ne": "ne"}
_NUMERIC_OPS, _NO_VALUE_OPS = frozenset(get_args(NumericOp)), frozenset({"exists", "not_exists"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _q(value: Any) -> str:
    """A value quoted for a message, as JSON (``"abc"``, ``5``)."""
    return json.dumps(value, ensure_ascii=False, default=repr)


def path_from_parts(parts: list[PathPart]) -> str:
    """A field path from keys and list indexes, quoting keys that are not plain identifiers.

    ``["body", "foo-bar", 0, "id"]`` gives ``body."foo-bar"[0].id``.
    """
    if not parts:
        raise ConditionError("a path needs at least one field")
    out: list[str] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise ConditionError(f"{_q(part)} is neither a field name nor a list index")
        if isinstance(part, int):
            if not out:
                raise ConditionError("a path starts with a field name, not a list index")
            out.append(f"[{part}]")
        else:
            key = part if _IDENTIFIER.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out.append(f".{key}" if out else key)
    return "".join(out)


def _ast_parts(node: dict[str, Any]) -> list[PathPart] | None:
    """The keys and indexes of a field-path AST, or None when it is anything else."""
    kind, children = node.get("type"), node.get("children", [])
    if kind == "field":
        return [str(node["value"])]
    if kind == "subexpression":
        subs = [_ast_parts(child) for child in children]
        return None if None in subs else [part for sub in subs if sub is not None for part in sub]
    if kind == "index_expression" and children and all(c.get("type") == "index" for c in children[1:]):
        base = _ast_parts(children[0])  # a bare ``[0]`` (identity) indexes the context: not a field path
        return None if base is None else base + [int(c["value"]) for c in children[1:]]
    return None


def _parse(expr: str) -> dict[str, Any]:
    with warnings.catch_warnings():  # `bare` literals are deprecated JEP-12 syntax; accept them quietly
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        parsed: dict[str, Any] = Parser().parse(expr).parsed
    return parsed


def path_parts(path: str) -> list[PathPart]:
    """The keys and indexes of a field path; raises ``ConditionError`` when it is not one."""
    try:
        parts = _ast_parts(_parse(path)) if path.strip() else None
    except Exception:
        parts = None
    if parts is None:
        raise ConditionError(f'{_q(path)} is not a field path (like body.repository.name or body."foo-bar"[0])')
    return parts


def validate_path(path: str) -> str:
    """The canonical spelling of a field path (``body . "a"`` gives ``body.a``); ``ConditionError`` if bad."""
    return path_from_parts(path_parts(path))


def sample_paths(sample: Any, prefix: str = "body", limit: int = 500) -> list[tuple[str, Any]]:
    """Every node of a sample JSON (objects and lists too, the root first) as (path, value), depth first.

    Paths start with ``prefix`` (itself a field path, or "" for none) and are quoted like
    ``path_from_parts``; at most ``limit`` entries are listed. Without a prefix the sample should be an
    object: the items of a top-level list have no field path.
    """
    root: list[PathPart] = path_parts(prefix) if prefix else []
    out: list[tuple[str, Any]] = []
    stack: list[tuple[list[PathPart], Any]] = [(root, sample)]
    while stack and len(out) < limit:
        parts, value = stack.pop()
        if parts:
            out.append((path_from_parts(parts), value))
        if isinstance(value, dict):
            children: list[tuple[list[PathPart], Any]] = [([*parts, str(k)], v) for k, v in value.items()]
        elif isinstance(value, list) and parts:  # without a prefix, a top-level list has no field path
            children = [([*parts, i], v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(children))
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | str) or _is_number(value):
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return isinstance(value, dict) and all(isinstance(k, str) and _is_json(v) for k, v in value.items())


class Condition(BaseModel):
    """One test on one field: ``path`` ``op`` ``value`` (no value for exists / not_exists)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    op: Op
    value: Any = None

    @field_validator("path")
    @classmethod
    def _canonical_path(cls, path: str) -> str:
        return validate_path(path)

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: Any, info: ValidationInfo) -> Any:
        op = info.data.get("op")
        if op in _NO_VALUE_OPS:
            return None
        if not _is_json(value):
            raise ConditionError(f"{_q(value)} is not a JSON value")
        if op in _NUMERIC_OPS and not _is_number(value):
            raise ConditionError(f"{_q(value)} is not a number")
        if op == "starts_with" and not isinstance(value, str):
            raise ConditionError(f"starts_with needs a text value, not {_q(value)}")
        if op == "one_of" and not isinstance(value, list):
            raise ConditionError(f"one_of needs a list of values, not {_q(value)}")
        return value


def _kind(item: Any) -> str:
    group = isinstance(item, Group) or (isinstance(item, dict) and ("items" in item or "mode" in item))
    return "group" if group else "condition"


class Group(BaseModel):
    """Conditions and nested groups joined by ``all`` (and) or ``any`` (or)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Mode = "all"
    items: list[
        Annotated[Annotated[Condition, Tag("condition")] | Annotated[Group, Tag("group")], Discriminator(_kind)]
    ] = []


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        elif not (i and isinstance(loc[i - 1], int) and part in ("condition", "group")):  # union tags
            text += f".{part}" if text else part
    return text


def group_from_data(data: Any) -> Group:
    """Validate a posted group (dicts and lists); errors become one ``ConditionError`` naming each field."""
    try:
        return Group.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            cause = err.get("ctx", {}).get("error")
            errors.append((_loc(err["loc"]), str(cause) if isinstance(cause, ConditionError) else err["msg"]))
        raise ConditionError("; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in errors), errors) from None


def coerce_value(op: Op, raw: str, value_type: ValueType = "auto", *, field: str = "value") -> Any:
    """Turn the text a form posted into the value a condition needs.

    - exists / not_exists: no value (None); starts_with: the text as is.
    - greater/less ops: a number ("42", "-1.5", "1e3"), whatever ``value_type`` says.
    - one_of: a JSON array (``["a", 1]``), or comma-separated items each coerced by ``value_type``.
    - otherwise by ``value_type``: "string" keeps the text; "number", "boolean" ("true"/"false"),
      "null" and "json" (any JSON) parse it; "auto" takes true/false/null and JSON numbers as such
      and anything else as text (so "42" becomes 42: choose "string" for headers, which are text).

    ``field`` names the form field in the ``ConditionError`` a bad value raises.
    """
    if op in _NO_VALUE_OPS or op == "starts_with":
        return None if op in _NO_VALUE_OPS else raw
    text = raw.strip()
    if op == "one_of" and not text.startswith("["):
        items = [item.strip() for item in text.split(",") if item.strip()]
        return [coerce_value("equals", item, value_type, field=field) for item in items]
    kind: str = "number" if op in _NUMERIC_OPS else "json" if op == "one_of" else value_type
    if kind == "auto":
        words = {"true": "boolean", "false": "boolean", "null": "null"}
        kind = words.get(text, "number" if _NUMBER.fullmatch(text) else "string")
    if kind in ("string", "null"):
        return raw if kind == "string" else None
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise ConditionError(f"{field}: {_q(raw)} is not true or false")
        return text.lower() == "true"
    if kind == "number":
        if not _NUMBER.fullmatch(text) or not math.isfinite(number := json.loads(text)):
            raise ConditionError(f"{field}: {_q(raw)} is not a number")
        return number
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError:
        value = math.nan
    if not _is_json(value) or (op == "one_of" and not isinstance(value, list)):
        raise ConditionError(f"{field}: {_q(raw)} is not {'a JSON list' if op == 'one_of' else 'valid JSON'}")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def literal(value: Any) -> str:
    """A JMESPath literal: ``'raw string'`` for text without a backslash, else ```json```."""
    if isinstance(value, str) and "\\" not in value:
        return "'" + value.replace("'", "\\'") + "'"
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return "`" + text.replace("`", "\\`") + "`"


def compile_condition(cond: Condition) -> str:
    path, op = cond.path, cond.op
    if op in _COMPARATORS:
        return f"{path} {_COMPARATORS[op][0]} {literal(cond.value)}"
    if op in ("contains", "starts_with"):
        return f"{op}({path}, {literal(cond.value)})"
    if op == "one_of":
        return f"contains({literal(cond.value)}, {path})"
    return f"{path} {'!=' if op == 'exists' else '=='} `null`"


def compile_group(group: Group) -> str:
    """JMESPath for a group: ``&&`` for all, ``||`` for any, nested groups in parentheses.

    An empty ``all`` group is ```true``` (matches every event), an empty ``any`` group ```false```.
    """
    if not group.items:
        return "`true`" if group.mode == "all" else "`false`"
    parts = []
    for item in group.items:
        if isinstance(item, Condition):
            parts.append(compile_condition(item))
        else:
            text = compile_group(item)
            parts.append(f"({text})" if len(item.items) > 1 else text)
    return (" && " if group.mode == "all" else " || ").join(parts)


def normalise(group: Group) -> Group:
    """The group ``parse_expression(compile_group(group))`` gives back, meaning the same thing.

    Nested groups with one item are unwrapped, a nested group with its parent's mode is merged into it,
    equals/not_equals null become not_exists/exists, and a top-level group of one item is that item.
    """
    items = _normal_items(group)
    if len(items) == 1:
        return items[0] if isinstance(items[0], Group) else Group(mode="all", items=items)
    return Group(mode=group.mode, items=items)


def _normal_items(group: Group) -> list[Condition | Group]:
    items: list[Condition | Group] = []
    for item in group.items:
        if isinstance(item, Condition):
            if item.op in ("equals", "not_equals") and item.value is None:
                item = Condition(path=item.path, op="not_exists" if item.op == "equals" else "exists")
            items.append(item)
            continue
        inner = _normal_items(item)
        if len(inner) == 1:
            if isinstance(inner[0], Group) and inner[0].mode == group.mode:
                items += inner[0].items
            else:
                items.append(inner[0])
        elif item.mode == group.mode:
            items += inner
        else:
            items.append(Group(mode=item.mode, items=inner))
    return items


class _Unrepresentable(Exception):
    """An expression the builder cannot show."""


def parse_expression(expr: str) -> Group | None:
    """The group an expression means, when the builder can show it; None when it cannot.

    Understood: comparisons of a field path with a literal (either side; ```json```, ``'raw'``),
    ``contains(path, x)``, ``starts_with(path, 'x')``, ``contains(`[...]`, path)``, ``&&``, ``||``,
    parentheses, and ```true``` / ```false``` as empty all / any groups.
    """
    if not expr.strip() or len(expr) > MAX_EXPRESSION_CHARS:
        return None
    try:
        node = _node(_parse(expr))
    except Exception:  # _Unrepresentable, a syntax error, RecursionError: all for the advanced box
        return None
    return node if isinstance(node, Group) else Group(mode="all", items=[node])


def _node(node: dict[str, Any]) -> Condition | Group:
    kind, children = node.get("type"), node.get("children", [])
    if kind in ("and_expression", "or_expression"):
        mode: Mode = "all" if kind == "and_expression" else "any"
        items: list[Condition | Group] = []
        for sub in map(_node, children):
            items += sub.items if isinstance(sub, Group) and sub.mode == mode else [sub]
        return items[0] if len(items) == 1 else Group(mode=mode, items=items)
    if kind == "literal" and isinstance(node["value"], bool):
        return Group(mode="all" if node["value"] else "any", items=[])
    if kind == "comparator":
        (left, right), comparator = children, node["value"]
        if left.get("type") == "literal":
            left, right, comparator = right, left, _FLIPPED[comparator]
        op, value = _AST_COMPARATORS[comparator], _literal_value(right)
        if value is None and op in ("equals", "not_equals"):
            op = "not_exists" if op == "equals" else "exists"
        return _condition(left, op, value)
    if kind == "function_expression" and node["value"] in ("contains", "starts_with") and len(children) == 2:
        first, second = children
        if node["value"] == "contains" and first.get("type") == "literal":
            return _condition(second, "one_of", _literal_value(first))
        return _condition(first, node["value"], _literal_value(second))
    raise _Unrepresentable


def _literal_value(node: dict[str, Any]) -> Any:
    if node.get("type") != "literal":
        raise _Unrepresentable
    return node["value"]


def _condition(path_node: dict[str, Any], op: str, value: Any) -> Condition:
    parts = _ast_parts(path_node)
    if parts is None:
        raise _Unrepresentable
    return Condition.model_validate({"path": path_from_parts(parts), "op": op, "value": value})
