"""The signature corpus through the real ingest route: per scheme, valid and hostile requests.

Decision asserted here: every request whose signature, timestamp or signature headers are wrong,
missing, duplicated or malformed is ``401``; ``400`` is only for a request that verified but whose
body does not parse. Never 5xx. The clock the verifier reads is injected, so ±300 s passes and ±301 s
fails exactly. A replay of an accepted request is ``200 duplicate`` for schemes that carry a
delivery id (github, shopify, standard; stripe by the event id in the body) and creates no new run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import func, select

from router.pipeline import ingest
from router.pipeline.signatures import VerifyConfig, sign
from router.records import db
from router.records.models import Event, Run
from tests.conftest import RouterFactory

pytestmark = pytest.mark.security

NOW = 1_800_000_000
SECRET = "corpus-s3cret"
STD_SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
OTHER_STD = "whsec_" + base64.b64encode(bytes(range(2, 34))).decode()
CFG = {
    "github": VerifyConfig("github", SECRET),
    "stripe": VerifyConfig("stripe", SECRET),
    "slack": VerifyConfig("slack", SECRET),
    "shopify": VerifyConfig("shopify", SECRET),
    "standard": VerifyConfig("standard", STD_SECRET),
    "hmac": VerifyConfig("hmac", SECRET, header="x-signature"),
    "token": VerifyConfig("token", SECRET),
}
SIG_HEADER = {name: cfg.header or f"{name}" for name, cfg in CFG.items()} | {
    "github": "x-hub-signature-256",
    "stripe": "stripe-signature",
    "slack": "x-slack-signature",
    "shopify": "x-shopify-hmac-sha256",
    "standard": "webhook-signature",
    "token": "x-webhook-token",
}
TS_HEADER = {"slack": "x-slack-request-timestamp", "standard": "webhook-timestamp"}
TIMESTAMPED = ("stripe", "slack", "standard")
DEDUPED = ("github", "stripe", "shopify", "standard")
WRONG_SECRETS = [SECRET + "x", SECRET[:-1], SECRET.upper(), " " + SECRET, "x"]


def rules() -> dict[str, str]:
    sources = [{"id": "sink", "dedupe": False}]
    rules_ = []
    for name, cfg in CFG.items():
        verify = {"scheme": cfg.scheme, "secret": cfg.secret} | ({"header": cfg.header} if cfg.header else {})
        sources.append({"id": name, "verify": verify})
        rules_.append(
            {"id": f"r-{name}", "source": name, "steps": [{"id": "out", "action": "emit", "with": {"source": "sink"}}]}
        )
    return {"rules.yaml": json.dumps({"sources": sources, "rules": rules_}, indent=2)}


@dataclass
class Req:
    name: str
    body: bytes
    headers: list[tuple[str, str]]
    expect: int
    query: dict[str, str] = field(default_factory=dict)


_counter = iter(range(10**9))


def body() -> bytes:
    n = next(_counter)
    return json.dumps({"id": f"evt_{n:06d}", "n": n, "note": "café"}).encode()


def signed(scheme: str, raw: bytes, *, now: int = NOW, secret: str | None = None) -> dict[str, str]:
    cfg = CFG[scheme]
    if secret is not None:
        cfg = VerifyConfig(cfg.scheme, secret, cfg.header)
    headers, _query = sign(cfg, raw, now=now, msg_id=f"msg_{next(_counter)}")
    return headers


def split_sig(scheme: str, value: str) -> tuple[str, str]:
    """(prefix, signature) of a signature header value as ``sign`` writes it."""
    cut = {"github": 7, "hmac": 7, "slack": 3, "standard": 3, "shopify": 0, "token": 0}.get(scheme)
    if cut is None:  # stripe: t=<ts>,v1=<hex>
        cut = value.index("v1=") + 3
    return value[:cut], value[cut:]


def swapped(sig: str) -> str:
    """Hex ↔ base64 of the same MAC bytes."""
    try:
        return base64.b64encode(bytes.fromhex(sig)).decode()
    except ValueError:
        return base64.b64decode(sig).hex()


def urlsafe(sig: str) -> str:
    """The URL-safe base64 alphabet; always differs from ``sig`` (a '-' is added when there was no + or /)."""
    changed = sig.replace("+", "-").replace("/", "_")
    return changed if changed != sig else "-" + sig[1:]


def flip(text: str, i: int) -> str:
    alphabet = "0123456789abcdef" if all(c in "0123456789abcdefABCDEF" for c in text) else "AB"
    c = text[i]
    return text[:i] + (alphabet[1] if c == alphabet[0] else alphabet[0]) + text[i + 1 :]


class Corpus:
    """The requests of one scheme's corpus, each signed (then altered) as ``add`` is told."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.h = SIG_HEADER[scheme]
        self.out: list[Req] = []

    def add(self, name: str, expect: int, mutate: Callable[[dict[str, str]], list[tuple[str, str]] | dict[str, str]],
            raw: bytes | None = None, send: bytes | None = None, now: int = NOW, secret: str | None = None,
            query: dict[str, str] | None = None) -> None:  # fmt: skip
        raw = raw if raw is not None else body()
        headers = signed(self.scheme, raw, now=now, secret=secret)
        mutated = mutate(dict(headers))
        pairs = list(mutated.items()) if isinstance(mutated, dict) else mutated
        self.out.append(Req(name, send if send is not None else raw, pairs, expect, query or {}))

    def with_sig(self, new: Callable[[str, str], str]) -> Callable[[dict[str, str]], dict[str, str]]:
        def mutate(headers: dict[str, str]) -> dict[str, str]:
            prefix, sig = split_sig(self.scheme, headers[self.h])
            headers[self.h] = new(prefix, sig)
            return headers

        return mutate


