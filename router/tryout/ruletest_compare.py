"""Rule tests: what a step would send, subset comparison, and readable differences pointing at templates."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

import httpx

from router.rules.compiled import CompiledStep, format_path
from router.rules.templating import Compiled

Path_ = tuple[str | int, ...]
SLACK_API = "https://slack.com/api"
_MISSING = object()


@dataclass
class Mismatch:
    path: Path_
    expected: Any
    actual: Any
    note: str = ""

    def describe(self, template: str) -> str:
        if self.note:
            text = self.note
        else:
            text = f"expected {_show(self.expected)}, rendered {_show(self.actual)}"
            if isinstance(self.expected, str) and isinstance(self.actual, str) and "\n" in self.expected + self.actual:
                lines = difflib.unified_diff(
                    self.expected.splitlines(), self.actual.splitlines(), "expected", "rendered", lineterm=""
                )
                text += "\n" + "\n".join(f"      {line}" for line in lines)
        return f"{text}{template}"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing (missing)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 400 else text[:400] + "…"


def compare(expected: Any, actual: Any, path: Path_, headers_at: Path_ | None = None) -> list[Mismatch]:
    """Subset match: mappings need the expected keys (headers: any case); lists and scalars must be equal."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [Mismatch(path, expected, actual)]
        out: list[Mismatch] = []
        fold = headers_at is not None and path == headers_at
        lowered = {str(k).lower(): v for k, v in actual.items()} if fold else actual
        for key, value in expected.items():
            look = str(key).lower() if fold else key
            if look not in lowered:
                out.append(Mismatch((*path, key), value, _MISSING, f"expected {_show(value)}, but it is not there"))
                continue
            out += compare(value, lowered[look], (*path, key), headers_at)
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [Mismatch(path, expected, actual)]
        return [m for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for m in compare(e, a, (*path, i))]
    if path and path[0] == "method" and isinstance(expected, str) and isinstance(actual, str):
        return [] if expected.upper() == actual.upper() else [Mismatch(path, expected, actual)]
    if expected != actual or (type(expected) is not type(actual) and not _numbers(expected, actual)):
        return [Mismatch(path, expected, actual)]
    return []


def _numbers(a: Any, b: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))


def request_view(action: str, config: Any) -> dict[str, Any] | None:
    """The HTTP request a rendered http or slack step sends (None for actions that send none)."""
    if action == "http":
        url = httpx.URL(config.url)
        if config.query:
            url = url.copy_merge_params(config.query)
        return {
            "method": config.method,
            "url": str(url),
            "query": dict(url.params.multi_items()),
            "headers": {k.lower(): v for k, v in config.headers.items()},
            "json": config.json_,
            "body": config.body,
        }
    if action == "slack":
        payload = {
            k: getattr(config, k)
            for k in ("text", "blocks", "username", "icon_emoji", "thread_ts")
            if getattr(config, k) is not None
        }
        if config.url is not None:
            return {"method": "POST", "url": config.url, "query": {}, "headers": {}, "json": payload, "body": None}
        return {
            "method": "POST",
            "url": f"{SLACK_API}/chat.postMessage",
            "query": {},
            "headers": {"authorization": f"Bearer {config.token}"},
            "json": payload | {"channel": config.channel},
            "body": None,
        }
    return None


def _with_path(action: str, path: Path_, tree: Any) -> Path_:
    """Where in the step's ``with`` a part of the request comes from."""
    if not path or path[0] == "with":
        return path[1:]
    head, rest = path[0], path[1:]
    if action == "slack":
        if head == "json":
            return rest if rest and rest[0] != "channel" else ("channel",)
        if head == "headers":
            return ("token",)
        return ("url",)
    if head == "headers" and rest and isinstance(tree, dict) and isinstance(tree.get("headers"), dict):
        for key in tree["headers"]:
            if str(key).lower() == str(rest[0]).lower():
                return ("headers", key)
    if head == "url" and isinstance(tree, dict) and "query" in tree and "url" in tree:
        return ("url",)
    return (head, *rest)


def template_at(step: CompiledStep, path: Path_) -> str:
    """`` (template at file:line:col: …)`` for the ``with`` leaf a request part comes from, or ''."""
    wpath = _with_path(step.action, path, step.with_tree)
    node: Any = step.with_tree
    for part in wpath:
        if isinstance(node, Compiled):
            break
        if isinstance(node, dict) and part in node:
            node = node[part]
            continue
        if isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            continue
        return f"\n      from the step at {step.location}"
    if isinstance(node, Compiled):
        source = node.source if len(node.source) <= 200 else node.source[:200] + "…"
        return f"\n      template at {node.location}: {source.strip()}"
    shown = format_path(("with", *wpath))
    return f"\n      written at {step.location}: {shown}" if wpath else f"\n      from the step at {step.location}"
