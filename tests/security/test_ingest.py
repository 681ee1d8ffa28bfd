"""Hostile bodies at ``POST /hooks/{source}``: depth, width, encoding, size; always 4xx, never 5xx, fast.

The size limit is checked against a real uvicorn server (the test client cannot stream), with a
generator that counts how much of the body the client was allowed to send.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from router.app import create_app
from router.pipeline.ingest import json_depth_exceeds, parse_body
from router.settings import load_settings
from tests.conftest import RouterFactory, admin_token_for, live_server, write_rules

pytestmark = pytest.mark.security

RULES = {
    "s.yaml": """
    sources:
      - id: open
        dedupe: false
    """
}
JSON = {"content-type": "application/json"}
TOO_DEEP = "JSON nested deeper than 64 levels"


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def nested_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# (name, body, headers, expected status, expected detail or title fragment)
Case = tuple[str, bytes, dict[str, str], int, str]
BOMB = gzip.compress(b"[" + b"0," * 5_000_000 + b"0]")  # 10 MB of JSON in ~10 KB


def corpus() -> list[Case]:
    text = {"content-type": "text/plain"}
    return [
        ("10,000-deep arrays", nested(10_000), JSON, 400, TOO_DEEP),
        ("10,000-deep objects", nested_objects(10_000), JSON, 400, TOO_DEEP),
        ("100,000 unclosed [", b"[" * 100_000, JSON, 400, TOO_DEEP),
        ("100,000-deep mixed [{", b'[{"a":' * 50_000, JSON, 400, TOO_DEEP),
        ("depth 65", nested(65), JSON, 400, TOO_DEEP),
        ("depth 64", nested(64), JSON, 202, ""),
        ("objects depth 64", nested_objects(64), JSON, 202, ""),
        ("deep, no content type", nested(5_000), {}, 400, TOO_DEEP),
        ("deep, +json type", nested(5_000), {"content-type": "application/vnd.api+json"}, 400, TOO_DEEP),
        ("deep, charset param", nested(5_000), {"content-type": "application/json; charset=utf-8"}, 400, TOO_DEEP),
        ("brackets inside a string", b'["' + b"[" * 10_000 + b'"]', JSON, 202, ""),
        ("escaped quote then brackets", b'["\\"' + b"[{" * 5_000 + b'"]', JSON, 202, ""),
        ("escaped backslash ends the string", b'["\\\\", ' + nested(100) + b"]", JSON, 400, TOO_DEEP),
        ("brackets in keys", b'{"' + b"{" * 10_000 + b'": 1}', JSON, 202, ""),
        ("wide and shallow", b"[" + b",".join([b"[[1],{}]"] * 20_000) + b"]", JSON, 202, ""),
        ("deep text/plain is text", nested(10_000), text, 202, ""),
        ("deep form is a form", b"a=" + nested(10_000), {"content-type": "application/x-www-form-urlencoded"}, 202, ""),
        ("invalid UTF-8 in JSON", b'{"a": "\xff\xfe"}', JSON, 400, "Body is not valid UTF-8"),
        ("invalid UTF-8 in text", b"caf\xe9", text, 400, "Body is not valid UTF-8"),
        ("overlong UTF-8", b'{"a": "\xc0\xaf"}', JSON, 400, "Body is not valid UTF-8"),
        ("lone surrogate escape", b'{"a": "\\ud800"}', JSON, 400, "Body is not valid JSON"),
        ("NUL bytes", b'{"a": 1}\x00\x00', JSON, 400, "Body is not valid JSON"),
        ("truncated", b'{"a": [1, 2', JSON, 400, "Body is not valid JSON"),
        ("huge number", b'{"a": ' + b"9" * 100_000 + b"}", JSON, 400, "Body is not valid JSON"),
        ("gzip bomb, gzip", BOMB, {**JSON, "content-encoding": "gzip"}, 415, "Content-Encoding gzip is not accepted"),
        ("gzip bomb, no header", BOMB, JSON, 400, "Body is not valid JSON"),
        ("deflate", b"x", {**JSON, "content-encoding": "deflate"}, 415, "Content-Encoding deflate"),
        ("br", b"x", {**JSON, "content-encoding": "br"}, 415, "Content-Encoding br"),
        ("GZIP upper case", b"x", {**JSON, "content-encoding": "GZIP"}, 415, "Content-Encoding gzip"),
        ("identity, gzip", b"x", {**JSON, "content-encoding": "identity, gzip"}, 415, "Content-Encoding gzip"),
        ("identity", b'{"ok": 1}', {**JSON, "content-encoding": "identity"}, 202, ""),
        ("empty encoding", b'{"ok": 1}', {**JSON, "content-encoding": ""}, 202, ""),
    ]


@pytest.mark.no_cover  # it times the code: coverage's tracer would be measured too
async def test_hostile_body_corpus_is_4xx_and_fast(router_factory: RouterFactory) -> None:
    cases = corpus()
    statuses: dict[int, int] = {}
    slowest = 0.0
    async with router_factory(RULES, worker=False, max_body_bytes=1024 * 1024) as r:
        for name, body, headers, status, detail in cases:
            started = time.monotonic()
            response = await r.client.post("/hooks/open", content=body, headers=headers)
            slowest = max(slowest, time.monotonic() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code == status, (name, response.status_code, response.text[:300])
            if status != 202:
                problem = response.json()
                assert response.headers["content-type"] == "application/problem+json", name
                assert detail in f"{problem['title']}: {problem.get('detail', '')}", (name, problem)
        gzip_twice = await r.client.post(
            "/hooks/open",
            content=b'{"ok": 1}',
            headers=httpx.Headers([("content-type", "application/json"), ("content-encoding", "identity"),
                                   ("content-encoding", "gzip")]),
        )  # fmt: skip
        statuses[gzip_twice.status_code] = statuses.get(gzip_twice.status_code, 0) + 1
    five_xx = sum(n for code, n in statuses.items() if code >= 500)
    print(
        f"hostile bodies: {len(cases) + 1} cases, {dict(sorted(statuses.items()))}, {five_xx} x 5xx, "
        f"slowest {slowest:.2f} s"
    )
    assert gzip_twice.status_code == 415
    assert five_xx == 0
    assert slowest < 1.0


@pytest.mark.no_cover  # it times the code: coverage's tracer would be measured too
def test_depth_scan_is_cheap() -> None:
    """The pre-check alone, on 1 MiB-class inputs of the worst shapes."""
    inputs = {
        "1M keys": b"{" + b",".join(b'"k%d":0' % i for i in range(1_000_000)) + b"}",
        "300k brackets": b"[" + b",".join([b"[[],{}]"] * 150_000) + b"]",
        "500k escapes": b'["' + b'\\"' * 500_000 + b'"]',
        "1M [": b"[" * 1_000_000,
    }
    times = {}
    for name, raw in inputs.items():
        started = time.monotonic()
        json_depth_exceeds(raw)
        times[name] = time.monotonic() - started
    print("depth scan: " + ", ".join(f"{name} {t * 1000:.0f} ms" for name, t in times.items()))
    assert max(times.values()) < 0.3


@pytest.fixture
def live(tmp_path: Path, redis_url: str, sqlite_url: str) -> Any:
    def start(limit: int) -> Any:
        settings = load_settings(
            database_url=sqlite_url,
            redis_url=redis_url,
            max_body_bytes=limit,
            rules_dir=write_rules(tmp_path / f"rules-{limit}", RULES),
        )
        return live_server(create_app(settings))

    return start


class Counted:
    """A request body that counts how much of it the HTTP client pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.total, self.chunk, self.pulled = total, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        while self.pulled < self.total:
            self.pulled += self.chunk
            yield b"x" * self.chunk


