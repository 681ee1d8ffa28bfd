"""Inbound webhook signature schemes: the one registry ``SCHEMES`` plus ``verify`` and ``sign``.

    github    X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>
    stripe    Stripe-Signature: t=<unix>,v1=<hex HMAC("<t>." + body)>[,v1=...]; 300 s tolerance
    slack     X-Slack-Signature: v0=<hex HMAC("v0:<ts>:" + body)>, ts in X-Slack-Request-Timestamp; 300 s
    shopify   X-Shopify-Hmac-Sha256: <base64 HMAC(body)>
    standard  webhook-id, webhook-timestamp, webhook-signature: v1,<base64 HMAC("<id>.<ts>." + body)> ...,
              keyed with the base64 part of a whsec_ secret; 300 s
    hmac      [sha256=]<hex HMAC(body)> in the header named by the source's verify.header
    token     the secret itself in X-Webhook-Token (or verify.header) or the ``token`` query parameter
    none      always passes

HMAC is HMAC-SHA256 keyed with the secret's UTF-8 bytes (standard: the decoded whsec_ key). Header names are
lower-case, in and out.
Every failure, malformed input included, raises ``SignatureError`` with a short reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from router.errors import SignatureError

Pair = tuple[dict[str, str], dict[str, str]]  # (headers to add, query parameters to add)
Headers = Mapping[str, str]
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SLACK_TS = "x-slack-request-timestamp"
_STRIPE_ITEM = re.compile(r"(\w+)=([^\s,=]+)", re.ASCII)


@dataclass(frozen=True)
class VerifyConfig:
    scheme: str
    secret: str | None = None
    header: str | None = None
    tolerance: int | None = None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # round-trips undecodable environment bytes
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _fail(reason: str) -> NoReturn:
    raise SignatureError(reason)


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _pretty(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _b64(text: str, size: int | None = None) -> bytes | None:
    """Strictly decode base64 (exactly ``size`` bytes, no extra padding, if given); None when malformed."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return raw if size is None or (len(raw) == size and len(text) == (size + 2) // 3 * 4) else None


def _whsec(secret: str) -> bytes | None:
    """The HMAC key of a Standard Webhooks secret; like the reference lib, the prefix and padding are optional."""
    raw = secret.removeprefix("whsec_")
    return _b64(raw + "=" * (-len(raw) % 4))


def _hexsig(value: str, prefix: str, optional: bool = False) -> bytes | None:
    """Decode ``<prefix><64 hex digits>`` (case-insensitive); None when malformed."""
    has_prefix = value[: len(prefix)].lower() == prefix
    text = value[len(prefix) :] if has_prefix else value
    return bytes.fromhex(text) if (has_prefix or optional) and _HEX64.fullmatch(text) else None


