"""The ``email`` action against a real SMTP server (aiosmtpd): headers, envelope, bodies and refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import RouterFactory, free_port

EVENT: dict[str, Any] = {"order": 1234, "customer": "Ada", "email": "ada@example.org"}


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps every accepted envelope; it can refuse recipients or the data."""

    port: int = 0
    envelopes: list[Envelope] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        out = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    mailbox.port = controller.port
    try:
        yield mailbox
    finally:
        controller.stop()


def content(part: Any) -> str:
    """A text part's content with the wire's CRLF line ends turned back into LF."""
    text: str = part.get_content()
    return text.replace("\r\n", "\n")


def rule_files(with_: dict[str, Any]) -> dict[str, str]:
    rule = {"id": "mail", "source": "shop", "steps": [{"id": "send", "action": "email", "with": with_}]}
    return {"rules.yaml": json.dumps({"sources": [{"id": "shop"}], "rules": [rule]}, indent=2)}


async def run_event(router_factory: RouterFactory, smtp_port: int, with_: dict[str, Any], body: Any, **kw: Any) -> Any:
    async with router_factory(
        rule_files(with_), smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_from="router@example.org", **kw
    ) as r:
        response = await r.hook("shop", body)
        assert response.status_code == 202, response.text
        return await r.wait_event(response.json()["event_id"])


TEXT = "Hi {{ body.customer }},\norder {{ body.order }} is paid."
HTML = "<p>Hi {{ body.customer }}, order <b>{{ body.order }}</b> is paid.</p>"

CASES: list[tuple[dict[str, Any], dict[str, str | None], list[str], list[tuple[str, str]]]] = [
    (
        {"to": "{{ body.email }}", "cc": ["boss@example.org"], "bcc": "audit@example.org", "text": TEXT},
        {"To": "ada@example.org", "Cc": "boss@example.org", "From": "router@example.org", "Reply-To": None},
        ["ada@example.org", "boss@example.org", "audit@example.org"],
        [("text/plain", "Hi Ada,\norder 1234 is paid.\n")],
    ),
    (
        {
            "to": ["{{ body.email }}", "Bee Keeper <bee@example.org>"],
            "cc": 'c1@example.org, "Doe, Jane" <c2@example.org>',
            "bcc": ["h1@example.org", "h2@example.org"],
            "from": "Shop <shop@example.org>",
            "reply_to": "support@example.org",
            "text": TEXT,
            "html": HTML,
        },
        {
            "To": "ada@example.org, Bee Keeper <bee@example.org>",
            "Cc": 'c1@example.org, "Doe, Jane" <c2@example.org>',
            "From": "Shop <shop@example.org>",
            "Reply-To": "support@example.org",
        },
        ["ada@example.org", "bee@example.org", "c1@example.org", "c2@example.org", "h1@example.org", "h2@example.org"],
        [
            ("text/plain", "Hi Ada,\norder 1234 is paid.\n"),
            ("text/html", "<p>Hi Ada, order <b>1234</b> is paid.</p>\n"),
        ],
    ),
    (
        {"to": ["{{ body.email }}"], "html": HTML},
        {"To": "ada@example.org", "Cc": None, "From": "router@example.org", "Reply-To": None},
        ["ada@example.org"],
        [("text/html", "<p>Hi Ada, order <b>1234</b> is paid.</p>\n")],
    ),
]


@pytest.mark.parametrize(("with_", "headers", "rcpts", "parts"), CASES, ids=["text", "text-and-html", "html-only"])
async def test_message_headers_envelope_and_parts(
    router_factory: RouterFactory,
    smtp: Mailbox,
    database_url: str,
    with_: dict[str, Any],
    headers: dict[str, str | None],
    rcpts: list[str],
    parts: list[tuple[str, str]],
) -> None:
    settings = with_ | {"subject": "Order {{ body.order }} paid"}
    event = await run_event(router_factory, smtp.port, settings, EVENT, database_url=database_url)
    (step,) = event["runs"][0]["steps"]
    assert (event["status"], step["status"], step["error"]) == ("succeeded", "succeeded", None)
    (envelope,) = smtp.envelopes
    (message,) = smtp.messages()
    assert envelope.mail_from == headers["From"].rsplit("<", 1)[-1].rstrip(">")  # type: ignore[union-attr]
    assert envelope.rcpt_tos == rcpts
    for name, value in headers.items():
        assert message[name] == value, name
    message_id = f"<{event['id']}.mail.send@event-router>"
    assert message["Subject"] == "Order 1234 paid"
    assert message["Message-ID"] == message_id
    assert message["Date"] is not None
    assert "Bcc" not in message
    raw = envelope.content
    assert isinstance(raw, bytes)
    for hidden in ("audit@example.org", "h1@example.org", "h2@example.org"):
        assert hidden.encode() not in raw
    if len(parts) > 1:
        assert message.get_content_type() == "multipart/alternative"
        found = [(p.get_content_type(), content(p)) for p in message.iter_parts()]
    else:
        found = [(message.get_content_type(), content(message))]
    assert found == parts
    output = step["output"]
    assert output["status"] == 250
    assert output["body"]["message_id"] == message_id
    assert output["body"]["refused"] == {}
    assert len(output["body"]["recipients"]) == len(rcpts)
    (attempt,) = step["attempts"]
    assert attempt["request"]["smtp"] == f"127.0.0.1:{smtp.port}"
    assert attempt["request"]["subject"] == "Order 1234 paid"


