"""``/events``: the event log, live; one event with its rules, runs, steps and attempts; replay and retry.

The list polls ``/events/rows`` (htmx, every 2 s) for events newer than the newest shown and for the
rows still in progress; an older page (a cursor) does not poll. An event's page polls its runs while
any is not final. Replay and retry are htmx POSTs (editor, CSRF) through ``router.records.replay``, audited,
answering with a notice and the refreshed runs; without JavaScript the same forms post and the page
comes back with the notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template
from sqlalchemy import select

from router.access.guard import principal_of
from router.errors import ClientError
from router.pipeline import runwait
from router.pipeline.queue import enqueuer
from router.records import eventlog
from router.records.eventlog import FINAL, RUN_STATES, STATUSES, EventFilter
from router.records.models import Event, Run, utcnow
from router.records.replay import replay_event, retry_run
from router.records.status import RUN_FAILED, RUN_TERMINAL, EventStatus, RunStatus
from router.records.summary import Summary, summarize
from router.rules.compiled import CompiledSource, RuleSet
from router.runtime import Runtime
from router.tryout.explain import explain_loaded
from router.ui import flash
from router.ui.forms import Form, refusals
from router.ui.render import page

PAGE = 50
RAW_SHOWN = 64 * 1024
SINCE = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
MAX_WATCH = 100


def _htmx(request: Request[Any, Any, Any]) -> bool:
    return bool(request.headers.get("hx-request"))


def summary(row: Any, source: CompiledSource | None) -> Summary:
    """A line about an event for the list: its type and a few key fields (router.records.summary)."""
    return summarize(row.body, row.headers, source)


async def _rows(session: Any, events: list[Any], rules: RuleSet) -> list[dict[str, Any]]:
    """List rows; ``state`` is the worst state of the event's runs (retrying, held, failed, dead) or its own."""
    worst = await runwait.worst_states(session, [e.id for e in events])
    return [
        eventlog.event_summary(e)
        | {
            "summary": summary(e, rules.sources.get(e.source)),
            "final": e.status in FINAL and worst.get(e.id) not in runwait.WAITING,
            "state": worst.get(e.id, e.status),
        }
        for e in events
    ]


class Filters:
    """The list's filters as the user gave them, checked: ``error`` names the field and the fix.

    The list and its live rows take them from the query as the dependency ``filters: Filtered``.
    """

    def __init__(
        self,
        source: Annotated[str, QueryParameter(description="Only this source.")] = "",
        status: FromQuery[str] = "",
        q: FromQuery[str] = "",
        since: FromQuery[str] = "",
        destination: Annotated[str, QueryParameter(description="Only events that failed at it.")] = "",
    ) -> None:
        self.source, self.status, self.q, self.since = source.strip()[:64], status.strip(), q.strip()[:200], since
        self.destination = destination.strip()[:300]
        errors = []
        if self.status and self.status not in (*STATUSES, *RUN_STATES):
            choices = ", ".join((*STATUSES, *RUN_STATES))
            errors.append(f"status: {self.status!r} is not one of {choices}; showing every status")
            self.status = ""
        if self.since and self.since not in SINCE:
            errors.append(f"since: {self.since!r} is not one of {', '.join(SINCE)}; showing all times")
            self.since = ""
        self.error = ". ".join(errors)

    def query(self) -> EventFilter:
        since = utcnow() - SINCE[self.since] if self.since else None
        return EventFilter(self.source or None, self.status or None, self.q or None, since, self.destination or None)

    def params(self) -> dict[str, str]:
        given = {"source": self.source, "status": self.status, "q": self.q, "since": self.since}
        given["destination"] = self.destination
        return {k: v for k, v in given.items() if v}

    def link(self, **extra: str) -> str:
        """The query string of these filters and ``extra`` (empty values left out)."""
        return urlencode(self.params() | {k: v for k, v in extra.items() if v})

    def without(self, name: str) -> str:
        """The query string of these filters but ``name``."""
        return urlencode({k: v for k, v in self.params().items() if k != name})


FILTERED = {"filters": Provide(Filters, sync_to_thread=False)}
Filtered = NamedDependency[Filters]


@get("/events", include_in_schema=False, dependencies=FILTERED)
async def events_page(
    request: Request[Any, Any, Any], runtime: Runtime, filters: Filtered, before: FromQuery[str] = ""
) -> Template:
    before = before.strip()[:26]
    rules: RuleSet = runtime.rules.current
    async with runtime.sessions() as session:
        found = await eventlog.list_events(session, filters.query(), limit=PAGE, before=before or None, content=True)
        rows = await _rows(session, found.events, rules)
    return page(
        request,
        "events/list.html",
        rows=rows,
        filters=filters,
        sources=sorted(set(rules.sources) | ({filters.source} if filters.source else set())),
        statuses=STATUSES,
        run_states=RUN_STATES,
        since_choices=list(SINCE),
        before=before,
        older=found.next or "",
        scanned=found.scanned,
        live=not before,
        newest=rows[0]["id"] if rows else "",
        watch=",".join([r["id"] for r in rows if not r["final"]][:MAX_WATCH]),
    )


