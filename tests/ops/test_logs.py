"""Logs: one pipeline, JSON in production and readable text under `router dev`; lines about a delivery carry
event_id, rule, run_id and step; the libraries' loggers come through the same pipeline, secrets redacted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pytest_httpserver import HTTPServer

from router.logs import REDACTED, configure, json_for, remember_secrets, reset
from tests.conftest import RouterFactory


@pytest.fixture
def reset_logging() -> Iterator[None]:
    yield
    reset()


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


RULES = """
sources:
  - {id: shop, verify: {scheme: none}}
rules:
  - id: order-flow
    source: shop
    steps:
      - {id: lookup, action: http, with: {url: "SINK/ok"}}
      - {id: notify, action: http, with: {url: "SINK/down", headers: {x-key: "{{ secrets.LOG_KEY }}"}}}
"""


@pytest.mark.usefixtures("reset_logging")
async def test_delivery_lines_carry_event_rule_run_and_step_as_json(
    router_factory: RouterFactory, httpserver: HTTPServer, capfd: pytest.CaptureFixture[str]
) -> None:
    httpserver.expect_request("/ok").respond_with_data("ok")
    httpserver.expect_request("/down").respond_with_data("nope", status=400)
    configure("debug", json_logs=True)  # a line per routed event and per finished run is written at DEBUG
    sink = httpserver.url_for("").rstrip("/")
    async with router_factory({"r.yaml": RULES.replace("SINK", sink)}, env={"ROUTER_SECRET_LOG_KEY": "k3y-" * 4}) as r:
        event_id = (await r.hook("shop", {"order": 1})).json()["event_id"]
        event = await r.wait_event(event_id)
        logging.getLogger("uvicorn.error").warning("a line from uvicorn")
    run = event["runs"][0]
    captured = capfd.readouterr()
    lines = json_lines(captured.err)
    by_event = {line["event"]: line for line in lines}
    routed = by_event["event_routed"]
    assert routed["event_id"] == event_id
    failed = by_event["step_failed"]
    assert failed["event_id"] == event_id
    assert failed["rule"] == "order-flow"
    assert failed["run_id"] == run["id"]
    assert failed["step"] == "notify"
    finished = by_event["run_finished"]
    assert (finished["run_id"], finished["rule"], finished["event_id"]) == (run["id"], "order-flow", event_id)
    assert all({"level", "timestamp", "logger"} <= line.keys() for line in lines)
    uvicorn = [line for line in lines if line.get("logger") == "uvicorn.error"]
    assert uvicorn[0]["event"] == "a line from uvicorn"
    assert uvicorn[0]["level"] == "warning"


@pytest.mark.usefixtures("reset_logging")
def test_console_under_dev_json_elsewhere(capfd: pytest.CaptureFixture[str]) -> None:
    assert json_for("dev", "auto") is False
    assert json_for("serve", "auto") is True
    assert json_for("worker", "auto") is True
    assert json_for("dev", "json") is True
    assert json_for("worker", "console") is False
    configure("info", json_logs=False)
    structlog.get_logger("router.test").info("event_routed", event_id="01ABC")
    logging.getLogger("arq.worker").warning("a line from arq")
    err = capfd.readouterr().err
    assert "event_routed" in err
    assert "event_id=01ABC" in err
    assert "a line from arq" in err
    assert not err.lstrip().startswith("{")


@pytest.mark.usefixtures("reset_logging")
def test_secrets_are_redacted_from_our_lines_library_lines_and_tracebacks(capfd: pytest.CaptureFixture[str]) -> None:
    secret = "canary-in-the-log-7f3a9"
    remember_secrets([secret, "abc"])  # too short to redact safely: left alone
    configure("debug", json_logs=True)
    log = structlog.get_logger("router.test")
    log.debug("step_failed", error=f"POST https://hooks.example/{secret} answered 500", nested={"k": [secret]})
    logging.getLogger("httpx").info("HTTP Request: POST https://hooks.example/%s", secret)
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        log.exception("step_crashed")
    logging.getLogger("sqlalchemy.engine.Engine").info("INSERT ... (%r,)", secret)
    log.info("short", value="abc")
    err = capfd.readouterr().err
    assert secret not in err
    lines = json_lines(err)
    assert len(lines) == 5
    assert lines[0]["error"] == f"POST https://hooks.example/{REDACTED} answered 500"
    assert lines[0]["nested"] == {"k": [REDACTED]}
    assert lines[1]["event"] == f"HTTP Request: POST https://hooks.example/{REDACTED}"
    assert f"RuntimeError: boom {REDACTED}" in lines[2]["exception"]
    assert REDACTED in lines[3]["event"]
    assert lines[4]["value"] == "abc"  # too short to be hunted for