def same(headers: dict[str, str]) -> dict[str, str]:
    return headers


def _accepted(c: Corpus) -> None:
    # accepted
    scheme, h, add, with_sig = c.scheme, c.h, c.add, c.with_sig
    add("valid", 202, same)
    add("valid, header names in capitals", 202, lambda hs: {k.upper(): v for k, v in hs.items()})
    add("valid, unrelated extra headers", 202, lambda hs: {**hs, "x-other": "1", "x-signature-old": "0"})
    if scheme in TIMESTAMPED:
        add("timestamp -300 s (edge)", 202, same, now=NOW - 300)
        add("timestamp +300 s (edge)", 202, same, now=NOW + 300)
    if scheme in ("github", "hmac", "stripe", "slack"):
        add("hex in capitals", 202, with_sig(lambda p, s: p + s.upper()))
    if scheme == "hmac":
        add("hmac without the sha256= prefix", 202, with_sig(lambda p, s: s))
    if scheme == "stripe":
        add("rotation: a stale v1 then the valid one", 202, with_sig(lambda p, s: p + "0" * 64 + ",v1=" + s))
        add("v1 before t", 202, lambda hs: {h: ",".join(reversed(hs[h].split(",")))})
    if scheme == "standard":
        add("rotation: a stale v1 then the valid one", 202, with_sig(lambda p, s: f"v1,{'A' * 43}= {p}{s}"))
        add("an unknown version next to v1", 202, with_sig(lambda p, s: f"v1a,{'A' * 86}== {p}{s}"))
    if scheme == "token":
        add("token in the query instead", 202, lambda hs: {}, query={"token": SECRET})


def _unparsable(c: Corpus) -> None:
    # 400: verified, but the body does not parse
    add = c.add
    add("valid signature over a body that is not JSON", 400, same, raw=b'{"id": "evt_x", "broken": ')


def _wrong_secrets(c: Corpus) -> None:
    # wrong secret
    scheme, add = c.scheme, c.add
    for n, secret in enumerate(WRONG_SECRETS):
        wrong = OTHER_STD if scheme == "standard" and n == 0 else secret
        if scheme == "standard" and n > 0:
            wrong = "whsec_" + base64.b64encode(secret.encode().ljust(24, b"-")).decode()
        add(f"wrong secret {n}", 401, same, secret=wrong)


