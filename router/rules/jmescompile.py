"""JMESPath trees compiled to Python closures, for the expressions filters are made of.

jmespath.py walks an expression's tree for every evaluation (a method lookup and call per node);
most filters are a few field paths, comparisons, ``&&``/``||``/``!``, literals and function calls, and
for those a tree of closures built once does the same work several times faster. Each closure does
exactly what jmespath's ``TreeInterpreter`` does for its node — the same helpers (``_equals``,
``_is_comparable``, the comparator table, the function table), the same falsiness — and
tests/rules/test_jmescompile.py checks them against the interpreter on generated expressions and data.

Anything else (projections, filters, slices, pipes, multi-selects, expression references) is not
compiled: ``compile_tree`` returns None and the expression is interpreted as before, under its budget.
What is compiled has no loop of its own, so its cost is bounded by the expression's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jmespath import visitor as jv

Fn = Callable[[Any], Any]
_COMPARATORS = jv.TreeInterpreter.COMPARATOR_FUNC


# jmespath's helpers test ``isinstance(x, numbers.Number)``, an ABC check costing more than the rest of a
# comparison; JSON values are str, int, float, bool, None, list or dict, so their type answers at once
# and only anything else goes to jmespath's own helper.
def _number(x: Any) -> bool:
    kind = type(x)
    if kind is int or kind is float:
        return True
    if kind is str or kind is bool or x is None or kind is list or kind is dict:
        return False
    return bool(jv._is_actual_number(x))


def _comparable(x: Any) -> bool:
    kind = type(x)
    return kind is str or kind is int or kind is float or (kind is not bool and bool(jv._is_comparable(x)))


def _equals(x: Any, y: Any) -> bool:
    if type(x) is str or type(y) is str:  # no number-against-boolean case can arise
        return bool(x == y)
    return bool(jv._equals(x, y))


def is_false(value: Any) -> bool:
    """JMESPath falsiness, written as the interpreter writes it."""
    return value == "" or value == [] or value == {} or value is None or value is False


def _field(name: str) -> Fn:
    def field(value: Any) -> Any:
        if type(value) is dict:
            return value.get(name)
        try:
            return value.get(name)
        except AttributeError:
            return None

    return field


def _index(position: int) -> Fn:
    def index(value: Any) -> Any:
        if not isinstance(value, list):
            return None
        try:
            return value[position]
        except IndexError:
            return None

    return index


def _chain(parts: list[Fn]) -> Fn:
    if len(parts) == 2:
        first, second = parts

        def pair(value: Any) -> Any:
            return second(first(value))

        return pair

    def chain(value: Any) -> Any:
        for part in parts:
            value = part(value)
        return value

    return chain


def _comparator(op: str, left: Fn, right: Fn) -> Fn:
    if op == "eq":
        return lambda value: _equals(left(value), right(value))
    if op == "ne":
        return lambda value: not _equals(left(value), right(value))
    compare = _COMPARATORS[op]

    def ordering(value: Any) -> Any:
        a, b = left(value), right(value)
        if not (_comparable(a) and _comparable(b)):
            return None
        return compare(a, b)  # a number against a string raises TypeError, as the interpreter does

    return ordering


def _and(left: Fn, right: Fn) -> Fn:
    def both(value: Any) -> Any:
        matched = left(value)
        if is_false(matched):
            return matched
        return right(value)

    return both


def _or(left: Fn, right: Fn) -> Fn:
    def either(value: Any) -> Any:
        matched = left(value)
        if is_false(matched):
            matched = right(value)
        return matched

    return either


def _not(inner: Fn) -> Fn:
    def negate(value: Any) -> Any:
        result = inner(value)
        if _number(result) and result == 0:  # !0 is false: 0 is truthy in JMESPath
            return False
        return not result

    return negate


def _function(functions: Any, name: str, args: list[Fn]) -> Fn:
    call = functions.call_function

    def function(value: Any) -> Any:
        return call(name, [arg(value) for arg in args])

    return function


def compile_tree(node: dict[str, Any], functions: Any) -> Fn | None:
    """A closure evaluating ``node`` as jmespath's interpreter would, or None if a node is not covered."""
    kind = node.get("type")
    children = node.get("children", [])
    if kind == "field":
        return _field(node["value"])
    if kind == "literal":
        constant = node["value"]
        return lambda _value: constant
    if kind in ("current", "identity"):
        return lambda value: value
    if kind == "index":
        return _index(node["value"])
    if not all(isinstance(child, dict) for child in children):  # a slice's children are numbers
        return None
    parts = [compile_tree(child, functions) for child in children]
    if any(part is None for part in parts):
        return None
    fns: list[Fn] = [p for p in parts if p is not None]
    if kind in ("subexpression", "index_expression") and fns:
        return fns[0] if len(fns) == 1 else _chain(fns)
    if kind == "comparator" and len(fns) == 2 and node.get("value") in _COMPARATORS:
        return _comparator(node["value"], fns[0], fns[1])
    if kind == "and_expression" and len(fns) == 2:
        return _and(fns[0], fns[1])
    if kind == "or_expression" and len(fns) == 2:
        return _or(fns[0], fns[1])
    if kind == "not_expression" and len(fns) == 1:
        return _not(fns[0])
    if kind == "function_expression":
        return _function(functions, node["value"], fns)
    if kind == "multi_select_list":
        return _list(fns)
    return None


def _list(items: list[Fn]) -> Fn:
    def multi_select(value: Any) -> Any:
        if value is None:
            return None
        return [item(value) for item in items]

    return multi_select
