"""Sandboxed Jinja templates, compiled once at load and rendered leaf by leaf.

Every string inside a step's ``with`` is a template. A string that is exactly one ``{{ expr }}``
keeps the expression's type (a number stays a number, a mapping stays a mapping); any other
string renders to a string. Mappings and lists keep their shape, so a body under ``json:`` stays
typed JSON.

Templates run in the limited sandbox of router/rules/sandbox.py (``ENV``); a limit hit is a
``TemplateRenderError`` naming it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateAssertionError,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.parser import Parser

from router.errors import TemplateLimitError, TemplateRenderError
from router.rules.missing import missing_field
from router.rules.sandbox import (
    _MARKERS,
    _SINGLE_EXPR,
    ENV,
    MAX_OUTPUT_CHARS,
    MAX_SOURCE_CHARS,
    _check_time,
    _Rendering,
)


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
    """Compile one string; a string with no template markers is returned as it is.

    The syntax is checked here (a parse, ~0.3 ms); the Python code of a template is generated on its
    first render and shared by every leaf with the same text, so a set of 10,000 rules loads in seconds
    and the same template written in many rules is compiled once.
    """
    if not any(m in source for m in _MARKERS):
        return source
    expr = _expression_of(source)
    if expr is not None:
        path = _plain_path(expr)

        def render_expr(ctx: Mapping[str, Any]) -> Any:
            with _Rendering():
                if path is not None and (value := _walk(ctx, path)) is not _MISSING:
                    return _plain(value, [0])
                value = _compiled_expression(expr)(**ctx)
                return _plain(value, [0])

        return Compiled(source, render_expr, location)
    _check_template(source)

    def render_template(ctx: Mapping[str, Any]) -> Any:
        template = _compiled_template(source)
        with _Rendering():
            chunks: list[str] = []
            size = 0
            for chunk in template.generate(ctx):
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise TemplateLimitError(f"template output is over {MAX_OUTPUT_CHARS:,} characters")
                chunks.append(chunk)
                if not len(chunks) & 255:
                    _check_time()
            return "".join(chunks)

    return Compiled(source, render_template, location)


_MISSING = object()
_PATH = re.compile(r"\s*([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*|\[\d+\]|\['[^'\\]*'\]|\[\"[^\"\\]*\"\])*)\s*")
_PART = re.compile(r"\.([A-Za-z_]\w*)|\[(\d+)\]|\['([^'\\]*)'\]|\[\"([^\"\\]*)\"\]")


def _plain_path(expr: str) -> tuple[str | int, ...] | None:
    """``body.order.id`` / ``steps.fetch.body['x-id']`` / ``body.items[0]`` as a tuple of keys, else None."""
    match = _PATH.fullmatch(expr)
    if match is None:
        return None
    parts: list[str | int] = [match.group(1)]
    for name, index, single, double in _PART.findall(match.group(2)):
        parts.append(int(index) if index else name or single or double)
    return tuple(parts)


def _walk(ctx: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
    """The value a plain path names, read straight from mappings and lists, or _MISSING to let Jinja do it.

    Only keys present in mappings and indexes inside lists are followed — exactly what the sandbox's
    lookup returns for them (a key wins over a method of the same name); anything else (an attribute, a
    missing key, an undefined name) goes to the compiled expression, whose errors are Jinja's own.
    """
    node: Any = ctx
    for part in path:
        found = part in node if isinstance(part, str) and isinstance(node, dict | Mapping) else None
        if found is None and isinstance(part, int) and isinstance(node, list):
            found = part < len(node)
        if not found:
            return _MISSING
        node = node[part]
    return node


@functools.lru_cache(maxsize=65536)
def _expression_of(source: str) -> str | None:
    """The expression of a string that is exactly one ``{{ expr }}`` whose expression parses, else None."""
    expr = _is_single_expression(source)
    if expr is None:
        return None
    if len(source) > MAX_SOURCE_CHARS:
        raise TemplateSyntaxError(f"template is {len(source):,} characters; the limit is {MAX_SOURCE_CHARS:,}", 1)
    parser = Parser(ENV, expr, state="variable")
    try:
        tree = parser.parse_expression()
    except TemplateSyntaxError:
        return None  # e.g. a filter block; it is checked as a string template instead
    if not parser.stream.eos:
        return None
    _check_names(tree)
    return expr


@functools.lru_cache(maxsize=65536)
def _check_template(source: str) -> None:
    """Parse a template (raises TemplateSyntaxError); the parse is remembered, so each text is checked once."""
    _check_names(ENV.parse(source))


def _check_names(tree: nodes.Node) -> None:
    """What Jinja's code generator would refuse at compile time: a filter or test that does not exist."""
    for node in [tree, *tree.find_all((nodes.Filter, nodes.Test))]:
        if isinstance(node, nodes.Filter) and node.name not in ENV.filters:
            raise TemplateAssertionError(f"No filter named {node.name!r}.", node.lineno)
        if isinstance(node, nodes.Test) and node.name not in ENV.tests:
            raise TemplateAssertionError(f"No test named {node.name!r}.", node.lineno)


