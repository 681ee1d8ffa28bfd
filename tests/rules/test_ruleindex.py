"""The rule index: what it extracts from filters, and that it never changes which rules match."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.pipeline.match import build_context, event_dict, match_rules, rule_matches
from router.rules.index import Equals, Prefix, RuleIndex, lookup, requirement, value_key
from router.rules.ruleset import load_ruleset
from tests.conftest import write_rules


def req(expr: str) -> Any:
    return requirement(jmespath.compile(expr).parsed)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("body.type == 'push'", (Equals(("body", "type"), frozenset([("s", "push")])),)),
        ('`"push"` == body.type', (Equals(("body", "type"), frozenset([("s", "push")])),)),
        ("headers.\"x-github-event\" == 'push'", (Equals(("headers", "x-github-event"), frozenset([("s", "push")])),)),
        ("body.items[0].kind == `3`", (Equals(("body", "items", 0, "kind"), frozenset([("n", 3)])),)),
        ("@.body.ok == `true`", (Equals(("body", "ok"), frozenset([("b", True)])),)),
        ("body.gone == `null`", (Equals(("body", "gone"), frozenset([("z",)])),)),
        ("starts_with(body.ref, 'refs/heads/')", (Prefix(("body", "ref"), "refs/heads/"),)),
        ("contains(['a', 'b'], body.action)", (Equals(("body", "action"), frozenset([("s", "a"), ("s", "b")])),)),
        ('contains(`["a"]`, body.action)', (Equals(("body", "action"), frozenset([("s", "a")])),)),
        # && keeps the narrowest side; || needs both sides
        (
            "starts_with(body.ref, 'r') && body.type == 'x' && body.n > `1`",
            (Equals(("body", "type"), frozenset([("s", "x")])),),
        ),
        (
            "body.type == 'a' || body.kind == 'b'",
            (Equals(("body", "type"), frozenset([("s", "a")])), Equals(("body", "kind"), frozenset([("s", "b")]))),
        ),
        # nothing that must hold on a fixed path
        ("body.type == 'a' || body.n > `1`", None),
        ("!(body.type == 'a')", None),
        ("body.type != 'a'", None),
        ("body.n > `1`", None),
        ("contains(body.tags, 'x')", None),
        ("contains([`1`, `2`], body.n)", None),  # in Python `true in [1]`: only string lists are indexed
        ("body.items[*].type == 'x'", None),
        ("body.type == body.kind", None),
        ("body.type == null", None),  # `null` here is a field named null, not the value
        ("to_string(body.n) == '1'", None),
    ],
)
def test_requirements_read_from_filters(expr: str, expected: Any) -> None:
    assert req(expr) == expected


def test_lookup_follows_jmespath() -> None:
    ctx = {"body": {"a": [{"b": 1}, None], "s": "text"}}
    for expr, path in [
        ("body.a[0].b", ("body", "a", 0, "b")),
        ("body.a[1].b", ("body", "a", 1, "b")),
        ("body.a[-2].b", ("body", "a", -2, "b")),
        ("body.a[5]", ("body", "a", 5)),
        ("body.s.x", ("body", "s", "x")),
        ("body.s[0]", ("body", "s", 0)),
        ("missing.x", ("missing", "x")),
    ]:
        assert lookup(ctx, path) == jmespath.search(expr, ctx), expr


def test_value_keys_keep_jmespath_equality() -> None:
    assert value_key(1) == value_key(1.0)
    assert value_key(True) != value_key(1)
    assert value_key("1") != value_key(1)
    assert value_key(None) == ("z",)
    assert value_key([1]) is None


# -- the index never changes what matches -----------------------------------------------------------

PATHS = ["body.type", "body.action", 'headers."x-kind"', "body.items[0].kind", "body.n"]
VALUES: list[Any] = ["a", "b", "ab", "", 1, 1.0, 2, True, False, None]
literal = st.sampled_from(VALUES)


def _lit(value: Any) -> str:
    import json

    return f"`{json.dumps(value)}`"


def _atom(draw: Any) -> str:
    kind = draw(st.sampled_from(["eq", "eq_rev", "ne", "starts", "contains", "gt", "exists"]))
    path = draw(st.sampled_from(PATHS))
    if kind == "eq":
        return f"{path} == {_lit(draw(literal))}"
    if kind == "eq_rev":
        return f"{_lit(draw(literal))} == {path}"
    if kind == "ne":
        return f"{path} != {_lit(draw(literal))}"
    if kind == "starts":
        return f"starts_with({path}, {_lit(draw(st.sampled_from(['a', 'ab', ''])))})"
    if kind == "contains":
        items = draw(st.lists(literal, min_size=1, max_size=3))
        return f"contains({_lit(items)}, {path})"
    if kind == "gt":
        return f"{path} > `1`"
    return f"{path} != `null`"


@st.composite
def filters(draw: Any, depth: int = 0) -> str:
    if depth >= 2 or draw(st.booleans()):
        return _atom(draw)
    op = draw(st.sampled_from(["&&", "||", "!"]))
    if op == "!":
        return f"!({draw(filters(depth + 1))})"
    return f"({draw(filters(depth + 1))}) {op} ({draw(filters(depth + 1))})"


_counter = itertools.count()
events = st.fixed_dictionaries(
    {
        "type": literal,
        "action": literal,
        "kind": literal,
        "n": literal,
        "items": st.sampled_from([[], [{"kind": "a"}], [{"kind": 1}], [{"kind": None}], "x"]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(filters(), min_size=1, max_size=12), st.lists(events, min_size=1, max_size=8))
def test_indexed_matching_equals_evaluating_every_rule(tmp_path: Path, exprs: list[str], bodies: list[Any]) -> None:
    folder = write_rules(tmp_path / f"rules-{next(_counter)}", {"r.yaml": _yaml_rules(exprs)})
    rs = load_ruleset(folder)
    for body in bodies:
        kind = body.pop("kind")
        ev = event_dict(id="e", source="s", received_at="2026-01-01T00:00:00", headers={"x-kind": kind}, body=body)
        ctx = build_context(ev, {})
        every = []
        for rule in rs.by_source["s"]:
            try:
                if rule_matches(rule, ctx):
                    every.append(rule.id)
            except Exception:
                continue
        assert [r.id for r in match_rules(rs, "s", ctx)] == every, (exprs, body)
        body["kind"] = kind


def _yaml_rules(exprs: list[str]) -> str:
    import json

    rules = [
        {"id": f"r{i}", "source": "s", "filter": e, "steps": [{"id": "x", "action": "emit", "with": {"source": "s"}}]}
        for i, e in enumerate(exprs)
    ]
    return json.dumps({"sources": [{"id": "s"}], "rules": rules})


def test_ten_thousand_rules_leave_a_handful_of_candidates(tmp_path: Path) -> None:
    rules = [
        {
            "id": f"r{i}",
            "source": "s",
            "filter": f"body.type == 'x.{i}' && body.amount > `{i}`",
            "steps": [{"id": "x", "action": "emit", "with": {"source": "s"}}],
        }
        for i in range(10_000)
    ]
    rules.append({"id": "loose", "source": "s", "filter": "body.amount > `5`", "steps": rules[0]["steps"]})
    import json

    files = {f"r{n}.yaml": json.dumps({"rules": rules[n::10]}) for n in range(10)}  # files are capped at 1 MB
    folder = write_rules(tmp_path / "rules", files | {"sources.yaml": json.dumps({"sources": [{"id": "s"}]})})
    rs = load_ruleset(folder)
    index: RuleIndex = rs.index("s")
    ev = event_dict(id="e", source="s", received_at="2026-01-01T00:00:00", body={"type": "x.42", "amount": 100})
    ctx = build_context(ev, {})
    assert (index.indexed, len(index.always)) == (10_000, 1)
    assert sorted(r.id for r in index.candidates(ctx)) == ["loose", "r42"]
    assert sorted(r.id for r in match_rules(rs, "s", ctx)) == ["loose", "r42"]
