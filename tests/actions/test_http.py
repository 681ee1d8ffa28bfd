"""The ``http`` action end to end: real Redis, SQL and HTTP servers; what is sent and what is recorded."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import RouterFactory, free_port

STRIPE: dict[str, Any] = {
    "id": "evt_1",
    "type": "payment_intent.succeeded",
    "data": {"object": {"id": "pi_1", "amount": 15000, "currency": "eur", "metadata": {"order_id": "ord_42"}}},
}
ADDRESS = {"line1": "12 St James's Square", "city": "London", "postcode": "SW1Y 4JH", "country": "GB"}
ORDER: dict[str, Any] = {
    "id": "ord_42",
    "express": False,
    "customer": {"name": "Ada Lovelace"},
    "shipping_address": ADDRESS,
    "lines": [{"sku": "BOOK-1", "qty": 2}, {"sku": "PEN-3", "qty": 1}],
}


def rule_files(*rules: dict[str, Any], sources: tuple[str, ...] = ("shop",)) -> dict[str, str]:
    """A rule file written as JSON (YAML's subset), so templates need no brace escaping."""
    return {"rules.yaml": json.dumps({"sources": [{"id": s} for s in sources], "rules": list(rules)}, indent=2)}


def one_step(with_: dict[str, Any], **step: Any) -> dict[str, str]:
    return rule_files({"id": "r", "source": "shop", "steps": [{"id": "call", "action": "http", "with": with_, **step}]})


async def run_event(r: Any, body: Any, source: str = "shop") -> dict[str, Any]:
    response = await r.hook(source, body)
    assert response.status_code == 202, response.text
    event: dict[str, Any] = await r.wait_event(response.json()["event_id"])
    return event


def chained_rules(api: str, sink: str) -> dict[str, str]:
    ship = {
        "order_id": "{{ steps.order.body.id }}",
        "recipient": "{{ steps.order.body.customer.name }}",
        "address": "{{ steps.order.body.shipping_address }}",
        "amount": "{{ body.data.object.amount }}",
        "currency": "{{ body.data.object.currency | upper }}",
        "parcels": "{{ steps.order.body.lines | length }}",
        "payment": "{{ body.data.object.id }}",
        "note": "Order {{ steps.order.body.id }}: {{ body.data.object.amount / 100 }} {{ body.data.object.currency }}",
    }
    rule = {
        "id": "big-payment-ships",
        "source": "stripe",
        "filter": "body.type == 'payment_intent.succeeded' && body.data.object.amount > `10000`",
        "steps": [
            {
                "id": "order",
                "action": "http",
                "with": {"method": "GET", "url": api + "/orders/{{ body.data.object.metadata.order_id }}"},
            },
            {
                "id": "ship",
                "action": "http",
                "with": {
                    "url": sink,
                    "headers": {"X-Order": "{{ steps.order.body.id }}", "X-Amount": "{{ body.data.object.amount }}"},
                    "json": ship,
                },
            },
        ],
    }
    return rule_files(rule, sources=("stripe",))


SHIPMENT: dict[str, Any] = {
    "order_id": "ord_42",
    "recipient": "Ada Lovelace",
    "address": ADDRESS,
    "amount": 15000,
    "currency": "EUR",
    "parcels": 2,
    "payment": "pi_1",
    "note": "Order ord_42: 150.0 eur",
}


async def test_chained_api_call_ships_typed_json(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str
) -> None:
    httpserver.expect_request("/orders/ord_42", method="GET").respond_with_json(ORDER)
    httpserver.expect_request("/ship", method="POST").respond_with_json({"shipment_id": "shp_1"}, status=201)
    api, sink = httpserver.url_for("/").rstrip("/"), httpserver.url_for("/ship")
    async with router_factory(chained_rules(api, sink), database_url=database_url) as r:
        event = await run_event(r, STRIPE, source="stripe")
    event_id = event["id"]
    assert [req.path for req, _ in httpserver.log] == ["/orders/ord_42", "/ship"]
    (get, _), (post, _) = httpserver.log
    assert (get.method, get.get_data()) == ("GET", b"")
    assert post.get_json() == SHIPMENT
    assert type(post.get_json()["amount"]) is int
    assert [post.headers[h] for h in ("Content-Type", "X-Order", "X-Amount")] == ["application/json", "ord_42", "15000"]
    for request, step in ((get, "order"), (post, "ship")):
        assert request.headers["Idempotency-Key"] == f"{event_id}:big-payment-ships:{step}"
        assert request.headers["webhook-id"] == f"{event_id}:big-payment-ships:{step}"
    assert event["status"] == "succeeded"
    (run,) = event["runs"]
    assert (run["rule_id"], run["status"], run["error"]) == ("big-payment-ships", "succeeded", None)
    order, ship = run["steps"]
    assert (order["id"], order["action"], order["status"], order["error"]) == ("order", "http", "succeeded", None)
    assert order["idempotency_key"] == f"{event_id}:big-payment-ships:order"
    assert order["rendered"] == {"method": "GET", "url": api + "/orders/ord_42"}
    assert (order["output"]["status"], order["output"]["body"]) == (200, ORDER)
    assert order["output"]["headers"]["content-type"] == "application/json"
    (attempt,) = order["attempts"]
    key = f"{event_id}:big-payment-ships:order"
    assert attempt["request"] == {
        "method": "GET",
        "url": api + "/orders/ord_42",
        "headers": {"idempotency-key": key, "webhook-id": key},
        "body": "",
    }
    assert (attempt["number"], attempt["outcome"], attempt["error"]) == (1, "succeeded", None)
    assert attempt["response_status"] == 200
    assert json.loads(attempt["response_body"]) == ORDER
    assert ship["status"] == "succeeded"
    assert ship["rendered"]["json"] == SHIPMENT
    assert ship["rendered"]["headers"] == {"X-Order": "ord_42", "X-Amount": 15000}
    assert (ship["output"]["status"], ship["output"]["body"]) == (201, {"shipment_id": "shp_1"})
    (attempt,) = ship["attempts"]
    assert attempt["response_status"] == 201
    assert json.loads(attempt["request"]["body"]) == SHIPMENT
    assert attempt["request"]["headers"]["x-order"] == "ord_42"


@pytest.mark.parametrize(
    ("kind", "amount"),
    [("payment_intent.succeeded", 10000), ("payment_intent.payment_failed", 50000)],
)
async def test_filter_keeps_small_or_other_payments_out(
    router_factory: RouterFactory, httpserver: HTTPServer, kind: str, amount: int
) -> None:
    body = json.loads(json.dumps(STRIPE))
    body["type"], body["data"]["object"]["amount"] = kind, amount
    async with router_factory(chained_rules(httpserver.url_for(""), httpserver.url_for("/ship"))) as r:
        event = await run_event(r, body, source="stripe")
    assert (event["status"], event["matched"], event["runs"]) == ("unmatched", 0, [])
    assert httpserver.log == []


@pytest.mark.parametrize("express", [True, False])
async def test_when_reads_an_earlier_step(
    router_factory: RouterFactory, httpserver: HTTPServer, database_url: str, express: bool
) -> None:
    httpserver.expect_request("/orders/ord_42").respond_with_json(ORDER | {"express": express})
    httpserver.expect_request("/express").respond_with_data("queued")
    httpserver.expect_request("/ship").respond_with_data("ok")
    steps = [
        {"id": "order", "action": "http", "with": {"method": "GET", "url": httpserver.url_for("/orders/ord_42")}},
        {
            "id": "express",
            "action": "http",
            "when": "steps.order.body.express",
            "with": {"url": httpserver.url_for("/express"), "json": {"order": "{{ steps.order.body.id }}"}},
        },
        {
            "id": "ship",
            "action": "http",
            "with": {"url": httpserver.url_for("/ship"), "json": {"express_status": "{{ steps.express.status }}"}},
        },
    ]
    files = rule_files({"id": "r", "source": "shop", "steps": steps})
    async with router_factory(files, database_url=database_url) as r:
        event = await run_event(r, {"n": 1})
    (run,) = event["runs"]
    assert (event["status"], run["status"]) == ("succeeded", "succeeded")
    statuses = [(s["id"], s["status"], len(s["attempts"])) for s in run["steps"]]
    middle = ("express", "succeeded", 1) if express else ("express", "skipped", 0)
    assert statuses == [("order", "succeeded", 1), middle, ("ship", "succeeded", 1)]
    paths = ["/orders/ord_42", "/express", "/ship"] if express else ["/orders/ord_42", "/ship"]
    assert [req.path for req, _ in httpserver.log] == paths
    assert httpserver.log[-1][0].get_json() == {"express_status": 200 if express else None}


HEADERS = {"X-Count": "{{ body.n }}", "X-Flag": "{{ body.flag }}"}


Sent = tuple[str, str | None, bytes, bytes]  # method, content type, body, query string
TEXT = "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("with_", "sent"),
    [
        (
            {"method": "put", "json": ["{{ body.n }}", "{{ body.flag }}", "n={{ body.n }}", {"t": "{{ body.tags }}"}]},
            ("PUT", "application/json", b'[7,true,"n=7",{"t":["a","b"]}]', b""),
        ),
        ({"body": "count={{ body.n }}"}, ("POST", TEXT, b"count=7", b"")),
        ({"body": "{{ body.n }}"}, ("POST", TEXT, b"7", b"")),
        (
            {"method": "PATCH", "body": "<n>{{ body.n }}</n>", "headers": {"Content-Type": "application/xml"}},
            ("PATCH", "application/xml", b"<n>7</n>", b""),
        ),
        (
            {"method": "GET", "query": {"n": "{{ body.n }}", "tag": "{{ body.tags }}", "flag": "{{ body.flag }}"}},
            ("GET", None, b"", b"n=7&tag=a&tag=b&flag=true"),
        ),
        (
            {"url": "?v=1&n=0", "method": "GET", "query": {"n": "{{ body.n }}", "tag": "{{ body.tags }}"}},
            ("GET", None, b"", b"v=1&n=7&tag=a&tag=b"),
        ),
    ],
    ids=["json-typed", "text", "number-as-text", "own-content-type", "query", "query-merged-into-url"],
)
async def test_request_shapes(
    router_factory: RouterFactory, httpserver: HTTPServer, with_: dict[str, Any], sent: Sent
) -> None:
    httpserver.expect_request("/sink").respond_with_data("ok")
    url = httpserver.url_for("/sink") + with_.get("url", "")
    settings = with_ | {"url": url, "headers": HEADERS | with_.get("headers", {})}
    async with router_factory(one_step(settings)) as r:
        event = await run_event(r, {"n": 7, "flag": True, "tags": ["a", "b"]})
    assert event["status"] == "succeeded", event["runs"]
    ((request, _),) = httpserver.log
    got = (request.method, request.headers.get("Content-Type"), request.get_data(), request.query_string)
    assert got == sent
    assert (request.headers["X-Count"], request.headers["X-Flag"]) == ("7", "true")
    assert request.headers["Idempotency-Key"] == f"{event['id']}:r:call"


