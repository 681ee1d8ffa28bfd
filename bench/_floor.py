"""The same-run floor of bench/run.py: the least a Python webhook receiver can do.

Litestar, ``POST /hooks/{name}``, the body read and decoded with msgspec, 202 with a small JSON body:
no signature, no storage, no queue. It runs under the same server and process count as ``router serve``
(uvicorn, one process), so ``accepted/s ÷ floor`` says how much of the machine the router's own work costs.

Run as ``python -m uvicorn --app-dir bench _floor:app --port N --log-level warning --no-access-log``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post

_decoder = msgspec.json.Decoder()


@post("/hooks/{name:str}", status_code=202)
async def receive(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    _decoder.decode(await request.body())
    return Response(b'{"event_id":"floor"}', status_code=202, media_type="application/json")


app = Litestar([receive], debug=False)
