"""Evaluating alerts: when each fires and resolves, and how the notification goes out (what each kind
watches: router/ops/alert_kinds.py).

Each round (router/ops/chores.py, one worker per ``ROUTER_ALERT_INTERVAL``) every alert of the rule set observes
its subjects and each subject's row in ``alert_states`` moves:

    ok ──(condition)──> pending ──(held for `for`)──> firing ──(condition gone)──> ok

A move to ``firing`` or back to ``ok`` from ``firing`` is a conditional UPDATE; the worker whose UPDATE
changed the row stores, in the same transaction, an event in the internal source ``_alerts`` (deduplicated
on alert, subject, firing time and status). The alert's ``notify`` rule (router/rules/alerts.py) delivers it
with the actions' retries. So an alert notifies once when it fires, stays quiet while it fires, and
notifies once when it resolves, however many workers evaluate.

``now`` is a parameter throughout, so tests run the clock forward without waiting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from router.ops.alert_kinds import KINDS, Context, Observation
from router.pipeline import queue
from router.pipeline.ingest import Incoming, new_event_row
from router.pipeline.store import insert_events
from router.records.models import AlertState
from router.rules.alerts import SOURCE, CompiledAlert
from router.rules.compiled import RuleSet

log = structlog.get_logger("router.alerts")

# -- the state machine ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transition:
    alert: str
    subject: str
    status: str  # firing | resolved
    event_id: str | None


async def evaluate(
    engine: AsyncEngine,
    redis: Any,
    ruleset: RuleSet,
    rule_errors: Sequence[str] = (),
    *,
    now: datetime | None = None,
    lookback: float = 600.0,
) -> list[Transition]:
    """One round over every alert of ``ruleset``; returns the notifications it sent (fired or resolved)."""
    now = now or datetime.now(UTC)
    alerts: Mapping[str, CompiledAlert] = ruleset.alerts
    async with engine.begin() as conn:  # states of alerts no longer configured go
        await conn.execute(delete(AlertState).where(AlertState.alert_id.not_in(list(alerts) or [""])))
    done: list[Transition] = []
    for alert in alerts.values():
        async with engine.connect() as conn:
            rows = {
                r.subject: r for r in (await conn.execute(select(AlertState).where(AlertState.alert_id == alert.id)))
            }
        ctx = Context(engine, redis, ruleset, rule_errors, now, lookback, rows)  # type: ignore[arg-type]
        try:
            observations: list[Observation] = await KINDS[alert.kind](ctx, alert)
        except Exception as exc:
            log.error("alert_evaluation_failed", alert=alert.id, error=f"{type(exc).__name__}: {exc}")
            continue
        seen = {obs.subject for obs in observations}
        # a subject not observed this round: no news for a destination (no attempts lately), gone for the rest
        missing = None if alert.kind == "destination_failing" else False
        observations += [Observation(subject, missing, "no longer watched") for subject in rows if subject not in seen]
        for obs in observations:
            step = await _step(engine, alert, rows.get(obs.subject), obs, now)
            if step is not None:
                done.append(step)
    fresh = [t.event_id for t in done if t.event_id]
    if fresh:
        try:
            await queue.events_stored(redis, fresh)
        except Exception as exc:  # Redis away: the workers' sweep routes stored events later
            log.warning("alert_enqueue_failed", error=str(exc), events=len(fresh))
    return done


async def _step(
    engine: AsyncEngine, alert: CompiledAlert, row: Any, obs: Observation, now: datetime
) -> Transition | None:
    status = row.status if row is not None else None
    async with engine.begin() as conn:
        if row is None:
            await conn.execute(
                insert(AlertState).values(
                    alert_id=alert.id, subject=obs.subject, kind=alert.kind, status="ok", created_at=now, updated_at=now
                )
            )
            status = "ok"
        if obs.bad is None:  # no news: a pending condition may still have lasted long enough
            if status == "pending" and row.since is not None and _held(alert, row.since, now):
                return await _fire(conn, alert, obs, row.since, now, summary=row.summary, detail=row.detail)
            return None
        if obs.bad:
            since = obs.since or (row.since if row is not None and status in ("pending", "firing") else None) or now
            if status == "firing":
                await _note(conn, alert, obs, now)
                return None
            if obs.at_once or _held(alert, since, now):
                return await _fire(conn, alert, obs, since, now)
            await conn.execute(
                _where(alert, obs.subject).values(
                    status="pending",
                    since=since,
                    updated_at=now,
                    summary=obs.summary,
                    detail=obs.detail,
                    value=obs.value,
                )
            )
            return None
        if status == "firing":
            return await _resolve(conn, alert, obs, now)
        if status == "pending":
            await conn.execute(_where(alert, obs.subject).values(status="ok", since=None, updated_at=now))
        return None


def _held(alert: CompiledAlert, since: datetime, now: datetime) -> bool:
    return (now - since).total_seconds() >= alert.for_seconds


def _where(alert: CompiledAlert, subject: str) -> Any:
    return update(AlertState).where(AlertState.alert_id == alert.id, AlertState.subject == subject)


async def _note(conn: AsyncConnection, alert: CompiledAlert, obs: Observation, now: datetime) -> None:
    await conn.execute(_where(alert, obs.subject).values(updated_at=now, value=obs.value, summary=obs.summary))


async def _fire(
    conn: AsyncConnection,
    alert: CompiledAlert,
    obs: Observation,
    since: datetime,
    now: datetime,
    *,
    summary: str | None = None,
    detail: str | None = None,
) -> Transition | None:
    summary, detail = summary or obs.summary, detail if detail is not None else obs.detail
    moved = await conn.execute(
        _where(alert, obs.subject)
        .where(AlertState.status != "firing")
        .values(
            status="firing",
            since=since,
            fired_at=now,
            resolved_at=None,
            updated_at=now,
            summary=summary,
            detail=detail,
            value=obs.value,
        )
    )
    if moved.rowcount != 1:  # another worker fired it
        return None
    body = _body(alert, obs.subject, "firing", summary, detail, obs.value, since, now, None)
    event_id = await _store(conn, alert, obs.subject, body, f"{now.isoformat()}|firing")
    log.warning("alert_fired", alert=alert.id, subject=obs.subject, summary=summary)
    return Transition(alert.id, obs.subject, "firing", event_id)


async def _resolve(conn: AsyncConnection, alert: CompiledAlert, obs: Observation, now: datetime) -> Transition | None:
    row = (
        await conn.execute(select(AlertState).where(AlertState.alert_id == alert.id, AlertState.subject == obs.subject))
    ).one()
    moved = await conn.execute(
        _where(alert, obs.subject)
        .where(AlertState.status == "firing")
        .values(status="ok", since=None, resolved_at=now, updated_at=now, value=obs.value)
    )
    if moved.rowcount != 1:
        return None
    fired_at = row.fired_at or now
    body = _body(alert, obs.subject, "resolved", obs.summary, obs.detail, obs.value, row.since, fired_at, now)
    event_id = await _store(conn, alert, obs.subject, body, f"{fired_at.isoformat()}|resolved")
    log.info("alert_resolved", alert=alert.id, subject=obs.subject, summary=obs.summary)
    return Transition(alert.id, obs.subject, "resolved", event_id)


def _body(
    alert: CompiledAlert,
    subject: str,
    status: str,
    summary: str,
    detail: str | None,
    value: float | None,
    since: datetime | None,
    fired_at: datetime,
    resolved_at: datetime | None,
) -> dict[str, Any]:
    return {
        "alert": alert.id,
        "kind": alert.kind,
        "status": status,
        "subject": subject,
        "summary": f"[{status.upper()}] {alert.id}: {summary}",
        "detail": detail or "",
        "description": alert.description,
        "value": value,
        "since": since.isoformat() if since else None,
        "fired_at": fired_at.isoformat(),
        "resolved_at": resolved_at.isoformat() if resolved_at else None,
        "location": alert.location,
    }


async def _store(conn: AsyncConnection, alert: CompiledAlert, subject: str, body: dict[str, Any], key: str) -> str:
    raw = json.dumps(body).encode()
    req = Incoming(SOURCE, "ALERT", f"/alerts/{alert.id}", {"content-type": "application/json"}, {}, raw)
    row = new_event_row(None, req, body, dedupe=f"{alert.id}|{subject}|{key}")
    ((event_id, duplicate),) = await insert_events(conn, [row])
    return "" if duplicate else event_id


# -- what the UI and the API show -------------------------------------------------------------------------


async def overview(engine: AsyncEngine, ruleset: RuleSet) -> list[dict[str, Any]]:
    """Every configured alert with its subjects' states, firing ones first."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(AlertState).order_by(AlertState.alert_id, AlertState.subject))).all()
    states: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        states.setdefault(r.alert_id, []).append(
            {
                "subject": r.subject,
                "status": r.status,
                "since": _iso(r.since),
                "fired_at": _iso(r.fired_at),
                "resolved_at": _iso(r.resolved_at),
                "summary": r.summary,
                "detail": r.detail,
                "value": r.value,
            }
        )
    out = []
    for alert in ruleset.alerts.values():
        mine = states.get(alert.id, [])
        out.append(
            {
                "id": alert.id,
                "kind": alert.kind,
                "description": alert.description,
                "location": alert.location,
                "status": "firing"
                if any(s["status"] == "firing" for s in mine)
                else ("pending" if any(s["status"] == "pending" for s in mine) else "ok"),
                "states": mine,
                "resolved_at": max((s["resolved_at"] for s in mine if s["resolved_at"]), default=None),
            }
        )
    order = {"firing": 0, "pending": 1, "ok": 2}
    return sorted(out, key=lambda a: (order[a["status"]], a["id"]))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


async def chore(settings: Any, state: Any) -> list[Transition]:
    """The workers' round (router/ops/chores.py)."""
    ruleset = state.rules.current
    if not ruleset.alerts:
        return []
    lookback = max(600.0, 3 * settings.alert_interval)
    return await evaluate(state.engine, state.redis, ruleset, list(state.rules.errors), lookback=lookback)
