"""The condition builder: paths, compiling to JMESPath, parsing back, coercing form values, sample paths."""

from __future__ import annotations

import json
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.errors import TemplateRenderError
from router.rules.conditions import (
    OPS,
    Condition,
    ConditionError,
    Group,
    coerce_value,
    compile_condition,
    compile_group,
    group_from_data,
    literal,
    normalise,
    parse_expression,
    path_from_parts,
    path_parts,
    sample_paths,
    validate_path,
)
from router.rules.filters import compile_expression

PROPERTY = settings(database=None, deadline=None, max_examples=300)

# A filter whose evaluation fails does not match; jmespath raises TypeError itself for `"abc" > 5` and
# `contains("abc", 5)`, which router/rules/filters.py does not turn into TemplateRenderError (yet).
EVALUATION_ERRORS = (TemplateRenderError, TypeError)


def cond(path: str, op: str, value: Any = None) -> Condition:
    return Condition.model_validate({"path": path, "op": op, "value": value})


def matches(expr: str, data: dict[str, Any]) -> bool:
    """Through the project's own matcher, as a rule filter is evaluated."""
    return compile_expression(expr).test(data)


# --- paths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "path"),
    [
        (["body", "repository", "full_name"], "body.repository.full_name"),
        (["headers", "x-github-event"], 'headers."x-github-event"'),
        (["body", "commits", 0, "id"], "body.commits[0].id"),
        (["body", "a", 1, 2], "body.a[1][2]"),
        (["body", "foo bar", -1], 'body."foo bar"[-1]'),
        (["body", "1abc"], 'body."1abc"'),
        (["body", "_ok9"], "body._ok9"),
        (["body", ""], 'body.""'),
        (["body", 'say "hi"'], 'body."say \\"hi\\""'),
        (["body", "back\\slash"], 'body."back\\\\slash"'),
        (["body", "café"], 'body."café"'),
        (["body", "null"], "body.null"),
    ],
)
def test_path_from_parts_quotes_what_needs_it(parts: list[str | int], path: str) -> None:
    assert path_from_parts(parts) == path
    assert path_parts(path) == parts


@pytest.mark.parametrize("parts", [[], [0, "a"], ["a", True], ["a", 1.5], ["a", None]])
def test_path_from_parts_refuses_non_paths(parts: list[Any]) -> None:
    with pytest.raises(ConditionError):
        path_from_parts(parts)


def test_validate_path_gives_the_canonical_spelling() -> None:
    assert validate_path('body . "repository" . full_name') == "body.repository.full_name"
    assert validate_path('"body"."foo-bar"') == 'body."foo-bar"'
    assert validate_path("(body.commits)[0]") == "body.commits[0]"


@pytest.mark.parametrize(
    "path",
    [
        "",
        "  ",
        "body.",
        "body[*].a",
        "body[]",
        "body[0:2]",
        "length(body)",
        "body.a == 'x'",
        "[0]",
        "@.a",
        "`1`",
        "a || b",
    ],
)
def test_validate_path_refuses_what_is_not_a_field_path(path: str) -> None:
    with pytest.raises(ConditionError, match="is not a field path"):
        validate_path(path)


keys = st.text(max_size=8)
parts_strategy = st.tuples(keys, st.lists(keys | st.integers(-3, 5), max_size=4)).map(lambda t: [t[0], *t[1]])


def plant(parts: list[str | int], value: Any) -> Any:
    """The smallest data in which ``parts`` leads to ``value``."""
    for part in reversed(parts):
        if isinstance(part, str):
            value = {part: value}
        else:
            value = [None] * part + [value] if part >= 0 else [value] + [None] * (-part - 1)
    return value


@PROPERTY
@given(parts_strategy)
def test_any_parts_make_a_path_that_reaches_the_value(parts: list[str | int]) -> None:
    path = path_from_parts(parts)
    assert path_parts(path) == parts
    assert validate_path(path) == path
    assert jmespath.search(path, plant(parts, "found")) == "found"


