"""Parameters that several API operations take, each described once (the OpenAPI schema shows the text),
and the page a ``limit`` and ``before`` cursor make."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Protocol, TypeVar

from litestar.params import PathParameter, QueryParameter

EventId = Annotated[str, PathParameter(description="Event id.")]
RunId = Annotated[str, PathParameter(description="Run id.")]
ReceivedSince = Annotated[datetime | None, QueryParameter(description="Received at or after (ISO 8601).")]
NewestFirst = Annotated[int, QueryParameter(ge=1, le=1000, description="At most this many, newest first.")]


class _Row(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=_Row)


def page_of(rows: Sequence[R], limit: int) -> tuple[Sequence[R], str | None]:
    """The first ``limit`` of ``rows`` (read as ``limit + 1``) and the ``next`` cursor: the id of the last
    one on the page, or None when nothing follows it."""
    page = rows[:limit]
    return page, page[-1].id if len(rows) > limit and page else None
