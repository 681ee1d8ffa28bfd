"""Compile a source's ``poll:``, ``reconcile:`` or ``schedule:`` block, reporting problems as ``file:line:col``.

Everything a poll evaluates is compiled here, once: the request templates (url, headers, query,
json) and the JMESPath of items, id, cursor and next. ``router check`` and every process that loads
the rules run this, so a typo fails at load, not at the first poll.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError

from router.pipeline.retry import parse_duration
from router.polling.presets import POLL_PRESETS
from router.polling.spec import PollSpec, ScheduleSpec
from router.polling.timing import Cron, Every, Timing, cron_problem, timezone_problem
from router.rules.filters import Expression
from router.rules.templating import Compiled, compile_tree, referenced_names
from router.rules.yamlfile import Locator

Path_ = tuple[str | int, ...]
DEFAULT_MAX_PAGES = 20
DEFAULT_TIMEOUT = 15.0
LINK = "link"  # `next: link` follows the Link header's rel="next"
# What a poll's request templates can read.
TEMPLATE_NAMES = frozenset({"secrets", "cursor", "since", "since_unix", "now", "now_unix", "source"})


class Reporter(Protocol):
    """The rule loader (router.rules.ruleset): where problems go, and how JMESPath is compiled."""

    def error(self, message: str, locator: Locator, path: Path_) -> None: ...

    def expression(self, source: str, locator: Locator, path: Path_) -> Expression | None: ...


@dataclass(frozen=True)
class CompiledPoll:
    """A compiled ``poll:`` (kind ``poll``) or ``reconcile:`` (kind ``reconcile``) block."""

    kind: str
    timing: Timing
    request: dict[str, Any]  # compiled templates: url, method, headers, query, json
    items: Expression
    id: Expression
    cursor: Expression | None
    next: Expression | None
    follow_link: bool
    max_pages: int
    timeout: float
    stop_at_seen: bool
    etag: bool
    location: str
    spec_hash: str
    preset: str | None = None
    spec: dict[str, Any] = field(default_factory=dict, compare=False)  # the effective block, presets applied


@dataclass(frozen=True)
class CompiledSchedule:
    kind: str
    timing: Timing
    catch_up: str
    location: str
    spec_hash: str


Pull = CompiledPoll | CompiledSchedule


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def compile_timing(spec: PollSpec | ScheduleSpec, loader: Reporter, locator: Locator, path: Path_) -> Timing | None:
    if (spec.every is None) == (spec.cron is None):
        loader.error('give `every` (e.g. 30s) or `cron` (e.g. "*/5 * * * *"), one of the two', locator, path)
        return None
    if spec.every is not None:
        if spec.timezone is not None:
            loader.error("`timezone` goes with `cron`; `every` is the same in every time zone", locator, path)
        return Every(parse_duration(spec.every))
    assert spec.cron is not None
    problem = cron_problem(spec.cron)
    if problem:
        loader.error(problem, locator, (*path, "cron"))
        return None
    tz = spec.timezone or "UTC"
    problem = timezone_problem(tz)
    if problem:
        loader.error(problem, locator, (*path, "timezone"))
        return None
    return Cron(spec.cron, tz)


def effective_spec(spec: PollSpec) -> dict[str, Any]:
    """The block with its preset's defaults filled in (headers and query merged, the block's keys win)."""
    given = spec.model_dump(by_alias=True, exclude_unset=True)
    preset = POLL_PRESETS.get(spec.preset or "")
    if preset is None:
        return given
    out = dict(preset.fields) | given
    for key in ("headers", "query"):
        merged = {k.lower() if key == "headers" else k: v for k, v in dict(preset.fields.get(key, {})).items()}
        for k, v in given.get(key, {}).items():
            merged[k.lower() if key == "headers" else k] = v
        out[key] = merged
    return out


def compile_poll(spec: PollSpec, kind: str, loader: Reporter, locator: Locator, path: Path_) -> CompiledPoll | None:
    before = _count(loader)
    if spec.preset is not None and spec.preset not in POLL_PRESETS:
        loader.error(
            f"unknown poll preset {spec.preset!r}; use one of: {', '.join(sorted(POLL_PRESETS))}",
            locator,
            (*path, "preset"),
        )
        return None
    timing = compile_timing(spec, loader, locator, path)
    eff = effective_spec(spec)
    preset = POLL_PRESETS.get(spec.preset or "")

    def where(key: str) -> Path_:  # a field the preset gave is reported at `preset`
        return (*path, key) if key in spec.model_fields_set or preset is None else (*path, "preset")

    url = eff.get("url")
    if not url:
        hint = f", e.g. {preset.needs_url}" if preset is not None and preset.needs_url else ""
        loader.error(f"required field is missing: the URL to poll{hint}", locator, (*path, "url"))
    elif "{{" not in url and "{%" not in url:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            loader.error(f"{url!r} is not an http(s) URL", locator, (*path, "url"))
    request_src = {
        "url": url or "",
        "method": eff.get("method", "GET"),
        "headers": eff.get("headers", {}),
        "query": eff.get("query", {}),
        "json": eff.get("json"),
    }
    request = _templates(request_src, loader, locator, path, spec)
    exprs: dict[str, Expression | None] = {}
    for key in ("items", "id", "cursor", "next"):
        source = eff.get(key)
        if source is None:
            if key in ("items", "id"):
                example = "body.orders" if key == "items" else "id"
                message = f"required field is missing: JMESPath giving the {key}, e.g. {example}"
                loader.error(message, locator, (*path, key))
            exprs[key] = None
            continue
        if key == "next" and source == LINK:
            exprs[key] = None
            continue
        exprs[key] = loader.expression(source, locator, where(key))
    if _count(loader) > before or timing is None or request is None:
        return None
    items, ident = exprs["items"], exprs["id"]
    assert items is not None
    assert ident is not None
    timeout = parse_duration(eff["timeout"]) if eff.get("timeout") is not None else DEFAULT_TIMEOUT
    shown = {k: v for k, v in eff.items() if k not in ("every", "cron", "timezone")}
    return CompiledPoll(
        kind=kind,
        timing=timing,
        request=request,
        items=items,
        id=ident,
        cursor=exprs["cursor"],
        next=exprs["next"],
        follow_link=eff.get("next") == LINK,
        max_pages=int(eff.get("max_pages") or DEFAULT_MAX_PAGES),
        timeout=timeout,
        stop_at_seen=bool(eff.get("stop_at_seen")),
        etag=bool(eff.get("etag")),
        location=locator.describe(path),
        spec_hash=_hash(eff),
        preset=spec.preset,
        spec=shown,
    )


def _count(loader: Reporter) -> int:
    return len(getattr(loader, "errors", ()))


def _templates(
    request: dict[str, Any], loader: Reporter, locator: Locator, path: Path_, spec: PollSpec
) -> dict[str, Any] | None:
    try:
        tree: dict[str, Any] = compile_tree(request, lambda p: locator.describe((*path, *p)))
    except TemplateSyntaxError as exc:
        leaf = (*path, *getattr(exc, "router_path", ()))
        loader.error(f"invalid template: {exc.message} (template line {exc.lineno})", locator, leaf)
        return None
    ok = True
    for leaf, compiled in _leaves(tree, ()):
        unknown = sorted(referenced_names(compiled.source) - TEMPLATE_NAMES)
        if unknown:
            ok = False
            loader.error(
                f"this template reads {', '.join(unknown)}, which a poll does not have; it can read: "
                f"{', '.join(sorted(TEMPLATE_NAMES))}",
                locator,
                (*path, *leaf),
            )
    return tree if ok else None


def _leaves(tree: Any, at: Path_) -> list[tuple[Path_, Compiled]]:
    if isinstance(tree, Compiled):
        return [(at, tree)]
    if isinstance(tree, dict):
        return [leaf for k, v in tree.items() for leaf in _leaves(v, (*at, k))]
    if isinstance(tree, list):
        return [leaf for i, v in enumerate(tree) for leaf in _leaves(v, (*at, i))]
    return []


def compile_schedule(spec: ScheduleSpec, loader: Reporter, locator: Locator, path: Path_) -> CompiledSchedule | None:
    timing = compile_timing(spec, loader, locator, path)
    if timing is None:
        return None
    data = spec.model_dump(exclude_unset=True)
    return CompiledSchedule("schedule", timing, spec.catch_up, locator.describe(path), _hash(data))


def compile_pull(
    source: Any, loader: Reporter, locator: Locator, path: Path_, has_dedupe: bool
) -> tuple[Pull | None, str | None]:
    """The source's pull block (poll, reconcile or schedule), compiled; and the event type its preset gives."""
    given = [k for k in ("poll", "reconcile", "schedule") if getattr(source, k) is not None]
    if not given:
        return None, None
    if len(given) > 1:
        loader.error(
            f"a source has one of poll, reconcile and schedule; this one has {' and '.join(given)}",
            locator,
            (*path, given[1]),
        )
        return None, None
    kind = given[0]
    if kind in ("poll", "schedule"):
        what = "polled" if kind == "poll" else "scheduled"
        for key in ("verify", "preset", "dedupe"):
            if getattr(source, key) is not None:
                why = "its identity is poll.id" if key == "dedupe" and kind == "poll" else "it has no webhook URL"
                loader.error(f"a {what} source takes no `{key}`: {why}; remove it", locator, (*path, key))
    if kind == "schedule":
        return compile_schedule(source.schedule, loader, locator, (*path, "schedule")), "'schedule'"
    spec: PollSpec = getattr(source, kind)
    if kind == "reconcile" and not has_dedupe:
        loader.error(
            "reconcile skips the items whose webhook was received by comparing `id` with the source's dedupe key, "
            "but this source has none; set `dedupe:` (e.g. body.id) or a preset that has one",
            locator,
            (*path, "reconcile"),
        )
    compiled = compile_poll(spec, kind, loader, locator, (*path, kind))
    preset = POLL_PRESETS.get(spec.preset or "")
    return compiled, preset.event_type if preset is not None else None