def test_oversized_bodies_are_refused_before_they_are_read(live: Any, sqlite_url: str) -> None:
    limit, total = 1024 * 1024, 256 * 1024 * 1024
    with live(limit) as url:
        chunked = Counted(total)
        no_length = httpx.post(f"{url}/hooks/open", content=chunked, headers={"content-type": "text/plain"}, timeout=30)
        declared = Counted(total)
        with_length = httpx.post(
            f"{url}/hooks/open",
            content=declared,
            headers={"content-type": "text/plain", "content-length": str(total)},
            timeout=30,
        )
        just_over = httpx.post(f"{url}/hooks/open", content=b"x" * (limit + 1), headers={"content-type": "text/plain"})
        at_limit = httpx.post(f"{url}/hooks/open", content=b"x" * limit, headers={"content-type": "text/plain"})
        token = admin_token_for(sqlite_url)
        listing = httpx.get(f"{url}/api/events", headers={"authorization": f"Bearer {token}"}).json()
    mib = 1024 * 1024
    print(
        f"oversized bodies: {total // mib} MiB chunked -> {no_length.status_code} after the client sent "
        f"{chunked.pulled / mib:.1f} MiB; {total // mib} MiB with Content-Length -> {with_length.status_code} after "
        f"{declared.pulled / mib:.1f} MiB; limit+1 -> {just_over.status_code}; limit -> {at_limit.status_code}"
    )
    assert no_length.status_code == 413
    assert with_length.status_code == 413
    assert with_length.json()["detail"] == f"the body is {total} bytes; the limit is {limit} (ROUTER_MAX_BODY_BYTES)"
    assert just_over.status_code == 413
    assert at_limit.status_code == 202
    assert chunked.pulled < total // 8
    assert declared.pulled < total // 8
    assert [e["id"] for e in listing["events"]] == [at_limit.json()["event_id"]]


