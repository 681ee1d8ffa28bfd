"""``email``: a message over SMTP (aiosmtplib) with the ``ROUTER_SMTP_*`` settings."""

from __future__ import annotations

import time
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Annotated, Any

import aiosmtplib
from pydantic import AfterValidator, Field, field_validator, model_validator

from router.actions._fields import check_header_text
from router.actions.base import Action, ActionConfig, ActionContext, StepResult
from router.errors import PermanentError, TransientError


def _address(value: str) -> str:
    check_header_text(value, "address")
    try:
        Address(addr_spec=value.strip().rsplit("<", 1)[-1].rstrip(">").strip())
    except (ValueError, IndexError, TypeError, HeaderParseError) as exc:
        # HeaderParseError is no ValueError: unconverted, it escaped pydantic and crashed the run.
        raise ValueError(f"not a valid email address: {value!r} ({exc})") from None
    if "@" not in value:
        raise ValueError(f"not a valid email address: {value!r}")
    return value.strip()


def _split_addresses(text: str) -> list[str]:
    """Split ``a@x, "Doe, Jane" <j@x>`` on the commas outside quotes and angle brackets."""
    parts: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in text:
        if char == '"' and not angle:
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char == "," and not quoted and not angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _address_item(value: str) -> str:
    """One item of an address list: an address, or several separated by commas (each checked)."""
    return ", ".join(_address(part) for part in _split_addresses(value))


# Items are checked one by one so an error names its index (``with.to.1``): at load, an item that
# is a template is then recognised as such and left to render time, while its literal neighbours
# are still checked.
AddressItem = Annotated[str, AfterValidator(_address_item)]


class EmailConfig(ActionConfig):
    to: list[AddressItem] = Field(description="Recipient address or list of addresses.")
    cc: list[AddressItem] = Field(default_factory=list, description="Copy recipients.")
    bcc: list[AddressItem] = Field(default_factory=list, description="Blind-copy recipients (not shown in headers).")
    subject: str = Field(description="Subject line.")
    text: str | None = Field(None, description="Plain-text body.")
    html: str | None = Field(None, description="HTML body.")
    from_: str | None = Field(None, alias="from", description="From address; default ROUTER_SMTP_FROM.")
    reply_to: str | None = Field(None, description="Reply-To address.")
    timeout: float = Field(30.0, gt=0, le=300, description="Seconds to wait for the SMTP server.")

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ValueError("must be an address or a list of addresses")
        return value

    @field_validator("to", "cc", "bcc")
    @classmethod
    def _flatten(cls, value: list[str]) -> list[str]:
        return [address for item in value for address in _split_addresses(item)]

    @field_validator("from_", "reply_to")
    @classmethod
    def _single(cls, value: str | None) -> str | None:
        return _address(value) if value is not None else None

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        return check_header_text(value, "subject")

    @model_validator(mode="after")
    def _body(self) -> EmailConfig:
        if not self.to:
            raise ValueError("`to` needs at least one address")
        if self.text is None and self.html is None:
            raise ValueError("set `text`, `html` or both")
        return self


def check_decoded_headers(message: EmailMessage) -> None:
    """Refuse a header whose value only breaks lines once parsed.

    ``email`` decodes RFC 2047 encoded words in a str assigned to a header (``=?utf-8?q?x=0D=0ABcc:_a@b?=``)
    and, before CPython 3.11.10/3.12.5 (CVE-2024-6923), writes the decoded CR LF out raw: a header injection
    that the check on the rendered text cannot see. So the parsed values are checked too.
    """
    for name in ("From", "To", "Cc", "Reply-To", "Subject"):
        value = message[name]
        if value is None:
            continue
        try:
            check_header_text(str(value), name)
        except ValueError as exc:
            raise PermanentError(f"{exc} once its RFC 2047 encoded words are decoded; nothing was sent") from None


class EmailAction(Action):
    name = "email"
    description = "Send an email over SMTP."
    Config = EmailConfig

    async def execute(self, config: EmailConfig, ctx: ActionContext) -> StepResult:
        s = ctx.settings
        message = EmailMessage(policy=SMTP)
        message["From"] = config.from_ or s.smtp_from
        message["To"] = ", ".join(config.to)
        if config.cc:
            message["Cc"] = ", ".join(config.cc)
        if config.reply_to:
            message["Reply-To"] = config.reply_to
        message["Subject"] = config.subject
        check_decoded_headers(message)
        message["Date"] = formatdate(time.time(), localtime=False)
        message_id = f"<{ctx.idempotency_key.replace(':', '.')}@event-router>"
        message["Message-ID"] = message_id
        if config.text is not None:
            message.set_content(config.text)
            if config.html is not None:
                message.add_alternative(config.html, subtype="html")
        else:
            message.set_content(config.html or "", subtype="html")
        recipients = [*config.to, *config.cc, *config.bcc]
        summary = {
            "smtp": f"{s.smtp_host}:{s.smtp_port}",
            "from": message["From"],
            "recipients": recipients,
            "subject": config.subject,
        }
        try:
            errors, reply = await aiosmtplib.send(
                message,
                recipients=recipients,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_username,
                password=s.smtp_password,
                start_tls=s.smtp_starttls,
                timeout=config.timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            cls = TransientError if 400 <= exc.code < 500 else PermanentError
            raise cls(f"SMTP server answered {exc.code}: {exc.message}", request=summary) from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusals = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            raise PermanentError(f"SMTP server refused every recipient: {refusals}", request=summary) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransientError(f"SMTP delivery failed: {type(exc).__name__}: {exc}", request=summary) from None
        refused = {addr: f"{code} {text}" for addr, (code, text) in errors.items()}
        return StepResult(
            status=250,
            body={"message_id": message_id, "recipients": recipients, "refused": refused, "reply": reply},
            request=summary,
        )
