"""The template sandbox: Jinja's immutable sandbox with limits, so a hostile template cannot stall or
exhaust a worker (the sandbox alone does not stop ``'x' * 10**9`` or nested loops).

The source is at most ``MAX_SOURCE_CHARS`` (a compile error); a render is at most ``MAX_RENDER_SECONDS``,
``MAX_LOOP_ITERATIONS`` loop turns and ``MAX_OUTPUT_CHARS`` of output per leaf; operators and calls that
build big values (``*``, ``+``, ``**``, ``%``, ``center``/``ljust``/``format`` widths, ``replace``) are
refused before they build anything over the output limit. ``ENV`` is the one environment; compiling and
rendering are router.rules.templating's.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateSyntaxError,
    nodes,
)
from jinja2.filters import do_center, do_format, do_indent, do_join, do_replace, do_wordwrap
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from router.errors import TemplateLimitError

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