def _body_changed(c: Corpus) -> None:
    # body changed by one byte (signature over the original); the token scheme signs no body, by design
    scheme, add = c.scheme, c.add
    if scheme != "token":
        for pos in (0, 1, 5, 10, 20, 30, -3, -2, -1):

            def one_byte(raw: bytes, pos: int = pos) -> bytes:
                i = pos % len(raw)
                return raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]

            original = body()
            add(f"1 byte changed at {pos}", 401, same, raw=original, send=one_byte(original))
        original = body()
        add("1 byte appended", 401, same, raw=original, send=original + b" ")
        original = body()
        add("last byte dropped", 401, same, raw=original, send=original[:-1])
        add("empty body", 401, same, send=b"")


def _signature_altered(c: Corpus) -> None:
    # the signature itself altered
    scheme, h, add, with_sig = c.scheme, c.h, c.add, c.with_sig
    if scheme != "token":
        for i in (0, 1, 7, 15, 21, 31, -2, -1):
            add(f"signature character {i} changed", 401, with_sig(lambda p, s, i=i: p + flip(s, i % len(s))))
        add("hex/base64 swapped", 401, with_sig(lambda p, s: p + swapped(s)))
        add("signature truncated", 401, with_sig(lambda p, s: p + s[:-2]))
        add("signature extended", 401, with_sig(lambda p, s: p + s + s[:2]))
        add("signature of zeros", 401, with_sig(lambda p, s: p + ("0" * 64 if len(s) == 64 else "A" * 43 + "=")))
        add("signature doubled", 401, with_sig(lambda p, s: p + s + s))
        add("signature with a space inside", 401, with_sig(lambda p, s: p + s[:10] + " " + s[10:]))
        add("no signature after the prefix", 401, with_sig(lambda p, s: p))
        add("non-ASCII signature", 401, with_sig(lambda p, s: p + "é" * len(s)))
    else:
        for n, token in enumerate([SECRET + "x", SECRET[:-1], SECRET.upper(), SECRET[1:], "", "0" * len(SECRET)]):
            add(f"wrong token {n}", 401, lambda hs, t=token: {h: t} if t else {h: " "})
        for n, token in enumerate([SECRET + "x", "", SECRET.upper()]):
            add(f"wrong query token {n}", 401, lambda hs: {}, query={"token": token})
        add("right query token, wrong header token", 401, lambda hs: {h: "x"}, query={"token": SECRET})
        add("token in another header", 401, lambda hs: {"authorization": f"Bearer {SECRET}"})
        add("token with a space inside", 401, lambda hs: {h: SECRET[:3] + " " + SECRET[3:]})
        add("token doubled", 401, lambda hs: {h: SECRET + SECRET})
        add("token hex-encoded", 401, lambda hs: {h: SECRET.encode().hex()})
        add("token base64-encoded", 401, lambda hs: {h: base64.b64encode(SECRET.encode()).decode()})
        for n in range(len(SECRET)):  # every single-character change
            add(f"token character {n} changed", 401, lambda hs, n=n: {h: flip(SECRET, n)})
        for n in (1, 3, 5, 7, 9, 11):
            add(f"token cut to {n} characters", 401, lambda hs, n=n: {h: SECRET[:n]})


def _headers_broken(c: Corpus) -> None:
    # headers missing, empty, duplicated
    scheme, h, add = c.scheme, c.h, c.add
    for name in [h, *([TS_HEADER[scheme]] if scheme in TS_HEADER else []), *(["webhook-id"] if scheme == "standard"
                                                                            else [])]:  # fmt: skip
        add(f"{name} missing", 401, lambda hs, n=name: {k: v for k, v in hs.items() if k != n})
        add(f"{name} empty", 401, lambda hs, n=name: {**hs, n: ""})
        add(f"{name} blank", 401, lambda hs, n=name: {**hs, n: " "})
        # Standard Webhooks: a repeated webhook-signature folds to "<entry>, v1,<sig>"; its last entry is the
        # valid signature itself, which the reference library (and so Event Router) accepts.
        twice = 202 if scheme == "standard" and name == h else 401
        add(f"{name} twice, same value", twice, lambda hs, n=name: [*hs.items(), (n, hs[n])])
        add(f"{name} twice, a bad value first", twice, lambda hs, n=name: [(n, "0"), *hs.items()])
    add("no headers at all", 401, lambda hs: {})