@get("/events/rows", include_in_schema=False, dependencies=FILTERED)
async def event_rows(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    filters: Filtered,
    after: Annotated[str, QueryParameter(description="Only events newer than this id.")] = "",
    watch: Annotated[str, QueryParameter(description="Ids of shown rows still in progress.")] = "",
) -> Template:
    """Live rows: events newer than ``after`` (for the top of the table) and the ``watch``ed rows again."""
    rules: RuleSet = runtime.rules.current
    watched = [i for i in watch.split(",") if i][:MAX_WATCH]
    async with runtime.sessions() as session:
        found = await eventlog.list_events(
            session, filters.query(), limit=PAGE, after=after.strip()[:26] or None, content=True
        )
        again = await eventlog.events_by_id(session, watched, content=True) if watched else []
        new = await _rows(session, found.events, rules)
        fresh_ids = {r["id"] for r in new}
        updated = [r for r in await _rows(session, again, rules) if r["id"] not in fresh_ids]
    still = [r["id"] for r in [*new, *updated] if not r["final"]][:MAX_WATCH]
    return page(
        request,
        "events/_rows.html",
        rows=new,
        updated=updated,
        filters=filters,
        newest=new[0]["id"] if new else after,
        watch=",".join(still),
    )


def _body_views(event: Event) -> dict[str, Any]:
    raw = event.raw_body or b""
    text = raw[:RAW_SHOWN].decode("utf-8", errors="replace")
    return {
        "is_json": isinstance(event.body, dict | list | int | float | bool) and event.body is not None,
        "raw_text": text,
        "raw_cut": len(raw) > RAW_SHOWN,
        "raw_size": len(raw),
    }


def _poll(detail: Mapping[str, Any]) -> str:
    """How often the runs section refreshes: '' when everything is final, slower while runs only wait."""
    waiting = {r["status"] for r in detail["runs"]} - set(RUN_TERMINAL)
    if detail["status"] in (EventStatus.RECEIVED,) or waiting & {RunStatus.PENDING, RunStatus.RUNNING}:
        return "1s"
    return "5s" if waiting or detail["status"] not in FINAL else ""


async def _detail(runtime: Runtime, event_id: str) -> dict[str, Any]:
    rules: RuleSet = runtime.rules.current
    async with runtime.sessions() as session:
        event = await eventlog.load_event(session, event_id)
    if event is None:
        raise NotFoundException(f"no event {event_id!r}; it may have been deleted, or the link is wrong")
    detail = eventlog.event_detail(event, rules.sources.get(event.source), rules.secrets)
    matched = {r["rule_id"] for r in detail["runs"]}
    source = rules.sources.get(event.source)
    return {
        "event": detail,
        "body": _body_views(event),
        "source_known": source is not None,
        "rules": [
            {"id": rule.id, "description": rule.description, "matched": rule.id in matched, "enabled": rule.enabled}
            for rule in rules.by_source.get(event.source, ())
        ],
        "failed_statuses": RUN_FAILED,
        "live": bool(_poll(detail)),
        "poll": _poll(detail),
    }


@get("/events/{event_id:str}", include_in_schema=False)
async def event_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    event_id: FromPath[str],
    flash_id: Annotated[str, QueryParameter(name="flash")] = "",
) -> Template:
    shown = await flash.take(runtime, flash_id)
    notice, error = str(shown.get("notice", "")), bool(shown.get("error"))
    return page(request, "events/detail.html", notice=notice, notice_error=error, **await _detail(runtime, event_id))


@get("/events/{event_id:str}/runs", include_in_schema=False)
async def event_runs(request: Request[Any, Any, Any], runtime: Runtime, event_id: FromPath[str]) -> Template:
    """The runs section again (polled while a run is not final)."""
    return page(request, "events/_runs.html", oob=False, fragment=True, **await _detail(runtime, event_id))


@get("/events/{event_id:str}/explain", include_in_schema=False)
async def event_explain(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    event_id: FromPath[str],
    rule: Annotated[str, QueryParameter(description="A loaded rule's id.")],
) -> Template:
    """Why one rule matched the event or not, operand by operand (loaded when its section is opened)."""
    unloaded = "rule {rule!r} is not loaded now; reload the page to see the rules in force"
    result = await explain_loaded(runtime.sessions, runtime.rules.current, rule, event_id, unloaded=unloaded)
    return page(request, "events/_explain.html", x=result)


