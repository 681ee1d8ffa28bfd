"""Turn an incoming webhook into an event row: look up the source, verify, parse, find its dedupe key.

Plain functions, testable without HTTP. The order of checks is the public contract:
unknown source → 404, Content-Encoding other than identity → 415 (before reading), body too large → 413
(checked while reading), signature → 401, parse (invalid JSON/UTF-8, JSON nested deeper than 64) → 400.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from router.errors import IngestError, SignatureError, TemplateRenderError
from router.pipeline.match import build_context, event_dict
from router.pipeline.signatures import SCHEMES, VerifyConfig, verify
from router.records.models import new_id
from router.records.status import EventStatus
from router.rules.compiled import CompiledSource, RuleSet

_json = msgspec.json.Decoder()

MAX_JSON_DEPTH = 64
# A JSON string, escapes included (the unrolled form: linear time, no backtracking).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")

# The clock the signature check reads; tests inject a fixed one to probe the tolerance edges exactly.
clock: Callable[[], float] = time.time


@dataclass
class Incoming:
    """An HTTP request as ingest sees it."""

    source: str
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, Any]
    raw: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def fold_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query strings and forms: a value once is a string, a repeated key becomes a list."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def fold_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-cased header names; a header sent twice keeps both values joined by ', '."""
    out: dict[str, str] = {}
    for key, value in pairs:
        name = key.lower()
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


def find_source(ruleset: RuleSet, source_id: str) -> CompiledSource:
    source = ruleset.sources.get(source_id)
    if source is None:
        raise IngestError(404, "Unknown source", f"no source {source_id!r} is defined in the rule files")
    if not source.takes_webhooks:
        how = "polled" if source.kind == "poll" else "scheduled"
        raise IngestError(404, "Not a webhook source", f"source {source_id!r} is {how}: it has no webhook URL")
    return source


def check_signature(source: CompiledSource, req: Incoming, now: float | None = None) -> None:
    if source.verify is None:
        return
    try:
        verify(
            source.verify,
            req.raw,
            req.headers,
            {k: v if isinstance(v, str) else v[0] for k, v in req.query.items()},
            now if now is not None else clock(),
        )
    except SignatureError as exc:
        raise IngestError(401, "Signature verification failed", str(exc)) from None


def check_content_encoding(headers: Mapping[str, str]) -> None:
    """Only uncompressed bodies: signatures cover the bytes as sent, and nothing is ever inflated (no zip bombs)."""
    value = headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in value.split(",") if c.strip()]
    refused = [c for c in codings if c != "identity"]
    if refused:
        raise IngestError(
            415,
            "Unsupported Content-Encoding",
            f"Content-Encoding {', '.join(refused)} is not accepted; send the body uncompressed",
        )


def json_depth_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if brackets outside strings nest deeper than ``limit``; no recursion, C-speed passes over the bytes.

    Strings are cut out first (a regex), then everything but brackets is deleted (``bytes.translate``);
    only the brackets are walked in Python, and not at all when there are too few to reach the limit.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:  # the common case: a flat or shallow body, no pass at all
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= limit or brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        if byte in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def parse_json(raw: bytes) -> Any:
    if json_depth_exceeds(raw):
        raise IngestError(400, "Body is nested too deeply", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return _json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # The decoder's wording changes between releases (and older ones raise UnicodeDecodeError bare):
        # tell invalid UTF-8 in a string from invalid JSON ourselves, on the refusal path only.
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            if _inside_string(raw[: bad.start]):
                raise not_utf8(bad) from None
        raise IngestError(400, "Body is not valid JSON", str(exc)) from None
    except RecursionError:  # unreachable after the depth check, kept so it can never become a 500
        raise IngestError(
            400, "Body is nested too deeply", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None


def not_utf8(exc: UnicodeDecodeError) -> IngestError:
    """Our own words for a body that is not UTF-8 (JSON must be, RFC 8259 §8.1), naming the first bad byte."""
    return IngestError(400, "Body is not valid UTF-8", f"the byte at offset {exc.start} is not valid UTF-8")


def _inside_string(prefix: bytes) -> bool:
    """Whether the JSON text ``prefix`` ends inside a string (a quote opened and not closed)."""
    return b'"' in _JSON_STRING.sub(b"", prefix)


def parse_body(raw: bytes, content_type: str) -> Any:
    """JSON, form-encoded and text bodies; anything that does not parse is a 400."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not raw:
        return None
    if ctype == "application/json" or ctype.endswith("+json") or (not ctype and raw.lstrip()[:1] in (b"{", b"[")):
        return parse_json(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(exc) from None
    if ctype == "application/x-www-form-urlencoded":
        return fold_pairs(parse_qsl(text, keep_blank_values=True))
    return text


def dedupe_key(source: CompiledSource, event: Mapping[str, Any]) -> str | None:
    if source.dedupe is None:
        return None
    try:
        value = source.dedupe.search(build_context(event, {}))
    except TemplateRenderError:
        return None
    if value is None or value == "" or value is False:
        return None
    key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return key[:512]


def accept(ruleset: RuleSet, req: Incoming, *, chain_depth: int = 0) -> dict[str, Any]:
    """Verify and parse an incoming request into an event row (not yet stored)."""
    source = find_source(ruleset, req.source)
    check_content_encoding(req.headers)
    check_signature(source, req)
    body = parse_body(req.raw, req.content_type)
    if source.verify is not None:
        mask_secrets(source.verify, req)
    return new_event_row(source, req, body, chain_depth=chain_depth)


def mask_secrets(cfg: VerifyConfig, req: Incoming) -> None:
    """A shared-secret token must not be stored with the event: replace it once it has been checked."""
    headers, query = SCHEMES[cfg.scheme].secret_fields(cfg)
    for name in headers & req.headers.keys():
        req.headers[name] = "[redacted]"
    for name in query & req.query.keys():
        req.query[name] = "[redacted]"


def new_event_row(
    source: CompiledSource | None,
    req: Incoming,
    body: Any,
    *,
    chain_depth: int = 0,
    dedupe: str | None = None,
    parent_step_id: str | None = None,
    via: str | None = None,
) -> dict[str, Any]:
    received_at = datetime.now(UTC)
    event_id = new_id()
    if dedupe is None and source is not None and source.dedupe is not None:
        ev = event_dict(
            id=event_id,
            source=req.source,
            received_at=received_at,
            method=req.method,
            path=req.path,
            headers=req.headers,
            query=req.query,
            body=body,
            via=via,
        )
        dedupe = dedupe_key(source, ev)
    return {
        "id": event_id,
        "source": req.source,
        "received_at": received_at,
        "method": req.method,
        "path": req.path,
        "headers": req.headers,
        "query": req.query,
        "content_type": req.content_type or None,
        "body": body,
        "raw_body": req.raw,
        "dedupe_key": dedupe,
        "status": EventStatus.RECEIVED,
        "matched": 0,
        "chain_depth": chain_depth,
        "parent_step_id": parent_step_id,
        "via": via if via is not None else ("emit" if parent_step_id else None),
    }