# --- compiling --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("body.ref", "equals", "refs/heads/main"), "body.ref == 'refs/heads/main'"),
        (cond("body.n", "equals", 5), "body.n == `5`"),
        (cond("body.ok", "equals", True), "body.ok == `true`"),
        (cond("body.ref", "not_equals", "x"), "body.ref != 'x'"),
        (cond("body.msg", "contains", "fix"), "contains(body.msg, 'fix')"),
        (cond("body.ref", "starts_with", "refs/tags/"), "starts_with(body.ref, 'refs/tags/')"),
        (cond("body.n", "greater_than", 5), "body.n > `5`"),
        (cond("body.n", "less_than", 2.5), "body.n < `2.5`"),
        (cond("body.n", "greater_or_equal", -1), "body.n >= `-1`"),
        (cond("body.n", "less_or_equal", 0), "body.n <= `0`"),
        (cond("body.x", "exists"), "body.x != `null`"),
        (cond("body.x", "not_exists", "ignored"), "body.x == `null`"),
        (
            cond('headers."x-github-event"', "one_of", ["push", "ping"]),
            'contains(`["push","ping"]`, headers."x-github-event")',
        ),
        (cond("body.s", "equals", "it's"), "body.s == 'it\\'s'"),
        (cond("body.s", "equals", "a\\b"), 'body.s == `"a\\\\b"`'),
        (cond("body.s", "equals", "tick`"), "body.s == 'tick`'"),
        (cond("body.s", "equals", "\\`"), 'body.s == `"\\\\\\`"`'),
    ],
)
def test_compile_condition(condition: Condition, expected: str) -> None:
    assert compile_condition(condition) == expected


def test_compile_group_joins_and_parenthesises() -> None:
    group = Group(
        mode="all",
        items=[
            cond("body.ref", "equals", "refs/heads/main"),
            Group(mode="any", items=[cond("body.a", "exists"), cond("body.b", "greater_than", 1)]),
            Group(mode="any", items=[cond("body.c", "equals", 1)]),
        ],
    )
    assert (
        compile_group(group) == "body.ref == 'refs/heads/main' && (body.a != `null` || body.b > `1`) && body.c == `1`"
    )


def test_empty_groups_match_everything_or_nothing() -> None:
    assert compile_group(Group(mode="all", items=[])) == "`true`"
    assert compile_group(Group(mode="any", items=[])) == "`false`"
    assert matches("`true`", {"body": {}})
    assert not matches("`false`", {"body": {}})
    assert parse_expression("`true`") == Group(mode="all", items=[])
    assert parse_expression("`false`") == Group(mode="any", items=[])


EVENT = {
    "body": {
        "ref": "refs/heads/main",
        "n": 5,
        "f": 2.5,
        "ok": True,
        "zero": 0,
        "empty": "",
        "nothing": None,
        "msg": "fix: it's a \\ path with `ticks`",
        "tags": ["a", "b", 3],
        "commits": [{"id": "c1"}, {"id": "c2"}],
        "foo-bar": "dash",
    },
    "headers": {"x-github-event": "push"},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("body.ref", "equals", "refs/heads/main"), True),
        (cond("body.ref", "equals", "refs/heads/dev"), False),
        (cond("body.n", "equals", 5), True),
        (cond("body.n", "equals", 5.0), True),
        (cond("body.n", "equals", "5"), False),
        (cond("body.ok", "equals", True), True),
        (cond("body.ok", "equals", 1), False),
        (cond("body.zero", "equals", False), False),
        (cond("body.ref", "not_equals", "refs/heads/dev"), True),
        (cond("body.missing", "not_equals", "x"), True),
        (cond("body.msg", "contains", "it's a \\ path"), True),
        (cond("body.msg", "contains", "`ticks`"), True),
        (cond("body.msg", "contains", "nope"), False),
        (cond("body.tags", "contains", "b"), True),
        (cond("body.tags", "contains", 3), True),
        (cond("body.tags", "contains", "3"), False),
        (cond("body.ref", "starts_with", "refs/heads/"), True),
        (cond("body.ref", "starts_with", "refs/tags/"), False),
        (cond("body.n", "greater_than", 4), True),
        (cond("body.n", "greater_than", 5), False),
        (cond("body.f", "less_than", 3), True),
        (cond("body.n", "greater_or_equal", 5), True),
        (cond("body.n", "less_or_equal", 4.99), False),
        (cond("body.ok", "greater_than", 0), False),  # not a number: JMESPath gives null
        (cond("body.tags", "less_than", 10), False),
        (cond("body.missing", "greater_than", 1), False),
        (cond("body.ref", "exists"), True),
        (cond("body.zero", "exists"), True),
        (cond("body.empty", "exists"), True),
        (cond("body.missing", "exists"), False),
        (cond("body.missing.deeper[3]", "exists"), False),
        (cond("body.nothing", "exists"), False),
        (cond("body.missing", "not_exists"), True),
        (cond("body.ok", "not_exists"), False),
        (cond('headers."x-github-event"', "one_of", ["push", "ping"]), True),
        (cond('headers."x-github-event"', "one_of", ["ping"]), False),
        (cond("body.n", "one_of", [1, 5]), True),
        (cond("body.missing", "one_of", ["a"]), False),
        (cond("body.commits[1].id", "equals", "c2"), True),
        (cond('body."foo-bar"', "equals", "dash"), True),
    ],
)
def test_compiled_conditions_evaluate_correctly(condition: Condition, expected: bool) -> None:
    expr = compile_group(Group(items=[condition]))
    assert matches(expr, EVENT) is expected
    assert bool(jmespath.search(expr, EVENT)) is expected


