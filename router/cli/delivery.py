"""`router dead-letters`, `router replay`, `router retry` and `router retry-bulk`: the delivery API from a shell.

They talk to the database and Redis named by ROUTER_DATABASE_URL and ROUTER_REDIS_URL, so they work
with no web process running; a worker picks the work up. Replays and retries are audited as
``cli:<os user>``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import click

from router.cli.common import cli_actor, prepare_database, settings_or_exit
from router.pipeline.queue import enqueuer
from router.records.deadletters import Filters, bulk_retry, dead_letters, preview
from router.records.replay import ReplayError, replay_event, retry_run
from router.records.status import RUN_FAILED
from router.settings import Settings


def _run(work: Callable[[Settings, Any, Any], Awaitable[Any]]) -> Any:
    """Open the database, Redis and the rules for one command; turn every refusal into one clear line."""
    from router.records import db
    from router.worker import create_redis, load_rules

    settings = settings_or_exit()
    prepare_database(settings)

    async def main() -> Any:
        engine = db.create_engine(settings.database_url)
        redis = create_redis(settings.redis_url)
        try:
            rules = await load_rules(settings, sessions=db.sessionmaker(engine))
            return await work(settings, engine, (enqueuer(redis), rules.current))
        finally:
            await redis.aclose(close_connection_pool=True)
            await engine.dispose()

    try:
        return asyncio.run(main())
    except ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    except (OSError, ConnectionError) as exc:
        raise click.ClickException(f"cannot reach Redis at ROUTER_REDIS_URL: {exc}") from None


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


filters = [
    click.option("--rule", help="Only runs of this rule."),
    click.option("--source", help="Only events of this source."),
    click.option("--since", type=click.DateTime(), help="Events received at or after (UTC)."),
    click.option("--until", type=click.DateTime(), help="Events received before (UTC)."),
    click.option(
        "--status",
        type=click.Choice(["failed", "dead"]),
        multiple=True,
        help="failed (permanent error) or dead (retries exhausted); default both.",
    ),
]


def with_filters(fn: Any) -> Any:
    for option in reversed(filters):
        fn = option(fn)
    return fn


def _filters(
    rule: str | None, source: str | None, since: datetime | None, until: datetime | None, status: tuple[str, ...]
) -> Filters:
    from datetime import UTC

    def utc(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    return Filters(rule, source, utc(since), utc(until), status or RUN_FAILED)


@click.command(name="dead-letters")
@with_filters
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
def dead_letters_command(
    rule: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    status: tuple[str, ...],
    limit: int,
) -> None:
    """List failed and dead runs with every attempt's error (JSON)."""
    f = _filters(rule, source, since, until, status)
    _echo(_run(lambda _s, engine, _x: dead_letters(engine, f, limit)))


@click.command(name="replay")
@click.argument("event_id")
@click.option("--resend", is_flag=True, help="Send again steps that already succeeded for this event.")
def replay_command(event_id: str, resend: bool) -> None:
    """Route a stored event again through the rules in force."""
    actor = cli_actor()
    _echo(_run(lambda _s, engine, x: replay_event(engine, x[0], x[1], event_id, resend=resend, actor=actor)))


@click.command(name="retry")
@click.argument("run_id")
@click.option(
    "--from",
    "start_from",
    type=click.Choice(["failed_step", "start"]),
    default="failed_step",
    show_default=True,
    help="Resume at the failed step, or start over with the current rule.",
)
@click.option("--resend", is_flag=True, help="With --from start: send again steps that already succeeded.")
def retry_command(run_id: str, start_from: str, resend: bool) -> None:
    """Retry one failed or dead run."""
    start, actor = start_from == "start", cli_actor()
    _echo(_run(lambda _s, engine, x: retry_run(engine, x[0], x[1], run_id, start=start, resend=resend, actor=actor)))


@click.command(name="retry-bulk")
@with_filters
@click.option(
    "--from", "start_from", type=click.Choice(["failed_step", "start"]), default="failed_step", show_default=True
)
@click.option("--resend", is_flag=True, help="With --from start: send again steps that already succeeded.")
@click.option("--yes", is_flag=True, help="Do it without asking (for scripts).")
def retry_bulk_command(
    rule: str | None,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    status: tuple[str, ...],
    start_from: str,
    resend: bool,
    yes: bool,
) -> None:
    """Retry every failed or dead run that matches, after showing how many and asking."""
    f = _filters(rule, source, since, until, status)
    start = start_from == "start"
    summary = _run(lambda _s, engine, x: preview(engine, f, start=start, ruleset=x[1]))
    click.echo(
        f"{summary['runs']} run(s) of {summary['events']} event(s), {summary['retryable']} can be retried; "
        f"completed sends that would be repeated: {summary['would_repeat_sends'] if resend else 0} ({summary['note']})"
    )
    for plan in summary["plans"]:
        if plan["cannot"]:
            click.echo(f"  run {plan['run_id']} cannot be retried: {plan['cannot']}")
    if summary["retryable"] == 0:
        return
    if not yes and not click.confirm("Retry them?", default=False):
        raise click.ClickException("nothing retried")
    token = summary["confirm"]
    actor = cli_actor()
    _echo(_run(lambda _s, engine, x: bulk_retry(engine, x[0], x[1], f, token, start=start, resend=resend, actor=actor)))


COMMANDS = (dead_letters_command, replay_command, retry_command, retry_bulk_command)
