"""The settings pages: users and tokens, secrets, the audit log, signed in through the real form."""

from __future__ import annotations

import html
import re

import pytest
from cryptography.fernet import Fernet

from tests.conftest import Router, RouterFactory, sign_in

pytestmark = pytest.mark.ui  # these tests use the web UI's pages

RULES = {"r.yaml": "sources:\n  - {id: shop, verify: {scheme: none}}\n"}


def shown_once(page: str) -> str:
    found = re.search(r'<input id="shown-once"[^>]*value="([^"]+)"[^>]*data-testid="shown-once"', page)
    assert found, page
    return html.unescape(found.group(1))


async def post(r: Router, path: str, csrf: str, **fields: str) -> tuple[int, str]:
    response = await r.client.post(path, data={"_csrf": csrf, **fields})
    return response.status_code, response.text


async def test_admin_manages_users_from_the_page(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        page = await r.client.get("/settings/users")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        for testid in ("users-table", "user-create-form", "token-create-form", "user-role-select", "user-disable"):
            assert f'data-testid="{testid}"' in page.text
        assert f'name="_csrf" value="{csrf}"' in page.text

        status, text = await post(r, "/settings/users", csrf, username="newbie", role="editor", password="")
        assert status == 200
        password = shown_once(text)
        assert "not shown again" in text
        again = await r.client.get("/settings/users")
        assert password not in again.text
        assert 'data-username="newbie"' in again.text

        status, text = await post(r, "/settings/users", csrf, username="bad name!", role="viewer", password="")
        assert status == 400
        assert re.search(r'class="field-error"[^>]*>username: .bad name!. is not valid', html.unescape(text))
        status, text = await post(r, "/settings/users", csrf, username="newbie", role="viewer", password="")
        assert status == 409
        assert "already exists" in text

        status, text = await post(r, "/settings/users/newbie", csrf, action="role", role="viewer")
        assert status == 200
        assert "newbie is now viewer" in text
        status, text = await post(r, "/settings/users/newbie", csrf, action="password", password="")
        assert status == 200
        reset = shown_once(text)
        assert reset != password
        status, text = await post(r, "/settings/users/newbie", csrf, action="password", password="short")
        assert status == 400
        assert "too short" in text
        status, text = await post(r, "/settings/users/newbie", csrf, action="disable")
        assert status == 200
        assert "newbie is disabled" in text
        assert 'data-testid="user-enable"' in text
        status, text = await post(r, "/settings/users/test-admin", csrf, action="disable")
        assert status == 200
        status, text = await post(r, "/settings/users/ui-admin", csrf, action="disable")
        assert status == 409
        assert "last enabled admin" in html.unescape(text)
        status, text = await post(r, "/settings/users/ghost", csrf, action="enable")
        assert status == 404

        audit = await r.client.get("/settings/audit", params={"action": "user_update"})
        assert audit.text.count('data-testid="audit-row"') == 4  # role, password, disable, disable
        assert "ui-admin (session)" in audit.text


async def test_everyone_manages_their_own_tokens(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r, "val", "viewer", "val-password")
        page = await r.client.get("/settings/users")
        assert page.status_code == 200
        assert 'data-testid="users-table"' not in page.text  # not an admin
        assert 'data-testid="my-tokens-empty"' in page.text
        assert 'href="/settings/users"' in page.text
        assert 'href="/settings/secrets"' not in page.text
        assert 'href="/settings/audit"' not in page.text

        status, text = await post(r, "/settings/tokens", csrf, name="laptop")
        assert status == 200
        token = shown_once(text)
        assert token.startswith("ert_")
        assert 'data-testid="copy-shown-once"' in text
        me = await r.client.get("/api/me", headers={"authorization": f"Bearer {token}"})
        assert me.json()["username"] == "val"
        listed = await r.client.get("/settings/users")
        assert token not in listed.text
        assert token[:10] in listed.text  # the prefix, to recognise it
        token_id = re.search(r'data-token-id="([^"]+)"', listed.text)
        assert token_id

        status, text = await post(r, "/settings/tokens", csrf, name="")
        assert status == 400
        assert "give the token a name" in text
        status, text = await post(r, f"/settings/tokens/{token_id.group(1)}/revoke", csrf)
        assert status == 200
        assert "revoked" in text
        refused = await r.client.get("/api/me", headers={"authorization": f"Bearer {token}"})
        assert refused.status_code == 401
        for path in ("/settings/secrets", "/settings/audit"):
            forbidden = await r.client.get(path, headers={"accept": "text/html"})
            assert forbidden.status_code == 403
            assert "needs the admin role" in forbidden.text
        status, _ = await post(r, "/settings/users", csrf, username="sneaky", role="admin", password="p" * 10)
        assert status == 403


async def test_secret_values_go_in_and_never_come_out(router_factory: RouterFactory) -> None:
    value = "canary-VALUE-7f3a9c"
    env = {"ROUTER_SECRET_FROM_ENV": "env-value-x1", "ROUTER_SECRET_KEY": Fernet.generate_key().decode()}
    async with router_factory(RULES, worker=False, env=env, secret_key=env["ROUTER_SECRET_KEY"]) as r:
        csrf = await sign_in(r)
        page = await r.client.get("/settings/secrets")
        assert page.status_code == 200
        assert 'data-testid="secrets-empty"' in page.text
        env_list = re.search(r'data-testid="env-secrets">(.*?)</ul>', page.text, re.DOTALL)
        assert env_list
        assert "FROM_ENV" in env_list.group(1)
        assert "from environment" in env_list.group(1)
        assert "KEY" not in env_list.group(1).replace("FROM_ENV", "")  # the encryption key is not a rule secret
        assert "env-value-x1" not in page.text

        status, text = await post(r, "/settings/secrets", csrf, name="API_TOKEN", value=value)
        assert status == 200
        assert "API_TOKEN saved" in text
        assert value not in text
        assert 'data-name="API_TOKEN"' in text
        status, text = await post(r, "/settings/secrets", csrf, name="API_TOKEN", value=value + "2", replace="1")
        assert "API_TOKEN replaced" in text
        status, text = await post(r, "/settings/secrets", csrf, name="FROM_ENV", value="shadowed")
        assert "overridden by environment" in text
        status, text = await post(r, "/settings/secrets", csrf, name="bad-name", value="x")
        assert status == 400
        assert "not a valid secret name" in html.unescape(text)
        shown = await r.client.get("/settings/secrets")
        assert value not in shown.text
        assert "shadowed" not in shown.text
        status, text = await post(r, "/settings/secrets/API_TOKEN/delete", csrf)
        assert status == 200
        assert 'data-name="API_TOKEN"' not in text
        status, text = await post(r, "/settings/secrets/API_TOKEN/delete", csrf)
        assert status == 404
        audit = await r.client.get("/settings/audit")
        assert value not in audit.text
        for action in ("secret_set", "secret_replace", "secret_delete"):
            assert action in audit.text


async def test_secrets_page_without_a_key(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        page = await r.client.get("/settings/secrets")
        assert 'data-testid="key-missing"' in page.text
        status, text = await post(r, "/settings/secrets", csrf, name="X_TOKEN", value="whatever-1")
        assert status == 400
        assert re.search(r'class="field-error"[^>]*>ROUTER_SECRET_KEY is not set', text)


async def test_audit_page_filters_and_pages(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        for n in range(55):
            await r.client.post("/api/tokens", json={"name": f"bulk-{n}"})
        await sign_in(r)
        first = await r.client.get("/settings/audit")
        assert first.text.count('data-testid="audit-row"') == 50
        older = re.search(r'href="(/settings/audit\?[^"]*before=[^"]+)" data-testid="audit-older"', first.text)
        assert older
        second = await r.client.get(html.unescape(older.group(1)))
        assert second.text.count('data-testid="audit-row"') == 6  # 55 token_create + 1 sign_in, 50 a page
        assert 'data-testid="audit-newest"' in second.text
        assert 'data-testid="audit-older"' not in second.text
        by_action = await r.client.get("/settings/audit", params={"action": "sign_in"})
        assert by_action.text.count('data-testid="audit-row"') == 1
        assert '<option value="sign_in" selected>' in by_action.text
        by_actor = await r.client.get("/settings/audit", params={"actor": "ui-admin"})
        assert by_actor.text.count('data-testid="audit-row"') == 1
        none = await r.client.get("/settings/audit", params={"actor": "nobody"})
        assert 'data-testid="audit-empty"' in none.text


async def test_the_favicon_is_served_to_anyone(router_factory: RouterFactory) -> None:
    async with router_factory({"r.yaml": "sources:\n  - id: s\n"}, worker=False, ui=True) as r:
        r.client.headers.pop("authorization", None)
        response = await r.client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.content.startswith(b"<svg")