async def _after_action(
    request: Request[Any, Any, Any], runtime: Runtime, event_id: str, notice: str, error: bool
) -> Response[Any]:
    """htmx gets the notice and the runs; a plain form post a 303 to the event page (Post/Redirect/Get)."""
    if not _htmx(request):
        done = await flash.redirect(runtime, f"/events/{event_id}", notice=notice, error=error)
        if done is not None:
            return done
    context = await _detail(runtime, event_id)
    if _htmx(request):
        return page(
            request, "events/_action_result.html", notice=notice, notice_error=error, oob=True, fragment=True, **context
        )
    return page(request, "events/detail.html", notice=notice, notice_error=error, **context)


async def _event_of(runtime: Runtime, run_id: str) -> str | None:
    """The id of the run's event (None: there is no such run)."""
    async with runtime.sessions() as session:
        event_id: str | None = await session.scalar(select(Run.event_id).where(Run.id == run_id))
    return event_id


async def _refused(
    exc: ClientError,
    *,
    request: Request[Any, Any, Any],
    runtime: Runtime,
    event_id: str = "",
    run_id: str = "",
    **_: Any,
) -> Response[Any]:
    """A replay or retry that cannot be done: its title and why, as the notice beside the event's runs."""
    event_id = event_id or await _event_of(runtime, run_id) or ""
    if not event_id:
        raise NotFoundException(str(exc))
    return await _after_action(request, runtime, event_id, f"{exc.title}: {exc}", True)


def _checked(data: Mapping[str, Any], name: str) -> bool:
    return str(data.get(name, "")).lower() in ("on", "true", "1", "yes")


@post("/events/{event_id:str}/replay", include_in_schema=False, status_code=200)
@refusals(_refused)
async def replay_button(
    request: Request[Any, Any, Any], runtime: Runtime, event_id: FromPath[str], data: Form
) -> Response[Any]:
    result = await replay_event(
        runtime.engine,
        enqueuer(runtime.redis),
        runtime.rules.current,
        event_id,
        resend=_checked(data, "resend"),
        actor=principal_of(request).actor,
    )
    runs = result["runs"]
    if not runs:
        notice = "Replayed: no rule in force matches this event now, so nothing was sent."
    else:
        names = ", ".join(r["rule_id"] for r in runs)
        notice = f"Replayed: {len(runs)} new run(s) ({names})."
        if result["skipped_sends"]:
            notice += f" {result['skipped_sends']} step(s) already sent were skipped (tick “send again” to resend)."
    for old in result["superseded"]:
        notice += (
            f" Run {old['id']} of {old['rule_id']} was still {old['was']}: its pending retry is cancelled and the"
            " new run replaces it (marked superseded)."
        )
    for busy in result["still_running"]:
        notice += f" Run {busy['id']} of {busy['rule_id']} is {busy['status']} right now and may deliver too."
    return await _after_action(request, runtime, event_id, notice, False)


@post("/runs/{run_id:str}/retry", include_in_schema=False, status_code=200)
@refusals(_refused)
async def retry_button(
    request: Request[Any, Any, Any], runtime: Runtime, run_id: FromPath[str], data: Form
) -> Response[Any]:
    start = data.get("from") == "start"
    event_id = await _event_of(runtime, run_id)
    if event_id is None:
        raise NotFoundException(f"no run {run_id!r}")
    result = await retry_run(
        runtime.engine,
        enqueuer(runtime.redis),
        runtime.rules.current,
        run_id,
        start=start,
        resend=_checked(data, "resend"),
        actor=principal_of(request).actor,
    )
    if start:
        notice = f"Run {run_id} started over as run {result['run_id']}."
    else:
        notice = f"Run {run_id} is retried from its failed step."
    return await _after_action(request, runtime, event_id, notice, False)


@post("/runs/{run_id:str}/retry-now", include_in_schema=False, status_code=200)
@refusals(_refused)
async def retry_now_button(request: Request[Any, Any, Any], runtime: Runtime, run_id: FromPath[str]) -> Any:
    """Try a retrying or held run now (router.pipeline.runwait.retry_now): the same run, its attempts counting on."""
    result = await runwait.retry_now(runtime.engine, enqueuer(runtime.redis), run_id, actor=principal_of(request).actor)
    notice = f"Run {run_id} is being tried now (attempt {result['attempt']}); the page updates as it goes."
    if result["was"] == RunStatus.HELD:
        notice += " Its destination may still be paused: then it is held again until someone resumes it."
    return await _after_action(request, runtime, result["event_id"], notice, False)


HANDLERS = [
    events_page,
    event_rows,
    event_page,
    event_runs,
    event_explain,
    replay_button,
    retry_button,
    retry_now_button,
]
