"""``router poll SOURCE --once [--dry-run]``: poll a source now and print what it emitted (or would emit).

It works on the database and Redis named by ROUTER_DATABASE_URL and ROUTER_REDIS_URL, takes the
source's lease like a worker (so it never runs beside a worker's poll of the same source), and goes
through the same egress guard (ROUTER_EGRESS_ALLOW). ``--dry-run`` stores nothing, takes no lease and
moves no cursor.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from router.polling.compile import CompiledPoll
from router.polling.runner import PollDeps, PollReport, default_holder, poll_once
from router.records.serialize import fields

if TYPE_CHECKING:
    from router.rules.compiled import CompiledSource, RuleSet

PREVIEW_CHARS = 100


def _short(item: Any) -> str:
    text = json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _when(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else "-"


def report_text(r: PollReport, dry_run: bool) -> str:
    """What `router poll` prints."""
    head = f"{r.source} ({r.kind}{', dry run: nothing stored' if dry_run else ''}): "
    lines: list[str] = []
    if r.kind == "schedule":
        lines.append(head + (f"{len(r.new)} tick event(s) emitted" if r.outcome == "ok" else "no tick due"))
        return "\n".join(lines + [f"  note: {n}" for n in r.notes])
    counts = f"{r.pages} page(s), {r.items} item(s)"
    if dry_run:
        lines.append(head + f"{counts}: {len(r.would_emit)} would be emitted, {r.duplicates} already stored")
        new = {f.key for f in r.would_emit}
        for f in r.found:
            lines.append(f"  {'+' if f.key in new else '='} {f.key}  {_short(f.item)}")
        lines.append(f"cursor after this poll: {json.dumps(r.cursor, default=str)}")
    else:
        lines.append(head + f"{counts}, {len(r.new)} new event(s), {r.duplicates} already stored ({r.outcome})")
        if r.new:
            lines.append(f"  event ids: {', '.join(r.new)}")
        lines.append(f"cursor: {json.dumps(r.cursor, default=str)}; next poll due {_when(r.next_poll_at)}")
    if r.outcome == "not_modified":
        lines.append("  not modified (304): the first page's ETag is unchanged")
    lines += [f"  note: {n}" for n in r.notes]
    if r.error:
        lines.append(f"error: {r.error}")
    return "\n".join(lines)


def report_json(r: PollReport) -> dict[str, Any]:
    return {
        **fields(r, "source kind outcome pages items"),
        "new_events": r.new,
        "already_stored": r.duplicates,
        "would_emit": [{"id": f.key, "item": f.item} for f in r.would_emit],
        **fields(r, "error notes cursor"),
        "next_poll_at": _when(r.next_poll_at) if r.next_poll_at else None,
        "duration_ms": r.duration_ms,
    }


def _pulled_source(ruleset: RuleSet, source: str, dry_run: bool) -> CompiledSource:
    """The source ``router poll`` may poll, or the ClickException saying why not."""
    src = ruleset.sources.get(source)
    if src is None:
        known = ", ".join(sorted(s.id for s in ruleset.sources.values() if s.pull is not None)) or "none"
        raise click.ClickException(f"no source {source!r}; sources that poll or fire on a schedule: {known}")
    if src.pull is None:
        raise click.ClickException(f"source {source!r} takes webhooks; it has no poll, reconcile or schedule")
    if dry_run and not isinstance(src.pull, CompiledPoll):
        raise click.ClickException(f"source {source!r} is a schedule: there is nothing to fetch")
    return src


@click.command(name="poll")
@click.argument("source")
@click.option("--once", is_flag=True, help="Poll once now, whether or not it is due, then exit.")
@click.option("--dry-run", is_flag=True, help="Fetch and print what would be emitted; store nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def poll_command(source: str, once: bool, dry_run: bool, fmt: str) -> None:
    """Poll SOURCE (a poll, reconcile or schedule source) and print what it emitted.

    Without --once it polls on the source's schedule until interrupted, as a worker would for this one
    source. Exit status 1 when the poll failed or the source is busy.
    """
    from router.cli.common import prepare_database, settings_or_exit
    from router.logs import configure
    from router.pipeline.outbound import create_client
    from router.records import db
    from router.worker import create_redis, load_rules

    if dry_run and not once:
        raise click.UsageError("--dry-run polls once: add --once")
    settings = settings_or_exit()
    configure(settings.log_level)  # log lines go to stderr: stdout is the report (JSON with --format json)
    prepare_database(settings)

    async def main() -> int:
        engine = db.create_engine(settings.database_url)
        http = create_client(settings)
        redis = create_redis(settings.redis_url) if settings.redis_url and not dry_run else None
        try:
            holder = await load_rules(settings, sessions=db.sessionmaker(engine))
            if holder.errors and not holder.loaded:
                raise click.ClickException("the rules do not load:\n" + "\n".join(holder.errors))
            ruleset = holder.current
            src = _pulled_source(ruleset, source, dry_run)
            deps = PollDeps(engine=engine, settings=settings, http=http, redis=redis, holder=f"cli:{default_holder()}")
            while True:
                report = await poll_once(deps, src, ruleset, trigger="cli", force=once, dry_run=dry_run)
                if report.outcome == "busy":
                    click.echo(f"{source}: another poll of this source is running now; try again shortly", err=True)
                    if once:
                        return 1
                elif report.outcome != "not_due" or once:
                    if fmt == "json":
                        click.echo(json.dumps(report_json(report), indent=2, default=str))
                    else:
                        click.echo(report_text(report, dry_run))
                if once:
                    if redis is None and report.new and not dry_run:
                        click.echo("note: ROUTER_REDIS_URL is not set: the events are stored; a worker routes them")
                    return 1 if report.error else 0
                await asyncio.sleep(1.0)
        finally:
            await http.aclose()
            if redis is not None:
                await redis.aclose(close_connection_pool=True)
            await engine.dispose()

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)
