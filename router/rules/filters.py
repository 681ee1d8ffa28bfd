"""JMESPath filters: compiled once at load, evaluated per event with JMESPath's own truthiness.

Limits: an expression is at most ``MAX_EXPRESSION_CHARS`` long and ``MAX_DEPTH`` deep, and its
nested multiselects may multiply the data by at most ``MAX_AMPLIFICATION`` (all checked at
compile, so a rule file is refused at load); an evaluation, over a body already capped by
ROUTER_MAX_BODY_BYTES, stops after ``MAX_EVAL_SECONDS`` or ``MAX_EVAL_STEPS`` steps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jmes_errors
from jmespath import functions as jmes_functions
from jmespath.parser import ParsedResult
from jmespath.visitor import TreeInterpreter

from router.errors import TemplateRenderError
from router.rules.jmescompile import Fn, compile_tree


class _Functions(jmes_functions.Functions):  # type: ignore[misc]
    """JMESPath's built-ins; custom functions are added here."""


OPTIONS = jmespath.Options(custom_functions=_Functions())

MAX_EXPRESSION_CHARS = 4096
MAX_DEPTH = 64
MAX_AMPLIFICATION = 256
MAX_EVAL_SECONDS = 0.5
MAX_EVAL_STEPS = 2_000_000


class ExpressionLimitError(jmes_errors.ParseError):  # type: ignore[misc]
    """An expression over a compile-time limit; a ParseError so rule loading reports it like one."""

    def __init__(self, message: str) -> None:
        super().__init__(0, "", "limit", message)

    def __str__(self) -> str:
        return str(self.msg)


class _Budgeted(TreeInterpreter):  # type: ignore[misc]
    """JMESPath's interpreter, counting the nodes it visits and watching the clock."""

    def __init__(self) -> None:
        super().__init__(OPTIONS)
        self.steps = 0
        self.deadline = time.monotonic() + MAX_EVAL_SECONDS

    def visit(self, node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.steps += 1
        if not self.steps & 1023:
            if self.steps > MAX_EVAL_STEPS:
                raise TemplateRenderError(f"JMESPath evaluation took over {MAX_EVAL_STEPS:,} steps; simplify it")
            if time.monotonic() > self.deadline:
                raise TemplateRenderError(f"JMESPath evaluation took over {MAX_EVAL_SECONDS:g} s; simplify it")
        return super().visit(node, *args, **kwargs)


def _shape(node: dict[str, Any], depth: int = 1) -> tuple[int, int]:
    """(depth, amplification) of a parsed expression.

    Amplification is the product of every multiselect's width: a projection applies its right side to
    each item its left side yields, so multiselects anywhere in a chain multiply the output.
    """
    if depth > MAX_DEPTH:
        return depth, 1
    children = [c for c in node.get("children", ()) if isinstance(c, dict)]
    deepest, amplification = depth, 1
    for child in children:
        d, a = _shape(child, depth + 1)
        deepest, amplification = max(deepest, d), amplification * a
    if node.get("type") in ("multi_select_list", "multi_select_dict"):
        amplification *= max(1, len(children))
    return deepest, amplification


def check_limits(source: str, parsed: ParsedResult) -> None:
    depth, amplification = _shape(parsed.parsed)
    if depth > MAX_DEPTH:
        raise ExpressionLimitError(f"JMESPath expression is nested over {MAX_DEPTH} levels deep")
    if amplification > MAX_AMPLIFICATION:
        raise ExpressionLimitError(
            f"JMESPath expression's nested multiselects copy the data {amplification:,} times; "
            f"the limit is {MAX_AMPLIFICATION}"
        )


@dataclass(frozen=True, slots=True)
class Expression:
    source: str
    parsed: ParsedResult
    location: str = ""
    fast: Fn | None = None  # the tree compiled to closures, when every node is covered (router/rules/jmescompile.py)

    def search(self, data: Mapping[str, Any]) -> Any:
        try:
            if self.fast is not None:
                return self.fast(data)
            return _Budgeted().visit(self.parsed.parsed, data)
        except jmes_errors.JMESPathError as exc:
            raise TemplateRenderError(str(exc), location=self.location) from None
        except TypeError as exc:  # jmespath lets Python's own escape: "abc" > `5`, contains("abc", `5`)
            raise TemplateRenderError(f"type mismatch: {exc}", location=self.location) from None
        except TemplateRenderError as exc:
            raise TemplateRenderError(exc.message, location=self.location) from None
        except RecursionError:
            raise TemplateRenderError("JMESPath evaluation nested too deep", location=self.location) from None

    def test(self, data: Mapping[str, Any]) -> bool:
        return truthy(self.search(data))


def compile_expression(source: str, location: str = "") -> Expression:
    """Compile a JMESPath expression; raises ``jmespath.exceptions.ParseError`` on bad syntax or a limit."""
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionLimitError(
            f"JMESPath expression is {len(source):,} characters; the limit is {MAX_EXPRESSION_CHARS:,}"
        )
    try:
        parsed = jmespath.compile(source)
    except RecursionError:
        raise ExpressionLimitError(f"JMESPath expression is nested over {MAX_DEPTH} levels deep") from None
    check_limits(source, parsed)
    return Expression(source, parsed, location, compile_tree(parsed.parsed, OPTIONS.custom_functions))


def syntax_error_message(exc: Exception) -> str:
    """A one-line message for a JMESPath parse error."""
    if isinstance(exc, ExpressionLimitError):
        return f"invalid JMESPath: {exc.msg}"
    if isinstance(exc, jmes_errors.ParseError):
        token = exc.token_value if exc.token_value is not None else ""
        return f"invalid JMESPath: {exc.msg} at column {exc.lex_position} (near {token!r})"
    return f"invalid JMESPath: {exc}"


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, "", [] and {} are false; every number (0 too) is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True