@pytest.mark.parametrize(
    "condition",
    [
        cond("body.missing", "contains", "x"),
        cond("body.n", "starts_with", "5"),
        cond("body.ref", "greater_than", 1),  # a string: jmespath raises TypeError
        cond("body.ref", "contains", 5),  # likewise
    ],
)
def test_type_errors_fail_the_whole_filter(condition: Condition) -> None:
    # A rule whose filter fails to evaluate does not match: even in an `any` group whose other branch
    # (evaluated later) is true.
    expr = compile_group(Group(mode="any", items=[condition, cond("body.ok", "equals", True)]))
    with pytest.raises(EVALUATION_ERRORS):
        matches(expr, EVENT)


def test_groups_evaluate_correctly() -> None:
    yes, no = cond("body.n", "equals", 5), cond("body.n", "equals", 6)
    assert matches(compile_group(Group(mode="all", items=[yes, yes])), EVENT)
    assert not matches(compile_group(Group(mode="all", items=[yes, no])), EVENT)
    assert matches(compile_group(Group(mode="any", items=[no, yes])), EVENT)
    assert not matches(compile_group(Group(mode="any", items=[no, no])), EVENT)
    nested = Group(mode="all", items=[yes, Group(mode="any", items=[no, Group(mode="all", items=[yes, yes])])])
    assert matches(compile_group(nested), EVENT)
    nested = Group(mode="any", items=[no, Group(mode="all", items=[yes, Group(mode="any", items=[no, no])])])
    assert not matches(compile_group(nested), EVENT)


# --- parsing back -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("body.ref == 'refs/heads/main'", Group(items=[cond("body.ref", "equals", "refs/heads/main")])),
        ('body.ref == `"refs/heads/main"`', Group(items=[cond("body.ref", "equals", "refs/heads/main")])),
        ("'x' == body.a", Group(items=[cond("body.a", "equals", "x")])),
        ("`5` < body.n", Group(items=[cond("body.n", "greater_than", 5)])),
        ("`5` >= body.n", Group(items=[cond("body.n", "less_or_equal", 5)])),
        ('headers."x-github-event" != `"push"`', Group(items=[cond('headers."x-github-event"', "not_equals", "push")])),
        ("body . a == `null`", Group(items=[cond("body.a", "not_exists")])),
        ("`null` != body.a", Group(items=[cond("body.a", "exists")])),
        ("contains(body.tags, `3`)", Group(items=[cond("body.tags", "contains", 3)])),
        ('contains(`["a", 1]`, body.a)', Group(items=[cond("body.a", "one_of", ["a", 1])])),
        ("starts_with(body.ref, 'refs/')", Group(items=[cond("body.ref", "starts_with", "refs/")])),
        (
            "a == `1` && b == `2` && c == `3`",
            Group(mode="all", items=[cond("a", "equals", 1), cond("b", "equals", 2), cond("c", "equals", 3)]),
        ),
        (
            "(a == `1` || (b == `2`)) && (c == `3` && d == `4`)",
            Group(
                mode="all",
                items=[
                    Group(mode="any", items=[cond("a", "equals", 1), cond("b", "equals", 2)]),
                    cond("c", "equals", 3),
                    cond("d", "equals", 4),
                ],
            ),
        ),
        (
            "a == `1` || b == `2` && c == `3`",  # && binds tighter
            Group(
                mode="any",
                items=[
                    cond("a", "equals", 1),
                    Group(mode="all", items=[cond("b", "equals", 2), cond("c", "equals", 3)]),
                ],
            ),
        ),
        ("(a == `1`)", Group(items=[cond("a", "equals", 1)])),
        ("`true` && a == `1`", Group(items=[cond("a", "equals", 1)])),
        ("a == `foo`", Group(items=[cond("a", "equals", "foo")])),  # deprecated bare literal: still a string
    ],
)
def test_parse_expression_understands(expr: str, expected: Group) -> None:
    assert parse_expression(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "body.ref",  # truthiness is not `exists`
        "!body.ok",
        "a == null",  # `null` unquoted is a field named null
        'a == "x"',  # "x" is a field named x
        "a == b",
        "`1` == `1`",
        "body.n > 'x'",
        "starts_with(body.ref, `1`)",
        "contains('abc', body.a)",
        "length(body.tags) > `1`",
        "body.tags[*].id == `1`",
        "body.ref == 'x' && body.ok",
        '`"x"`',
        "a ==",  # a syntax error
        "a == `1` |  b",
        "x" * 5000,
    ],
)
def test_parse_expression_leaves_the_rest_to_the_advanced_box(expr: str) -> None:
    assert parse_expression(expr) is None


