"""Sandboxed Jinja templates, compiled once at load and rendered leaf by leaf.

Every string inside a step's ``with`` is a template. A string that is exactly one ``{{ expr }}``
keeps the expression's type (a number stays a number, a mapping stays a mapping); any other
string renders to a string. Mappings and lists keep their shape, so a body under ``json:`` stays
typed JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from router.errors import TemplateRenderError

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


class RouterEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with one change: on a mapping, a key wins over a method of the same name.

    Payloads have fields called ``items``, ``keys`` or ``values``; ``body.items`` must be that field.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def make_environment() -> RouterEnvironment:
    """The one environment user templates run in: immutable sandbox, undefined names are errors."""
    env = RouterEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, cache_size=0)
    env.filters["tojson"] = _to_json
    return env


ENV = make_environment()


@dataclass(frozen=True, slots=True)
class Compiled:
    """One compiled leaf. ``render`` turns a context into the leaf's value."""

    source: str
    render: Callable[[Mapping[str, Any]], Any]
    location: str


def _is_single_expression(source: str) -> str | None:
    match = _SINGLE_EXPR.match(source)
    if not match:
        return None
    expr = match.group("expr")
    if any(m in expr for m in ("{{", "}}", "{%", "%}")):
        return None
    return expr


def compile_string(source: str, location: str = "") -> Compiled | str:
    """Compile one string; a string with no template markers is returned as it is."""
    if not any(m in source for m in _MARKERS):
        return source
    expr = _is_single_expression(source)
    if expr is not None:
        try:
            compiled_expr = ENV.compile_expression(expr, undefined_to_none=False)
        except TemplateSyntaxError:
            compiled_expr = None  # e.g. a filter block; fall back to a string template below
        if compiled_expr is not None:
            fn = compiled_expr

            def render_expr(ctx: Mapping[str, Any]) -> Any:
                value = fn(**ctx)
                return _plain(value)

            return Compiled(source, render_expr, location)
    template = ENV.from_string(source)

    def render_template(ctx: Mapping[str, Any]) -> Any:
        return template.render(ctx)

    return Compiled(source, render_template, location)


def _plain(value: Any) -> Any:
    """Turn an expression's result into plain JSON-able data; an undefined value is an error."""
    if isinstance(value, StrictUndefined):
        str(value)  # raises UndefinedError with Jinja's message
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if callable(value):
        raise TypeError(
            "the expression gives a method, not a value; to read a field named like a method, write body['name']"
        )
    return value


def compile_tree(
    value: Any, location_of: Callable[[tuple[str | int, ...]], str], path: tuple[str | int, ...] = ()
) -> Any:
    """Compile every string in a nested structure; raises TemplateSyntaxError with ``.router_path``."""
    if isinstance(value, str):
        try:
            return compile_string(value, location_of(path))
        except TemplateSyntaxError as exc:
            exc.router_path = path  # type: ignore[attr-defined]
            raise
    if isinstance(value, Mapping):
        return {k: compile_tree(v, location_of, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [compile_tree(v, location_of, (*path, i)) for i, v in enumerate(value)]
    return value


def render_tree(tree: Any, ctx: Mapping[str, Any], path: str = "") -> Any:
    """Render a compiled tree against a context; a failing leaf raises TemplateRenderError naming it."""
    if isinstance(tree, Compiled):
        try:
            return tree.render(ctx)
        except TemplateError as exc:
            raise TemplateRenderError(str(exc.message or exc), path=path, location=tree.location) from None
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
            raise TemplateRenderError(f"{type(exc).__name__}: {exc}", path=path, location=tree.location) from None
    if isinstance(tree, dict):
        return {k: render_tree(v, ctx, f"{path}.{k}" if path else str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [render_tree(v, ctx, f"{path}[{i}]") for i, v in enumerate(tree)]
    return tree


def has_template(tree: Any) -> bool:
    if isinstance(tree, Compiled):
        return True
    if isinstance(tree, dict):
        return any(has_template(v) for v in tree.values())
    if isinstance(tree, list):
        return any(has_template(v) for v in tree)
    return False


def referenced_names(source: str) -> set[str]:
    """Top-level names a template reads (``steps``, ``body``…), for static checks."""
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return set()
    return {n.name for n in ast.find_all(nodes.Name) if n.ctx == "load"}


def step_references(source: str) -> set[str]:
    """Ids of steps a template reads as ``steps.<id>`` or ``steps['<id>']``."""
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if isinstance(target, nodes.Name) and target.name == "steps":
            if isinstance(node, nodes.Getattr):
                found.add(node.attr)
            elif (
                isinstance(node, nodes.Getitem)
                and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)
            ):
                found.add(node.arg.value)
    return found
