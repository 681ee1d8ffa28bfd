"""Plain words for a template that reads a field the event does not have.

Jinja says "'dict object' has no attribute 'x'"; a person needs "the event has no field `body.x`".
``missing_field`` finds, among the dotted paths a template reads (``body.a.b``, ``headers["x-y"]``), the
first one that stops existing in the context, and names it up to the missing part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import TemplateSyntaxError

# Where a path starts, and how to name what it reads.
OWNERS = {
    "body": "the event",
    "headers": "the event",
    "query": "the event",
    "event": "the event",
    "steps": "the earlier steps' output",
    "secrets": "the secrets",
}


def _chain(node: nodes.Node) -> list[str | int] | None:
    """``body.a["b"][0]`` as ["body", "a", "b", 0]; None when the chain does not start at a name."""
    parts: list[str | int] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if not isinstance(node.arg.value, str | int):
                return None
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return list(reversed(parts))
        else:
            return None


def _show(parts: list[str | int]) -> str:
    out = str(parts[0])
    for part in parts[1:]:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}"
        else:
            out += f'["{part}"]'
    return out


def _lookup(value: Any, part: str | int) -> tuple[bool, Any]:
    if isinstance(value, Mapping) and part in value:
        return True, value[part]
    if isinstance(value, list) and isinstance(part, int) and -len(value) <= part < len(value):
        return True, value[part]
    return False, None


def missing_field(environment: Any, source: str, ctx: Mapping[str, Any]) -> str | None:
    """``the event has no field `body.x```-style words for the first path of ``source`` missing in ``ctx``."""
    try:
        tree = environment.parse(source)
    except TemplateSyntaxError:
        return None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        parts = _chain(node)
        if not parts or not isinstance(parts[0], str) or parts[0] not in ctx:
            continue
        value = ctx[parts[0]]
        for depth, part in enumerate(parts[1:], start=2):
            found, value = _lookup(value, part)
            if not found:
                shown = _show(parts[:depth])
                owner = OWNERS.get(parts[0], "the context")
                return (
                    f"{owner} has no field `{shown}` (if it may be missing, write "
                    f"`{shown} | default('…')`, or test it with `{shown} is defined`)"
                )
    return None
