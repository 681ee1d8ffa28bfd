"""The egress guard: an SSRF corpus against real loopback listeners, rebinding, redirects, allow-lists.

"Public" is played by 127.0.0.2, a loopback alias the tests' policy allows (ROUTER_EGRESS_ALLOW=
127.0.0.2/32), so nothing leaves the machine. A second listener on 127.0.0.1, the same port, stands
for everything blocked: it must see no connection at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from router.errors import EgressBlocked, PermanentError, SettingsError
from router.pipeline.egress import EgressPolicy, GuardedConnector, system_resolver
from router.pipeline.outbound import create_client, send
from router.settings import load_settings
from tests.conftest import RouterFactory

pytestmark = pytest.mark.security

ALLOWED_IP = "127.0.0.2"
ALLOW = f"{ALLOWED_IP}/32"


@dataclass
class Listeners:
    """An HTTP sink on 127.0.0.2:port (allowed) and a bare counter on 127.0.0.1:port (blocked)."""

    port: int
    blocked_connections: int = 0
    sink_requests: list[str] = field(default_factory=list)

    @property
    def sink(self) -> str:
        return f"http://{ALLOWED_IP}:{self.port}"

    @property
    def blocked(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def _sink(listeners: Listeners, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return
    path = head.split(b" ", 2)[1].decode()
    listeners.sink_requests.append(path)
    status, headers, body = "200 OK", [], b'{"ok": true}'
    if path == "/redirect-meta":
        status, headers = "302 Found", ["Location: http://169.254.169.254/latest/meta-data/"]
    elif path == "/redirect-loopback":
        status, headers = "302 Found", [f"Location: {listeners.blocked}/admin"]
    elif path == "/redirect-v6":
        status, headers = "302 Found", [f"Location: http://[::1]:{listeners.port}/admin"]
    elif path == "/next":
        body = json.dumps({"next": f"{listeners.blocked}/steal"}).encode()
    lines = [f"HTTP/1.1 {status}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    writer.write(("\r\n".join([*lines, *headers, "Connection: close", "", ""])).encode() + body)
    await writer.drain()
    writer.close()


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    sink_server = await asyncio.start_server(lambda r, w: _sink(state, r, w), ALLOWED_IP, 0)
    port = sink_server.sockets[0].getsockname()[1]
    state = Listeners(port)

    def count(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.blocked_connections += 1
        writer.close()

    blocked_servers = [await asyncio.start_server(count, "127.0.0.1", port)]
    with contextlib.suppress(OSError):  # no IPv6 loopback here
        blocked_servers.append(await asyncio.start_server(count, "::1", port))
    try:
        yield state
    finally:
        for server in [sink_server, *blocked_servers]:
            server.close()
            await server.wait_closed()


class TableResolver:
    """A DNS stand-in with fixed answers (a name may answer differently per lookup); others go to the system."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: dict[str, int] = {}

    async def __call__(self, host: str, port: int) -> list[str]:
        answers = self.table.get(host)
        if answers is None:
            return await system_resolver(host, port)
        n = self.calls.get(host, 0)
        self.calls[host] = n + 1
        return answers[min(n, len(answers) - 1)]


def resolver() -> TableResolver:
    return TableResolver(
        {
            "rebind.test": [[ALLOWED_IP], ["127.0.0.1"]],  # allowed first, loopback on the next lookup
            "internal.test": [["10.1.2.3"]],
            "meta.test": [["169.254.169.254"]],
            "v6loop.test": [["::1"]],
            "mapped.test": [["::ffff:127.0.0.1"]],
            "nat64.test": [["64:ff9b::a9fe:a9fe"]],
            "mixed.test": [[ALLOWED_IP, "127.0.0.1"]],  # one good answer cannot carry a bad one
            "cgnat.test": [["100.64.0.7"]],
            "ula.test": [["fd12:3456::1"]],
            "sink.test": [[ALLOWED_IP]],
        }
    )


