"""The builder's sample event: the choices (recent events of the source, provider samples, pasted JSON),
and the event rules would see for the one chosen (``resolve_sample``).

The event is built as ingest builds one (``router.pipeline.match.event_dict``), so the previews in
``builder_preview`` render and match against what the worker would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from router.pipeline.ingest import fold_headers
from router.pipeline.match import event_dict, event_from_row
from router.pipeline.presets import PRESETS, Sample
from router.records.models import Event
from router.records.summary import summarize
from router.rules.compiled import RuleSet
from router.tryout.whatif import load_events

RECENT = 20


@dataclass(frozen=True)
class SampleChoice:
    key: str
    label: str
    group: str


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else str(value)[:19].replace("T", " ")


def preset_samples(ruleset: RuleSet, source: str) -> tuple[list[Sample], list[Sample]]:
    """The source's preset's samples (or those of the preset named like its verify scheme), then the rest."""
    src = ruleset.sources.get(source)
    own = src.preset if src is not None else None
    if own is None and src is not None and src.verify is not None and src.verify.scheme in PRESETS:
        own = src.verify.scheme  # `verify: {scheme: github}` without `preset: github`: the same provider
    mine = list(PRESETS[own].samples) if own in PRESETS else []
    others = [s for p in PRESETS.values() if p.name != own for s in p.samples]
    return mine, others


async def sample_choices(
    sessions: async_sessionmaker[AsyncSession], ruleset: RuleSet, source: str
) -> list[SampleChoice]:
    out: list[SampleChoice] = []
    if source:
        for event in await load_events(sessions, source, RECENT):
            about = str(summarize(event["body"], event["headers"], ruleset.sources.get(source))) or event["method"]
            label = f"{_when(event['received_at'])} · {about[:90]}"
            out.append(SampleChoice(f"event:{event['id']}", label, "Recent events of this source"))
    mine, others = preset_samples(ruleset, source)
    out += [
        SampleChoice(f"preset:{s.preset}:{s.name}", f"{s.preset}: {s.description}", "Provider sample") for s in mine
    ]
    out += [
        SampleChoice(f"preset:{s.preset}:{s.name}", f"{s.preset}: {s.description}", "Other samples") for s in others
    ]
    out.append(SampleChoice("paste", "Paste JSON…", "Your own"))
    return out


def _sample_event(
    source: str, body: Any, headers: Mapping[str, str] | None = None, query: Any = None
) -> dict[str, Any]:
    return event_dict(
        id="sample",
        source=source,
        received_at=datetime.now(UTC),
        path=f"/hooks/{source}",
        headers=fold_headers((str(k), str(v)) for k, v in (headers or {}).items()),
        query=query if isinstance(query, dict) else {},
        body=body,
    )


def parse_pasted(text: str, source: str) -> tuple[dict[str, Any] | None, str]:
    """A pasted body, or ``{"body": …, "headers": {…}, "query": {…}}``; an error names line and column."""
    if not text.strip():
        return _sample_event(source, {}), ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        return None, "not valid JSON: nested too deeply"
    if isinstance(value, dict) and "body" in value and set(value) <= {"body", "headers", "query"}:
        headers = value.get("headers") or {}
        if not isinstance(headers, dict):
            return None, "`headers` must be an object of header names to values"
        return _sample_event(source, value["body"], headers, value.get("query")), ""
    return _sample_event(source, value), ""


async def resolve_sample(
    sessions: async_sessionmaker[AsyncSession], ruleset: RuleSet, source: str, key: str, pasted: str
) -> tuple[str, dict[str, Any] | None, str]:
    """(the sample's key, the event rules would see, an error): a stored event, a preset sample or pasted JSON.

    With no key: the source's most recent event, else its preset's first sample, else an empty body.
    """
    if key.startswith("event:"):
        async with sessions() as session:
            row = await session.get(Event, key.removeprefix("event:"))
        if row is not None and row.source == source:
            return key, event_from_row(row), ""
        key = ""
    if key.startswith("preset:"):
        _, preset, name = [*key.split(":", 2), "", ""][:3]
        for sample in PRESETS[preset].samples if preset in PRESETS else ():
            if sample.name == name:
                return key, _sample_event(source, sample.body(), sample.headers), ""
        key = ""
    if key == "paste":
        event, error = parse_pasted(pasted, source)
        return key, event, error
    if source:
        async with sessions() as session:
            row = await session.scalar(select(Event).where(Event.source == source).order_by(Event.id.desc()).limit(1))
        if row is not None:
            return f"event:{row.id}", event_from_row(row), ""
    mine, _ = preset_samples(ruleset, source)
    if mine:
        return f"preset:{mine[0].preset}:{mine[0].name}", _sample_event(source, mine[0].body(), mine[0].headers), ""
    return "paste", _sample_event(source, {}), ""
