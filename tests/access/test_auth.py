"""Users and API tokens through the API: their life cycle, who may do what, and the audit trail."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Router, RouterFactory, admin_token, sign_in

pytestmark = pytest.mark.ui  # these tests use the web UI's pages

RULES = {"r.yaml": "sources:\n  - {id: shop, verify: {scheme: none}}\n"}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def audit_log(r: Router, **query: str) -> list[dict[str, Any]]:
    response = await r.client.get("/api/audit", params=query, headers=bearer(r.token))
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


async def test_me_says_who_is_asking(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        me = await r.client.get("/api/me")
        assert me.json() == {"username": "test-admin", "role": "admin", "via": "token"}
        viewer = await admin_token(r.settings.database_url, "val", "viewer")
        assert (await r.client.get("/api/me", headers=bearer(viewer))).json()["role"] == "viewer"


async def test_user_life_cycle(router_factory: RouterFactory, database_url: str) -> None:
    async with router_factory(RULES, worker=False, database_url=database_url) as r:
        created = await r.client.post("/api/users", json={"username": "ed", "role": "editor"})
        assert created.status_code == 201, created.text
        password = created.json()["password"]  # generated, shown once
        assert len(password) >= 16
        assert created.json()["user"]["role"] == "editor"
        listed = (await r.client.get("/api/users")).json()["users"]
        assert {u["username"]: u["role"] for u in listed} == {"ed": "editor", "test-admin": "admin"}
        assert "password" not in str(listed)
        assert "hash" not in str(listed)

        given = await r.client.post("/api/users", json={"username": "vi", "role": "viewer", "password": "vi-password"})
        assert given.status_code == 201
        assert "password" not in given.json()

        taken = await r.client.post("/api/users", json={"username": "ed", "role": "viewer"})
        assert taken.status_code == 409
        assert "already exists" in taken.json()["detail"]
        bad_name = await r.client.post("/api/users", json={"username": "<b>", "role": "viewer"})
        assert bad_name.status_code == 400
        assert "username" in bad_name.json()["detail"]
        short = await r.client.post("/api/users", json={"username": "sh", "role": "viewer", "password": "x"})
        assert short.status_code == 400
        assert "at least 8" in short.json()["detail"]
        bad_role = await r.client.post("/api/users", json={"username": "ro", "role": "root"})
        assert bad_role.status_code == 400

        promoted = await r.client.patch("/api/users/ed", json={"role": "admin"})
        assert promoted.json()["user"]["role"] == "admin"
        missing = await r.client.patch("/api/users/nobody", json={"role": "admin"})
        assert missing.status_code == 404
        assert "nobody" in missing.json()["detail"]

        entries = await audit_log(r, actor="test-admin")
        actions = [(e["action"], e["target"]) for e in entries]
        assert ("user_create", "ed") in actions
        assert ("user_create", "vi") in actions
        assert ("user_update", "ed") in actions
        update = next(e for e in entries if e["action"] == "user_update")
        assert update["detail"]["role"] == {"from": "editor", "to": "admin"}
        assert update["actor"] == "test-admin (token)"


async def test_the_last_admin_stays(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        demote = await r.client.patch("/api/users/test-admin", json={"role": "viewer"})
        assert demote.status_code == 409
        assert "last enabled admin" in demote.json()["detail"]
        disable = await r.client.patch("/api/users/test-admin", json={"disabled": True})
        assert disable.status_code == 409
        await r.client.post("/api/users", json={"username": "second", "role": "admin", "password": "second-pass"})
        assert (await r.client.patch("/api/users/test-admin", json={"role": "editor"})).status_code == 200


async def test_revoked_token_is_refused(router_factory: RouterFactory, database_url: str) -> None:
    async with router_factory(RULES, worker=False, database_url=database_url) as r:
        made = await r.client.post("/api/tokens", json={"name": "ci"})
        assert made.status_code == 201
        token, token_id = made.json()["token"], made.json()["id"]
        assert token.startswith("ert_")
        assert made.json()["prefix"] == token[:10]
        assert (await r.client.get("/api/me", headers=bearer(token))).status_code == 200
        listed = (await r.client.get("/api/tokens")).json()["tokens"]
        assert token_id in {t["id"] for t in listed}
        assert token not in str(listed)  # only the prefix is kept
        revoked = await r.client.delete(f"/api/tokens/{token_id}")
        assert revoked.status_code == 200
        assert revoked.json()["token"]["revoked_at"]
        refused = await r.client.get("/api/me", headers=bearer(token))
        assert refused.status_code == 401
        again = await r.client.delete(f"/api/tokens/{token_id}")
        assert again.status_code == 409
        actions = [e["action"] for e in await audit_log(r, action="token_revoke")]
        assert actions == ["token_revoke"]


async def test_tokens_are_each_users_own(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        viewer = await admin_token(r.settings.database_url, "vera", "viewer")
        other = await admin_token(r.settings.database_url, "otto", "viewer")
        mine = await r.client.post("/api/tokens", json={"name": "laptop"}, headers=bearer(viewer))
        assert mine.status_code == 201  # any role makes its own tokens
        assert mine.json()["username"] == "vera"
        for_otto = await r.client.post("/api/tokens", json={"name": "x", "username": "otto"}, headers=bearer(viewer))
        assert for_otto.status_code == 403
        listed = (await r.client.get("/api/tokens", headers=bearer(viewer))).json()["tokens"]
        assert {t["username"] for t in listed} == {"vera"}
        otto_tokens = (await r.client.get("/api/tokens", headers=bearer(other))).json()["tokens"]
        stranger = await r.client.delete(f"/api/tokens/{otto_tokens[0]['id']}", headers=bearer(viewer))
        assert stranger.status_code == 404  # someone else's token does not exist for a viewer
        everyone = (await r.client.get("/api/tokens")).json()["tokens"]
        assert {"vera", "otto", "test-admin"} <= {t["username"] for t in everyone}
        by_admin = await r.client.post("/api/tokens", json={"name": "ops", "username": "otto"})
        assert by_admin.json()["username"] == "otto"
        assert (await r.client.get("/api/users", headers=bearer(viewer))).status_code == 403
        assert (await r.client.get("/api/audit", headers=bearer(viewer))).status_code == 403


async def test_disabling_a_user_ends_their_session_and_tokens(router_factory: RouterFactory, database_url: str) -> None:
    async with router_factory(RULES, worker=False, database_url=database_url) as r:
        admin = r.token
        token = await admin_token(r.settings.database_url, "dora", "editor")
        await sign_in(r, "dora", "editor", "test-password-1")  # admin_token made her with this password
        assert (await r.client.get("/api/me")).json()["via"] == "session"
        off = await r.client.patch("/api/users/dora", json={"disabled": True}, headers=bearer(admin))
        assert off.status_code == 200
        assert (await r.client.get("/api/me")).status_code == 401  # the session cookie no longer signs in
        assert (await r.client.get("/api/me", headers=bearer(token))).status_code == 401
        on = await r.client.patch("/api/users/dora", json={"disabled": False}, headers=bearer(admin))
        assert on.json()["user"]["disabled"] is False
        assert (await r.client.get("/api/me", headers=bearer(token))).status_code == 200
        assert (await r.client.get("/api/me")).status_code == 401  # the session was deleted, not paused
        entries = await audit_log(r, action="user_update")
        assert [e["detail"].get("disabled") for e in entries] == [False, True]
        assert entries[1]["detail"]["sessions_ended"] is True


async def test_a_new_password_ends_sessions(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        admin = r.token
        await sign_in(r, "pat", "viewer", "old-password")
        assert (await r.client.get("/api/me")).status_code == 200
        changed = await r.client.patch("/api/users/pat", json={"password": "new-password"}, headers=bearer(admin))
        assert changed.status_code == 200
        assert (await r.client.get("/api/me")).status_code == 401
        entry = (await audit_log(r, action="user_update"))[0]
        assert entry["detail"] == {"password": "changed", "sessions_ended": True}
        assert "new-password" not in str(entry)
        await sign_in(r, "pat", "viewer", "new-password")
        assert (await r.client.get("/api/me")).json()["username"] == "pat"


async def test_audit_filters_and_pages(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        for n in range(5):
            await r.client.post("/api/tokens", json={"name": f"t{n}"})
        first = await r.client.get("/api/audit", params={"action": "token_create", "limit": 2})
        body = first.json()
        assert [e["detail"]["name"] for e in body["entries"]] == ["t4", "t3"]
        second = await r.client.get("/api/audit", params={"action": "token_create", "limit": 2, "before": body["next"]})
        assert [e["detail"]["name"] for e in second.json()["entries"]] == ["t2", "t1"]
        last = await r.client.get(
            "/api/audit", params={"action": "token_create", "limit": 2, "before": second.json()["next"]}
        )
        assert [e["detail"]["name"] for e in last.json()["entries"]] == ["t0"]
        assert last.json()["next"] is None
        assert (await r.client.get("/api/audit", params={"actor": "nobody"})).json()["entries"] == []
        future = await r.client.get("/api/audit", params={"since": "2999-01-01T00:00:00"})
        assert future.json()["entries"] == []
        past = await r.client.get("/api/audit", params={"since": "2000-01-01T00:00:00Z", "action": "token_create"})
        assert len(past.json()["entries"]) == 5
        bad = await r.client.get("/api/audit", params={"limit": 0})
        assert bad.status_code == 400


async def test_secrets_api_never_returns_values(router_factory: RouterFactory, database_url: str) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    async with router_factory(RULES, worker=False, database_url=database_url, secret_key=key) as r:
        put = await r.client.put("/api/secrets/API_KEY", json={"value": "s3cret-value-1"})
        assert put.status_code == 201, put.text
        assert put.json()["created"] is True
        replaced = await r.client.put("/api/secrets/API_KEY", json={"value": "s3cret-value-2"})
        assert replaced.status_code == 200
        listed = await r.client.get("/api/secrets")
        assert [s["name"] for s in listed.json()["secrets"]] == ["API_KEY"]
        assert listed.json()["secrets"][0]["updated_by"] == "test-admin (token)"
        assert "s3cret" not in listed.text
        bad = await r.client.put("/api/secrets/9lives", json={"value": "x"})
        assert bad.status_code == 400
        assert "name" in bad.json()["detail"]
        empty = await r.client.put("/api/secrets/EMPTY", json={"value": ""})
        assert empty.status_code == 400
        gone = await r.client.delete("/api/secrets/API_KEY")
        assert gone.status_code == 200
        assert (await r.client.delete("/api/secrets/API_KEY")).status_code == 404
        actions = [e["action"] for e in await audit_log(r, actor="test-admin")]
        assert actions[:3] == ["secret_delete", "secret_replace", "secret_set"]
        assert "s3cret" not in str(await audit_log(r))


async def test_secrets_api_without_a_key_names_it(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        refused = await r.client.put("/api/secrets/API_KEY", json={"value": "v-1234"})
        assert refused.status_code == 400
        assert "ROUTER_SECRET_KEY" in refused.json()["detail"]
        assert "router secrets keygen" in refused.json()["detail"]
        assert (await r.client.get("/api/secrets")).json()["key_configured"] is False


async def test_a_failed_sign_in_cannot_choose_its_actor(router_factory: RouterFactory) -> None:
    import re

    async with router_factory(RULES, worker=False) as r:
        bearer_header = r.client.headers.pop("authorization")
        form = await r.client.get("/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        assert token
        failed = await r.client.post(
            "/login", data={"username": "cli:root", "password": "guess-1234", "_csrf": token[1]}
        )
        assert failed.status_code == 401
        r.client.headers["authorization"] = bearer_header
        entries = await audit_log(r, action="sign_in_failed")
        assert [(e["actor"], e["target"]) for e in entries] == [("anonymous", "cli:root")]
        assert "guess-1234" not in str(entries)
        assert await audit_log(r, actor="cli:") == []
