"""The ``router`` command: check, send (signed), schema, db upgrade and settings errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer
from sqlalchemy import inspect

from router.cli.commands import main
from router.errors import SettingsError
from router.records import db
from router.rules.schema import json_schema_text
from router.settings import load_settings
from tests.conftest import write_rules
from tests.helpers import github_signature

GOOD = {
    "gh.yaml": """
    sources:
      - id: gh
        verify: {scheme: github, secret: "${CLI_GH_SECRET:-cli-secret}"}
    rules:
      - id: r
        source: gh
        steps: [{id: s, action: emit, with: {source: gh}}]
    """
}


def test_check_passes_and_counts(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "rules", GOOD)
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 0, result.output
    assert "ok: 1 source(s), 1 rule(s) in 1 file(s)" in result.output


def test_check_fails_with_located_lines_and_json(tmp_path: Path) -> None:
    folder = write_rules(
        tmp_path / "rules",
        {
            "bad.yaml": "rules:\n  - id: r\n    source: gh\n    filter: 'a ==='\n"
            "    steps: [{id: s, action: emit, with: {source: gh}}]\n"
        },
    )
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any(
        line.endswith("bad.yaml:3:13: rules[0].source: unknown source 'gh'; defined sources: none defined")
        for line in lines
    ), lines
    assert any("bad.yaml:4:13: rules[0].filter: invalid JMESPath" in line for line in lines), lines
    assert lines[-1] == "3 problem(s) found"
    as_json = CliRunner().invoke(main, ["check", str(folder), "--format", "json"])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert data["ok"] is False
    assert {e["path"] for e in data["errors"]} == {
        "rules[0].source",
        "rules[0].filter",
        "rules[0].steps[0].with.source",
    }
    assert all(e["line"] > 0 and e["col"] > 0 for e in data["errors"])


def test_check_missing_secret_and_allow_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEEDED_SECRET", raising=False)
    folder = write_rules(
        tmp_path / "rules",
        {"s.yaml": "sources:\n  - id: s\n    verify: {scheme: github, secret: '${NEEDED_SECRET}'}\n"},
    )
    failing = CliRunner().invoke(main, ["check", str(folder)])
    assert failing.exit_code == 1
    assert "environment variable NEEDED_SECRET is not set" in failing.output
    allowed = CliRunner().invoke(main, ["check", str(folder), "--allow-missing-secrets"])
    assert allowed.exit_code == 0, allowed.output


def test_send_signs_with_the_source_scheme(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_rules(tmp_path / "rules", GOOD)
    monkeypatch.setenv("ROUTER_RULES_DIR", str(folder))
    payload = tmp_path / "push.json"
    payload.write_bytes(b'{"ref": "refs/heads/main"}')
    httpserver.expect_request("/hooks/gh", method="POST").respond_with_json({"event_id": "E1"}, status=202)
    result = CliRunner().invoke(
        main, ["send", "gh", str(payload), "--url", httpserver.url_for(""), "-H", "X-GitHub-Event: push"]
    )
    assert result.exit_code == 0, result.output
    answer = result.stdout[result.stdout.index("202 ") + 4 :]
    assert json.loads(answer) == {"event_id": "E1"}
    (request, _) = httpserver.log[0]
    expected = github_signature(b'{"ref": "refs/heads/main"}', "cli-secret")
    assert request.headers["X-Hub-Signature-256"] == expected
    assert request.headers["X-GitHub-Event"] == "push"
    assert request.headers["Content-Type"] == "application/json"
    assert request.get_data() == b'{"ref": "refs/heads/main"}'


def test_send_reports_an_unreachable_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_RULES_DIR", str(write_rules(tmp_path / "rules", GOOD)))
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    result = CliRunner().invoke(main, ["send", "gh", str(payload), "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "could not reach http://127.0.0.1:9/hooks/gh" in result.output
    assert "Traceback" not in result.output


def test_schema_command_prints_the_committed_schema(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert result.output == json_schema_text()
    assert set(schema["$defs"]) >= {"Rule", "Source", "Step", "Verify", "RuleFile"}
    step_actions = schema["$defs"]["Step"]["properties"]["action"]["enum"]
    assert step_actions == ["email", "emit", "http", "slack"]


def test_bad_setting_names_the_variable_and_accepted_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_SMTP_PORT", "ninety")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "ROUTER_SMTP_PORT='ninety'" in str(info.value)
    assert "accepted: a whole number from 1 to 65535" in str(info.value)
    result = CliRunner().invoke(main, ["check"])
    assert result.exit_code == 1
    assert "ROUTER_SMTP_PORT='ninety'" in result.output
    monkeypatch.setenv("ROUTER_SMTP_PORT", "25")
    monkeypatch.setenv("ROUTER_DATABASE_URL", "mysql://nope")
    with pytest.raises(SettingsError, match=r"ROUTER_DATABASE_URL='mysql://nope'.*accepted: a SQLAlchemy async URL"):
        load_settings()


def test_db_upgrade_creates_the_schema_and_matches_the_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("ROUTER_DATABASE_URL", url)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from router.records.models import Base

    async def diff() -> tuple[list[object], set[str]]:
        engine = db.create_engine(url)
        async with engine.connect() as conn:
            changes = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        await engine.dispose()
        return changes, tables

    changes, tables = asyncio.run(diff())
    assert changes == []  # a model change without a migration fails here
    assert {"events", "runs", "run_steps", "attempts", "inbox_requests"} <= tables


def test_migrations_from_several_processes_at_once_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {**__import__("os").environ, "ROUTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "router", "db", "upgrade"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs


def test_unreachable_database_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_DATABASE_URL", "postgresql+asyncpg://router:hunter2@127.0.0.1:9/router")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1
    assert "cannot open the database at postgresql+asyncpg://router:***@127.0.0.1:9/router" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output
