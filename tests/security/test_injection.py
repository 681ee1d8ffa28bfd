"""Header and email injection: hostile values rendered into mail headers and HTTP headers.

Every payload either fails the step (CR, LF, NUL and every other line break are refused in header
fields) or stays literal; the loopback SMTP server (aiosmtpd) and an HTTP sink must see no extra
header and no extra recipient.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.errors import RuleSetError
from router.rules.ruleset import load_ruleset
from tests.actions.test_email import Mailbox, smtp  # noqa: F401 - the aiosmtpd fixture
from tests.conftest import RouterFactory, write_rules

pytestmark = pytest.mark.security

EVIL = "evil@evil.test"
BREAKS = ["\r\n", "\n", "\r", "\0", "\v", "\f", "\x1c", "\x85", "\u2028", "\u2029", "\r\n\r\n", " \r\n\t"]
LITERAL = ["%0d%0a", "%0D%0A", "\\r\\n", "=?utf-8?q?x=0D=0ABcc:_evil@evil.test?="]
FIELDS = {"to": "to@example.org", "cc": "cc@example.org", "subject": "Order 7", "reply_to": "help@example.org"}
ALLOWED_RCPT = {"to@example.org", "cc@example.org"}
MAIL_HEADERS = {
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "mime-version", "content-type",
    "content-transfer-encoding",
}  # fmt: skip


def mail_corpus() -> list[tuple[str, str, str, bool]]:
    """(name, field, value, may be delivered); values that break lines must never be delivered."""
    out = []
    for field, good in FIELDS.items():
        for brk in BREAKS:
            for tail in (f"Bcc: {EVIL}", f"X-Injected: 1{brk}Bcc: {EVIL}", f"To: {EVIL}"):
                out.append((f"{field} {brk!r} {tail[:12]!r}", field, f"{good}{brk}{tail}", False))
        for lit in LITERAL:
            literal = field == "subject" and "=?" not in lit  # an encoded word is decoded: refused, see email.py
            out.append((f"{field} literal {lit!r}", field, f"{good}{lit}Bcc: {EVIL}", literal))
    return out


async def test_email_header_injection_corpus(router_factory: RouterFactory, smtp: Mailbox) -> None:  # noqa: F811
    with_ = {
        "to": "{{ body.to }}",
        "cc": "{{ body.cc }}",
        "subject": "{{ body.subject }}",
        "reply_to": "{{ body.reply_to }}",
        "text": "hello",
    }
    rule = {"id": "mail", "source": "shop", "steps": [{"id": "send", "action": "email", "with": with_}]}
    files = {"rules.yaml": json.dumps({"sources": [{"id": "shop", "dedupe": False}], "rules": [rule]})}
    corpus = mail_corpus()
    outcomes = {"refused": 0, "delivered literal": 0}
    async with router_factory(files, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_from="router@example.org") as r:
        control = await r.hook("shop", FIELDS)
        ids = []
        for _name, field, value, _ok in corpus:
            response = await r.hook("shop", {**FIELDS, field: value})
            assert response.status_code == 202
            ids.append(response.json()["event_id"])
        assert (await r.wait_event(control.json()["event_id"]))["status"] == "succeeded"
        for (name, field, value, may_deliver), event_id in zip(corpus, ids, strict=True):
            event = await r.wait_event(event_id, timeout=30)
            if event["status"] == "failed":
                outcomes["refused"] += 1
                step = json.dumps(event["runs"][0]["steps"][0])
                assert f"with.{field}" in step or "encoded words" in step, (name, step)
            else:
                assert event["status"] == "succeeded", (name, event["status"])
                assert may_deliver, (name, value)
                outcomes["delivered literal"] += 1
    messages = smtp.messages()
    extra_headers = sorted({k.lower() for m in messages for k in m} - MAIL_HEADERS)
    recipients = {rcpt for envelope in smtp.envelopes for rcpt in envelope.rcpt_tos}
    raw = b"".join(bytes(e.content) for e in smtp.envelopes if isinstance(e.content, bytes))
    print(
        f"email injection: {len(corpus)} payloads in To/Cc/Subject/Reply-To, {outcomes['refused']} refused "
        f"(step failed), {outcomes['delivered literal']} delivered with the value literal; "
        f"{len(messages)} messages received (incl. 1 control), extra headers {extra_headers}, "
        f"recipients {sorted(recipients)}"
    )
    assert extra_headers == []
    assert recipients == ALLOWED_RCPT
    assert all(len(e.rcpt_tos) == 2 for e in smtp.envelopes)
    assert all("Bcc" not in m and len(m.get_all("To", [])) == 1 for m in messages)
    assert b"\r\nBcc:" not in raw
    assert b"\r\nX-Injected" not in raw
    assert len(messages) == 1 + outcomes["delivered literal"]
    literal = [m["Subject"] for m in messages if m["Subject"] != FIELDS["subject"]]
    assert sorted(literal) == sorted(f"Order 7{lit}Bcc: {EVIL}" for lit in LITERAL[:3])


class Sink:
    def __init__(self) -> None:
        self.heads: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (int(x.split(b":")[1]) for x in head.lower().split(b"\r\n") if x.startswith(b"content-length:")), 0
            )
            if length:
                await reader.readexactly(length)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        self.heads.append(head)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    state = Sink()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    try:
        yield state, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_http_header_injection_corpus(router_factory: RouterFactory, sink: tuple[Sink, int]) -> None:
    state, port = sink
    with_ = {"url": f"http://127.0.0.1:{port}/hook", "method": "POST", "headers": {"X-Order": "{{ body.v }}"}}
    rule = {"id": "out", "source": "shop", "steps": [{"id": "post", "action": "http", "with": with_}]}
    files = {"rules.yaml": json.dumps({"sources": [{"id": "shop", "dedupe": False}], "rules": [rule]})}
    values = [f"7{brk}X-Injected: 1" for brk in BREAKS] + [f"7{lit}X-Injected: 1" for lit in LITERAL[:3]]
    refused = delivered = 0
    async with router_factory(files) as r:
        control = await r.hook("shop", {"v": "7"})
        ids = [(await r.hook("shop", {"v": v})).json()["event_id"] for v in values]
        assert (await r.wait_event(control.json()["event_id"]))["status"] == "succeeded"
        for value, event_id in zip(values, ids, strict=True):
            event = await r.wait_event(event_id, timeout=30)
            if event["status"] == "failed":
                refused += 1
            else:
                delivered += 1
                assert "%" in value or "\\" in value, value
    heads = [h.decode("latin-1").lower() for h in state.heads]
    injected = [h for h in heads if "\r\nx-injected:" in h]
    print(
        f"http header injection: {len(values)} payloads in a templated header, {refused} refused (step failed), "
        f"{delivered} delivered literal; sink saw {len(heads)} requests, {len(injected)} with an injected header"
    )
    assert injected == []
    assert len(heads) == 1 + delivered
    assert refused == len(BREAKS)


@pytest.mark.parametrize("name", ["X-A: b", "X-A\r\nX-B", "X A", "", "X-\u2028", "Ünicode"])
def test_hostile_header_names_are_refused_at_load(tmp_path: Path, name: str) -> None:
    with_ = {"url": "http://127.0.0.1:9/", "headers": {name: "1"}}
    rule = {"id": "out", "source": "shop", "steps": [{"id": "post", "action": "http", "with": with_}]}
    folder = write_rules(tmp_path / "rules", {"rules.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [rule]})})
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(folder)
    assert "header name" in str(caught.value.errors[0]), caught.value.errors