async def test_numeric_subject_renders_as_text(router_factory: RouterFactory, smtp: Mailbox) -> None:
    with_ = {"to": "ops@example.org", "subject": "{{ body.order }}", "text": "{{ body.order }}"}
    event = await run_event(router_factory, smtp.port, with_, EVENT)
    assert event["status"] == "succeeded"
    (message,) = smtp.messages()
    assert (message["Subject"], content(message)) == ("1234", "1234\n")


@pytest.mark.parametrize(
    ("with_", "title", "problem"),
    [
        ({}, "Paid\r\nBcc: evil@example.org", "with.subject: subject must not contain CR, LF or NUL characters"),
        ({}, "Paid\nX-Evil: 1", "with.subject: subject must not contain CR, LF or NUL characters"),
        ({"to": "{{ body.title }}"}, "ops@example.org\r\nBcc: evil@example.org", "with.to.0: address must not contain"),
        ({"to": "{{ body.title }}"}, "@example.org", "with.to.0: not a valid email address: '@example.org'"),
        ({"to": "{{ body.title }}"}, "nobody", "with.to.0: not a valid email address: 'nobody'"),
        ({"reply_to": "{{ body.title }}"}, "Doe <doe@>", "with.reply_to: not a valid email address"),
        ({"from": "{{ body.title }}"}, "", "with.from: not a valid email address"),
    ],
    ids=["subject-crlf", "subject-lf", "to-crlf", "to-no-local-part", "to-no-at", "reply-to", "from-empty"],
)
async def test_invalid_rendered_settings_send_nothing(
    router_factory: RouterFactory, smtp: Mailbox, with_: dict[str, Any], title: str, problem: str
) -> None:
    settings = {"to": "ops@example.org", "subject": "Order {{ body.title }}", "text": "hi"} | with_
    event = await run_event(router_factory, smtp.port, settings, {"title": title})
    (run,) = event["runs"]
    (step,) = run["steps"]
    assert (event["status"], run["status"], step["status"]) == ("failed", "failed", "failed")
    assert "invalid settings after rendering" in step["error"]
    assert problem in step["error"]
    (attempt,) = step["attempts"]
    assert (attempt["request"], attempt["retryable"]) == (None, False)
    assert smtp.envelopes == []


@pytest.mark.parametrize(
    ("refuse", "data_reply", "error", "retryable"),
    [
        (
            {"ops@example.org": "550 5.1.1 no such user"},
            None,
            "SMTP server refused every recipient: ops@example.org: 550 5.1.1 no such user",
            False,
        ),
        ({}, "451 4.3.0 try again later", "SMTP server answered 451: 4.3.0 try again later", True),
        ({}, "554 5.7.1 rejected as spam", "SMTP server answered 554: 5.7.1 rejected as spam", False),
    ],
    ids=["recipient-refused", "data-451", "data-554"],
)
async def test_smtp_refusal_fails_the_step(
    router_factory: RouterFactory,
    smtp: Mailbox,
    refuse: dict[str, str],
    data_reply: str | None,
    error: str,
    retryable: bool,
) -> None:
    smtp.refuse, smtp.data_reply = refuse, data_reply
    with_ = {"to": "ops@example.org", "subject": "Order {{ body.order }}", "text": "hi"}
    event = await run_event(router_factory, smtp.port, with_, EVENT)
    (step,) = event["runs"][0]["steps"]
    if retryable:  # retried until the (empty, in tests) schedule runs out
        error += " (gave up after 1 attempt)"
    assert (event["status"], step["status"], step["error"]) == ("failed", "dead" if retryable else "failed", error)
    (attempt,) = step["attempts"]
    assert (attempt["error"], attempt["retryable"]) == (error, retryable)
    assert attempt["request"] == {
        "smtp": f"127.0.0.1:{smtp.port}",
        "from": "router@example.org",
        "recipients": ["ops@example.org"],
        "subject": "Order 1234",
    }
    assert smtp.envelopes == []


async def test_unreachable_server_is_a_transient_failure(router_factory: RouterFactory) -> None:
    with_ = {"to": "ops@example.org", "subject": "s", "text": "hi", "timeout": 2}
    event = await run_event(router_factory, free_port(), with_, EVENT)
    (step,) = event["runs"][0]["steps"]
    assert event["status"] == "failed"
    assert step["error"].startswith("SMTP delivery failed: SMTPConnectError")
    assert step["attempts"][0]["retryable"] is True


async def test_partly_refused_recipients_are_recorded(router_factory: RouterFactory, smtp: Mailbox) -> None:
    smtp.refuse = {"gone@example.org": "550 5.1.1 no such user"}
    with_ = {"to": ["ops@example.org", "gone@example.org"], "bcc": "audit@example.org", "subject": "s", "text": "hi"}
    event = await run_event(router_factory, smtp.port, with_, EVENT)
    (step,) = event["runs"][0]["steps"]
    assert (event["status"], step["status"]) == ("succeeded", "succeeded")
    assert step["output"]["body"]["refused"] == {"gone@example.org": "550 5.1.1 no such user"}
    assert step["output"]["body"]["recipients"] == ["ops@example.org", "gone@example.org", "audit@example.org"]
    (envelope,) = smtp.envelopes
    assert envelope.rcpt_tos == ["ops@example.org", "audit@example.org"]
