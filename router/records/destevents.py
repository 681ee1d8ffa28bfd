"""Which events failed at a destination (``https://host:port`` or ``smtp://host:port``, as the overview's
failing destinations name them): a condition for the event list, so each failing destination links to its
events."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, or_, select

from router.records.models import Attempt, Event, Run, RunStep
from router.records.status import AttemptOutcome

DEFAULT_PORTS = {"http": 80, "https": 443}


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def url_prefixes(destination: str) -> list[str]:
    """The ways a URL to ``destination`` may start: with its port, and without it when it is the default."""
    parts = urlsplit(destination)
    host, port = (parts.hostname or ""), parts.port
    bases = [f"{parts.scheme}://{host}:{port}"] if port else [f"{parts.scheme}://{host}"]
    if port is not None and DEFAULT_PORTS.get(parts.scheme) == port:
        bases.append(f"{parts.scheme}://{host}")
    return bases


def failed_at(destination: str) -> ColumnElement[bool]:
    """Events with a failed attempt at ``destination``."""
    if destination.startswith("smtp://"):
        matches: ColumnElement[bool] = Attempt.request["smtp"].as_string() == destination.removeprefix("smtp://")
    else:
        url = Attempt.request["url"].as_string()
        options: list[ColumnElement[bool]] = []
        for base in url_prefixes(destination):
            options += [
                url == base,
                url.like(_escape(base) + "/%", escape="\\"),
                url.like(_escape(base) + "?%", escape="\\"),
            ]
        matches = or_(*options)
    failed = (
        select(Run.event_id)
        .join(RunStep, RunStep.run_id == Run.id)
        .join(Attempt, Attempt.run_step_id == RunStep.id)
        .where(Attempt.outcome == AttemptOutcome.FAILED, matches)
    )
    return Event.id.in_(failed)