def _get(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise SignatureError(f"{'missing' if value is None else 'empty'} {_pretty(name)} header")
    return value


def _match(expected: bytes, given: Sequence[bytes | None]) -> None:
    if not any([sig is not None and hmac.compare_digest(expected, sig) for sig in given]):  # list: try them all
        raise SignatureError("signature does not match")


class Scheme:
    """One signature scheme; subclasses set the attributes and implement ``verify`` and ``sign``."""

    name: str = ""
    default_header: str | None = None
    default_tolerance: int | None = None
    default_dedupe: str | None = None
    needs_secret: bool = True

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        raise NotImplementedError

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        raise NotImplementedError

    def secret_fields(self, cfg: VerifyConfig) -> tuple[frozenset[str], frozenset[str]]:
        """Header and query names that carry the secret itself; they are masked before the event is stored."""
        return frozenset(), frozenset()

    def validate_secret(self, secret: str) -> str | None:
        return "secret is empty" if self.needs_secret and not secret else None

    def _secret(self, cfg: VerifyConfig) -> str:
        if cfg.secret is None:
            raise SignatureError("source has no secret configured")
        return cfg.secret or _fail("source secret is empty")

    def _key(self, cfg: VerifyConfig) -> bytes:
        return _utf8(self._secret(cfg))

    def _header(self, cfg: VerifyConfig) -> str:
        name = cfg.header or self.default_header
        return (name or _fail(f"the {self.name} scheme needs the source to set verify.header")).lower()

    def _check_time(self, cfg: VerifyConfig, raw: str, now: float) -> None:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
            raise SignatureError("malformed timestamp, expected unix seconds")
        tolerance = self.default_tolerance if cfg.tolerance is None else cfg.tolerance
        if tolerance is not None and abs(now - int(raw)) > tolerance:
            raise SignatureError(f"timestamp outside the {tolerance} s tolerance")


class BodyHmac(Scheme):
    """HMAC-SHA256 of the raw body in one header, as ``<prefix><hex>`` or as base64 (github, shopify, hmac)."""

    def __init__(self, name: str, header: str | None, prefix: str = "", *, optional: bool = False,
                 b64: bool = False, id_header: str = "") -> None:  # fmt: skip
        self.name, self.default_header, self.id_header = name, header, id_header
        self.prefix, self.optional, self.b64 = prefix, optional, b64
        self.default_dedupe = f'headers."{id_header}"' if id_header else None
        self.form = "<base64>" if b64 else f"[{prefix}]<hex>" if optional else f"{prefix}<hex>"

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        key, name = self._key(cfg), self._header(cfg)
        value = _get(headers, name)
        sig = _b64(value, 32) if self.b64 else _hexsig(value, self.prefix, self.optional)
        _match(_mac(key, body), [sig or _fail(f"malformed {_pretty(name)} header, expected {self.form}")])

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        mac = _mac(self._key(cfg), body)
        headers = {self._header(cfg): base64.b64encode(mac).decode() if self.b64 else self.prefix + mac.hex()}
        if self.id_header:
            headers[self.id_header] = msg_id or str(uuid.uuid4())
        return headers, {}


class Stripe(Scheme):
    name = "stripe"
    default_header = "stripe-signature"
    default_tolerance = 300
    default_dedupe = "body.id"

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        key, name = self._key(cfg), self._header(cfg)
        value = _get(headers, name)
        found = [_STRIPE_ITEM.fullmatch(item) for item in value.split(",")]
        pairs = [m.groups() for m in found if m is not None]
        stamps = [v for k, v in pairs if k == "t"]
        sigs = [_hexsig(v, "") for k, v in pairs if k == "v1"]
        if not value.isascii() or len(pairs) != len(found) or len(stamps) != 1 or not sigs or None in sigs:
            raise SignatureError(f"malformed {_pretty(name)} header, expected t=<unix>,v1=<hex>")
        self._check_time(cfg, stamps[0], now)
        _match(_mac(key, stamps[0].encode() + b"." + body), sigs)

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        t = str(int(now))
        return {self._header(cfg): f"t={t},v1={_mac(self._key(cfg), t.encode() + b'.' + body).hex()}"}, {}


class Slack(Scheme):
    name = "slack"
    default_header = "x-slack-signature"
    default_tolerance = 300

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        key, name = self._key(cfg), self._header(cfg)
        value, ts = _get(headers, name), _get(headers, _SLACK_TS)
        sig = _hexsig(value, "v0=") or _fail(f"malformed {_pretty(name)} header, expected v0=<hex>")
        self._check_time(cfg, ts, now)
        _match(_mac(key, f"v0:{ts}:".encode() + body), [sig])

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        ts = str(int(now))
        return {self._header(cfg): "v0=" + _mac(self._key(cfg), f"v0:{ts}:".encode() + body).hex(), _SLACK_TS: ts}, {}


class Standard(Scheme):
    name = "standard"
    default_header = "webhook-signature"
    default_tolerance = 300
    default_dedupe = 'headers."webhook-id"'

    def validate_secret(self, secret: str) -> str | None:
        return None if _whsec(secret) else "secret must be whsec_ followed by non-empty base64"

    def _key(self, cfg: VerifyConfig) -> bytes:
        return _whsec(self._secret(cfg)) or _fail("source secret must be whsec_ followed by non-empty base64")

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        key, name = self._key(cfg), self._header(cfg)
        msg_id, ts, value = _get(headers, "webhook-id"), _get(headers, "webhook-timestamp"), _get(headers, name)
        # Like the reference library: entries are space-separated; any entry that is not a well-formed
        # `v1,<32 bytes in base64>` (another version, a truncated or garbled value) is skipped, not fatal.
        entries = [entry.partition(",") for entry in value.split(" ") if entry]
        if not any(version == "v1" for version, _, _ in entries):
            raise SignatureError(f"no v1 signature in {_pretty(name)} header")
        self._check_time(cfg, ts, now)
        _match(_mac(key, _utf8(f"{msg_id}.{ts}.") + body), [_b64(sig, 32) for v, _, sig in entries if v == "v1"])

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        msg_id, ts = msg_id or f"msg_{uuid.uuid4().hex}", str(int(now))
        sig = base64.b64encode(_mac(self._key(cfg), _utf8(f"{msg_id}.{ts}.") + body)).decode()
        return {"webhook-id": msg_id, "webhook-timestamp": ts, self._header(cfg): f"v1,{sig}"}, {}


class Token(Scheme):
    name = "token"
    default_header = "x-webhook-token"

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        key, name = self._key(cfg), self._header(cfg)
        given = _get(headers, name) if name in headers or "token" not in query else query["token"]
        if not hmac.compare_digest(_utf8(given or _fail("empty token query parameter")), key):
            raise SignatureError("token does not match")

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        return {self._header(cfg): self._secret(cfg)}, {}

    def secret_fields(self, cfg: VerifyConfig) -> tuple[frozenset[str], frozenset[str]]:
        return frozenset({self._header(cfg)}), frozenset({"token"})


class NoVerify(Scheme):
    name = "none"
    needs_secret = False

    def verify(self, cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float) -> None:
        return None

    def sign(self, cfg: VerifyConfig, body: bytes, now: float, msg_id: str | None = None) -> Pair:
        return {}, {}


_ALL: tuple[Scheme, ...] = (
    BodyHmac("github", "x-hub-signature-256", "sha256=", id_header="x-github-delivery"),
    Stripe(),
    Slack(),
    BodyHmac("shopify", "x-shopify-hmac-sha256", b64=True, id_header="x-shopify-webhook-id"),
    Standard(),
    BodyHmac("hmac", None, "sha256=", optional=True),
    Token(),
    NoVerify(),
)
SCHEMES: dict[str, Scheme] = {scheme.name: scheme for scheme in _ALL}


def _scheme(cfg: VerifyConfig) -> Scheme:
    return SCHEMES.get(cfg.scheme) or _fail(f"unknown verify scheme {cfg.scheme!r}")


def verify(cfg: VerifyConfig, body: bytes, headers: Headers, query: Headers, now: float | None = None) -> None:
    """Raise ``SignatureError`` unless the request verifies under ``cfg``; ``now`` defaults to ``time.time()``."""
    _scheme(cfg).verify(cfg, body, headers, query, time.time() if now is None else now)


def sign(cfg: VerifyConfig, body: bytes, now: float | None = None, msg_id: str | None = None) -> Pair:
    """Return ``(headers, query)`` to add to a request so that ``verify`` accepts it."""
    return _scheme(cfg).sign(cfg, body, time.time() if now is None else now, msg_id)