def corpus(port: int) -> list[str]:
    p = port
    hosts = [
        # loopback, in every notation
        "127.0.0.1", "127.1", "127.0.1", "0x7f000001", "0x7f.0.0.1", "0x7f.1", "2130706433", "017700000001",
        "0177.0.0.1", "127.0.0.3", "127.255.255.254", "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]", "[::127.0.0.1]", "[64:ff9b::127.0.0.1]", "[2002:7f00:1::]", "localhost", "localhost.",
        "LOCALHOST",
        # unspecified
        "0.0.0.0", "0", "0x0", "[::]",
        # private
        "10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.255.254", "192.168.0.1", "192.168.1.1", "012.0.0.1",
        "0xa000001", "167772161", "[::ffff:10.0.0.1]", "[::ffff:192.168.1.1]",
        # link-local and cloud metadata
        "169.254.0.1", "[fe80::1]", "169.254.169.254", "0xa9fea9fe", "2852039166", "0251.0376.0251.0376",
        "[::ffff:169.254.169.254]", "[64:ff9b::a9fe:a9fe]", "[2002:a9fe:a9fe::]", "[fd00:ec2::254]",
        "169.254.170.2", "100.100.100.200", "168.63.129.16",
        # CGNAT, ULA, multicast, reserved
        "100.64.0.1", "100.127.255.254", "[fc00::1]", "[fd12:3456::1]", "224.0.0.1", "239.255.255.250",
        "[ff02::1]", "240.0.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",
        # names that resolve to blocked addresses
        "internal.test", "meta.test", "v6loop.test", "mapped.test", "nat64.test", "mixed.test", "cgnat.test",
        "ula.test",
    ]  # fmt: skip
    urls = [f"http://{h}:{p}/" for h in hosts]
    urls += [
        f"https://127.0.0.1:{p}/",
        f"http://{ALLOWED_IP}@127.0.0.1:{p}/",
        f"http://user:pass@127.1:{p}/",
        f"http://sink.test@localhost:{p}/",
        f"http://127.0.0.1:{p}#@{ALLOWED_IP}/",
        f"http://{ALLOWED_IP}:{p}\\@127.0.0.1:{p}/",  # a naive parser sees 127.0.0.2; httpx dials 127.0.0.1
        "file:///etc/passwd",
        f"gopher://127.0.0.1:{p}/_PING",
        f"ftp://127.0.0.1:{p}/",
        f"dict://127.0.0.1:{p}/",
    ]
    return urls


async def test_ssrf_corpus_is_blocked_at_connect(listeners: Listeners) -> None:
    settings = load_settings(egress_allow=ALLOW)
    client = create_client(settings, resolver=resolver())
    targets = corpus(listeners.port)
    at_connect, as_url, passed = 0, 0, []
    try:
        for url in targets:
            try:
                await send(client, "GET", url, headers={}, timeout=3)
            except PermanentError as exc:
                if exc.message.startswith("egress to "):
                    at_connect += 1
                elif "URL" in exc.message:
                    as_url += 1
                else:
                    passed.append(f"{url}: {exc.message}")
            else:
                passed.append(url)
        # the allowed stand-in for "public" is reachable, so the refusals above are the guard's doing
        ok = await send(client, "GET", listeners.sink + "/ok", headers={}, timeout=3)
    finally:
        await client.aclose()
    print(
        f"ssrf corpus: {len(targets)} targets, {at_connect + as_url} blocked "
        f"({at_connect} at connect by the egress guard, {as_url} refused as URLs), "
        f"loopback listener connections: {listeners.blocked_connections}"
    )
    assert passed == []
    assert len(targets) >= 60
    assert at_connect >= 60
    assert listeners.blocked_connections == 0
    assert ok.status == 200


async def test_dns_rebinding_is_checked_on_the_dialled_address(listeners: Listeners) -> None:
    dns = resolver()
    client = create_client(load_settings(egress_allow=ALLOW), resolver=dns)
    url = f"http://rebind.test:{listeners.port}/ok"
    try:
        first = await send(client, "GET", url, headers={}, timeout=3)
        with pytest.raises(PermanentError) as blocked:
            await send(client, "GET", url, headers={}, timeout=3)
    finally:
        await client.aclose()
    print(f"dns rebinding: 2 lookups, 1 delivered to {ALLOWED_IP}, 1 blocked, loopback connections: "
          f"{listeners.blocked_connections}")  # fmt: skip
    assert first.status == 200
    assert dns.calls["rebind.test"] == 2
    assert blocked.value.message == (
        "egress to rebind.test (127.0.0.1) blocked: loopback address; "
        "allow it with ROUTER_EGRESS_ALLOW=127.0.0.1/32 or ROUTER_EGRESS_ALLOW=rebind.test"
    )
    assert listeners.blocked_connections == 0


@pytest.mark.parametrize("path", ["/redirect-meta", "/redirect-loopback", "/redirect-v6"])
async def test_redirects_to_blocked_targets(listeners: Listeners, path: str) -> None:
    client = create_client(load_settings(egress_allow=ALLOW))
    try:
        with pytest.raises(PermanentError) as not_followed:
            await send(client, "GET", listeners.sink + path, headers={}, timeout=3)
        # even a caller that turns redirects on meets the guard again on the next hop
        with pytest.raises(EgressBlocked) as hop:
            async with client.session.get(listeners.sink + path, allow_redirects=True):
                pass
    finally:
        await client.aclose()
    print(f"redirect {path}: not followed, and blocked at connect when followed; "
          f"loopback connections: {listeners.blocked_connections}")  # fmt: skip
    assert "answered 302 (redirect to" in not_followed.value.message
    assert str(hop.value).startswith("egress to ")
    assert listeners.sink_requests == [path, path]
    assert listeners.blocked_connections == 0