def test_parse_expression_survives_deep_nesting() -> None:
    assert parse_expression("(" * 500 + "a == `1`" + ")" * 500) in (None, Group(items=[cond("a", "equals", 1)]))


def test_normalise() -> None:
    a, b, c = cond("a", "equals", 1), cond("b", "equals", 2), cond("c", "equals", 3)
    assert normalise(Group(mode="any", items=[a])) == Group(mode="all", items=[a])
    assert normalise(Group(mode="all", items=[Group(mode="any", items=[a, b])])) == Group(mode="any", items=[a, b])
    assert normalise(Group(mode="all", items=[a, Group(mode="all", items=[b, c])])) == Group(items=[a, b, c])
    assert normalise(Group(mode="all", items=[a, Group(mode="any", items=[b])])) == Group(items=[a, b])
    assert normalise(Group(items=[a, Group(mode="all", items=[]), b])) == Group(items=[a, b])
    empty_any = Group(mode="any", items=[])
    assert normalise(Group(items=[a, empty_any])) == Group(items=[a, empty_any])
    assert normalise(Group(items=[cond("a", "equals", None)])) == Group(items=[cond("a", "not_exists")])


# --- the round trip, over generated groups ----------------------------------------------------------

json_text = st.text(max_size=6)  # quotes, backslashes, backticks and unicode included
numbers = st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | numbers | json_text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_text, inner, max_size=3), max_leaves=6
)
paths = parts_strategy.map(path_from_parts)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    op = draw(st.sampled_from(OPS))
    if op in ("greater_than", "less_than", "greater_or_equal", "less_or_equal"):
        value: Any = draw(numbers)
    elif op == "starts_with":
        value = draw(json_text)
    elif op == "one_of":
        value = draw(st.lists(scalars, max_size=4))
    elif op in ("exists", "not_exists"):
        value = draw(st.none() | json_text)
    else:
        value = draw(json_values)
    return cond(draw(paths), op, value)


groups = st.recursive(
    st.builds(Group, mode=st.sampled_from(["all", "any"]), items=st.lists(conditions(), max_size=3)),
    lambda inner: st.builds(
        Group, mode=st.sampled_from(["all", "any"]), items=st.lists(conditions() | inner, max_size=3)
    ),
    max_leaves=8,
)


def strict(group: Group | None) -> str:
    """A comparison that tells 1 from 1.0 and True from 1, which == on models does not."""
    return "None" if group is None else group.model_dump_json()


@PROPERTY
@given(groups)
def test_round_trip(group: Group) -> None:
    expr = compile_group(group)
    assert strict(parse_expression(expr)) == strict(normalise(group))
    assert compile_group(normalise(group)) == compile_group(parse_expression(expr) or Group())
    compile_expression(expr)  # and the project accepts it as a rule filter


def jmes_equal(x: Any, y: Any) -> bool:
    """JMESPath's == (jmespath 1.0.1): Python's, except that 0 and 1 are not false and true."""
    number = (int, float)
    if (isinstance(x, bool) and isinstance(y, number) and not isinstance(y, bool) and y in (0, 1)) or (
        isinstance(y, bool) and isinstance(x, number) and not isinstance(x, bool) and x in (0, 1)
    ):
        return False
    return bool(x == y)


