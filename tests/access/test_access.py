"""Access control: API tokens, browser sessions, roles, CSRF and the security headers."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import RouterFactory, admin_token, sign_in
from tests.ui.pages import handlers

pytestmark = pytest.mark.ui  # these tests use the web UI's pages

RULES = {
    "r.yaml": """
    sources:
      - {id: shop, verify: {scheme: none}}
    rules:
      - id: notify
        source: shop
        steps:
          - id: post
            action: http
            with: {url: "http://127.0.0.1:1/x", method: POST, json: {a: 1}}
    """
}


async def test_api_needs_a_token(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        r.client.headers.pop("authorization")
        response = await r.client.get("/api/events")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "Bearer" in response.json()["detail"]
        bad = await r.client.get("/api/events", headers={"authorization": "Bearer ert_not-a-real-token"})
        assert bad.status_code == 401
        good = await r.client.get("/api/events", headers={"authorization": f"Bearer {r.token}"})
        assert good.status_code == 200


async def test_public_endpoints_stay_open(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        r.client.headers.pop("authorization")
        assert (await r.hook("shop", {"a": 1})).status_code == 202
        assert (await r.client.get("/health")).status_code == 200
        assert (await r.client.post("/inbox/x", json={"a": 1})).status_code == 200
        assert (await r.client.get("/static/htmx.min.js")).status_code == 200
        assert (await r.client.get("/schema/openapi.json")).status_code == 200


async def test_roles_limit_what_a_token_may_do(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        viewer = await admin_token(r.settings.database_url, "watcher", "viewer")
        headers = {"authorization": f"Bearer {viewer}"}
        assert (await r.client.get("/api/events", headers=headers)).status_code == 200
        denied = await r.client.post("/api/events/01ABC/replay", headers=headers, json={})
        assert denied.status_code == 403
        assert "editor" in denied.json()["detail"]
        editor = await admin_token(r.settings.database_url, "changer", "editor")
        allowed = await r.client.post("/api/events/01ABC/replay", headers={"authorization": f"Bearer {editor}"})
        assert allowed.status_code == 404  # past the guard: the event does not exist


async def test_session_changes_need_the_csrf_token(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        csrf = await sign_in(r)
        assert (await r.client.get("/api/events")).status_code == 200  # the cookie signs reads in
        without = await r.client.post("/api/events/01ABC/replay", json={})
        assert without.status_code == 403
        assert "CSRF" in without.json()["detail"]
        wrong = await r.client.post("/api/events/01ABC/replay", json={}, headers={"x-csrf-token": "x" * 43})
        assert wrong.status_code == 403
        right = await r.client.post("/api/events/01ABC/replay", json={}, headers={"x-csrf-token": csrf})
        assert right.status_code == 404
        # a form post carries it as a field
        out = await r.client.post("/logout", data={"_csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303
        assert (await r.client.get("/api/events")).status_code == 401  # the session ended


async def test_sign_in_refuses_wrong_passwords_and_forged_forms(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        await sign_in(r, "alice", "viewer", "correct-horse")
        r.client.cookies.clear()
        form = await r.client.get("/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        assert token
        wrong = await r.client.post("/login", data={"username": "alice", "password": "nope-nope", "_csrf": token[1]})
        assert wrong.status_code == 401
        assert "Wrong user name or password" in wrong.text
        assert 'name="username" autocomplete="username" required value="alice"' in wrong.text  # kept for a retry
        r.client.cookies.clear()  # no login-CSRF cookie: a cross-site form post
        forged = await r.client.post("/login", data={"username": "alice", "password": "correct-horse", "_csrf": "x"})
        assert forged.status_code == 403


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"])
async def test_sign_in_never_redirects_off_site(router_factory: RouterFactory, target: str) -> None:
    async with router_factory(RULES, worker=False) as r:
        await sign_in(r, "bob", "viewer", "bob-password")
        r.client.cookies.clear()
        form = await r.client.get("/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
        assert token
        response = await r.client.post(
            "/login",
            data={"username": "bob", "password": "bob-password", "_csrf": token[1], "next": target},
            follow_redirects=False,
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/"


async def test_pages_redirect_to_sign_in_and_carry_a_strict_csp(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        r.client.headers.pop("authorization")
        page = await r.client.get("/login")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie or "samesite=strict" in cookie.lower()


async def test_session_cookie_flags(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, cookie_secure="true") as r:
        await sign_in_raw(r)  # httpx keeps no Secure cookie over http: the flags are read off the header


async def sign_in_raw(r: Any) -> None:
    from router.access.auth import create_user
    from router.records import db

    engine = db.create_engine(r.settings.database_url)
    async with db.sessionmaker(engine)() as session:
        await create_user(session, "carol", "carol-password", "viewer")
        await session.commit()
    await engine.dispose()
    r.client.headers.pop("authorization")
    form = await r.client.get("/login")
    token = re.search(r'name="_csrf" value="([^"]+)"', form.text)
    assert token
    response = await r.client.post(
        "/login",
        data={"username": "carol", "password": "carol-password", "_csrf": token[1]},
        follow_redirects=False,
        headers={"cookie": f"router_login_csrf={token[1]}"},
    )
    assert response.status_code == 303
    set_cookie = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in set_cookie if c.startswith("router_session="))
    assert "Secure" in session_cookie
    assert "HttpOnly" in session_cookie
    assert "SameSite=Lax" in session_cookie or "samesite=lax" in session_cookie.lower()


# -- the role matrix: no route is left open ------------------------------------------------------

# Every route anyone may call without signing in. A new public route must be added here on purpose.
PUBLIC = {
    ("POST", "/hooks/{source}"),
    *((m, "/inbox/{name}") for m in ("GET", "POST", "PUT", "PATCH", "DELETE")),
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),  # Prometheus scrapes without a token; keep it on the private network (deploy.md)
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/static/{file_path}"),
    ("GET", "/favicon.ico"),  # the browser asks for it on every page, signed in or not
    ("HEAD", "/static/{file_path}"),
}
# The only changes a viewer may make: signing out and their own API tokens.
VIEWER_MAY_CHANGE = {
    ("POST", "/logout"),
    ("POST", "/api/tokens"),
    ("DELETE", "/api/tokens/{token_id}"),
    ("POST", "/settings/tokens"),
    ("POST", "/settings/tokens/{token_id}/revoke"),
}
# POSTs that change nothing (the rule builder posts its form to render a fragment): any role may.
VIEWER_MAY_POST_TO_READ = {
    ("POST", f"/rules/builder/{part}")
    for part in ("sample", "condition", "rows", "advanced", "steps", "preview", "yaml", "download")
}
ORDER = ("viewer", "editor", "admin")


def concrete(path: str) -> str:
    return re.sub(r"\{\w+\}", "x", path)


def needs(method: str, opt: dict[str, Any]) -> str:
    role: str = opt.get("role") or ("viewer" if method in ("GET", "HEAD") else "editor")
    return role


async def call(r: Any, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, Any] = {"headers": headers}
    if method not in ("GET", "HEAD", "DELETE"):
        kwargs["json"] = {}
    response = await r.client.request(method, concrete(path), **kwargs)
    return int(response.status_code)


async def test_every_route_needs_the_right_role(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        routes = handlers(r.client.app)
        public = {(m, p) for m, p, opt in routes if opt.get("public")}
        assert public == PUBLIC, "a route became public (or stopped being): update PUBLIC on purpose"
        viewer_changes = {(m, p) for m, p, opt in routes if m not in ("GET", "HEAD") and needs(m, opt) == "viewer"}
        assert viewer_changes == VIEWER_MAY_CHANGE | VIEWER_MAY_POST_TO_READ, "add a viewer-level change on purpose"
        r.client.headers.pop("authorization")
        tokens = {role: await admin_token(r.settings.database_url, f"matrix-{role}", role) for role in ORDER}
        checked = {"401": 0, "403": 0, "allowed": 0}
        for method, path, opt in routes:
            if opt.get("public"):
                continue
            anonymous = await call(r, method, path, {})
            assert anonymous == 401, f"{method} {path} answered {anonymous} without a sign-in"
            checked["401"] += 1
            for role in ORDER:
                status = await call(r, method, path, {"authorization": f"Bearer {tokens[role]}"})
                if ORDER.index(role) < ORDER.index(needs(method, opt)):
                    assert status == 403, f"{method} {path} answered {status} to a {role}"
                    checked["403"] += 1
                else:
                    assert status not in (401, 403), f"{method} {path} refused a {role} ({status})"
                    checked["allowed"] += 1
        mutations = [(m, p) for m, p, o in routes if m not in ("GET", "HEAD") and not o.get("public")]
        print(
            f"role matrix: {len(routes)} handlers ({len(public)} public), {checked['401']} refused without sign-in, "
            f"{checked['403']} refused for a lower role, {checked['allowed']} let through; "
            f"viewers may change {len(VIEWER_MAY_CHANGE)} of {len(mutations)} mutating routes "
            f"(and {len(VIEWER_MAY_POST_TO_READ)} builder POSTs that change nothing)"
        )
