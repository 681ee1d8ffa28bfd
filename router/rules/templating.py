"""Sandboxed Jinja templates, compiled once at load and rendered leaf by leaf.

Every string inside a step's ``with`` is a template. A string that is exactly one ``{{ expr }}``
keeps the expression's type (a number stays a number, a mapping stays a mapping); any other
string renders to a string. Mappings and lists keep their shape, so a body under ``json:`` stays
typed JSON.

Limits, so a hostile template cannot stall or exhaust a worker (the sandbox alone does not stop
``'x' * 10**9`` or nested loops): the source is at most ``MAX_SOURCE_CHARS`` (a compile error);
a render is at most ``MAX_RENDER_SECONDS``, ``MAX_LOOP_ITERATIONS`` loop turns and
``MAX_OUTPUT_CHARS`` of output per leaf; operators and calls that build big values (``*``, ``+``,
``**``, ``%``, ``center``/``ljust``/``format`` widths, ``replace``) are refused before they build
anything over the output limit. A limit hit is a ``TemplateRenderError`` naming it.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
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
from jinja2.filters import do_center, do_format, do_indent, do_join, do_replace, do_wordwrap
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from router.errors import TemplateLimitError, TemplateRenderError
from router.rules.missing import missing_field

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")

MAX_SOURCE_CHARS = 16 * 1024
MAX_OUTPUT_CHARS = 2 * 1024 * 1024
MAX_RENDER_SECONDS = 1.0
MAX_LOOP_ITERATIONS = 1_000_000
MAX_WIDTH = 10_000  # largest padding/width a format, center, ljust… may ask for
MAX_POWER_BITS = 4096
_WIDTHS = re.compile(r"[%:][^a-zA-Z%{}:]*?(\d+)")


class _Budget(threading.local):
    deadline: float = 0.0
    turns: int = 0
    depth: int = 0


_budget = _Budget()


def _check_time() -> None:
    if _budget.depth and time.monotonic() > _budget.deadline:
        raise TemplateLimitError(f"template render took over {MAX_RENDER_SECONDS:g} s")


class _Rendering:
    """The budget of one render (nested renders share the outermost one's)."""

    def __enter__(self) -> None:
        if _budget.depth == 0:
            _budget.deadline = time.monotonic() + MAX_RENDER_SECONDS
            _budget.turns = 0
        _budget.depth += 1

    def __exit__(self, *_: object) -> None:
        _budget.depth -= 1


def _too_big(size: int, what: str = "value") -> TemplateLimitError:
    return TemplateLimitError(f"template would build a {what} of {size:,} items; the limit is {MAX_OUTPUT_CHARS:,}")


def _check_widths(fmt: str) -> None:
    for match in _WIDTHS.finditer(fmt):
        if len(match.group(1)) > 6 or int(match.group(1)) > MAX_WIDTH:
            raise TemplateLimitError(f"format width {match.group(1)} is over the limit of {MAX_WIDTH}")


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_WIDTH:
        raise TemplateLimitError(f"width {width} is over the limit of {MAX_WIDTH}")


def _check_replace(text: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        hits = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        size = len(text) + hits * (len(new) - len(old))
        if size > MAX_OUTPUT_CHARS:
            raise _too_big(size, "string")


def _loop_turns(value: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: it counts turns and watches the clock."""
    for item in value:
        _budget.turns += 1
        if _budget.turns > MAX_LOOP_ITERATIONS:
            raise TemplateLimitError(f"template loops ran over {MAX_LOOP_ITERATIONS:,} times")
        if not _budget.turns & 1023:
            _check_time()
        yield item


def _to_json(value: Any, indent: int | None = None) -> str:
    if indent is not None:
        indent = max(0, min(int(indent), 16))
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def _center(value: str, width: int = 80) -> str:
    _check_width(width)
    return do_center(value, width)


def _indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    _check_width(width if isinstance(width, int) else len(width))
    size = len(value) + (value.count("\n") + 1) * (width if isinstance(width, int) else len(width))
    if size > MAX_OUTPUT_CHARS:
        raise _too_big(size, "string")
    return do_indent(value, width, first, blank)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_widths(str(value))
    return do_format(value, *args, **kwargs)


def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    _check_replace(str(s), old, new, count)
    return do_replace(eval_ctx, s, old, new, count)


_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]


def _check_join(items: Any, sep: Any = "") -> None:
    if isinstance(items, list | tuple):
        size = sum(len(x) if isinstance(x, str) else 16 for x in items) + len(str(sep)) * len(items)
        if size > MAX_OUTPUT_CHARS:
            raise _too_big(size, "string")


def _join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    _check_join(value, d)
    return str(do_join(eval_ctx, value, d, attribute))


_join.jinja_pass_arg = do_join.jinja_pass_arg  # type: ignore[attr-defined]


def _wordwrap(environment: Any, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    if len(s) > MAX_WIDTH * 10:
        raise TemplateLimitError(f"wordwrap takes at most {MAX_WIDTH * 10:,} characters")
    return do_wordwrap(environment, s, width, *args, **kwargs)


_wordwrap.jinja_pass_arg = do_wordwrap.jinja_pass_arg  # type: ignore[attr-defined]


def _concat(parts: list[Any]) -> str:
    """``a ~ b``: the sandbox does not intercept it, so a chain of ``set a = a ~ a`` could double forever."""
    texts = [str(p) for p in parts]
    size = sum(len(t) for t in texts)
    if size > MAX_OUTPUT_CHARS:
        raise _too_big(size, "string")
    return "".join(texts)


class _CheckedConcat(NodeTransformer):
    """Rewrite every ``~`` into the ``_router_concat`` filter, which checks the size first."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Filter(nodes.List(node.nodes), "_router_concat", [], [], None, None, lineno=node.lineno)


_SIZED_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class RouterEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with limits, and one change: on a mapping, a key wins over a method of the same name.

    Payloads have fields called ``items``, ``keys`` or ``values``; ``body.items`` must be that field.
    """

    # Intercepted operators go through call_binop at run time (and are never folded at compile time,
    # where ``'x' * 10**9`` would otherwise be computed while the rule file loads).
    intercepted_binops = frozenset({"*", "+", "**", "%", "//"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateSyntaxError(
                f"template is {len(source):,} characters; the limit is {MAX_SOURCE_CHARS:,}", 1, name, filename
            )
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_router_loop", [], [], None, None, lineno=loop.lineno)
        return _CheckedConcat().visit(tree)  # type: ignore[no-any-return]

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format``/``format_map`` are wrapped when read (3.1.5+); check their widths there too."""
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map"):
            _check_widths(owner)
        return super().wrap_str_format(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        sized = (str, list, tuple)
        if operator == "*":
            seq, n = (left, right) if isinstance(left, sized) else (right, left)
            if isinstance(seq, sized) and isinstance(n, int) and len(seq) * n > MAX_OUTPUT_CHARS:
                raise _too_big(len(seq) * n)
        elif operator == "+":
            if isinstance(left, sized) and isinstance(right, sized) and len(left) + len(right) > MAX_OUTPUT_CHARS:
                raise _too_big(len(left) + len(right))
        elif operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and abs(left) > 1
                and right * abs(left).bit_length() > MAX_POWER_BITS
            ):
                raise TemplateLimitError(f"{left} ** {right} is too large a number")
        elif operator == "%" and isinstance(left, str):
            _check_widths(left)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _SIZED_METHODS and args:
                _check_width(args[0])
            elif name in ("format", "format_map"):
                _check_widths(owner)
            elif name == "join" and args:
                _check_join(args[0], owner)
            elif name == "replace" and len(args) >= 2:
                _check_replace(owner, *args[:3])
            elif name == "expandtabs":
                tab = args[0] if args else kwargs.get("tabsize", 8)
                if isinstance(tab, int) and tab * owner.count("\t") > MAX_OUTPUT_CHARS:
                    raise _too_big(tab * owner.count("\t"), "string")
        return super().call(__context, __obj, *args, **kwargs)


def make_environment() -> RouterEnvironment:
    """The one environment user templates run in: immutable sandbox, undefined names are errors."""
    env = RouterEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, cache_size=0)
    env.filters["tojson"] = _to_json
    env.filters["center"] = _center
    env.filters["indent"] = _indent
    env.filters["format"] = _format
    env.filters["replace"] = _replace
    env.filters["join"] = _join
    env.filters["wordwrap"] = _wordwrap
    env.filters["_router_loop"] = _loop_turns
    env.filters["_router_concat"] = _concat
    env.globals.pop("lipsum", None)  # generates text of any size; of no use here
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
