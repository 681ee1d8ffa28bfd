"""Hot reload: the web and its worker pick up edited rule files with no restart, or keep the old set."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import RouterFactory, eventually

SOURCE = """
sources:
  - id: shop
  - id: sink
"""


def rule(rule_id: str) -> str:
    """A rule that emits into ``sink`` (no rules there): no network, and the run is on record."""
    return f"""
rules:
  - id: {rule_id}
    source: shop
    steps:
      - id: tell
        action: emit
        with: {{source: sink, body: {{total: "{{{{ body.total }}}}"}}}}
"""


BROKEN = """
rules:
  - id: broken
    source: shop
    filter: body.total >>> 1
    steps: [{id: s, action: emit, with: {source: sink}}]
"""


def write(r: Any, name: str, text: str) -> None:
    path = Path(r.settings.rules_dir) / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(textwrap.dedent(text).lstrip())
    tmp.replace(path)  # as editors and `git checkout` do: the file is never seen half-written


async def listing(r: Any) -> dict[str, Any]:
    response = await r.client.get("/api/rules")
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


async def wait_version(r: Any, old: str, what: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def changed() -> bool:
        seen.update(await listing(r))
        return bool(seen["version"] != old)

    await eventually(changed, timeout=10, what=what)
    return seen


async def test_an_edit_is_picked_up_and_routes_the_next_event(router_factory: RouterFactory) -> None:
    files = {"shop.yaml": SOURCE, "a.yaml": rule("first")}
    async with router_factory(files) as r:
        before = await listing(r)
        sent = await r.hook("shop", {"total": 5})
        first = await r.wait_event(sent.json()["event_id"])
        assert [run["rule_id"] for run in first["runs"]] == ["first"]

        write(r, "b.yaml", rule("second"))
        after = await wait_version(r, before["version"], "the new rule set")
        assert sorted(x["id"] for x in after["rules"]) == ["first", "second"]
        assert after["errors"] == []
        sent = await r.hook("shop", {"total": 7})
        second = await r.wait_event(sent.json()["event_id"])
        assert sorted(run["rule_id"] for run in second["runs"]) == ["first", "second"]
        assert {run["ruleset_version"] for run in second["runs"]} == {after["version"]}
        assert {run["ruleset_version"] for run in first["runs"]} != {after["version"]}
        health = await r.client.get("/health")
        assert health.json()["checks"]["rules"]["version"] == after["version"]


async def test_a_broken_edit_keeps_the_old_rules_and_degrades_health(router_factory: RouterFactory) -> None:
    files = {"shop.yaml": SOURCE, "a.yaml": rule("first")}
    async with router_factory(files, worker=False) as r:
        good = await listing(r)
        assert (await r.client.get("/health")).json()["checks"]["rules"]["ok"] is True
        write(
            r,
            "b.yaml",
            BROKEN,
        )

        async def degraded() -> bool:
            return bool((await listing(r))["errors"])

        await eventually(degraded, timeout=10, what="the reload error")
        now = await listing(r)
        assert now["version"] == good["version"]
        assert [x["id"] for x in now["rules"]] == ["first"]
        assert any("b.yaml:4:13: rules[0].filter: invalid JMESPath" in e for e in now["errors"])
        health = await r.client.get("/health")
        assert health.status_code == 503
        assert health.json()["checks"]["rules"]["version"] == good["version"]
        assert health.json()["checks"]["rules"]["errors"] == now["errors"]

        # The old rules still route; fixing the file clears the errors and loads it.
        write(r, "b.yaml", rule("second"))
        fixed = await wait_version(r, good["version"], "the fixed rule set")
        assert fixed["errors"] == []
        assert sorted(x["id"] for x in fixed["rules"]) == ["first", "second"]
        assert (await r.client.get("/health")).status_code == 200


async def test_rule_tests_and_other_files_do_not_reload(router_factory: RouterFactory) -> None:
    import asyncio

    files = {"shop.yaml": SOURCE}
    async with router_factory(files, worker=False) as r:
        before = await listing(r)
        write(r, "shop.test.yaml", "cases: [\n")  # not a rule file: would fail to load if it were one
        (Path(r.settings.rules_dir) / "notes.txt").write_text("hello")
        await asyncio.sleep(0.8)
        after = await listing(r)
        assert after["version"] == before["version"]
        assert after["errors"] == []


async def test_a_default_secret_warning_is_logged_once_not_on_every_reload(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from router.rules.holder import RulesHolder
    from router.rules.reload import reload_rules
    from router.settings import load_settings

    folder = tmp_path / "rules"
    folder.mkdir()
    signed = "sources:\n  - id: gh\n    verify: {scheme: github, secret: '${GH_SECRET_UNSET_HERE:-dev}'}\n"
    (folder / "a.yaml").write_text(signed)
    settings = load_settings(rules_dir=folder, database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    holder = RulesHolder()
    with capture_logs() as logs:
        assert await reload_rules(settings, holder)
        (folder / "b.yaml").write_text("sources:\n  - id: other\n")  # an unrelated edit: reloaded, same warning
        assert await reload_rules(settings, holder)
        assert await reload_rules(settings, holder)
    warnings = [entry for entry in logs if entry["event"] == "rules_warning"]
    assert len(warnings) == 1, warnings
    assert "default secret" in warnings[0]["message"]


def test_templates_read_the_public_url(monkeypatch: Any) -> None:
    from router.pipeline.match import build_context
    from router.rules.templating import compile_tree, render_tree

    monkeypatch.setenv("ROUTER_PUBLIC_URL", "http://127.0.0.1:18100/")
    ctx = build_context({"body": {}, "headers": {}, "query": {}}, {})
    assert ctx["router"] == {"public_url": "http://127.0.0.1:18100"}
    tree = compile_tree({"url": "{{ router.public_url ~ '/inbox/slack' }}"}, lambda path: "test")
    assert render_tree(tree, ctx) == {"url": "http://127.0.0.1:18100/inbox/slack"}