@pytest.mark.parametrize(
    ("data", "content_type", "seen"),
    [
        ('{"id": 5}', "application/json", {"id": 5}),
        ("queued", "text/plain", "queued"),
        ("[1, 2]", "text/plain", [1, 2]),
        ("{not json", "application/json", "{not json"),
    ],
    ids=["json", "text", "json-looking-text", "broken-json"],
)
async def test_response_body_feeds_the_next_step(
    router_factory: RouterFactory, httpserver: HTTPServer, data: str, content_type: str, seen: Any
) -> None:
    httpserver.expect_request("/first").respond_with_data(data, content_type=content_type)
    httpserver.expect_request("/second").respond_with_data("ok")
    steps = [
        {"id": "first", "action": "http", "with": {"url": httpserver.url_for("/first")}},
        {
            "id": "second",
            "action": "http",
            "with": {"url": httpserver.url_for("/second"), "json": {"got": "{{ steps.first.body }}"}},
        },
    ]
    async with router_factory(rule_files({"id": "r", "source": "shop", "steps": steps})) as r:
        event = await run_event(r, {})
    assert event["status"] == "succeeded"
    assert event["runs"][0]["steps"][0]["output"]["body"] == seen
    assert httpserver.log[1][0].get_json() == {"got": seen}


@pytest.mark.parametrize(
    ("status", "text", "location", "retryable"),
    [
        (404, '{"error": "no such order"}', None, False),
        (500, "boom", None, True),
        (429, "slow down", None, True),
        (302, "", "/elsewhere", False),
    ],
)
async def test_failure_is_recorded_and_stops_the_run(
    router_factory: RouterFactory,
    httpserver: HTTPServer,
    database_url: str,
    status: int,
    text: str,
    location: str | None,
    retryable: bool,
) -> None:
    headers = {"Location": location} if location else None
    httpserver.expect_request("/call").respond_with_data(text, status=status, headers=headers)
    httpserver.expect_request("/elsewhere").respond_with_data("followed")
    httpserver.expect_request("/after").respond_with_data("ok")
    url = httpserver.url_for("/call")
    steps = [
        {"id": "call", "action": "http", "with": {"url": url, "json": {"n": "{{ body.n }}"}}},
        {"id": "after", "action": "http", "with": {"url": httpserver.url_for("/after")}},
    ]
    files = rule_files({"id": "r", "source": "shop", "steps": steps})
    async with router_factory(files, database_url=database_url) as r:
        event = await run_event(r, {"n": 1})
    detail = f" (redirect to {location!r} not followed)" if location else ""
    error = f"POST {url} answered {status}{detail}"
    assert [req.path for req, _ in httpserver.log] == ["/call"]
    assert event["status"] == "failed"
    (run,) = event["runs"]
    # A passing failure is retried; with no retries left (the tests' schedule is empty) the run is dead.
    ended, final = ("dead", f"{error} (gave up after 1 attempt)") if retryable else ("failed", error)
    assert (run["status"], run["error"]) == (ended, f"step 'call': {final}")
    call, after = run["steps"]
    assert (call["status"], call["error"]) == (ended, final)
    assert (call["output"]["status"], call["output"]["snippet"]) == (status, text)
    (attempt,) = call["attempts"]
    assert (attempt["outcome"], attempt["error"], attempt["retryable"]) == ("failed", final, retryable)
    assert (attempt["response_status"], attempt["response_body"]) == (status, text)
    assert json.loads(attempt["request"]["body"]) == {"n": 1}
    assert after["status"] not in ("succeeded", "failed")
    assert after["attempts"] == []


