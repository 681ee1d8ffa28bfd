"""Compiled JMESPath closures give exactly what jmespath's interpreter gives, errors included."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import TemplateRenderError
from router.rules.filters import OPTIONS, compile_expression

PATHS = ["a", "b.c", "b.d[0]", "b.d[-1]", "@", "@.a", "[a, n]", "b", 'b."x-y"', "missing.deep", "n"]
LITERALS: list[Any] = ["", "a", "ab", 0, 1, 2, -1, 1.5, True, False, None, [], [1, "a"], {}, {"k": 1}]


def lit(value: Any) -> str:
    return f"`{json.dumps(value)}`"


@st.composite
def expressions(draw: Any, depth: int = 0) -> str:
    leaf = st.one_of(st.sampled_from(PATHS), st.sampled_from(LITERALS).map(lit))
    if depth >= 3:
        return draw(leaf)
    kind = draw(st.sampled_from(["leaf", "cmp", "and", "or", "not", "fn", "fn1"]))
    if kind == "leaf":
        return draw(leaf)
    if kind == "cmp":
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"{draw(expressions(depth + 1))} {op} {draw(expressions(depth + 1))}"
    if kind in ("and", "or"):
        op = "&&" if kind == "and" else "||"
        return f"({draw(expressions(depth + 1))}) {op} ({draw(expressions(depth + 1))})"
    if kind == "not":
        return f"!({draw(expressions(depth + 1))})"
    if kind == "fn":
        name = draw(st.sampled_from(["contains", "starts_with", "ends_with", "not_null"]))
        return f"{name}({draw(expressions(depth + 1))}, {draw(expressions(depth + 1))})"
    name = draw(st.sampled_from(["length", "to_string", "type", "abs", "to_number", "keys"]))
    return f"{name}({draw(expressions(depth + 1))})"


data = st.fixed_dictionaries(
    {
        "a": st.sampled_from(LITERALS),
        "n": st.sampled_from([0, 1, 2.5, "3", None, True]),
        "b": st.one_of(
            st.none(),
            st.sampled_from(["text", 5]),
            st.fixed_dictionaries(
                {"c": st.sampled_from(LITERALS), "d": st.sampled_from([[], [1], ["a", "b"], "str"]), "x-y": st.none()}
            ),
        ),
    }
)


def interpreted(expr: str, doc: Any) -> tuple[str, Any]:
    try:
        return "ok", jmespath.search(expr, doc, options=OPTIONS)
    except (jmespath.exceptions.JMESPathError, TypeError) as exc:
        return "error", type(exc).__name__


def compiled(expr: str, doc: Any) -> tuple[str, Any]:
    expression = compile_expression(expr)
    assert expression.fast is not None, expr
    try:
        return "ok", expression.search(doc)
    except TemplateRenderError as exc:
        return "error", exc.message


@settings(max_examples=600, deadline=None)
@given(expressions(), data)
def test_compiled_equals_interpreted(expr: str, doc: dict[str, Any]) -> None:
    try:
        jmespath.compile(expr)
    except jmespath.exceptions.ParseError:
        return
    want = interpreted(expr, doc)
    got = compiled(expr, doc)
    assert got[0] == want[0], (expr, doc, want, got)
    if want[0] == "ok":
        assert got[1] == want[1], (expr, doc, want, got)
        assert type(got[1]) is type(want[1]), (expr, doc, want, got)


@pytest.mark.parametrize(
    "expr",
    [
        "items[*].id",
        "items[?kind == 'a']",
        "a | b",
        "{x: a}",
        "items[0:2]",
        "sort_by(items, &n)",
        "values(@)[*]",
        "items[]",
    ],
)
def test_projections_and_friends_stay_interpreted(expr: str) -> None:
    """What is not covered is interpreted, under its step and time budget."""
    assert compile_expression(expr).fast is None


def test_filters_made_of_paths_and_tests_are_compiled() -> None:
    for expr in (
        "body.type == 'push' && headers.\"x-github-event\" == 'push'",
        "contains(['a', 'b'], body.action) || starts_with(body.ref, 'refs/heads/')",
        "!(body.draft) && body.amount > `100` && length(body.items) >= `1`",
        "body.items[0].kind != `null`",
    ):
        assert compile_expression(expr).fast is not None, expr
