"""Rejected webhooks leave a trace: recorded (bounded in count and rate), listed by the API, logged, and shown."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from router.records.rejections import RejectionLog
from tests.conftest import Router, RouterFactory, eventually, sign_in
from tests.helpers import github_signature

RULES = {
    "r.yaml": """
        sources:
          - id: gh
            verify: {scheme: github, secret: s3cret-value}
          - id: open
        rules: []
    """
}


async def rejections(r: Router, query: str = "") -> dict[str, Any]:
    response = await r.client.get(f"/api/rejections{query}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def wait_rejections(r: Router, n: int, query: str = "") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def enough() -> bool:
        found[:] = (await rejections(r, query))["rejections"]
        return len(found) >= n

    await eventually(enough, what=f"{n} rejection(s) recorded")
    return found


async def test_every_kind_of_refusal_is_recorded_with_its_reason(
    router_factory: RouterFactory, database_url: str
) -> None:
    async with router_factory(RULES, database_url=database_url, max_body_bytes=1000) as r:
        body = json.dumps({"hello": "world"}).encode()
        sent = [
            await r.client.post(
                "/hooks/gh", content=body, headers={"x-hub-signature-256": github_signature(b"x", "s3cret-value")}
            ),
            await r.client.post("/hooks/gh", content=body),  # no signature
            await r.client.post("/hooks/nope", content=body),
            await r.client.post("/hooks/open", content=b"x" * 2000),
            await r.client.post("/hooks/open", content=b'{"a": ', headers={"content-type": "application/json"}),
            await r.client.post("/hooks/open", content=body, headers={"content-encoding": "gzip"}),
        ]
        assert [s.status_code for s in sent] == [401, 401, 404, 413, 400, 415]
        accepted = await r.client.post("/hooks/open", json={"fine": True})
        assert accepted.status_code == 202
        found = await wait_rejections(r, 6)
        assert len(found) == 6  # the accepted one is not a rejection
        by_status = {(x["status"], x["source"]): x for x in found}
        wrong = by_status[(401, "gh")]
        assert set(wrong) >= {"id", "source", "received_at", "status", "reason", "remote_addr", "headers", "body_size"}
        assert "signature does not match" in wrong["reason"] or "missing" in wrong["reason"]
        assert wrong["body_size"] == len(body)
        assert wrong["body_prefix"] == body.decode()
        assert wrong["remote_addr"]
        signed = [x for x in found if "x-hub-signature-256" in x["headers"]]
        assert signed, "the signature header is kept, redacted"
        assert signed[0]["headers"]["x-hub-signature-256"] == "[redacted]"
        assert "Unknown source" in by_status[(404, "nope")]["reason"] or by_status[(404, "nope")]["title"]
        assert by_status[(413, "open")]["body_size"] == 2000
        assert "Body is not valid JSON" in by_status[(400, "open")]["title"]
        assert by_status[(415, "open")]["status"] == 415
        # filters and paging
        assert {x["status"] for x in (await rejections(r, "?status=401"))["rejections"]} == {401}
        assert {x["source"] for x in (await rejections(r, "?source=open"))["rejections"]} == {"open"}
        future = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        assert (await rejections(r, f"?since={future.replace('+', '%2B')}"))["rejections"] == []
        first = await rejections(r, "?limit=4")
        assert len(first["rejections"]) == 4
        rest = await rejections(r, f"?limit=4&before={first['next']}")
        assert len(rest["rejections"]) == 2
        assert rest["next"] is None
        assert {x["id"] for x in first["rejections"]}.isdisjoint(x["id"] for x in rest["rejections"])


async def test_a_flood_is_counted_not_stored_row_by_row_and_the_store_is_capped(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False, rejections_per_second=5, rejections_keep=20) as r:
        with capture_logs() as logs:
            for _ in range(300):
                response = await r.client.post("/hooks/gh", content=b"{}")
                assert response.status_code == 401
            found: list[dict[str, Any]] = []

            async def all_counted() -> bool:
                found[:] = (await rejections(r, "?limit=500"))["rejections"]
                return sum(x["count"] for x in found) >= 300 or len(found) >= 20

            await eventually(all_counted, what="the flood counted")
        assert len(found) <= 20, "more rows than ROUTER_REJECTIONS_KEEP"
        one_by_one = [x for x in found if x["count"] == 1]
        folded = [x for x in found if x["count"] > 1]
        assert len(one_by_one) <= 50 + 5  # the burst (10 s worth) plus what the rate allowed meanwhile
        assert folded, "refusals beyond the rate were dropped instead of counted"
        assert "faster than ROUTER_REJECTIONS_PER_SECOND" in folded[0]["reason"]
        lines = [e for e in logs if e["event"] == "ingest_rejected"]
        assert 1 <= len(lines) <= 55, "one log line per recorded rejection, rate-limited"
        assert any(e["event"] == "ingest_rejected_many" for e in logs)


async def test_the_writer_counts_everything_it_folds(tmp_path: Any) -> None:
    from sqlalchemy import func, select

    from router.records import db
    from router.records.models import Rejection

    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    await db.migrate(engine)
    try:
        rejections_log = RejectionLog(engine, keep=1000, per_second=1)
        for n in range(120):
            rejections_log.note(
                source=f"s{n % 70}", status=401, title="t", reason="r", remote_addr="127.0.0.1",
                headers={"authorization": "Bearer abc"}, body_size=2,
            )  # fmt: skip
        await rejections_log.flush()
        async with engine.connect() as conn:
            total = await conn.scalar(select(func.sum(Rejection.count)))
            rows = await conn.scalar(select(func.count()).select_from(Rejection))
            headers = await conn.scalar(select(Rejection.headers).limit(1))
        assert total == 120
        assert rows is not None
        assert rows <= 10 + 50 + 1  # the burst, at most MAX_FOLDED groups, and the '*' group
        assert headers == {"authorization": "[redacted]"}
    finally:
        await engine.dispose()


def test_noting_a_rejection_is_not_awaited() -> None:
    """The refusal path calls note() without awaiting: it cannot hold up ingest on the database."""
    assert not inspect.iscoroutinefunction(RejectionLog.note)


@pytest.mark.ui
async def test_the_rejected_page_and_the_overview_show_them(router_factory: RouterFactory) -> None:
    async with router_factory(RULES, worker=False) as r:
        await r.client.post("/hooks/gh", content=b"{}")
        await r.client.post("/hooks/nope", content=b"{}")
        await wait_rejections(r, 2)
        await sign_in(r)
        page = await r.client.get("/rejections")
        assert page.status_code == 200
        assert "missing X-Hub-Signature-256 header" in page.text
        assert "Unknown source" in page.text
        only = await r.client.get("/rejections?source=gh")
        assert "missing X-Hub-Signature-256 header" in only.text
        assert "Unknown source" not in only.text
        overview = await r.client.get("/")
        assert 'data-testid="rejected-count"' in overview.text
        assert "/rejections" in overview.text
