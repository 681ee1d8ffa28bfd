"""The delivery sink of bench/e2e.py: a raw ASGI app recording when each delivery arrived.

Run as `python -m uvicorn --app-dir bench _sink:app --port N --lifespan off`.
  POST /deliver   body {"id": "..."}: records time.time() on arrival under that id; answers 200.
  GET  /count     {"deliveries": n, "unique": n}
  GET  /results   {"<id>": [arrival, ...], ...} (a repeat delivery adds a second time)
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

arrivals: dict[str, list[float]] = {}
deliveries = 0


async def respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global deliveries
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
            event_id = str(json.loads(b"".join(chunks))["id"])
        except (ValueError, KeyError, TypeError):
            await respond(send, 400, b'{"error": "expected {\\"id\\": ...}"}')
            return
        arrivals.setdefault(event_id, []).append(now)
        deliveries += 1
        await respond(send, 200, b"ok", b"text/plain")
    elif method == "GET" and path == "/count":
        await respond(send, 200, json.dumps({"deliveries": deliveries, "unique": len(arrivals)}).encode())
    elif method == "GET" and path == "/results":
        await respond(send, 200, json.dumps(arrivals).encode())
    else:
        await respond(send, 404, b'{"error": "not found"}')