@pytest.mark.parametrize(
    ("status", "success", "outcome"),
    [(404, [200, 404], "succeeded"), (200, [201], "failed"), (204, None, "succeeded"), (302, [302], "succeeded")],
)
async def test_success_codes(
    router_factory: RouterFactory, httpserver: HTTPServer, status: int, success: list[int] | None, outcome: str
) -> None:
    httpserver.expect_request("/call").respond_with_data("", status=status)
    with_: dict[str, Any] = {"url": httpserver.url_for("/call")} | ({"success": success} if success else {})
    async with router_factory(one_step(with_)) as r:
        event = await run_event(r, {})
    (step,) = event["runs"][0]["steps"]
    assert (event["status"], step["status"]) == (outcome, outcome)
    assert step["attempts"][0]["response_status"] == status


def _dripping(delays: list[float]) -> Callable[[Request], Response]:
    """A handler answering one byte after each delay (headers go out with the first byte)."""

    def chunks() -> Iterator[bytes]:
        for delay in delays:
            time.sleep(delay)
            yield b"x"

    return lambda _request: Response(chunks(), direct_passthrough=True)


@pytest.mark.parametrize("delays", [[0.8], [0.1] * 12, None], ids=["slow", "trickle", "refused"])
async def test_timeouts_and_connection_errors(
    router_factory: RouterFactory, httpserver: HTTPServer, delays: list[float] | None
) -> None:
    url = f"http://127.0.0.1:{free_port()}/call"
    if delays is not None:
        httpserver.expect_request("/call").respond_with_handler(_dripping(delays))
        url = httpserver.url_for("/call")
    async with router_factory(one_step({"url": url, "timeout": 0.3})) as r:
        event = await run_event(r, {})
    (step,) = event["runs"][0]["steps"]
    (attempt,) = step["attempts"]
    assert (event["status"], step["status"]) == ("failed", "dead")
    assert (attempt["retryable"], attempt["response_status"]) == (True, None)
    if delays is None:
        assert step["error"].startswith("connection failed: ConnectError")
    else:
        assert step["error"] == "timed out after 0.3 s (gave up after 1 attempt)"
        assert attempt["duration_ms"] < 700  # the deadline covers the whole response, not each read


SECRET = "sk_live_0123456789"


@pytest.mark.parametrize(
    ("path", "answer"),
    [("/call?key={{ secrets.API_KEY }}", "nope"), ("/call", f"bad key {SECRET}")],
    ids=["secret-in-url", "secret-echoed"],
)
async def test_secret_is_not_stored(
    router_factory: RouterFactory, httpserver: HTTPServer, path: str, answer: str
) -> None:
    httpserver.expect_request("/call").respond_with_data(answer, status=401)
    settings = {"url": httpserver.url_for(path), "headers": {"X-Key": "{{ secrets.API_KEY }}"}}
    async with router_factory(one_step(settings), env={"ROUTER_SECRET_API_KEY": SECRET}) as r:
        event = await run_event(r, {})
        text = (await r.client.get(f"/api/events/{event['id']}")).text
    assert httpserver.log[0][0].headers["X-Key"] == SECRET
    assert event["runs"][0]["steps"][0]["rendered"]["headers"] == {"X-Key": "[secret:API_KEY]"}
    assert SECRET not in text
