"""UI rules: stored in the database as rule-file YAML, loaded beside the files, the JSON API, reloads."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from router.access import secretstore
from router.errors import RuleSetError
from router.records import db
from router.records.models import AuditEntry, UiRule, utcnow
from router.rules import stored as uirules
from router.rules.holder import RulesHolder
from router.rules.reload import watch_rules
from router.rules.ruleset import load_ruleset
from router.rules.yamlfile import parse_yaml
from tests.conftest import Router, RouterFactory, admin_token, eventually, write_rules

FILES = {
    "shop.yaml": """
    sources:
      - {id: shop}
      - {id: sink}
    rules:
      - id: from-file
        source: shop
        filter: body.kind == 'file'
        steps:
          - {id: tell, action: emit, with: {source: sink, body: {}}}
    """
}


def rule_yaml(rule_id: str, url: str, *, source: str = "shop", kind: str = "order") -> str:
    return textwrap.dedent(f"""\
        id: {rule_id}
        source: {source}
        description: Orders to the sink.
        # only orders
        filter: body.kind == '{kind}'
        steps:
          - id: post
            action: http
            with:
              url: "{url}"
              json: {{order: "{{{{ body.id }}}}"}}
        """)


async def put(r: Router, rule_id: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return await r.client.put(f"/api/ui-rules/{rule_id}", json=body, headers=headers or {})


async def order(r: Router, kind: str = "order", id_: str = "o-1") -> dict[str, Any]:
    sent = await r.hook("shop", {"kind": kind, "id": id_})
    assert sent.status_code == 202
    return await r.wait_event(sent.json()["event_id"])


async def audit_rows(r: Router) -> list[tuple[str, str, str]]:
    async with r.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        return [(row.actor, row.action, row.target) for row in rows]


# -- the API, end to end --------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_a_rule_put_through_the_api_delivers(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/orders", method="POST").respond_with_data("ok")
    async with router_factory(FILES, database_url=database_url) as r:
        text = rule_yaml("orders", httpserver.url_for("/orders"))
        created = await put(r, "orders", {"yaml": text})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["yaml"] == text  # stored exactly as sent, comments included
        assert (body["version"], body["enabled"], body["in_force"], body["location"]) == (1, True, True, "ui:orders")

        event = await order(r)
        (run,) = event["runs"]
        assert (run["rule_id"], run["rule_location"], run["status"]) == ("orders", "ui:orders", "succeeded")
        assert [req.get_json() for req, _ in httpserver.log] == [{"order": "o-1"}]

        listed = (await r.client.get("/api/ui-rules")).json()["rules"]
        assert [x["id"] for x in listed] == ["orders"]
        assert "yaml" not in listed[0]
        loaded = {x["id"]: x for x in (await r.client.get("/api/rules")).json()["rules"]}
        assert loaded["orders"]["location"] == "ui:orders"
        assert "from-file" in loaded

        replaced = await put(r, "orders", {"yaml": rule_yaml("orders", httpserver.url_for("/orders"), kind="big")})
        assert replaced.status_code == 200
        assert replaced.json()["version"] == 2
        assert (await order(r))["status"] == "unmatched"
        assert [a for _, a, t in await audit_rows(r) if t == "orders"] == ["ui_rule_created", "ui_rule_updated"]


async def test_a_rule_given_as_json_is_stored_as_yaml(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/orders").respond_with_data("ok")
    async with router_factory(FILES) as r:
        spec = {
            "source": "shop",
            "filter": "body.kind == 'order'",
            "steps": [
                {"id": "post", "action": "http", "with": {"url": httpserver.url_for("/orders"), "json": {"a": 1}}}
            ],
        }
        created = await put(r, "json-rule", spec)
        assert created.status_code == 201, created.text
        assert created.json()["yaml"].startswith("id: json-rule\nsource: shop\nfilter: body.kind == 'order'\nsteps:\n")
        assert (await order(r))["runs"][0]["rule_id"] == "json-rule"
        got = await r.client.get("/api/ui-rules/json-rule")
        assert got.status_code == 200
        assert got.json()["yaml"] == created.json()["yaml"]


async def test_invalid_rules_are_refused_with_line_column_and_field(router_factory: RouterFactory) -> None:
    async with router_factory(FILES, worker=False) as r:
        cases = {
            "id: x\nsource: shop\nsteps: [\n": ("invalid YAML", 4, ""),
            rule_yaml("x", "http://127.0.0.1/a", source="nowhere"): ("unknown source 'nowhere'", 2, "source"),
            rule_yaml("y", "http://127.0.0.1/a"): ("the rule's id is 'y' but it is saved as 'x'", 1, "id"),
            rule_yaml("x", "not a url"): ("not a valid URL", 10, "steps[0].with.url"),
            "rules:\n  - id: x\n": ("a UI rule is one rule", 2, "rules"),
            "id: x\nsource: shop\nsteps: []\n": ("needs at least 1 item", 3, "steps"),
        }
        for text, (message, line, path) in cases.items():
            response = await put(r, "x", {"yaml": text})
            assert response.status_code == 422, (text, response.text)
            problem = response.json()
            assert problem["title"] == "Invalid rule"
            assert response.headers["content-type"].startswith("application/problem+json")
            (error,) = [e for e in problem["errors"] if message in e["message"]]
            assert (error["file"], error["line"], error["path"]) == ("ui:x", line, path), error
            assert f"ui:x:{line}:" in problem["detail"] or not line
        bad = await put(r, "x", {"yaml": 5})
        assert bad.status_code == 422
        assert "yaml" in bad.json()["detail"]


async def test_a_file_rules_id_cannot_be_taken(router_factory: RouterFactory) -> None:
    async with router_factory(FILES, worker=False) as r:
        response = await put(r, "from-file", {"yaml": rule_yaml("from-file", "http://127.0.0.1/a")})
        assert response.status_code == 422
        (error,) = response.json()["errors"]
        assert error["path"] == "id"
        assert error["line"] == 1
        assert "is already defined at" in error["message"]
        assert "shop.yaml:5:5 (a rule file)" in error["message"]


async def test_enable_disable_and_delete_take_effect(router_factory: RouterFactory, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/orders").respond_with_data("ok")
    async with router_factory(FILES) as r:
        assert (await put(r, "orders", {"yaml": rule_yaml("orders", httpserver.url_for("/orders"))})).status_code == 201
        off = await r.client.post("/api/ui-rules/orders/disable")
        assert off.status_code == 200
        assert off.json()["enabled"] is False
        assert off.json()["in_force"] is False
        assert "enabled: false" in (await r.client.get("/api/ui-rules/orders")).json()["yaml"]
        assert (await order(r))["status"] == "unmatched"
        on = await r.client.post("/api/ui-rules/orders/enable")
        assert on.status_code == 200
        assert on.json()["in_force"] is True
        assert "enabled:" not in (await r.client.get("/api/ui-rules/orders")).json()["yaml"]
        assert (await order(r, id_="o-2"))["status"] == "succeeded"
        gone = await r.client.delete("/api/ui-rules/orders")
        assert gone.status_code == 200
        assert gone.json() == {"id": "orders", "deleted": True}
        assert (await r.client.get("/api/ui-rules/orders")).status_code == 404
        assert (await r.client.delete("/api/ui-rules/orders")).status_code == 404
        assert (await r.client.post("/api/ui-rules/orders/enable")).status_code == 404
        assert (await order(r, id_="o-3"))["status"] == "unmatched"
        assert len(httpserver.log) == 1
        actions = [(actor, a) for actor, a, t in await audit_rows(r) if t == "orders"]
        assert actions == [
            ("test-admin (token)", "ui_rule_created"),
            ("test-admin (token)", "ui_rule_disabled"),
            ("test-admin (token)", "ui_rule_enabled"),
            ("test-admin (token)", "ui_rule_deleted"),
        ]


async def test_viewers_read_and_editors_change(router_factory: RouterFactory) -> None:
    async with router_factory(FILES, worker=False) as r:
        viewer = {"authorization": f"Bearer {await admin_token(r.settings.database_url, 'v', 'viewer')}"}
        editor = {"authorization": f"Bearer {await admin_token(r.settings.database_url, 'e', 'editor')}"}
        text = rule_yaml("orders", "http://127.0.0.1/a")
        denied = await put(r, "orders", {"yaml": text}, viewer)
        assert denied.status_code == 403
        assert "editor" in denied.json()["detail"]
        assert (await put(r, "orders", {"yaml": text}, editor)).status_code == 201
        assert (await r.client.get("/api/ui-rules/orders", headers=viewer)).status_code == 200
        assert (await r.client.post("/api/ui-rules/orders/disable", headers=viewer)).status_code == 403
        assert (await r.client.delete("/api/ui-rules/orders", headers=viewer)).status_code == 403
        r.client.headers.pop("authorization")
        assert (await r.client.get("/api/ui-rules")).status_code == 401


# -- loading ------------------------------------------------------------------------------------------------


async def test_a_ui_rule_that_no_longer_compiles_is_skipped_not_the_set(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/orders").respond_with_data("ok")
    async with router_factory(FILES) as r:
        assert (await put(r, "orders", {"yaml": rule_yaml("orders", httpserver.url_for("/orders"))})).status_code == 201
        engine = db.create_engine(r.settings.database_url)
        try:
            async with db.sessionmaker(engine)() as session:  # its source removed from the files, say
                now = utcnow()
                session.add(
                    UiRule(
                        id="orphan",
                        source="gone",
                        yaml=rule_yaml("orphan", "http://127.0.0.1/a", source="gone"),
                        enabled=True,
                        version=1,
                        created_at=now,
                        updated_at=now,
                        updated_by="test",
                    )
                )
                await session.commit()
        finally:
            await engine.dispose()

        async def reported() -> bool:
            return bool((await r.client.get("/health")).status_code == 503)

        await eventually(reported, timeout=5, what="the poll to load the broken rule")
        health = (await r.client.get("/health")).json()["checks"]["rules"]
        (error,) = health["errors"]
        assert error.startswith("ui:orphan:2:9: source: unknown source 'gone'")
        assert "not loaded" in error
        assert (await order(r))["runs"][0]["rule_id"] == "orders"  # the rest stays in force
        listing = (await r.client.get("/api/ui-rules")).json()["rules"]
        assert {x["id"]: x["in_force"] for x in listing} == {"orders": True, "orphan": False}
        refused = await r.client.post("/api/ui-rules/orphan/enable")
        assert refused.status_code == 422


async def test_stored_secrets_reach_rules_and_the_environment_wins(
    router_factory: RouterFactory, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/orders").respond_with_data("ok")
    key = Fernet.generate_key().decode()
    env = {"ROUTER_SECRET_SHARED": "from-env"}
    async with router_factory(FILES, secret_key=key, env=env) as r:
        engine = db.create_engine(r.settings.database_url)
        try:
            async with db.sessionmaker(engine)() as session:
                ring = secretstore.keyring(key)
                await secretstore.set_secret(session, ring, "ORDERS_TOKEN", "tok-123", "test")
                await secretstore.set_secret(session, ring, "SHARED", "from-store", "test")
                await session.commit()
        finally:
            await engine.dispose()
        text = rule_yaml("orders", httpserver.url_for("/orders")).replace(
            'json: {order: "{{ body.id }}"}',
            'json: {token: "{{ secrets.ORDERS_TOKEN }}", shared: "{{ secrets.SHARED }}"}',
        )
        assert (await put(r, "orders", {"yaml": text})).status_code == 201
        event = await order(r)
        assert event["status"] == "succeeded"
        assert httpserver.log[0][0].get_json() == {"token": "tok-123", "shared": "from-env"}
        step = event["runs"][0]["steps"][0]
        assert step["rendered"]["json"] == {"token": "[secret:ORDERS_TOKEN]", "shared": "[secret:SHARED]"}


async def test_a_worker_reloads_when_the_database_changes(tmp_path: Any, sqlite_url: str) -> None:
    """The poll: a holder watching the database picks up a saved rule, a disabled one and a new secret."""
    from router.settings import load_settings

    folder = write_rules(tmp_path / "rules", {"shop.yaml": FILES["shop.yaml"]})
    key = Fernet.generate_key().decode()
    settings = load_settings(database_url=sqlite_url, rules_dir=folder, secret_key=key)
    engine = db.create_engine(sqlite_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    from router.worker import load_rules

    holder = await load_rules(settings, RulesHolder(), sessions=sessions)
    assert set(holder.current.rules) == {"from-file"}
    watcher = watch_rules(settings, holder, sessions)
    try:
        async with sessions() as session:
            await uirules.save_rule(session, holder.current, "orders", rule_yaml("orders", "http://x.io/a"), "t")
            await session.commit()

        async def has(rule_id: str) -> bool:
            return rule_id in holder.current.rules

        await eventually(lambda: has("orders"), timeout=5, what="the new rule")
        version = holder.current.version
        async with sessions() as session:
            row = await uirules.get_rule(session, "orders")
            assert row is not None
            await uirules.switch_rule(session, holder.current, row, False, "t")
            await session.commit()

        async def dropped() -> bool:
            return "orders" not in holder.current.rules

        await eventually(dropped, timeout=5, what="the disabled rule to go")
        assert holder.current.version == load_ruleset(folder).version != version
        async with sessions() as session:
            await secretstore.set_secret(session, secretstore.keyring(key), "LATE", "v", "t")
            await session.commit()

        async def secret() -> bool:
            return holder.current.secrets.get("LATE") == "v"

        await eventually(secret, timeout=5, what="the new secret")
        assert holder.errors == []
    finally:
        await watcher.stop()
        await engine.dispose()


# -- the module ------------------------------------------------------------------------------------------------


def test_compile_reports_ui_locations(tmp_path: Any) -> None:
    rs = load_ruleset(write_rules(tmp_path, {"shop.yaml": FILES["shop.yaml"]}), env={})
    compiled = uirules.compile_ui_rule(rule_yaml("orders", "http://x.io/a"), "orders", rs)
    assert compiled.location == "ui:orders"
    assert compiled.steps[0].location.startswith("ui:orders:")
    with pytest.raises(RuleSetError) as caught:
        uirules.compile_ui_rule(
            rule_yaml("orders", "http://x.io/a").replace("{{ body.id }}", "{{ body.id"), "orders", rs
        )
    assert str(caught.value.errors[0]).startswith("ui:orders:11:21: steps[0].with.json.order: invalid template")


def test_yaml_helpers_keep_comments_and_order(tmp_path: Any) -> None:
    text = rule_yaml("orders", "http://x.io/a")
    off = uirules.set_enabled(text, False)
    assert off.splitlines()[:3] == ["id: orders", "source: shop", "enabled: false"]
    assert "# only orders" in off
    assert uirules.set_enabled(off, True) == text
    assert uirules.set_id(text, "other").startswith("id: other\n")
    dumped = uirules.dump_rule(
        {"steps": [{"with": {"text": "a\nb"}, "action": "slack", "id": "s"}], "source": "x", "id": "r"}
    )
    assert (
        dumped
        == "id: r\nsource: x\nsteps:\n  - id: s\n    action: slack\n    with:\n      text: |-\n        a\n        b\n"
    )
    both = "rules:\n  - " + text.replace("\n", "\n    ").rstrip() + "\n  - id: second\n    source: shop\n"
    assert [rid for rid, _ in uirules.rules_in_text(both)] == ["orders", "second"]
    first = uirules.rules_in_text(both)[0][1]
    assert "# only orders" in first
    assert parse_yaml(first.encode(), "a")[0] == parse_yaml(text.encode(), "b")[0]


async def test_the_poller_does_not_compile_the_rules_again_after_start_up(tmp_path: Any, sqlite_url: str) -> None:
    """The stamp read before the start-up load seeds the poll: nothing changed, nothing is compiled again
    (with 10,000 rules that is seconds of CPU at every start); a rule saved afterwards still reloads."""
    import asyncio

    from router.settings import load_settings
    from router.worker import load_rules

    folder = write_rules(tmp_path / "rules", {"shop.yaml": FILES["shop.yaml"]})
    settings = load_settings(database_url=sqlite_url, rules_dir=folder, secret_key=Fernet.generate_key().decode())
    engine = db.create_engine(sqlite_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    holder = await load_rules(settings, RulesHolder(), sessions=sessions)
    assert holder.ui_stamp is not None
    loaded = holder.current
    watcher = watch_rules(settings, holder, sessions)
    watcher.poll_seconds = 0.05
    try:
        await asyncio.sleep(0.5)  # several polls
        assert holder.current is loaded  # not reloaded
        async with sessions() as session:
            await uirules.save_rule(session, holder.current, "orders", rule_yaml("orders", "http://x.io/a"), "t")
            await session.commit()

        async def has() -> bool:
            return "orders" in holder.current.rules

        await eventually(has, timeout=5, what="the saved rule")
    finally:
        await watcher.stop()
        await engine.dispose()