@pytest.mark.no_cover  # it times the code: coverage's tracer would be measured too
def test_a_million_keys_within_the_limit_answers_fast(live: Any) -> None:
    """Parsing is bounded by the body limit; end to end, storing the decoded body dominates (see docs/security.md)."""
    body = b"{" + b",".join(b'"%x":0' % i for i in range(1_000_000)) + b"}"
    started = time.monotonic()
    assert parse_body(body, "application/json").keys() >= {"0", "f423f"}
    parse_elapsed = time.monotonic() - started
    deep = nested(10_000)
    with live(len(body) + 1) as url, httpx.Client(base_url=url, timeout=30) as client:
        started = time.monotonic()
        wide = client.post("/hooks/open", content=body, headers=JSON)
        elapsed = time.monotonic() - started
        started = time.monotonic()
        too_deep = client.post("/hooks/open", content=deep, headers=JSON)
        deep_elapsed = time.monotonic() - started
    print(
        f"1M-key object ({len(body) / 1024 / 1024:.1f} MiB): depth check + parse {parse_elapsed:.2f} s, "
        f"{wide.status_code} end to end (stored) in {elapsed:.2f} s; "
        f"10,000-deep array: {too_deep.status_code} in {deep_elapsed * 1000:.0f} ms"
    )
    assert wide.status_code == 202
    assert too_deep.status_code == 400
    assert too_deep.json()["detail"] == TOO_DEEP
    assert parse_elapsed < 1.0
    assert elapsed < 5.0  # storing dominates (SQLAlchemy json.dumps of the body); docs/security.md


@pytest.mark.parametrize(
    ("raw", "offset"),
    [
        (b'{"a": "\xff\xfe"}', 7),  # invalid start byte inside a string
        (b'{"a": "\xc0\xaf"}', 7),  # overlong encoding
        (b'{"a": "ok\xe2\x82"}', 9),  # truncated sequence
        (b'{"a": 1, "\xed\xa0\x80": 2}', 10),  # an encoded surrogate
    ],
)
def test_invalid_utf8_in_json_is_reported_in_our_words(raw: bytes, offset: int) -> None:
    """The message is Event Router's, whatever the JSON decoder's release says about the same bytes."""
    from router.errors import IngestError
    from router.pipeline.ingest import parse_body

    with pytest.raises(IngestError) as caught:
        parse_body(raw, "application/json")
    assert (caught.value.status, caught.value.title) == (400, "Body is not valid UTF-8")
    assert caught.value.detail == f"the byte at offset {offset} is not valid UTF-8"


def test_valid_utf8_but_invalid_json_is_a_json_error() -> None:
    from router.errors import IngestError
    from router.pipeline.ingest import parse_body

    with pytest.raises(IngestError) as caught:
        parse_body('{"café": }'.encode(), "application/json")
    assert caught.value.title == "Body is not valid JSON"
    with pytest.raises(IngestError) as caught:
        parse_body(b'{"a": 1}\xff', "application/json")  # a stray byte outside any string is a JSON error
    assert caught.value.title == "Body is not valid JSON"
