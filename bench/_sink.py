"""The delivery sink of the benchmarks: a raw ASGI app recording each delivery as it arrives.

Run as `python -m uvicorn --app-dir bench _sink:app --port N --lifespan off`.
  POST /deliver   body {"id": "...", "sent": <unix time, optional>}: records time.time() on arrival under
                  that id, the latency now - sent when given, and the Idempotency-Key header; answers 200.
  GET  /count     {"deliveries": n, "unique": n}
  GET  /results   {"<id>": [arrival, ...], ...} (a repeat delivery adds a second time)
  GET  /stats     {"deliveries", "unique_keys", "duplicates", "first", "last", "latencies": [seconds, ...]}
  POST /reset     forget everything recorded so far
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

arrivals: dict[str, list[float]] = {}
keys: dict[bytes, int] = {}
latencies: list[float] = []
deliveries = 0
first = 0.0
last = 0.0


def reset() -> None:
    global deliveries, first, last
    arrivals.clear()
    keys.clear()
    latencies.clear()
    deliveries, first, last = 0, 0.0, 0.0


async def respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global deliveries, first, last
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body", False))
    now = time.time()
    method, path = scope["method"], scope["path"]
    if method == "POST" and path == "/deliver":
        try:
            data = json.loads(b"".join(chunks))
            event_id = str(data["id"])
        except (ValueError, KeyError, TypeError):
            await respond(send, 400, b'{"error": "expected {\\"id\\": ...}"}')
            return
        arrivals.setdefault(event_id, []).append(now)
        sent = data.get("sent")
        if isinstance(sent, int | float | str) and sent not in ("", None):
            with contextlib.suppress(ValueError):
                if float(sent) > 0:  # events sent by wrk carry no send time
                    latencies.append(now - float(sent))
        key = next((v for k, v in scope["headers"] if k == b"idempotency-key"), event_id.encode())
        keys[key] = keys.get(key, 0) + 1
        deliveries += 1
        first = first or now
        last = now
        await respond(send, 200, b"ok", b"text/plain")
    elif method == "GET" and path == "/count":
        await respond(send, 200, json.dumps({"deliveries": deliveries, "unique": len(arrivals)}).encode())
    elif method == "GET" and path == "/results":
        await respond(send, 200, json.dumps(arrivals).encode())
    elif method == "GET" and path == "/stats":
        stats = {
            "deliveries": deliveries,
            "unique_keys": len(keys),
            "duplicates": deliveries - len(keys),
            "first": first,
            "last": last,
            "latencies": latencies,
        }
        await respond(send, 200, json.dumps(stats).encode())
    elif method == "POST" and path == "/reset":
        reset()
        await respond(send, 200, b"{}")
    else:
        await respond(send, 404, b'{"error": "not found"}')