async def test_allow_list_opens_only_what_it_names(listeners: Listeners) -> None:
    outcomes: dict[tuple[str, str], bool | None] = {}
    for allow in ("", ALLOW, "sink.test", "127.0.0.0/8"):
        client = create_client(load_settings(egress_allow=allow), resolver=resolver())
        try:
            for host in (ALLOWED_IP, "sink.test", "mixed.test"):
                try:
                    await send(client, "GET", f"http://{host}:{listeners.port}/ok", headers={}, timeout=3)
                    outcomes[(allow, host)] = True
                except PermanentError as exc:
                    outcomes[(allow, host)] = False if exc.message.startswith("egress to ") else None
        finally:
            await client.aclose()
    print(f"allow-list: {sum(v is True for v in outcomes.values())} of {len(outcomes)} calls passed, as configured")
    assert outcomes == {
        ("", ALLOWED_IP): False,
        ("", "sink.test"): False,
        ("", "mixed.test"): False,
        (ALLOW, ALLOWED_IP): True,
        (ALLOW, "sink.test"): True,
        (ALLOW, "mixed.test"): False,  # 127.0.0.1 is among its answers
        ("sink.test", ALLOWED_IP): False,  # a name opens that name, not the address
        ("sink.test", "sink.test"): True,
        ("sink.test", "mixed.test"): False,
        ("127.0.0.0/8", ALLOWED_IP): True,
        ("127.0.0.0/8", "sink.test"): True,
        ("127.0.0.0/8", "mixed.test"): True,
    }
    # mixed.test reached the sink only under 127.0.0.0/8, on its first (allowed) address
    assert listeners.blocked_connections == 0


async def test_a_client_without_settings_blocks_loopback(listeners: Listeners) -> None:
    client = create_client()
    try:
        with pytest.raises(PermanentError, match=r"egress to 127\.0\.0\.2 blocked: loopback address"):
            await send(client, "GET", listeners.sink + "/ok", headers={}, timeout=3)
    finally:
        await client.aclose()
    assert listeners.sink_requests == []


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("10.0.0.0/8, fd00::/8 ,hooks.internal.example", True),
        ("127.0.0.1", True),
        ("[::1]", True),
        ("10.0.0.0/33", False),
        ("http://x", False),
        ("bad host", False),
        ("0x7f000001", False),
    ],
)
def test_egress_allow_setting_is_validated(value: str, ok: bool) -> None:
    if ok:
        assert load_settings(egress_allow=value).egress_allow == value
        EgressPolicy.parse(value)
    else:
        with pytest.raises(SettingsError, match="ROUTER_EGRESS_ALLOW="):
            load_settings(egress_allow=value)


def _rule(steps: list[dict[str, Any]]) -> dict[str, str]:
    rule = {"id": "r", "source": "shop", "steps": steps}
    return {"rules.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [rule]}, indent=2)}


async def test_blocked_step_fails_permanently_with_its_reason(
    router_factory: RouterFactory, listeners: Listeners
) -> None:
    steps = [
        {"id": "order", "action": "http", "with": {"method": "GET", "url": listeners.sink + "/next"}},
        {"id": "steal", "action": "http", "with": {"url": "{{ steps.order.body.next }}", "json": "{{ body }}"}},
    ]
    async with router_factory(_rule(steps), egress_allow=ALLOW) as r:
        response = await r.hook("shop", {"secret": "s3cret"})
        event = await r.wait_event(response.json()["event_id"])
    error = "egress to 127.0.0.1 blocked: loopback address; allow it with ROUTER_EGRESS_ALLOW=127.0.0.1/32"
    (run,) = event["runs"]
    order, steal = run["steps"]
    print(f"chained URL from a response: step 1 {order['status']}, step 2 {steal['status']} "
          f"({steal['error']!r}); loopback connections: {listeners.blocked_connections}")  # fmt: skip
    assert order["status"] == "succeeded"
    assert (steal["status"], steal["error"]) == ("failed", error)
    (attempt,) = steal["attempts"]
    assert (attempt["outcome"], attempt["retryable"]) == ("failed", False)
    assert event["status"] == "failed"
    assert listeners.blocked_connections == 0


async def test_guard_does_not_touch_tls_host_or_headers(listeners: Listeners) -> None:
    """The dialled address is an IP, but the request still names the host the URL gave."""
    client = create_client(load_settings(egress_allow="sink.test"), resolver=resolver())
    try:
        async with client.session.get(f"http://sink.test:{listeners.port}/ok") as response:
            status = response.status
            sent_host = response.request_info.headers["host"]
        connector = client.session.connector
    finally:
        await client.aclose()
    assert status == 200
    assert sent_host == f"sink.test:{listeners.port}"
    assert isinstance(connector, GuardedConnector)
