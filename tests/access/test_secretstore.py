"""Stored secrets: encrypted at rest, decrypted with any listed key, rotated, and clear when a key is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from router.access import secretstore
from router.errors import SecretStoreError, SettingsError
from router.records import db
from router.settings import load_settings
from tests.conftest import eventually

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = db.create_engine(database_url)
    await db.migrate(engine)
    async with db.sessionmaker(engine)() as s:
        yield s
    await engine.dispose()


async def stored(session: AsyncSession) -> dict[str, str]:
    rows = (await session.execute(text("SELECT name, ciphertext FROM secrets"))).all()
    return {name: ciphertext for name, ciphertext in rows}


async def test_the_database_holds_ciphertext_only(session: AsyncSession) -> None:
    value = "hunter2-but-longer"
    assert await secretstore.save(session, OLD, "DB_PASSWORD", value, "tester") is True
    assert await secretstore.save(session, OLD, "DB_PASSWORD", value, "tester") is False  # replaced
    await session.commit()
    raw = await stored(session)
    assert value not in raw["DB_PASSWORD"]
    assert raw["DB_PASSWORD"].startswith("gAAAA")  # a Fernet token
    values, errors = await secretstore.decrypt_all(session, OLD)
    assert values == {"DB_PASSWORD": value}
    assert errors == []
    audit = (await session.execute(text("SELECT action, target, detail FROM audit_log ORDER BY id"))).all()
    assert [(a, t) for a, t, _ in audit] == [("secret_set", "DB_PASSWORD"), ("secret_replace", "DB_PASSWORD")]
    assert value not in str(audit)


async def test_rotation_keeps_every_secret_readable(session: AsyncSession) -> None:
    await secretstore.save(session, OLD, "A", "value-of-a", "tester")
    await secretstore.save(session, OLD, "B", "value-of-b", "tester")
    await session.commit()
    before = await stored(session)
    # the new key first: it encrypts, the old one still decrypts
    values, errors = await secretstore.decrypt_all(session, f"{NEW},{OLD}")
    assert (values, errors) == ({"A": "value-of-a", "B": "value-of-b"}, [])
    await secretstore.save(session, f"{NEW},{OLD}", "C", "value-of-c", "tester")
    assert await secretstore.rotate_audited(session, f"{NEW},{OLD}", "tester") == 3
    await session.commit()
    after = await stored(session)
    assert after["A"] != before["A"]
    values, errors = await secretstore.decrypt_all(session, NEW)  # the old key dropped
    assert values == {"A": "value-of-a", "B": "value-of-b", "C": "value-of-c"}
    assert errors == []
    rotated = await session.scalar(text("SELECT detail FROM audit_log WHERE action = 'secrets_rotate'"))
    assert "3" in str(rotated)


async def test_a_removed_key_is_a_clear_error(session: AsyncSession) -> None:
    await secretstore.save(session, OLD, "API", "value-of-api", "tester")
    await session.commit()
    values, errors = await secretstore.decrypt_all(session, NEW)
    assert values == {}
    assert errors == [
        "secret API: cannot be decrypted with ROUTER_SECRET_KEY "
        "(was the key that encrypted it removed? put it back after the new key)"
    ]
    with pytest.raises(SecretStoreError, match="secret API: no key in ROUTER_SECRET_KEY decrypts it"):
        await secretstore.rotate(session, NEW)
    values, errors = await secretstore.decrypt_all(session, None)
    assert values == {}
    assert "ROUTER_SECRET_KEY is not set" in errors[0]
    assert "1 stored secret(s) cannot be used" in errors[0]


async def test_names_and_deleting(session: AsyncSession) -> None:
    with pytest.raises(SecretStoreError, match="not a valid secret name"):
        await secretstore.save(session, OLD, "has-dash", "v", "tester")
    with pytest.raises(SecretStoreError, match="the value is empty"):
        await secretstore.save(session, OLD, "EMPTY", "", "tester")
    stamp = await secretstore.stamp(session)
    await secretstore.save(session, OLD, "GONE", "value-1", "tester")
    await session.commit()
    assert await secretstore.stamp(session) != stamp
    await secretstore.remove(session, "GONE", "tester")
    await session.commit()
    with pytest.raises(SecretStoreError, match="no stored secret 'GONE'"):
        await secretstore.remove(session, "GONE", "tester")
    assert await stored(session) == {}


def test_keys_are_checked() -> None:
    with pytest.raises(SecretStoreError, match=r"ROUTER_SECRET_KEY is not set.*router secrets keygen"):
        secretstore.keyring(" , ")
    with pytest.raises(SecretStoreError, match="key 2 is not a Fernet key"):
        secretstore.keyring(f"{OLD},not-a-key")
    with pytest.raises(SettingsError, match="ROUTER_SECRET_KEY='short'"):
        load_settings(secret_key="short")
    assert load_settings(secret_key=f" {OLD} , {NEW}").secret_key


def test_environment_names_never_values() -> None:
    env = {"ROUTER_SECRET_SLACK_URL": "https://x", "ROUTER_SECRET_KEY": OLD, "ROUTER_SECRET_": "x", "HOME": "/root"}
    assert secretstore.env_names(env) == ["SLACK_URL"]


async def test_health_names_a_secret_whose_key_is_gone(router_factory: Any, sqlite_url: str) -> None:
    engine = db.create_engine(sqlite_url)
    await db.migrate(engine)
    async with db.sessionmaker(engine)() as s:
        await secretstore.save(s, OLD, "API", "value-of-api", "tester")
        await s.commit()
    await engine.dispose()
    async with router_factory({"r.yaml": "sources: [{id: shop}]\n"}, worker=False, secret_key=NEW) as r:

        async def reported() -> bool:
            return "secret API: cannot be decrypted" in (await r.client.get("/health")).text

        await eventually(reported, what="/health to name the secret")
        health = (await r.client.get("/health")).json()
    assert health["status"] != "ok"
    assert any("put it back after the new key" in e for e in health["checks"]["rules"]["errors"])