def reference(condition: Condition, data: Any) -> bool | None:
    """What a condition means, worked out in Python; None where JMESPath raises a type error."""
    found: Any = data
    for part in path_parts(condition.path):
        if isinstance(part, int):
            found = found[part] if isinstance(found, list) and -len(found) <= part < len(found) else None
        else:
            found = found.get(part) if isinstance(found, dict) else None
    value, op = condition.value, condition.op
    if op in ("equals", "not_equals"):
        return jmes_equal(found, value) is (op == "equals")
    if op in ("exists", "not_exists"):
        return (found is None) is (op == "not_exists")
    if op == "one_of":
        return found in value  # contains(`[...]`, path) is Python's `in`
    if op == "starts_with":
        return found.startswith(value) if isinstance(found, str) else None
    if op == "contains":
        if isinstance(found, str):
            return value in found if isinstance(value, str) else None
        return value in found if isinstance(found, list) else None
    if isinstance(found, str):
        return None  # str > number: a TypeError
    if not isinstance(found, int | float) or isinstance(found, bool):
        return False  # JMESPath gives null
    return {"greater_than": found > value, "less_than": found < value, "greater_or_equal": found >= value}.get(
        op, found <= value
    )


@PROPERTY
@given(conditions(), json_values, st.booleans())
def test_compiled_condition_means_what_it_says(condition: Condition, planted: Any, at_path: bool) -> None:
    data = plant(path_parts(condition.path) if at_path else ["elsewhere"], planted)
    expected = reference(condition, data)
    expr = compile_condition(condition)
    if expected is None:
        with pytest.raises(EVALUATION_ERRORS):
            matches(expr, data)
    else:
        assert matches(expr, data) is expected


@PROPERTY
@given(conditions())
def test_compiled_condition_meets_its_planted_value(condition: Condition) -> None:
    value = condition.value
    if condition.op not in ("equals", "one_of", "contains") or (condition.op == "one_of" and not value):
        return
    planted = value[0] if condition.op == "one_of" else [value] if condition.op == "contains" else value
    assert matches(compile_condition(condition), plant(path_parts(condition.path), planted))


@PROPERTY
@given(st.one_of(json_text, json_values))
def test_literals_read_back_as_the_same_value(value: Any) -> None:
    expr = literal(value)
    assert json.dumps(jmespath.search(expr, {}), sort_keys=True) == json.dumps(value, sort_keys=True)


# --- validation and form values ---------------------------------------------------------------------


def test_condition_validation_messages() -> None:
    with pytest.raises(ValueError, match="is not a number"):
        cond("body.n", "greater_than", "abc")
    with pytest.raises(ValueError, match="starts_with needs a text value"):
        cond("body.ref", "starts_with", 5)
    with pytest.raises(ValueError, match="one_of needs a list"):
        cond("body.ref", "one_of", "a")
    with pytest.raises(ValueError, match="is not a JSON value"):
        cond("body.n", "equals", float("nan"))
    with pytest.raises(ValueError, match="is not a field path"):
        cond("body.foo-bar", "exists")
    assert cond("body.x", "exists", "leftover").value is None


def test_group_from_data_names_each_bad_field() -> None:
    data = {
        "mode": "all",
        "items": [
            {"path": "body.ref", "op": "equals", "value": "x"},
            {"path": "body.n", "op": "equals", "value": 1},
            {"path": "body.n", "op": "greater_than", "value": "abc"},
            {"mode": "any", "items": [{"path": "body.", "op": "exists"}, {"path": "body.a", "op": "bogus"}]},
        ],
    }
    with pytest.raises(ConditionError) as caught:
        group_from_data(data)
    assert str(caught.value).startswith('items[2].value: "abc" is not a number; items[3].items[0].path: "body." is not')
    assert [loc for loc, _ in caught.value.errors] == [
        "items[2].value",
        "items[3].items[0].path",
        "items[3].items[1].op",
    ]
    assert isinstance(caught.value, ValueError)
    good = group_from_data({"items": [{"path": 'body . "a"', "op": "exists"}, {"mode": "any", "items": []}]})
    assert good == Group(mode="all", items=[cond("body.a", "exists"), Group(mode="any", items=[])])


