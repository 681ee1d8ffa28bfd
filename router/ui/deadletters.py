"""``/dead-letters``: failed and dead runs, and retrying many at once after a preview and a confirmation.

Bulk retry is the two-step flow of ``router.records.replay``: the preview counts the runs and the steps that
would be sent and gives a token for exactly that selection; the confirmation retries only if the
selection still has the same runs. The selection is the ticked runs, or with none ticked every run
the filter selects. The filter's time is fixed when the page is drawn, so preview and confirmation
see the same selection.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template

from router.access.guard import principal_of
from router.errors import ClientError
from router.pipeline.queue import enqueuer
from router.records.deadletters import Filters, bulk_retry, dead_letters, preview
from router.records.eventlog import as_utc
from router.records.models import utcnow
from router.records.status import RUN_FAILED
from router.rules.compiled import RuleSet
from router.runtime import Runtime
from router.ui import flash
from router.ui.forms import Form, refusals
from router.ui.render import page

LIMIT = 100
SINCE = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
MAX_TICKED = 1000


class Selection:
    """The filter (and ticked runs) as given, checked; ``error`` names the field and the fix."""

    def __init__(
        self, rule: str, source: str, status: str, since_at: str, runs: list[str] | None = None, tests: bool = False
    ) -> None:
        self.rule, self.source, self.status, self.tests = rule.strip()[:64], source.strip()[:64], status.strip(), tests
        self.since_at, self.runs, self.error = since_at.strip(), [r[:26] for r in (runs or [])][:MAX_TICKED], ""
        if self.status and self.status not in RUN_FAILED:
            self.error = f"status: {self.status!r} is not failed or dead; showing both"
            self.status = ""
        self.since: datetime | None = None
        if self.since_at:
            try:
                self.since = as_utc(datetime.fromisoformat(self.since_at))
            except ValueError:
                self.error = f"since: {self.since_at!r} is not a date and time; reload the page"
                self.since_at = ""

    def filters(self, ticked: bool = True) -> Filters:
        return Filters(
            self.rule or None,
            self.source or None,
            self.since,
            None,
            (self.status,) if self.status else RUN_FAILED,
            tuple(self.runs) if ticked else (),
            self.tests,
        )


def _form(data: dict[str, Any]) -> tuple[Selection, bool, bool]:
    runs = data.get("run", [])
    runs = [runs] if isinstance(runs, str) else [str(r) for r in runs]
    field = {name: str(data.get(name, "")) for name in ("rule", "source", "status", "since_at", "tests")}
    tests = field["tests"].lower() in ("on", "true", "1")
    selection = Selection(field["rule"], field["source"], field["status"], field["since_at"], runs, tests)
    return selection, data.get("from") == "start", str(data.get("resend", "")).lower() in ("on", "true", "1")


async def _rows(runtime: Runtime, selection: Selection) -> list[dict[str, Any]]:
    rows = await dead_letters(runtime.engine, selection.filters(ticked=False), LIMIT)
    for row in rows:
        last = row["attempts"][-1] if row["attempts"] else None
        row["last_error"] = row["error"] or (last["error"] if last else None)
    return rows


def _context(runtime: Runtime, selection: Selection, since: str) -> dict[str, Any]:
    rules: RuleSet = runtime.rules.current
    return {
        "sel": selection,
        "since": since,
        "since_choices": list(SINCE),
        "rule_ids": sorted(set(rules.rules) | ({selection.rule} if selection.rule else set())),
        "sources": sorted(set(rules.sources) | ({selection.source} if selection.source else set())),
        "limit": LIMIT,
    }


@get("/dead-letters", include_in_schema=False)
async def dead_letters_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    rule: FromQuery[str] = "",
    source: FromQuery[str] = "",
    status: FromQuery[str] = "",
    since: Annotated[str, QueryParameter(description="1h, 24h, 7d or 30d.")] = "",
    tests: Annotated[str, QueryParameter(description="on: include Send-test runs.")] = "",
    flash_id: Annotated[str, QueryParameter(name="flash")] = "",
) -> Template:
    since_error = ""
    if since and since not in SINCE:
        since_error, since = f"since: {since!r} is not one of {', '.join(SINCE)}; showing all times", ""
    since_at = (utcnow() - SINCE[since]).isoformat() if since else ""
    selection = Selection(rule, source, status, since_at, tests=tests.lower() in ("on", "true", "1"))
    selection.error = selection.error or since_error
    shown = await flash.take(runtime, flash_id)
    return page(
        request,
        "dead_letters.html",
        rows=await _rows(runtime, selection),
        bulk=None,
        notice=str(shown.get("notice", "")),
        notice_error=bool(shown.get("error")),
        **_context(runtime, selection, since),
    )


def _describe(selection: Selection) -> str:
    if selection.runs:
        return f"the {len(selection.runs)} ticked run(s)"
    parts = [f"{name} {value}" for name, value in (("rule", selection.rule), ("source", selection.source)) if value]
    if selection.since:
        parts.append(f"since {selection.since:%Y-%m-%d %H:%M} UTC")
    status = selection.status or "failed or dead"
    return f"every {status} run" + (f" ({', '.join(parts)})" if parts else "")


@post("/dead-letters/preview", include_in_schema=False, status_code=200)
async def bulk_preview(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Template:
    """Count what a bulk retry would do, and offer to confirm it."""
    selection, start, resend = _form(data)
    bulk: dict[str, Any] = {"start": start, "resend": resend, "what": _describe(selection), "error": selection.error}
    if not selection.error:
        bulk |= await preview(runtime.engine, selection.filters(), start=start, ruleset=runtime.rules.current)
    return await _answer(request, runtime, selection, "events/_bulk_preview.html", bulk=bulk)


async def _refused(
    exc: ClientError, *, request: Request[Any, Any, Any], runtime: Runtime, data: dict[str, Any]
) -> Template:
    """A bulk retry that cannot be done (the selection changed since its preview): the notice says why."""
    selection, _start, _resend = _form(data)
    return await _answer(request, runtime, selection, notice=f"Not retried: {exc}.", notice_error=True)


@post("/dead-letters/retry", include_in_schema=False, status_code=200)
@refusals(_refused)
async def bulk_confirm(request: Request[Any, Any, Any], runtime: Runtime, data: Form) -> Response[Any]:
    """Retry the previewed selection, if it is unchanged (the token matches)."""
    selection, start, resend = _form(data)
    token = str(data.get("confirm", ""))
    if selection.error:
        return await _answer(request, runtime, selection, notice=selection.error, notice_error=True)
    result = await bulk_retry(
        runtime.engine,
        enqueuer(runtime.redis),
        runtime.rules.current,
        selection.filters(),
        token,
        start=start,
        resend=resend,
        actor=principal_of(request).actor,
    )
    notice = f"Retried {result['retried']} run(s)" + (
        f"; {len(result['errors'])} could not be retried: " + "; ".join(e["error"] for e in result["errors"][:5])
        if result["errors"]
        else "."
    )
    if not request.headers.get("hx-request"):  # a plain form post: Post/Redirect/Get
        done = await flash.redirect(runtime, "/dead-letters", notice=notice, error=bool(result["errors"]))
        if done is not None:
            return done
    return await _answer(request, runtime, selection, notice=notice, notice_error=bool(result["errors"]))


async def _answer(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    selection: Selection,
    template: str = "events/_bulk_result.html",
    *,
    bulk: dict[str, Any] | None = None,
    notice: str = "",
    notice_error: bool = False,
) -> Template:
    """htmx gets the fragment (and the list refreshed); a plain form post gets the whole page."""
    context = _context(runtime, selection, "") | {"bulk": bulk, "notice": notice, "notice_error": notice_error}
    shown = Selection(selection.rule, selection.source, selection.status, selection.since_at, tests=selection.tests)
    rows = await _rows(runtime, shown)
    if request.headers.get("hx-request"):
        return page(request, template, rows=rows, oob=template.endswith("_bulk_result.html"), **context)
    return page(request, "dead_letters.html", rows=rows, **context)


HANDLERS = [dead_letters_page, bulk_preview, bulk_confirm]
