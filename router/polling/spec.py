"""The rule-file blocks that pull events: ``poll:`` and ``reconcile:`` (fetch an API) and ``schedule:`` (a clock).

These models check the shape; ``router.polling.compile`` compiles the JMESPath and templates and
reports problems as ``file:line:col``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from router.pipeline.retry import parse_duration
from router.polling.presets import POLL_PRESETS

MIN_EVERY = 1.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _every(value: Any) -> Any:
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds < MIN_EVERY:
        raise ValueError(f"{value!r} is too often: poll at most once a second (every: 1s)")
    return value


class _Timed(_Model):
    every: str | int | float | None = Field(
        None,
        description="How often, e.g. 30s, 5m, 1h (at least 1s, at most 7d). Give `every` or `cron`.",
        examples=["30s", "1h"],
    )
    cron: str | None = Field(
        None,
        description="A five-field cron expression (minute hour day month weekday), read in `timezone`.",
        examples=["*/5 * * * *", "0 9 * * 1-5"],
    )
    timezone: str | None = Field(
        None, description="IANA time zone the cron expression is read in; default UTC.", examples=["Europe/Berlin"]
    )

    @field_validator("every")
    @classmethod
    def _check_every(cls, value: Any) -> Any:
        return _every(value)


class PollSpec(_Timed):
    """Fetch an API on a schedule; each new item becomes an event (its identity is never emitted twice)."""

    preset: str | None = Field(
        None,
        description="Provider preset: sets url, items, id, cursor, next and query for a known API; "
        "the block's own fields override the preset's.",
        json_schema_extra={"enum": list[Any](sorted(POLL_PRESETS))},
        examples=["stripe-events"],
    )
    url: str | None = Field(
        None,
        description="The URL to fetch (a template: secrets, cursor, now).",
        examples=["https://api.example.com/orders"],
    )
    method: Literal["GET", "POST"] = Field("GET", description="HTTP method.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Request headers (templates), e.g. Authorization: 'Bearer {{ secrets.TOKEN }}'.",
    )
    query: dict[str, Any] = Field(
        default_factory=dict,
        description="Query parameters (templates); `cursor` is the value kept from the last poll, undefined before "
        "the first (use `cursor | default(...)`). A parameter that renders to null is left out.",
    )
    json_: Any = Field(None, alias="json", description="A JSON body to send (templates), for POST search APIs.")
    items: str | None = Field(
        None,
        description="JMESPath over the response (status, headers, body) giving the list of items.",
        examples=["body.orders", "body.data", "body"],
    )
    id: str | None = Field(
        None, description="JMESPath over one item giving its identity, the dedupe key.", examples=["id"]
    )
    cursor: str | None = Field(
        None,
        description="JMESPath over each response giving the value kept for the next poll; the greatest value of a "
        "pass is kept once the pass has reached its last page.",
        examples=["max_by(body.orders, &updated_at).updated_at"],
    )
    next: str | None = Field(
        None,
        description="JMESPath over the response giving the next page: a URL, or a mapping of query parameters to "
        'merge into the first request; null or false stops. `link` follows the Link header\'s rel="next".',
        examples=["link", "body.next_page", "body.has_more && {starting_after: body.data[-1].id}"],
    )
    max_pages: int | None = Field(
        None, ge=1, le=1000, description="Most pages per poll (default 20); the next poll goes on from there."
    )
    timeout: str | int | float | None = Field(None, description="Timeout of each request (default 15s).")
    etag: bool | None = Field(
        None,
        description="Send the first page's ETag back (If-None-Match); a 304 ends the poll at no cost. Only for "
        "lists whose first page changes whenever anything is new (newest first).",
    )
    stop_at_seen: bool | None = Field(
        None,
        description="Stop paging at a page holding an item already stored: for newest-first lists with no cursor.",
    )

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        if value is not None and not 0.5 <= parse_duration(value) <= 120:
            raise ValueError(f"{value!r}: a request timeout is from 0.5s to 120s")
        return value


class ScheduleSpec(_Timed):
    """Emit one event per tick of a clock."""

    catch_up: Literal["latest", "all", "none"] = Field(
        "latest",
        description="Ticks missed while no worker ran: latest emits one event for the newest (body.missed counts "
        "the others), all emits each (at most 100), none skips them.",
    )
