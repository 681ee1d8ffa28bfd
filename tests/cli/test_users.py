"""`router user`, `router token`, `router secrets` and the first start of `router dev`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import text

from router.access.auth import authenticate_password, principal_from_token
from router.cli.commands import main
from router.cli.users import cli_actor
from router.records import db
from tests.conftest import free_port
from tests.ops.test_processes import base_env, running

pytestmark = pytest.mark.ui  # these tests use the web UI's pages

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a command against the database, in a thread (it runs its own event loop, as from a shell)."""
    monkeypatch.chdir(tmp_path)  # no ./data/secret.key of a checkout's `router dev` is found
    for name in ("ROUTER_SECRET_KEY", "ROUTER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)

    async def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        environment = {"ROUTER_DATABASE_URL": database_url, **(env or {})}
        return await asyncio.to_thread(CliRunner().invoke, main, list(args), input=input, env=environment)

    return run


async def query(database_url: str, sql: str) -> list[Any]:
    engine = db.create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def check_password(database_url: str, username: str, password: str) -> bool:
    engine = db.create_engine(database_url)
    try:
        async with db.sessionmaker(engine)() as session:
            return await authenticate_password(session, username, password) is not None
    finally:
        await engine.dispose()


def fails_cleanly(result: Result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


async def test_user_commands(cli: Any, database_url: str) -> None:
    made = await cli("user", "create", "alice", "--role", "admin", input="alice-password\nalice-password\n")
    assert made.exit_code == 0, made.output
    assert "created user alice (admin)" in made.output
    assert "alice-password" not in made.output  # the prompt hides it
    piped = await cli("user", "create", "bob", "--role", "viewer", "--password-stdin", input="bob-password\n")
    assert piped.exit_code == 0, piped.output
    generated = await cli("user", "create", "carl", "--role", "editor", "--generate")
    assert generated.exit_code == 0, generated.output
    carl_password = re.search(r"password \(shown once\): (\S+)", generated.output)
    assert carl_password
    assert await check_password(database_url, "alice", "alice-password")
    assert await check_password(database_url, "bob", "bob-password")
    assert await check_password(database_url, "carl", carl_password.group(1))

    listed = await cli("user", "list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split() == ["USER", "ROLE", "STATUS", "CREATED"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["alice", "admin", "enabled"],
        ["bob", "viewer", "enabled"],
        ["carl", "editor", "enabled"],
    ]

    changed = await cli("user", "password", "bob", "--password-stdin", input="bob-new-password\n")
    assert changed.exit_code == 0, changed.output
    assert await check_password(database_url, "bob", "bob-new-password")
    assert (await cli("user", "disable", "bob")).exit_code == 0
    assert not await check_password(database_url, "bob", "bob-new-password")
    assert (await cli("user", "enable", "bob")).exit_code == 0
    assert await check_password(database_url, "bob", "bob-new-password")

    fails_cleanly(await cli("user", "create", "bob", "--role", "viewer", "--generate"), 1, "already exists")
    fails_cleanly(await cli("user", "create", "dan", "--role", "root", "--generate"), 2, "'root' is not one of")
    fails_cleanly(await cli("user", "create", "dan", "--role", "viewer", "--password-stdin", input="short\n"), 1,
                  "password: too short")  # fmt: skip
    fails_cleanly(await cli("user", "create", "dan", "--role", "viewer", "--password-stdin", "--generate"), 2,
                  "either --password-stdin or --generate")  # fmt: skip
    fails_cleanly(await cli("user", "disable", "nobody"), 1, "no user 'nobody'")
    fails_cleanly(await cli("user", "disable", "alice"), 1, "last enabled admin")

    audit = await query(database_url, "SELECT actor, action, target FROM audit_log ORDER BY id")
    assert {actor for actor, _, _ in audit} == {cli_actor()}
    assert [(action, target) for _, action, target in audit] == [
        ("user_create", "alice"),
        ("user_create", "bob"),
        ("user_create", "carl"),
        ("user_update", "bob"),
        ("user_update", "bob"),
        ("user_update", "bob"),
    ]


async def test_token_commands(cli: Any, database_url: str) -> None:
    await cli("user", "create", "ci", "--role", "editor", "--generate")
    made = await cli("token", "create", "ci", "--name", "deploy")
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()  # alone on stdout, for scripts
    assert re.fullmatch(r"ert_[A-Za-z0-9_-]{43}", token)
    assert "not shown again" in made.stderr

    engine = db.create_engine(database_url)
    async with db.sessionmaker(engine)() as session:
        principal = await principal_from_token(session, token)
    assert principal is not None
    assert (principal.username, principal.role) == ("ci", "editor")

    listed = await cli("token", "list")
    assert listed.exit_code == 0
    assert token not in listed.output
    assert token[:10] in listed.output
    token_id = listed.output.splitlines()[1].split()[0]
    assert "active" in listed.output
    assert (await cli("token", "list", "--user", "ci")).output == listed.output
    fails_cleanly(await cli("token", "list", "--user", "nobody"), 1, "no user 'nobody'")

    revoked = await cli("token", "revoke", token_id)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked token" in revoked.output
    async with db.sessionmaker(engine)() as session:
        assert await principal_from_token(session, token) is None
    await engine.dispose()
    fails_cleanly(await cli("token", "revoke", token_id), 1, "already revoked")
    fails_cleanly(await cli("token", "revoke", "NOPE"), 1, "no token with id 'NOPE'")
    fails_cleanly(await cli("token", "create", "ghost", "--name", "x"), 1, "no user 'ghost'")
    fails_cleanly(await cli("token", "create", "ci"), 2, "Missing option '--name'")
    actions = [a for (a,) in await query(database_url, "SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["user_create", "token_create", "token_revoke"]


async def test_secrets_commands_and_rotation(cli: Any, database_url: str) -> None:
    key = await cli("secrets", "keygen")
    assert key.exit_code == 0
    Fernet(key.output.strip().encode())  # a valid key

    fails_cleanly(await cli("secrets", "set", "API", "--stdin", input="value-1"), 1, "ROUTER_SECRET_KEY is not set")
    old = {"ROUTER_SECRET_KEY": OLD}
    stored = await cli("secrets", "set", "API", "--stdin", input="api-value-123\n", env=old)
    assert stored.exit_code == 0, stored.output
    prompted = await cli("secrets", "set", "DB", input="db-value-456\ndb-value-456\n", env=old)
    assert prompted.exit_code == 0, prompted.output
    assert "db-value-456" not in prompted.output
    fails_cleanly(await cli("secrets", "set", "bad-name", "--stdin", input="x", env=old), 2, "not a valid secret name")

    raw = await query(database_url, "SELECT name, ciphertext FROM secrets ORDER BY name")
    assert [name for name, _ in raw] == ["API", "DB"]
    assert all("value" not in ciphertext for _, ciphertext in raw)

    listed = await cli("secrets", "list", env={**old, "ROUTER_SECRET_FROM_ENV": "env-value"})
    assert listed.exit_code == 0
    assert "api-value" not in listed.output
    assert "env-value" not in listed.output
    assert [line.split()[0] for line in listed.output.splitlines()[1:3]] == ["API", "DB"]
    assert "from the environment (ROUTER_SECRET_<NAME>): FROM_ENV" in listed.output

    rotated = await cli("secrets", "rotate", env={"ROUTER_SECRET_KEY": f"{NEW},{OLD}"})
    assert rotated.exit_code == 0, rotated.output
    assert "re-encrypted 2 secret(s)" in rotated.output
    engine = db.create_engine(database_url)
    from router.access.secretstore import decrypt_all

    async with db.sessionmaker(engine)() as session:
        values, errors = await decrypt_all(session, NEW)  # the old key can go now
    await engine.dispose()
    assert values == {"API": "api-value-123", "DB": "db-value-456"}
    assert errors == []
    fails_cleanly(await cli("secrets", "rotate", env=old), 1, "no key in ROUTER_SECRET_KEY decrypts it")

    deleted = await cli("secrets", "delete", "API")
    assert deleted.exit_code == 0
    fails_cleanly(await cli("secrets", "delete", "API"), 1, "no stored secret 'API'")
    audit = await query(database_url, "SELECT actor, action FROM audit_log ORDER BY id")
    assert audit == [(cli_actor(), a) for a in ("secret_set", "secret_set", "secrets_rotate", "secret_delete")]


def test_rotate_help_explains_rotation() -> None:
    result = CliRunner().invoke(main, ["secrets", "rotate", "--help"])
    assert "ROUTER_SECRET_KEY=NEW,OLD" in result.output
    assert "router secrets keygen" in result.output


def test_dev_first_start_makes_an_admin_and_a_key(tmp_path: Path, redis_clean: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (tmp_path / "rules").mkdir()
    env = base_env(tmp_path, ROUTER_REDIS_URL=redis_clean)
    with running(["dev", "--port", str(port)], env, tmp_path, ready_url=f"{url}/health"):
        log = next(tmp_path.glob("dev-*.log")).read_text()
        password = re.search(r"created user `admin` \(role admin\) with password\s+(\S+)", log)
        assert password, log
        assert "router user password admin" in log
        assert "generated a new key in data/secret.key" in log
        with httpx.Client(base_url=url) as client:
            form = client.get("/login")
            csrf = re.search(r'name="_csrf" value="([^"]+)"', form.text)
            assert csrf
            signed_in = client.post("/login", data={"username": "admin", "password": password.group(1),
                                                    "_csrf": csrf.group(1)})  # fmt: skip
            assert signed_in.status_code == 303, signed_in.text
            assert client.get("/api/me").json() == {"username": "admin", "role": "admin", "via": "session"}
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_text().strip().encode())
    for log_file in tmp_path.glob("dev-*.log"):
        log_file.unlink()
    with running(["dev", "--port", str(port)], env, tmp_path, ready_url=f"{url}/health"):
        second = next(tmp_path.glob("dev-*.log")).read_text()
    assert "created user" not in second  # once only
    assert "using the key in data/secret.key" in second


async def test_replay_and_retry_from_the_shell_are_audited(
    router_factory: Any, httpserver: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(2):
        httpserver.expect_ordered_request("/x").respond_with_data("down", status=503)
    httpserver.expect_request("/x").respond_with_data("ok")
    step = '{id: call, action: http, with: {url: "' + httpserver.url_for("/x") + '"}}'
    files = {"r.yaml": f"sources: [{{id: shop}}]\nrules: [{{id: r, source: shop, steps: [{step}]}}]\n"}
    async with router_factory(files) as r:
        for key in ("database_url", "redis_url", "rules_dir", "egress_allow", "retry_schedule"):
            monkeypatch.setenv(f"ROUTER_{key.upper()}", str(getattr(r.settings, key)))
        event_id = (await r.hook("shop", {"n": 1})).json()["event_id"]
        run_id = (await r.wait_event(event_id))["runs"][0]["id"]
        other = (await r.hook("shop", {"n": 2})).json()["event_id"]
        await r.wait_event(other)

        def invoke(*args: str) -> Result:
            return CliRunner().invoke(main, list(args))

        retried = await asyncio.to_thread(invoke, "retry", run_id)
        assert retried.exit_code == 0, retried.output
        assert (await r.wait_event(event_id, done=("succeeded",)))["status"] == "succeeded"
        replayed = await asyncio.to_thread(invoke, "replay", event_id)
        assert replayed.exit_code == 0, replayed.output
        bulk = await asyncio.to_thread(invoke, "retry-bulk", "--rule", "r", "--yes")
        assert bulk.exit_code == 0, bulk.output
        assert (await r.wait_event(other, done=("succeeded",)))["status"] == "succeeded"
        entries = (await r.client.get("/api/audit", params={"actor": "cli:"})).json()["entries"]
    assert [(e["actor"], e["action"], e["target"]) for e in entries] == [
        (cli_actor(), "runs_retry_bulk", "1 run(s)"),
        (cli_actor(), "event_replay", event_id),
        (cli_actor(), "run_retry", run_id),
    ]


def test_secrets_commands_fall_back_to_the_dev_key(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from router.cli.users import dev_secret_key

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROUTER_SECRET_KEY", raising=False)
    key, made = dev_secret_key()
    assert made
    assert dev_secret_key() == (key, False)
    result = CliRunner().invoke(
        main, ["secrets", "set", "TOKEN", "--stdin"], input="value-123", env={"ROUTER_DATABASE_URL": sqlite_url}
    )
    assert result.exit_code == 0, result.output
    assert "using the key `router dev` wrote to data/secret.key" in result.stderr

    async def decrypted() -> dict[str, str]:
        from router.access.secretstore import decrypt_all

        engine = db.create_engine(sqlite_url)
        async with db.sessionmaker(engine)() as session:
            values, _ = await decrypt_all(session, key)
        await engine.dispose()
        return values

    assert asyncio.run(decrypted()) == {"TOKEN": "value-123"}
