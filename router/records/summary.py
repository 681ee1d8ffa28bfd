"""One line about an event for lists: its type and a few key fields of its body.

``summarize`` reads the source's ``event_type`` expression (else the usual places providers name the event:
``X-GitHub-Event``, ``X-Shopify-Topic``, ``body.type``, …), then picks up to ``FIELDS`` short scalar values:
first from paths that name what an event is about in the usual providers' payloads (a repository, a branch,
an amount, an email address, …), then the body's own top-level fields in order. A text body shows its start.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from router.errors import TemplateRenderError
from router.rules.compiled import CompiledSource

FIELDS = 3
VALUE_CHARS = 48
TEXT_CHARS = 100
# Paths that say what an event is about, in the order they are preferred (GitHub, Stripe, Shopify, Slack, forms).
KEY_PATHS = (
    "repository.full_name",
    "ref",
    "action",
    "pull_request.title",
    "data.object.id",
    "data.object.amount",
    "data.object.currency",
    "name",
    "email",
    "customer.email",
    "total_price",
    "currency",
    "event.type",
    "event.text",
    "amount",
    "status",
    "id",
)


# Where providers say what kind of event it is, for sources that declare no `event_type`.
TYPE_HEADERS = ("x-github-event", "x-shopify-topic", "x-gitlab-event", "x-event-type", "x-event-key")
TYPE_PATHS = ("type", "event_type", "event.type", "event")


def _kind(body: Any, headers: Mapping[str, Any]) -> str | None:
    for name in TYPE_HEADERS:
        if (found := _short(headers.get(name))) is not None:
            return found
    if isinstance(body, Mapping):
        for path in TYPE_PATHS:
            if (found := _short(_get(body, path))) is not None:
                return found
    return None


@dataclass
class Summary:
    kind: str | None = None
    fields: list[tuple[str, str]] = field(default_factory=list)
    text: str = ""

    def __str__(self) -> str:
        parts = [self.kind] if self.kind else []
        parts += [f"{k} {v}" for k, v in self.fields]
        if self.text:
            parts.append(self.text)
        return " · ".join(parts)


def _short(value: Any) -> str | None:
    """A scalar shown briefly; None for mappings, lists, nulls and empty strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and value.strip():
        text = " ".join(value.split())
        return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
    return None


def _get(body: Mapping[str, Any], path: str) -> Any:
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def key_fields(body: Any, skip: str | None = None, limit: int = FIELDS) -> list[tuple[str, str]]:
    if not isinstance(body, Mapping):
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    candidates = [(p, _get(body, p)) for p in KEY_PATHS] + [(str(k), v) for k, v in body.items() if k not in TYPE_PATHS]
    for path, value in candidates:
        shown = _short(value)
        if shown is None or path in seen or shown == skip:
            continue
        seen.add(path)
        out.append((path, shown))
        if len(out) == limit:
            break
    return out


def summarize(body: Any, headers: Mapping[str, Any] | None, source: CompiledSource | None) -> Summary:
    kind = None
    if source is not None and source.event_type is not None:
        try:
            found = source.event_type.search({"body": body, "headers": headers or {}, "query": {}})
        except TemplateRenderError:
            found = None
        kind = _short(found)
    else:
        kind = _kind(body, headers or {})
    if isinstance(body, str):
        text = " ".join(body.split())
        return Summary(kind, [], text[:TEXT_CHARS] + ("…" if len(text) > TEXT_CHARS else ""))
    return Summary(kind, key_fields(body, skip=kind))
