"""The rule index: find the few rules an event can match without evaluating every filter.

Most filters start with a test on a fixed field — ``body.type == 'invoice.paid'``,
``headers."x-github-event" == 'push'``, ``starts_with(body.ref, 'refs/heads/')``,
``contains(['opened', 'edited'], body.action)``. Such a test is *required*: the filter cannot be true
unless it holds. At load, each filter's JMESPath tree is read for one required test on a path:

- ``path == literal`` (either side) → the path must equal that value;
- ``contains([literals…], path)`` (string literals) → the path must equal one of them;
- ``starts_with(path, 'prefix')`` → the path's value must start with the prefix;
- ``a && b`` → whichever of the two requires the narrowest thing (both must hold anyway);
- ``a || b`` → both sides must require something on paths, and either may hold.

Per event, each indexed path is looked up once (a dictionary walk, JMESPath's semantics: a field of a
non-object or an index past the end is null), and only the rules whose required value turned up are
*candidates*; their full filters then run as before, in load order. A rule with nothing indexable
(``body.amount > `100```, ``!(…)``) is always a candidate, so matching never misses a rule: the index only
skips filters that could not have been true. Equality follows JMESPath's: numbers equal numbers
(1 == 1.0), never booleans; strings equal strings; null equals null. This is the idea of Elasticsearch's
percolator and aws/event-ruler, kept to what JMESPath lets us prove.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str | int, ...]
_MISSING = object()


def value_key(value: Any) -> Hashable | None:
    """The index key of a value under JMESPath equality, or None for values the index does not hold."""
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)  # 1 and 1.0 hash and compare equal, as JMESPath has them
    if isinstance(value, str):
        return ("s", value)
    return None


def lookup(ctx: Mapping[str, Any], path: Path) -> Any:
    """The value at ``path`` with JMESPath's rules: missing fields and out-of-range indexes give null."""
    node: Any = ctx
    for part in path:
        if isinstance(part, str):
            node = node.get(part) if isinstance(node, dict | Mapping) else None
        else:
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return None
            node = node[part]
        if node is None:
            return None
    return node


# -- what a filter requires -------------------------------------------------------------------------


@dataclass(frozen=True)
class Equals:
    path: Path
    keys: frozenset[Hashable]  # any of these


@dataclass(frozen=True)
class Prefix:
    path: Path
    prefix: str


Test = Equals | Prefix
Requirement = tuple[Test, ...]  # alternatives: at least one holds whenever the filter is true


def path_of(node: dict[str, Any]) -> Path | None:
    """The fixed path an expression reads (``a.b."c-d"[0]``, optionally ``@.``-prefixed), or None."""
    kind = node.get("type")
    if kind == "field":
        return (node["value"],)
    if kind == "current":
        return ()
    if kind == "subexpression":
        out: list[str | int] = []
        for child in node.get("children", ()):
            part = path_of(child)
            if part is None:
                return None
            out.extend(part)
        return tuple(out)
    if kind == "index_expression":
        children = node.get("children", ())
        if len(children) != 2 or children[1].get("type") != "index":
            return None
        head = path_of(children[0])
        return None if head is None else (*head, int(children[1]["value"]))
    return None


def _literal(node: dict[str, Any]) -> tuple[bool, Any]:
    if node.get("type") == "literal":
        return True, node.get("value")
    return False, None


def requirement(node: dict[str, Any]) -> Requirement | None:
    """What must hold for ``node`` to be truthy, or None when nothing indexable is required."""
    kind = node.get("type")
    children = node.get("children", ())
    if kind == "comparator" and node.get("value") == "eq" and len(children) == 2:
        for a, b in ((children[0], children[1]), (children[1], children[0])):
            is_literal, value = _literal(b)
            path = path_of(a) if is_literal else None
            key = value_key(value) if is_literal else None
            if path and key is not None:
                return (Equals(path, frozenset([key])),)
        return None
    if kind == "function_expression" and len(children) == 2:
        name = node.get("value")
        if name == "starts_with":
            path = path_of(children[0])
            is_literal, value = _literal(children[1])
            if path and is_literal and isinstance(value, str):
                return (Prefix(path, value),)
        if name == "contains":
            values = _string_list(children[0])
            path = path_of(children[1])
            if path and values:
                return (Equals(path, frozenset(("s", v) for v in values)),)
        return None
    if kind == "and_expression" and len(children) == 2:
        options = [r for r in (requirement(children[0]), requirement(children[1])) if r is not None]
        return min(options, key=_breadth) if options else None
    if kind == "or_expression" and len(children) == 2:
        left, right = requirement(children[0]), requirement(children[1])
        return None if left is None or right is None else left + right
    return None


def _string_list(node: dict[str, Any]) -> list[str] | None:
    """A list of string literals (``['a', 'b']`` or ```["a", "b"]```): in it only strings equal strings."""
    is_literal, value = _literal(node)
    if is_literal:
        items = value if isinstance(value, list) else None
    elif node.get("type") == "multi_select_list":
        items = []
        for child in node.get("children", ()):
            ok, item = _literal(child)
            if not ok:
                return None
            items.append(item)
    else:
        return None
    if not items or not all(isinstance(v, str) for v in items):
        return None
    return items


def _breadth(req: Requirement) -> tuple[int, int]:
    """How much a requirement lets through: fewer alternatives and equality before prefixes is narrower."""
    return (sum(1 for t in req if isinstance(t, Prefix)), sum(len(t.keys) if isinstance(t, Equals) else 1 for t in req))


# -- the index of one source ----------------------------------------------------------------------


@dataclass
class RuleIndex:
    """The enabled rules of one source, indexed by what their filters require."""

    rules: Sequence[Any]  # CompiledRule, in load order
    always: list[int] = field(default_factory=list)
    equals: dict[Path, dict[Hashable, list[int]]] = field(default_factory=dict)
    prefixes: dict[Path, dict[int, dict[str, list[int]]]] = field(default_factory=dict)

    @classmethod
    def build(cls, rules: Sequence[Any]) -> RuleIndex:
        index = cls(rules)
        for position, rule in enumerate(rules):
            req = requirement(rule.filter.parsed.parsed) if rule.filter is not None else None
            if req is None:
                index.always.append(position)
                continue
            for test in req:
                if isinstance(test, Equals):
                    table = index.equals.setdefault(test.path, {})
                    for key in test.keys:
                        table.setdefault(key, []).append(position)
                else:
                    by_length = index.prefixes.setdefault(test.path, {})
                    by_length.setdefault(len(test.prefix), {}).setdefault(test.prefix, []).append(position)
        return index

    @property
    def indexed(self) -> int:
        return len(self.rules) - len(self.always)

    def candidates(self, ctx: Mapping[str, Any]) -> list[Any]:
        """The rules whose filters could be true for this context, in load order."""
        if not self.equals and not self.prefixes:
            return list(self.rules)
        hits: set[int] = set(self.always)
        for path, table in self.equals.items():
            key = value_key(lookup(ctx, path))
            if key is not None:
                found = table.get(key)
                if found:
                    hits.update(found)
        for path, by_length in self.prefixes.items():
            value = lookup(ctx, path)
            if isinstance(value, str):
                for length, starts in by_length.items():
                    if len(value) >= length and (found := starts.get(value[:length])):
                        hits.update(found)
        rules = self.rules
        return [rules[i] for i in sorted(hits)]