@functools.lru_cache(maxsize=16384)
def _compiled_expression(expr: str) -> Callable[..., Any]:
    return ENV.compile_expression(expr, undefined_to_none=False)


@functools.lru_cache(maxsize=16384)
def _compiled_template(source: str) -> Template:
    return ENV.from_string(source)


def _plain(value: Any, size: list[int]) -> Any:
    """Turn an expression's result into plain JSON-able data; an undefined value is an error.

    ``size`` counts items and characters so far: a value over the output limit is an error.
    """
    if isinstance(value, StrictUndefined):
        str(value)  # raises UndefinedError with Jinja's message
    size[0] += len(value) if isinstance(value, str) else 1
    if size[0] > MAX_OUTPUT_CHARS:
        raise TemplateLimitError(f"expression value is over {MAX_OUTPUT_CHARS:,} characters and items")
    if isinstance(value, Mapping):
        return {str(k): _plain(v, size) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, size) for v in value]
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
    """Render a compiled tree against a context; a failing leaf raises TemplateRenderError naming it.

    The path of a leaf (``with.json.order``) is only spelled out when that leaf fails.
    """
    try:
        return _render(tree, ctx)
    except _LeafFailed as failed:
        for part in reversed(failed.parts):
            path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
        raise TemplateRenderError(failed.message, path=path, location=failed.location) from None


class _LeafFailed(Exception):
    """A leaf's error on its way up; each level adds its key, innermost first."""

    def __init__(self, message: str, location: str) -> None:
        self.message, self.location = message, location
        self.parts: list[str | int] = []


def _render(tree: Any, ctx: Mapping[str, Any]) -> Any:
    if isinstance(tree, Compiled):
        return _render_leaf(tree, ctx)
    if isinstance(tree, dict):
        out: dict[Any, Any] = {}
        for key, value in tree.items():
            if isinstance(value, Compiled | dict | list):
                try:
                    out[key] = _render(value, ctx)
                except _LeafFailed as failed:
                    failed.parts.append(key)
                    raise
            else:
                out[key] = value
        return out
    if isinstance(tree, list):
        items = []
        for index, value in enumerate(tree):
            try:
                items.append(_render(value, ctx))
            except _LeafFailed as failed:
                failed.parts.append(index)
                raise
        return items
    return tree


def _render_leaf(tree: Compiled, ctx: Mapping[str, Any]) -> Any:
    try:
        return tree.render(ctx)
    except UndefinedError as exc:  # in plain words: which field of the event is missing
        message = missing_field(ENV, tree.source, ctx) or str(exc.message or exc)
    except TemplateError as exc:
        message = str(exc.message or exc)
    except TemplateLimitError as exc:
        message = str(exc)
    except RecursionError:
        message = "template recursion too deep"
    except MemoryError:
        message = "template ran out of memory"
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        message = f"{type(exc).__name__}: {exc}"
    raise _LeafFailed(message, tree.location)


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
    return set(_step_references(source))


@functools.lru_cache(maxsize=65536)
def _step_references(source: str) -> frozenset[str]:
    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return frozenset()
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
    return frozenset(found)
