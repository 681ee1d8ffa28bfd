"""Load generators for bench/run.py: wrk for throughput, a lean asyncio sender for paced and serial loads.

The asyncio sender speaks just enough HTTP/1.1 (keep-alive, Content-Length answers) to cost the shared
CPU as little as possible: a paced sender that itself took a core would measure itself.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


# -- the event -------------------------------------------------------------------------------------


def stripe_event(event_id: str, sent_at: float = 0.0, type_: str = "payment_intent.succeeded") -> dict[str, Any]:
    """A Stripe-like ``payment_intent.succeeded`` of about 1.3 KB (compact JSON)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1764064800,
        "type": type_,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_8Qw2Jk3LmN4oPq", "idempotency_key": "8f9e4a7c-2b1d-4e6f-9a3c-5d7e8f9a0b1c"},
        "data": {
            "object": {
                "id": "pi_3QwErTyUiOpAsDfGh1JkLmNo",
                "object": "payment_intent",
                "amount": 12900,
                "amount_capturable": 0,
                "amount_received": 12900,
                "currency": "usd",
                "customer": "cus_R5tYuIoPaSdFgH",
                "description": "Order #1042: 3 items",
                "capture_method": "automatic",
                "confirmation_method": "automatic",
                "created": 1764064795,
                "latest_charge": "ch_3QwErTyUiOpAsDfGh1JkLmNo",
                "payment_method": "pm_1QwErTyUiOpAsDfGhJkLmNoP",
                "payment_method_types": ["card"],
                "receipt_email": "jenny.rosen@example.com",
                "status": "succeeded",
                "metadata": {"order_id": "ord_1042", "cart_id": "cart_77aa91", "channel": "web"},
                "shipping": {
                    "name": "Jenny Rosen",
                    "phone": "+15555550123",
                    "address": {
                        "line1": "510 Townsend St",
                        "line2": None,
                        "city": "San Francisco",
                        "state": "CA",
                        "postal_code": "94103",
                        "country": "US",
                    },
                },
                "payment_method_options": {"card": {"request_three_d_secure": "automatic", "installments": None}},
                "statement_descriptor": "EVENTROUTER SHOP",
            },
        },
        "sent_at": sent_at,
    }


def event_bytes(event_id: str, sent_at: float = 0.0) -> bytes:
    return json.dumps(stripe_event(event_id, sent_at), separators=(",", ":")).encode()


# -- wrk -------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    per_s: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int


_LUA = """
local counter = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, HEAD .. string.format("%010d", counter) .. TAIL)
end
"""


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(prefix: str, folder: Path) -> Path:
    """A wrk script POSTing the Stripe-like event with a unique id per request (``evt_<prefix><counter>``)."""
    body = event_bytes("evt_" + prefix + "@@ID@@").decode()
    head, _, tail = body.partition("@@ID@@")
    script = folder / f"post-{prefix}.lua"
    script.write_text(f"HEAD = {_lua_string(head)}\nTAIL = {_lua_string(tail)}\n{_LUA}")
    return script


def _ms(text: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, script: Path, seconds: float, connections: int = 64, threads: int = 1) -> WrkResult:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    out = subprocess.run(
        [exe, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    per_s = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if not (total and per_s and p50 and p99):
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    secs = float(total.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[total.group(3)]
    return WrkResult(
        requests=int(total.group(1)),
        seconds=secs,
        per_s=float(per_s.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in sock.groups()) if sock else 0,
    )


def lua_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="router-bench-lua-"))


# -- a lean HTTP/1.1 client ------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; answers must carry Content-Length (Litestar's and uvicorn's do)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, port: int, host: str = HOST) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        answer = await self.reader.readexactly(length) if length else b""
        return status, answer

    def close(self) -> None:
        self.writer.close()


@dataclass
class Sent:
    scheduled: float  # when it was due (perf_counter)
    started: float  # when it was written
    answered: float  # when the answer came
    status: int


@dataclass
class PacedResult:
    seconds: float
    sent: list[Sent] = field(default_factory=list)
    errors: int = 0

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.sent if 200 <= s.status < 300)

    @property
    def non_2xx(self) -> int:
        return sum(1 for s in self.sent if not 200 <= s.status < 300) + self.errors

    def ingest_ms(self) -> list[float]:
        return [(s.answered - s.started) * 1000 for s in self.sent]

    def late(self, allowed_ms: float) -> int:
        """Sends that started more than ``allowed_ms`` after their due time (the sender fell behind)."""
        return sum(1 for s in self.sent if (s.started - s.scheduled) * 1000 > allowed_ms)


async def paced(
    port: int,
    path: str,
    rate: float,
    seconds: float,
    make_body: Callable[[int], bytes],
    connections: int = 32,
) -> PacedResult:
    """Open loop: request i is due at start + i / rate, whatever the answers before it did."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    result = PacedResult(seconds=seconds)
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    tasks: list[asyncio.Task[None]] = []

    async def one(index: int, due: float) -> None:
        conn = await pool.get()
        try:
            started = time.perf_counter()
            status, _ = await conn.post(path, make_body(index))
            result.sent.append(Sent(due, started, time.perf_counter(), status))
            pool.put_nowait(conn)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            result.errors += 1
            conn.close()
            pool.put_nowait(await Connection.open(port))

    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    return result


async def burst(port: int, path: str, count: int, make_body: Callable[[int], bytes], connections: int = 32) -> int:
    """Send ``count`` requests as fast as ``connections`` keep-alive connections allow; returns the 2xx count."""
    next_index = 0
    ok = 0

    async def lane() -> None:
        nonlocal next_index, ok
        conn = await Connection.open(port)
        try:
            while next_index < count:
                index = next_index
                next_index += 1
                status, _ = await conn.post(path, make_body(index))
                ok += 200 <= status < 300
        finally:
            conn.close()

    await asyncio.gather(*(lane() for _ in range(connections)))
    return ok


async def serial(port: int, path: str, count: int, make_body: Callable[[int], bytes], gap: float = 0.03) -> int:
    """One request at a time, ``gap`` seconds apart (nothing queues anywhere); returns the 2xx count."""
    conn = await Connection.open(port)
    ok = 0
    try:
        for index in range(count):
            status, _ = await conn.post(path, make_body(index))
            ok += 200 <= status < 300
            await asyncio.sleep(gap)
    finally:
        conn.close()
    return ok
