"""Schemathesis against the OpenAPI schema: every documented operation, fed generated (often nonsense)
parameters and bodies with a valid admin token, over a real uvicorn server — never a 5xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from router.app import create_app
from router.settings import load_settings
from tests.conftest import admin_token_for, live_server, write_rules

pytestmark = pytest.mark.security

RULES = {
    "s.yaml": """
    sources:
      - {id: shop, verify: {scheme: none}}
    rules:
      - id: notify
        source: shop
        steps:
          - id: post
            action: http
            with: {url: "http://127.0.0.1:1/x", json: {a: 1}}
    """
}
EXAMPLES = 20


def no_worker_yet(path: str, response: Any) -> bool:
    """This app runs no worker: /health/ready's 503 naming only the worker heartbeat is its answer, not a fault."""
    if path != "/health/ready" or response.status_code != 503:
        return False
    return bool(response.json().get("failing") == ["workers"])


def test_no_operation_answers_5xx(tmp_path: Path, redis_clean: str, sqlite_url: str) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    config = load_settings(database_url=sqlite_url, redis_url=redis_clean, rules_dir=write_rules(tmp_path / "r", RULES))
    app = create_app(config, ui_pages=False)
    token = admin_token_for(sqlite_url)
    schema = schemathesis.openapi.from_dict(app.openapi_schema.to_schema())
    operations = [result.ok() for result in schema.get_all_operations()]
    failures: list[str] = []
    calls = {"n": 0}
    with live_server(app) as url:
        for operation in operations:

            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def run(case: Any) -> None:
                calls["n"] += 1
                response = case.call(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10)
                if response.status_code >= 500 and not no_worker_yet(case.formatted_path, response):
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )

            run()
    print(f"schemathesis: {len(operations)} operations, {calls['n']} generated requests, {len(failures)} x 5xx")
    assert failures == []