def _timestamps(c: Corpus) -> None:
    # timestamps
    scheme, h, add = c.scheme, c.h, c.add
    if scheme in TIMESTAMPED:
        add("timestamp -301 s, signed over it", 401, same, now=NOW - 301)
        add("timestamp +301 s, signed over it", 401, same, now=NOW + 301)
        add("timestamp a day old", 401, same, now=NOW - 86_400)
        add("timestamp 0", 401, same, now=0)
        for bad in ("abc", "1e9", "-5", "0x6b49d200", "1800000000.5", "١٨٠٠٠٠٠٠٠٠", "18000000000000", " 1800000000"):
            if scheme == "stripe":
                add(f"timestamp {bad!r}", 401, lambda hs, b=bad: {h: f"t={b}," + hs[h].split(",", 1)[1]})
            else:
                add(f"timestamp {bad!r}", 401, lambda hs, b=bad: {**hs, TS_HEADER[scheme]: b})
        if scheme in TS_HEADER:
            add("timestamp moved 1 s (still in tolerance)", 401,
                lambda hs: {**hs, TS_HEADER[scheme]: str(int(hs[TS_HEADER[scheme]]) + 1)})  # fmt: skip


def _stray(c: Corpus) -> None:
    # structure: stray separators and spaces, unknown versions only
    scheme, add, with_sig = c.scheme, c.add, c.with_sig
    stray: dict[str, list[tuple[str, Callable[[str, str], str]]]] = {
        "github": [("sha256 = ", lambda p, s: "sha256 =" + s), ("sha256:", lambda p, s: "sha256:" + s),
                   ("sha1= only", lambda p, s: "sha1=" + s[:40]), ("sha512= only", lambda p, s: "sha512=" + s),
                   ("two sha256=", lambda p, s: p + p + s), ("trailing comma", lambda p, s: p + s + ",")],
        "hmac": [("sha256 = ", lambda p, s: "sha256 =" + s), ("sha1= only", lambda p, s: "sha1=" + s[:40]),
                 ("sha512= only", lambda p, s: "sha512=" + s), ("trailing comma", lambda p, s: p + s + ","),
                 ("two sha256=", lambda p, s: p + p + s)],
        "slack": [("v1= only", lambda p, s: "v1=" + s), ("v0 = ", lambda p, s: "v0 =" + s),
                  ("v0:", lambda p, s: "v0:" + s), ("trailing comma", lambda p, s: p + s + ","),
                  ("two v0=", lambda p, s: p + s + "," + p + s)],
        "shopify": [("sha256= prefix", lambda p, s: "sha256=" + s), ("no padding", lambda p, s: s.rstrip("=")),
                    ("urlsafe alphabet", lambda p, s: urlsafe(s)),
                    ("trailing comma", lambda p, s: s + ","), ("two signatures", lambda p, s: s + "," + s),
                    ("padding doubled", lambda p, s: s + "="),
                    ("base64 of the hex digest", lambda p, s: base64.b64encode(base64.b64decode(s).hex().encode())
                     .decode())],
        "stripe": [("v0 only", lambda p, s: p.replace("v1=", "v0=") + s),
                   ("v1, with no signature", lambda p, s: p),
                   ("t only", lambda p, s: p.split(",")[0]),
                   ("space after comma", lambda p, s: p.replace(",", ", ") + s),
                   ("double comma", lambda p, s: p.replace(",", ",,") + s),
                   ("leading comma", lambda p, s: "," + p + s), ("trailing comma", lambda p, s: p + s + ","),
                   ("two t=", lambda p, s: p.split(",")[0] + "," + p + s),
                   ("semicolons", lambda p, s: p.replace(",", ";") + s),
                   ("t= empty", lambda p, s: "t=,v1=" + s)],
        "standard": [("v1a only", lambda p, s: "v1a," + s), ("v2 only", lambda p, s: "v2," + s),
                     ("v1, with no signature", lambda p, s: "v1,"), ("v1 with no comma", lambda p, s: "v1" + s),
                     ("v1= instead of v1,", lambda p, s: "v1=" + s), ("comma, space", lambda p, s: "v1, " + s),
                     ("two spaces between entries", lambda p, s: p + s + "  " + p + s),
                     ("comma-separated entries", lambda p, s: p + s + "," + p + s),
                     ("trailing comma", lambda p, s: p + s + ","), ("urlsafe base64", lambda p, s: p + urlsafe(s))],
    }  # fmt: skip
    skipped_like_the_reference = {"two spaces between entries"}  # standardwebhooks accepts it too
    for label, new in stray.get(scheme, []):
        add(f"stray: {label}", 202 if label in skipped_like_the_reference else 401, with_sig(new))
    if scheme == "standard":
        add("webhook-id changed", 401, lambda hs: {**hs, "webhook-id": hs["webhook-id"] + "x"})


