"""Hostile templates and JMESPath expressions: no escape, bounded time and output, typed errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from jinja2 import TemplateSyntaxError

from router.errors import RuleSetError, TemplateRenderError
from router.rules.filters import compile_expression, syntax_error_message
from router.rules.ruleset import load_ruleset
from router.rules.templating import MAX_OUTPUT_CHARS, compile_tree, render_tree
from tests.conftest import write_rules

pytestmark = pytest.mark.security

CANARY = "canary-7f3a9c1e-do-not-leak"

JINJA_CORPUS = [
    # escapes
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ body.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__.os.environ }}",
    "{{ namespace.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ (''|attr('__class__')).__mro__ }}",
    "{{ '{0.__class__}'.format(body) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ ('{0.__class__.__mro__}'|attr('format'))(body) }}",
    "{{ '{0.__class__}'.format_map(body) }}",
    "{{ body.items.__self__ }}",
    "{{ config }}",
    "{{ request.environ }}",
    "{{ range.__self__ }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ secrets.__class__.__init__.__globals__ }}",
    # mutation
    "{% set x = [] %}{{ x.append(1) }}",
    "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "{{ body.list.append(1) }}",
    "{{ body.pop('x') }}",
    # resource
    "{{ range(10**9)|list }}",
    "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ 'x' * 1000000 * 1000 }}",
    "{{ [1] * 10**9 }}",
    "{{ 9 ** 9 ** 9 }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%s'|format('x') * 10**8 }}",
    "{{ '%999999999d'|format(1) }}",
    "{{ '{:999999999}'.format(1) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'.ljust(999999999) }}",
    "{{ 'x'.zfill(999999999) }}",
    "{{ 'x'|indent(10**8) }}",
    "{{ ('a' * 1000000)|replace('a', 'aaaaaaaaaa') }}",
    "{{ ('a' * 1000000).replace('a', 'aaaaaaaaaa') }}",
    "{{ body|tojson(indent=10**9) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
    "{{ ('\t' * 100000).expandtabs(100000) }}",
    "{{ ['x' * 100000] * 100 | join }}",
    "{{ ' '.join(['x' * 100000] * 100) }}",
    "{{ (['x' * 100000] * 100)|join(',') }}",
    "{% set a = 'x' * 1000000 %}{% set a = a ~ a %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}",
    "{% set a = 'x' * 1000000 %}{% set a = a + a %}{% set a = a + a %}{{ a }}",
    "{{ ('x' * 1000000)|wordwrap(1) }}",
    "{% for a in body.xs %}{% for b in body.xs %}{% for c in body.xs %}{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'x' * 20000 }}" * 1000,  # source over the limit
]


def _render(source: str, ctx: dict[str, Any]) -> tuple[str, Any]:
    try:
        tree = compile_tree({"value": source}, lambda p: "rules.yaml:1:1")
    except TemplateSyntaxError as exc:
        return "refused at compile", exc.message
    try:
        return "rendered", render_tree(tree, ctx)
    except TemplateRenderError as exc:
        return "typed error", exc.message


@pytest.mark.no_cover  # it times the code: coverage's tracer would be measured too
def test_jinja_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_SECURITY_CANARY", CANARY)
    ctx = {"body": {"list": [1], "xs": list(range(1000)), "x": 1}, "headers": {}, "secrets": {}, "steps": {}}
    outcomes: dict[str, int] = {}
    slowest = 0.0
    for source in JINJA_CORPUS:
        started = time.monotonic()
        outcome, value = _render(source, ctx)
        elapsed = time.monotonic() - started
        slowest = max(slowest, elapsed)
        text = json.dumps(value, default=str)
        assert CANARY not in text, source
        assert "environ" not in text.lower() or outcome != "rendered", source
        assert elapsed <= 1.5, f"{source!r} took {elapsed:.2f} s"
        assert len(text) <= MAX_OUTPUT_CHARS + 1024, source
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"jinja corpus: {len(JINJA_CORPUS)} payloads, canary leaks 0, slowest render {slowest:.2f} s, {outcomes}")
    assert len(JINJA_CORPUS) >= 40
    assert outcomes.get("rendered", 0) <= 2  # only harmless ones may render, and they are checked above


def test_template_limits_leave_ordinary_templates_alone() -> None:
    tree = compile_tree(
        {
            "a": "{{ body.n * 3 }}",
            "b": "{{ 'ab' * 3 }}",
            "c": "{{ '%05.1f' % body.f }}",
            "d": "{% for x in body.xs %}{{ x }},{% endfor %}",
            "e": "{{ body.s ~ '-' ~ body.n }}",
            "f": "{{ 2 ** 10 }}",
            "g": "{{ body.xs|join('|') }}",
            "h": "{{ '{:>6}'.format(body.s) }}",
        },
        lambda p: "",
    )
    ctx = {"body": {"n": 2, "f": 3.14159, "xs": [1, 2, 3], "s": "ok"}}
    assert render_tree(tree, ctx) == {
        "a": 6,
        "b": "ababab",
        "c": "003.1",
        "d": "1,2,3,",
        "e": "ok-2",
        "f": 1024,
        "g": "1|2|3",
        "h": "    ok",
    }


JMESPATH_REFUSED = {
    "10k characters": "body.a == '" + "x" * 10_000 + "'",
    "depth 200": "body.a" + " || body.a" * 200,
    "nested not 200": "!" * 200 + "body",
    "multiselect amplifier": "body.xs[*]" + ".[@,@,@,@]" * 6,
    "multiselect hash amplifier": "body.xs[*]" + ".{a: @, b: @, c: @, d: @}" * 6,
}


def test_jmespath_limits_refuse_at_compile() -> None:
    for name, source in JMESPATH_REFUSED.items():
        with pytest.raises(Exception) as caught:  # noqa: PT011 - jmespath raises several types
            compile_expression(source)
        message = syntax_error_message(caught.value)
        assert message.startswith("invalid JMESPath: "), (name, message)
        assert "limit" in message or "deep" in message or "times" in message, (name, message)
    print(f"jmespath: {len(JMESPATH_REFUSED)} hostile expressions, {len(JMESPATH_REFUSED)} refused at compile")


def test_jmespath_limits_name_the_rule_file_location(tmp_path: Path) -> None:
    rules = {
        "rules.yaml": json.dumps(
            {
                "sources": [{"id": "shop"}],
                "rules": [
                    {
                        "id": "r",
                        "source": "shop",
                        "filter": JMESPATH_REFUSED["multiselect amplifier"],
                        "steps": [{"id": "s", "action": "emit", "with": {"source": "shop"}}],
                    }
                ],
            },
            indent=2,
        )
    }
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(write_rules(tmp_path / "rules", rules))
    (error,) = caught.value.errors
    assert "rules.yaml:" in str(error)
    assert "copy the data 4,096 times; the limit is 256" in str(error)


@pytest.mark.no_cover  # it times the code: coverage's tracer would be measured too
def test_jmespath_evaluation_is_time_boxed_on_a_large_body() -> None:
    body = {"xs": [{"a": i, "b": [i, i]} for i in range(60_000)]}  # about 1 MB as JSON
    assert len(json.dumps(body)) >= 1_000_000
    expression = compile_expression("body.xs[*].[a, b[*].[@, @, @, @], b[*].[@, @], a]")
    started = time.monotonic()
    try:
        expression.search({"body": body})
        outcome = "finished"
    except TemplateRenderError as exc:
        outcome = f"aborted: {exc.message}"
    elapsed = time.monotonic() - started
    print(f"jmespath on a 1 MB body: {outcome[:60]} in {elapsed:.2f} s")
    assert elapsed < 1.0