@pytest.mark.parametrize(
    ("op", "raw", "value_type", "expected"),
    [
        ("greater_than", "42", "auto", 42),
        ("less_than", " -1.5 ", "string", -1.5),
        ("greater_or_equal", "1e3", "auto", 1000.0),
        ("equals", "42", "auto", 42),
        ("equals", "42", "string", "42"),
        ("equals", "true", "auto", True),
        ("equals", "False", "boolean", False),
        ("equals", "False", "auto", "False"),
        ("equals", "null", "auto", None),
        ("equals", "anything", "null", None),
        ("equals", "refs/heads/main", "auto", "refs/heads/main"),
        ("equals", " padded ", "string", " padded "),
        ("equals", "007", "auto", "007"),  # not a JSON number
        ("equals", '{"a": [1]}', "json", {"a": [1]}),
        ("contains", "fix", "auto", "fix"),
        ("starts_with", "42", "auto", "42"),
        ("exists", "whatever", "auto", None),
        ("one_of", "push, ping,,3", "auto", ["push", "ping", 3]),
        ("one_of", "1, 2", "string", ["1", "2"]),
        ("one_of", '["a", 1, null]', "auto", ["a", 1, None]),
    ],
)
def test_coerce_value(op: Any, raw: str, value_type: Any, expected: Any) -> None:
    value = coerce_value(op, raw, value_type)
    assert json.dumps(value) == json.dumps(expected)
    cond("body.x", op, value)  # and the condition accepts it


@pytest.mark.parametrize(
    ("op", "raw", "value_type", "message"),
    [
        ("greater_than", "abc", "auto", 'items[2].value: "abc" is not a number'),
        ("less_than", "", "number", 'items[2].value: "" is not a number'),
        ("greater_than", "1e999", "auto", 'items[2].value: "1e999" is not a number'),
        ("greater_than", "NaN", "auto", 'items[2].value: "NaN" is not a number'),
        ("equals", "abc", "number", 'items[2].value: "abc" is not a number'),
        ("equals", "yes", "boolean", 'items[2].value: "yes" is not true or false'),
        ("equals", "{nope", "json", 'items[2].value: "{nope" is not valid JSON'),
        ("equals", "NaN", "json", 'items[2].value: "NaN" is not valid JSON'),
        ("one_of", '["a"', "auto", 'items[2].value: "[\\"a\\"" is not a JSON list'),
        ("one_of", "a, b", "number", 'items[2].value: "a" is not a number'),
    ],
)
def test_coerce_value_errors_name_the_field(op: Any, raw: str, value_type: Any, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        coerce_value(op, raw, value_type, field="items[2].value")
    assert str(caught.value) == message


# --- sample paths -----------------------------------------------------------------------------------


def test_sample_paths_lists_every_node_quoted() -> None:
    sample = {"repository": {"full_name": "a/b"}, "foo-bar": [1, {"id": None}], "ok": True}
    assert sample_paths(sample) == [
        ("body", sample),
        ("body.repository", {"full_name": "a/b"}),
        ("body.repository.full_name", "a/b"),
        ('body."foo-bar"', [1, {"id": None}]),
        ('body."foo-bar"[0]', 1),
        ('body."foo-bar"[1]', {"id": None}),
        ('body."foo-bar"[1].id', None),
        ("body.ok", True),
    ]
    assert [p for p, _ in sample_paths({"x-github-event": "push"}, prefix="headers")] == [
        "headers",
        'headers."x-github-event"',
    ]
    assert [p for p, _ in sample_paths({"a": 1}, prefix="")] == ["a"]
    assert sample_paths([1, 2], prefix="") == []
    assert len(sample_paths({"items": list(range(1000))}, limit=10)) == 10
    assert sample_paths("scalar", prefix="body.data") == [("body.data", "scalar")]
    with pytest.raises(ConditionError):
        sample_paths({}, prefix="body.")


@PROPERTY
@given(json_values)
def test_sample_paths_reach_their_values(sample: Any) -> None:
    listed = sample_paths(sample, prefix='body."the sample"')
    assert listed[0] == ('body."the sample"', sample)
    context = {"body": {"the sample": sample}}
    for path, value in listed:
        assert json.dumps(jmespath.search(path, context)) == json.dumps(value)
        assert validate_path(path) == path
