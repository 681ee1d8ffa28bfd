"""The ``router`` command: its group, check, send, schema, test, what-if and db upgrade; every other module's
commands added to it (processes: dev, serve, worker; delivery; users; ops; polling)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import click

from router.cli import delivery, ops, processes, users
from router.cli.common import data_dir, prepare_database, safe_url, settings_or_exit
from router.errors import RuleSetError
from router.polling.cli import poll_command
from router.rules.publicurl import DEFAULT_HOST, DEFAULT_PORT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="event-router")
def main() -> None:
    """Event Router: receive webhooks, store them, match rules, deliver to Slack, email and APIs."""


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--allow-missing-secrets", is_flag=True, help="Do not fail on secrets whose variable is unset.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check(directory: Path | None, allow_missing_secrets: bool, fmt: str) -> None:
    """Load every rule file and compile every expression and template; exit 1 on any problem."""
    from router.rules.ruleset import load_ruleset

    folder = directory or settings_or_exit().rules_dir
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

    url, found_by = send_target(url, data_dir(settings_or_exit()))
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
            rs = load_ruleset(settings_or_exit().rules_dir, allow_missing_secrets=True)
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

    settings = settings_or_exit()
    prepare_database(settings)
    click.echo(f"database at {safe_url(settings.database_url)} is up to date")


@main.command(name="test")
@click.argument("directory", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="List the cases that pass too.")
def test_command(directory: Path | None, fmt: str, verbose: bool) -> None:
    """Run the rule tests (*.test.yaml) of the folder: no network, no Redis; exit 1 on any failure."""
    from router.tryout.ruletest import run_folder

    output, code = run_folder(directory or settings_or_exit().rules_dir, fmt, verbose)
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

    settings = settings_or_exit()

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


def _add_commands() -> None:
    for command in (*processes.COMMANDS, *delivery.COMMANDS, *users.COMMANDS, poll_command):
        main.add_command(command)
    for command in ops.DB_COMMANDS:
        db_group.add_command(command)


_add_commands()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