def cases(scheme: str) -> list[Req]:
    c = Corpus(scheme)
    for section in (
        _accepted,
        _unparsable,
        _wrong_secrets,
        _body_changed,
        _signature_altered,
        _headers_broken,
        _timestamps,
        _stray,
    ):
        section(c)
    return c.out


def wire(req: Req) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in req.headers]  # UTF-8 on the wire, as a hostile sender may


async def test_signature_corpus_through_http_ingest(
    router_factory: RouterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "clock", lambda: float(NOW))
    figures = []
    totals: dict[int, int] = {}
    async with router_factory(rules()) as r:
        for scheme in CFG:
            corpus = cases(scheme)
            got: dict[int, int] = {}
            wrong = []
            accepted: list[tuple[Req, str]] = []
            for req in corpus:
                response = await r.client.post(
                    f"/hooks/{scheme}", content=req.body, headers=wire(req), params=req.query
                )
                got[response.status_code] = got.get(response.status_code, 0) + 1
                if response.status_code != req.expect:
                    wrong.append((req.name, req.expect, response.status_code, response.text[:200]))
                if response.status_code == 202:
                    accepted.append((req, response.json()["event_id"]))
            # replay every accepted request
            replays: dict[int, int] = {}
            for req, event_id in accepted:
                again = await r.client.post(f"/hooks/{scheme}", content=req.body, headers=wire(req), params=req.query)
                replays[again.status_code] = replays.get(again.status_code, 0) + 1
                if scheme in DEDUPED:
                    assert again.status_code == 200, (scheme, req.name, again.text)
                    assert again.json() == {"event_id": event_id, "duplicate": True}
                else:
                    assert again.status_code == 202, (scheme, req.name, again.text)
            assert wrong == [], (scheme, wrong)
            assert len(corpus) >= 50, (scheme, len(corpus))
            five = sum(n for code, n in got.items() if code >= 500)
            figures.append(
                f"signature corpus: {scheme} {len(corpus)} cases, {got.get(202, 0)} accepted, "
                f"{got.get(401, 0)} refused 401, {got.get(400, 0)} x 400 (verified, body not JSON), {five} x 5xx; "
                f"replay of {len(accepted)}: "
                + ("200 duplicate, no new event" if scheme in DEDUPED else "202 new event (no delivery id to dedupe)")
            )
            for code, n in got.items():
                totals[code] = totals.get(code, 0) + n
        # every stored event of a signed source got exactly one run: replays added none
        engine = db.create_engine(r.settings.database_url)
        deadline = time.monotonic() + 30
        async with engine.connect() as conn:
            while True:
                events = (
                    await conn.execute(select(func.count()).select_from(Event).where(Event.source != "sink"))
                ).scalar_one()
                runs = (
                    await conn.execute(select(func.count()).select_from(Run).join(Event).where(Event.source != "sink"))
                ).scalar_one()
                if runs >= events or time.monotonic() > deadline:
                    break
                await conn.rollback()
                await asyncio.sleep(0.05)
        await engine.dispose()
    for line in figures:
        print(line)
    print(f"signature corpus total: {sum(totals.values())} requests, {dict(sorted(totals.items()))}; "
          f"{events} events stored, {runs} runs")  # fmt: skip
    assert not any(code >= 500 for code in totals)
    assert runs == events
