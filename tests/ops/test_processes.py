"""The real commands as separate processes: `router serve` + `router worker`, and `router dev` on embedded defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import REPO, admin_token_for, free_port


@contextmanager
def running(args: list[str], env: dict[str, str], cwd: Path, ready_url: str | None = None) -> Iterator[Any]:
    log = cwd / f"{args[0]}-{int(time.time() * 1000)}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "router", *args], cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        if ready_url:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(ready_url, timeout=1).status_code < 500:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"{args} did not start:\n{log.read_text()}")
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.returncode not in (0, -15):
        print(log.read_text())


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTER_")}
    env |= {"ROUTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'router.db'}", "PYTHONPATH": str(REPO)}
    env |= {"ROUTER_EGRESS_ALLOW": "127.0.0.0/8,::1"}  # the inbox the examples deliver to is on loopback
    return env | extra


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def wait_inbox(url: str, name: str, token: str, timeout: float = 10.0) -> tuple[list[dict[str, Any]], float]:
    start = time.monotonic()
    while True:
        items: list[dict[str, Any]] = httpx.get(f"{url}/api/inbox/{name}", headers=auth(token)).json()["requests"]
        if items or time.monotonic() - start > timeout:
            return items, time.monotonic() - start
        time.sleep(0.02)


def copy_examples(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "rules", tmp_path / "rules")
    shutil.copytree(REPO / "samples", tmp_path / "samples")
    return tmp_path


def _router(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Runs `python -m router ARGS` and returns what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "router", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_serve_and_worker_processes_deliver_a_signed_push(tmp_path: Path, redis_clean: str) -> None:
    cwd = copy_examples(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(
        tmp_path,
        ROUTER_REDIS_URL=redis_clean,
        ROUTER_SECRET_SLACK_WEBHOOK_URL=f"{url}/inbox/slack",
        GITHUB_WEBHOOK_SECRET="proc-secret",
    )
    token = admin_token_for(env["ROUTER_DATABASE_URL"])
    with (
        running(["serve", "--port", str(port), "--workers", "2"], env, cwd, ready_url=f"{url}/health"),
        running(["worker"], env, cwd),
    ):
        health = httpx.get(f"{url}/health")
        assert health.status_code == 200, health.text
        sent = _router(
            [
                "send",
                "github",
                "samples/github-push.json",
                "--url",
                url,
                "-H",
                "X-GitHub-Event: push",
                "-H",
                "X-GitHub-Delivery: proc-1",
            ],
            cwd,
            env,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.startswith("202 ")
        items, _ = wait_inbox(url, "slack", token)
        events = httpx.get(f"{url}/api/events", headers=auth(token)).json()["events"]
    assert len(items) == 1
    assert "pushed" in items[0]["body"]["text"]
    assert events[0]["status"] == "succeeded"


@pytest.mark.skipif(sys.platform != "linux", reason="embedded Redis is a Linux binary here")
def test_dev_runs_on_embedded_defaults_and_the_tour_works(tmp_path: Path) -> None:
    cwd = copy_examples(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(tmp_path, ROUTER_SECRET_SLACK_WEBHOOK_URL=f"{url}/inbox/slack")
    env.pop("ROUTER_DATABASE_URL")  # the default: a SQLite file under ./data/
    env.pop("ROUTER_EGRESS_ALLOW")  # `router dev` opens loopback itself
    with running(["dev", "--port", str(port)], env, cwd, ready_url=f"{url}/health"):
        log = next(cwd.glob("dev-*.log")).read_text()
        assert "router dev lets steps call loopback addresses" in log
        socket = log.split("embedded Redis: unix://", 1)[1].split()[0]
        embedded = [p for p in psutil.process_iter(["cmdline"]) if socket in " ".join(p.info["cmdline"] or [])]
        assert embedded, f"no embedded Redis is serving {socket}"
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        body = (cwd / "samples" / "github-push.json").read_bytes()
        sent = _router(
            ["send", "github", "samples/github-push.json", "--url", url, "-H", "X-GitHub-Event: push"], cwd, env
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        token = admin_token_for(f"sqlite+aiosqlite:///{cwd / 'data' / 'router.db'}")
        items, waited = wait_inbox(url, "slack", token)
        schema = httpx.get(f"{url}/schema/openapi.json")
    psutil.wait_procs(embedded, timeout=10)
    assert not [p for p in embedded if p.is_running()], "SIGTERM left the embedded Redis running"
    assert (cwd / "data" / "router.db").exists()
    assert len(items) == 1, "the Slack-shaped message did not reach the inbox"
    assert waited < 1.0, f"delivery took {waited:.2f} s"
    repo = json.loads(body)["repository"]["full_name"]
    assert repo in items[0]["body"]["text"]
    assert schema.status_code == 200
    assert "/hooks/{source}" in schema.json()["paths"]


def test_serve_and_worker_processes_pick_up_an_edited_rule_without_restart(tmp_path: Path, redis_clean: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def rule(text: str) -> str:
        step = {"id": "note", "action": "http", "with": {"url": f"{url}/inbox/out", "json": {"text": text}}}
        return json.dumps({"sources": [{"id": "shop"}], "rules": [{"id": "r", "source": "shop", "steps": [step]}]})

    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "r.yaml").write_text(rule("version one"))
    env = base_env(tmp_path, ROUTER_REDIS_URL=redis_clean, ROUTER_RULES_DIR=str(folder))
    token = admin_token_for(env["ROUTER_DATABASE_URL"])
    with (
        running(["serve", "--port", str(port)], env, tmp_path, ready_url=f"{url}/health"),
        running(["worker"], env, tmp_path),
    ):
        httpx.post(f"{url}/hooks/shop", json={"n": 1})
        first, _ = wait_inbox(url, "out", token)
        version = httpx.get(f"{url}/api/rules", headers=auth(token)).json()["version"]
        (folder / "r.yaml").write_text(rule("version two"))
        deadline = time.monotonic() + 15
        while httpx.get(f"{url}/api/rules", headers=auth(token)).json()["version"] == version:  # web reloaded
            assert time.monotonic() < deadline, "the web process did not reload the rules"
            time.sleep(0.1)
        time.sleep(1.0)  # the worker watches the same folder on its own
        httpx.post(f"{url}/hooks/shop", json={"n": 2})
        deadline = time.monotonic() + 15
        while len(items := httpx.get(f"{url}/api/inbox/out", headers=auth(token)).json()["requests"]) < 2:
            assert time.monotonic() < deadline, "the second delivery did not arrive"
            time.sleep(0.05)
    assert first[0]["body"] == {"text": "version one"}
    assert items[0]["body"] == {"text": "version two"}, "the worker still routes with the old rules"


@pytest.mark.skipif(sys.platform != "linux", reason="embedded Redis is a Linux binary here")
def test_the_tour_works_on_a_port_other_than_8000(tmp_path: Path) -> None:
    """README's tour with `router dev --port P`: the banner, `router send` without --url, the example rules'
    deliveries to this server's inbox (Slack message and the Stripe chain), a repeat answered as a duplicate."""
    cwd = copy_examples(tmp_path)
    port = free_port()
    assert port != 8000
    url = f"http://127.0.0.1:{port}"
    env = base_env(tmp_path)
    env.pop("ROUTER_DATABASE_URL")  # the defaults, as a newcomer runs it: ./data, embedded Redis
    env.pop("ROUTER_EGRESS_ALLOW")
    with running(["dev", "--port", str(port)], env, cwd, ready_url=f"{url}/health"):
        banner = next(cwd.glob("dev-*.log")).read_text()
        assert f"Event Router dev: {url}" in banner
        assert f"router.public_url = {url}" in banner
        assert f"curl -s {url}/health" in banner
        assert "router send github samples/github-push.json -H 'X-GitHub-Event: push'" in banner
        assert ":8000" not in banner
        assert banner.count("Will assume non-transactional DDL") == 1, "the migrations ran (and printed) twice"
        github = _router(["send", "github", "samples/github-push.json", "-H", "X-GitHub-Event: push"], cwd, env)
        assert github.returncode == 0, github.stdout + github.stderr
        assert github.stdout.startswith("202 ")
        stripe = _router(["send", "stripe", "samples/stripe-payment_intent.succeeded.json"], cwd, env)
        assert stripe.stdout.startswith("202 "), stripe.stdout + stripe.stderr
        again = _router(["send", "stripe", "samples/stripe-payment_intent.succeeded.json"], cwd, env)
        assert again.stdout.startswith("200 "), again.stdout + again.stderr
        assert json.loads(again.stdout[4:]) == {
            "event_id": json.loads(stripe.stdout[4:])["event_id"],
            "duplicate": True,
        }
        token = admin_token_for(f"sqlite+aiosqlite:///{cwd / 'data' / 'router.db'}")
        slack, _ = wait_inbox(url, "slack", token, timeout=15)
        shipping, _ = wait_inbox(url, "shipping", token, timeout=15)
    assert not (cwd / "data" / "dev-server.json").exists(), "the dev server's note outlived it"
    assert len(slack) == 1
    assert "octo-org/event-router" in slack[0]["body"]["text"]
    assert len(shipping) == 1
    shipment = shipping[0]["body"]
    picked = {k: shipment.get(k) for k in ("order_id", "amount", "total", "email")}
    assert picked == {
        "order_id": "ord_1042",
        "amount": 12900,
        "total": "129.00 USD",
        "email": "jenny.rosen@example.com",
    }


def test_send_finds_no_dev_server_and_says_where_it_tried(tmp_path: Path) -> None:
    cwd = copy_examples(tmp_path)
    (cwd / "data").mkdir()
    (cwd / "data" / "dev-server.json").write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": 2**22 + 12345}))
    env = base_env(tmp_path)
    env.pop("ROUTER_DATABASE_URL")
    sent = _router(["send", "forms", "samples/form-signup.json", "--no-sign"], cwd, env)  # a stale note is ignored
    assert sent.returncode == 1
    assert "could not reach http://127.0.0.1:8000/hooks/forms (from the default address)" in sent.stderr
    env["ROUTER_PUBLIC_URL"] = "http://127.0.0.1:1"
    sent = _router(["send", "forms", "samples/form-signup.json", "--no-sign"], cwd, env)
    assert "could not reach http://127.0.0.1:1/hooks/forms (from ROUTER_PUBLIC_URL)" in sent.stderr
