"""Tests for router.pipeline.signatures: published vectors, the reference Standard Webhooks lib, and malformed input."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from router.errors import SignatureError
from router.pipeline.signatures import SCHEMES, Scheme, VerifyConfig, sign, verify
from tests.helpers import hmac_hex

NOW = 1_700_000_000
BODY = b'{"id":"evt_123","type":"order.paid","amount":4200,"note":"caf\xc3\xa9"}'
SECRET = "s3cr\u00e9t-value"
STD_SECRET = "whsec_" + base64.b64encode(bytes(range(1, 33))).decode()
OTHER_STD_SECRET = "whsec_" + base64.b64encode(bytes(range(101, 133))).decode()

CFG = {
    "github": VerifyConfig("github", SECRET),
    "stripe": VerifyConfig("stripe", SECRET),
    "slack": VerifyConfig("slack", SECRET),
    "shopify": VerifyConfig("shopify", SECRET),
    "standard": VerifyConfig("standard", STD_SECRET),
    "hmac": VerifyConfig("hmac", SECRET, header="X-Signature"),
    "token": VerifyConfig("token", SECRET),
    "none": VerifyConfig("none"),
}
SIGNED = [name for name in CFG if name != "none"]
TIMESTAMPED = ["stripe", "slack", "standard"]
SIG_HEADER = {
    "github": "x-hub-signature-256",
    "stripe": "stripe-signature",
    "slack": "x-slack-signature",
    "shopify": "x-shopify-hmac-sha256",
    "standard": "webhook-signature",
    "hmac": "x-signature",
    "token": "x-webhook-token",
}
TS_HEADER = {"slack": "x-slack-request-timestamp", "standard": "webhook-timestamp"}
# Every header a scheme cannot verify without.
REQUIRED = [
    *SIG_HEADER.items(),
    ("slack", "x-slack-request-timestamp"),
    ("standard", "webhook-id"),
    ("standard", "webhook-timestamp"),
]
OTHER_SECRET = {name: OTHER_STD_SECRET if name == "standard" else SECRET + "x" for name in SIGNED}


def signed(name: str, body: bytes = BODY, now: float = NOW, cfg: VerifyConfig | None = None) -> dict[str, str]:
    headers, query = sign(cfg or CFG[name], body, now=now, msg_id="msg_1")
    assert query == {}
    assert all(key == key.lower() for key in headers)
    return headers


def reason(
    name: str, headers: dict[str, str], body: bytes = BODY, now: float = NOW, tolerance: int | None = None
) -> str:
    """Verify must refuse; return its reason."""
    cfg = replace(CFG[name], tolerance=tolerance)
    with pytest.raises(SignatureError) as info:
        verify(cfg, body, headers, {}, now=now)
    assert str(info.value)
    return str(info.value)


# --- the registry ---------------------------------------------------------------------------------------------------


def test_registry_holds_every_scheme() -> None:
    assert set(SCHEMES) == {"github", "stripe", "slack", "shopify", "standard", "hmac", "token", "none"}
    for name, scheme in SCHEMES.items():
        assert isinstance(scheme, Scheme)
        assert scheme.name == name
        assert scheme.needs_secret is (name != "none")
        assert scheme.default_tolerance == (300 if name in TIMESTAMPED else None)


@pytest.mark.parametrize(
    ("name", "header", "dedupe"),
    [
        ("github", "x-hub-signature-256", 'headers."x-github-delivery"'),
        ("stripe", "stripe-signature", "body.id"),
        ("slack", "x-slack-signature", None),
        ("shopify", "x-shopify-hmac-sha256", 'headers."x-shopify-webhook-id"'),
        ("standard", "webhook-signature", 'headers."webhook-id"'),
        ("hmac", None, None),
        ("token", "x-webhook-token", None),
        ("none", None, None),
    ],
)
def test_scheme_defaults(name: str, header: str | None, dedupe: str | None) -> None:
    assert SCHEMES[name].default_header == header
    assert SCHEMES[name].default_dedupe == dedupe


def test_unknown_scheme_is_a_signature_error() -> None:
    with pytest.raises(SignatureError, match="unknown verify scheme"):
        verify(VerifyConfig("gitlab", SECRET), BODY, {}, {})
    with pytest.raises(SignatureError, match="unknown verify scheme"):
        sign(VerifyConfig("gitlab", SECRET), BODY)


# --- published vectors ------------------------------------------------------------------------------------------------

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_github_docs_vector() -> None:
    cfg = VerifyConfig("github", GITHUB_SECRET)
    verify(cfg, b"Hello, World!", {"x-hub-signature-256": GITHUB_SIG}, {}, now=NOW)
    headers, _ = sign(cfg, b"Hello, World!", now=NOW, msg_id="delivery-1")
    assert headers == {"x-hub-signature-256": GITHUB_SIG, "x-github-delivery": "delivery-1"}
    with pytest.raises(SignatureError, match="signature does not match"):
        verify(cfg, b"Hello, World?", {"x-hub-signature-256": GITHUB_SIG}, {}, now=NOW)


def test_slack_docs_vector() -> None:
    cfg = VerifyConfig("slack", SLACK_SECRET)
    headers = {"x-slack-signature": SLACK_SIG, "x-slack-request-timestamp": SLACK_TS}
    verify(cfg, SLACK_BODY, headers, {}, now=int(SLACK_TS) + 5)
    assert sign(cfg, SLACK_BODY, now=int(SLACK_TS))[0] == headers
    with pytest.raises(SignatureError, match="timestamp outside the 300 s tolerance"):
        verify(cfg, SLACK_BODY, headers, {}, now=int(SLACK_TS) + 301)


def stripe_header(t: int | str, *v1: str, extra: str = "") -> dict[str, str]:
    return {"stripe-signature": ",".join([f"t={t}", *(f"v1={sig}" for sig in v1), *([extra] if extra else [])])}


def test_stripe_hand_built_headers() -> None:
    key = SECRET.encode("utf-8")
    good = hmac_hex(key, f"{NOW}.".encode() + BODY)
    wrong = hmac_hex(b"rotated-out", f"{NOW}.".encode() + BODY)
    verify(CFG["stripe"], BODY, stripe_header(NOW, good), {}, now=NOW)
    verify(CFG["stripe"], BODY, stripe_header(NOW, wrong, good), {}, now=NOW)  # any v1 may match
    verify(CFG["stripe"], BODY, stripe_header(NOW, good, extra=f"v0={wrong}"), {}, now=NOW)  # v0 ignored
    verify(CFG["stripe"], BODY, {"stripe-signature": f"v1={good},t={NOW}"}, {}, now=NOW)  # order is free
    assert reason("stripe", stripe_header(NOW, wrong, wrong)) == "signature does not match"
    assert "malformed" in reason("stripe", {"stripe-signature": f"t={NOW},v0={good}"})  # no v1 at all
    assert sign(CFG["stripe"], BODY, now=NOW)[0] == stripe_header(NOW, good)


def test_shopify_is_base64_of_the_body_hmac() -> None:
    sig = base64.b64encode(hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()).decode()
    verify(CFG["shopify"], BODY, {"x-shopify-hmac-sha256": sig}, {}, now=NOW)
    assert signed("shopify")["x-shopify-hmac-sha256"] == sig
    assert signed("shopify")["x-shopify-webhook-id"] == "msg_1"


# --- Standard Webhooks, against the reference library -----------------------------------------------------------------


def lib_headers(secret: str, msg_id: str, ts: int, body: bytes) -> dict[str, str]:
    when = datetime.fromtimestamp(ts, tz=UTC)
    signature = Webhook(secret).sign(msg_id, when, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def lib_accepts(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except Exception:  # the reference lib raises its own error but also ValueError / binascii.Error
        return False
    return True


def ours_accepts(secret: str, body: bytes, headers: dict[str, str], now: float) -> bool:
    try:
        verify(VerifyConfig("standard", secret), body, headers, {}, now=now)
    except SignatureError:
        return False
    return True


@pytest.mark.parametrize(
    "secret",
    [STD_SECRET, STD_SECRET.removeprefix("whsec_"), "whsec_" + base64.b64encode(b"k" * 31).decode().rstrip("=")],
    ids=["whsec", "no-prefix", "unpadded"],
)
def test_standard_library_vectors_verify(secret: str) -> None:
    headers = lib_headers(secret, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", NOW, BODY)
    verify(VerifyConfig("standard", secret), BODY, headers, {}, now=NOW)
    ours, _ = sign(VerifyConfig("standard", secret), BODY, now=NOW, msg_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
    assert ours == headers


def test_standard_multiple_signatures_and_other_versions() -> None:
    headers = lib_headers(STD_SECRET, "msg_1", NOW, BODY)
    good = headers["webhook-signature"]
    bad = lib_headers(OTHER_STD_SECRET, "msg_1", NOW, BODY)["webhook-signature"]
    for value in (f"{bad} {good}", f"{good} {bad}", f"v2,{good[3:]} {good}", f"v1a,xyz {good}"):
        verify(CFG["standard"], BODY, {**headers, "webhook-signature": value}, {}, now=NOW)
    assert "no v1 signature" in reason("standard", {**headers, "webhook-signature": f"v2,{good[3:]}"})


@pytest.mark.parametrize(
    "extra",
    ["v1,c2hvcnQ=", "v1,!!!notbase64!!!", "v1,", "v1", "garbage", "v1,a,b", "v1a,xyz", "v2,AAAA"],
    ids=["short-v1", "bad-base64-v1", "empty-v1", "bare-v1", "no-comma", "two-commas", "v1a", "v2"],
)
@pytest.mark.parametrize("first", [True, False], ids=["before", "after"])
def test_standard_skips_entries_that_are_not_a_v1_signature_like_the_library(extra: str, first: bool) -> None:
    """One entry that is not a 32-byte v1 value among several: skipped, and the matching one is accepted."""
    now = int(time.time())
    headers = lib_headers(STD_SECRET, "msg_1", now, BODY)
    good = headers["webhook-signature"]
    headers["webhook-signature"] = f"{extra} {good}" if first else f"{good}  {extra}"
    assert lib_accepts(STD_SECRET, BODY, headers)
    assert ours_accepts(STD_SECRET, BODY, headers, now)
    bad = lib_headers(OTHER_STD_SECRET, "msg_1", now, BODY)["webhook-signature"]
    headers["webhook-signature"] = f"{extra} {bad}"  # still 401 when no entry matches
    assert not lib_accepts(STD_SECRET, BODY, headers)
    assert not ours_accepts(STD_SECRET, BODY, headers, now)


def test_standard_our_signature_passes_the_library() -> None:
    headers, _ = sign(CFG["standard"], BODY)
    assert lib_accepts(STD_SECRET, BODY, headers)


def _mutations() -> list[tuple[str, str, dict[str, str] | None, bytes, int]]:
    """(id, secret, header overrides, body, timestamp offset) — each should be refused by both verifiers."""
    sig = lib_headers(STD_SECRET, "msg_1", 0, BODY)["webhook-signature"][3:]
    return [
        ("wrong-secret", OTHER_STD_SECRET, None, BODY, 0),
        ("body-changed", STD_SECRET, None, BODY.replace(b"4200", b"4201"), 0),
        ("id-changed", STD_SECRET, {"webhook-id": "msg_2"}, BODY, 0),
        ("too-old", STD_SECRET, None, BODY, -301),
        ("too-new", STD_SECRET, None, BODY, 301),
        ("not-a-number", STD_SECRET, {"webhook-timestamp": "soon"}, BODY, 0),
        ("only-v2", STD_SECRET, {"webhook-signature": f"v2,{sig}"}, BODY, 0),
        ("empty-v1", STD_SECRET, {"webhook-signature": "v1,"}, BODY, 0),
        ("no-comma", STD_SECRET, {"webhook-signature": "v1"}, BODY, 0),
        ("bad-base64", STD_SECRET, {"webhook-signature": "v1,!!!notbase64!!!"}, BODY, 0),
        ("missing-id", STD_SECRET, {"webhook-id": ""}, BODY, 0),
        ("missing-signature", STD_SECRET, {"webhook-signature": ""}, BODY, 0),
        ("missing-timestamp", STD_SECRET, {"webhook-timestamp": ""}, BODY, 0),
    ]


@pytest.mark.parametrize(("secret", "overrides", "body", "offset"), [m[1:] for m in _mutations()],
                         ids=[m[0] for m in _mutations()])  # fmt: skip
def test_standard_agrees_with_library(secret: str, overrides: dict[str, str] | None, body: bytes, offset: int) -> None:
    now = int(time.time())
    headers = lib_headers(secret, "msg_1", now + offset, BODY)
    headers.update(overrides or {})
    headers = {k: v for k, v in headers.items() if v}
    assert lib_accepts(STD_SECRET, body, headers) is False
    assert ours_accepts(STD_SECRET, body, headers, now) is False
    pristine = lib_headers(STD_SECRET, "msg_1", now, BODY)
    assert lib_accepts(STD_SECRET, BODY, pristine)
    assert ours_accepts(STD_SECRET, BODY, pristine, now)


def test_standard_fractional_timestamp_is_refused() -> None:
    # The reference lib floors "1700000000.0"; we accept integer seconds only, as the spec writes them.
    headers = {**signed("standard"), "webhook-timestamp": f"{NOW}.0"}
    assert "malformed timestamp" in reason("standard", headers)


# --- every scheme ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CFG))
def test_round_trip(name: str) -> None:
    headers, query = sign(CFG[name], BODY, now=NOW)
    verify(CFG[name], BODY, headers, query, now=NOW)


@pytest.mark.parametrize("name", TIMESTAMPED)
def test_round_trip_with_the_real_clock(name: str) -> None:
    headers, query = sign(CFG[name], BODY)
    verify(CFG[name], BODY, headers, query)


@pytest.mark.parametrize("name", SIGNED)
def test_wrong_secret(name: str) -> None:
    headers = signed(name, cfg=VerifyConfig(name, OTHER_SECRET[name], CFG[name].header))
    assert reason(name, headers) in {"signature does not match", "token does not match"}


@pytest.mark.parametrize("name", [n for n in SIGNED if n != "token"])
@pytest.mark.parametrize("index", [0, 17, -1])
def test_one_body_byte_changed(name: str, index: int) -> None:
    body = bytearray(BODY)
    body[index] ^= 0x01
    assert reason(name, signed(name), body=bytes(body)) == "signature does not match"


@pytest.mark.parametrize(("name", "header"), REQUIRED)
def test_missing_header(name: str, header: str) -> None:
    headers = signed(name)
    del headers[header]
    assert reason(name, headers).startswith("missing ")


def test_missing_header_reason_names_the_header() -> None:
    assert reason("github", {}) == "missing X-Hub-Signature-256 header"
    assert reason("shopify", {}) == "missing X-Shopify-Hmac-Sha256 header"


@pytest.mark.parametrize(("name", "header"), REQUIRED)
@pytest.mark.parametrize("empty", ["", " ", "\t"])
def test_empty_header(name: str, header: str, empty: str) -> None:
    assert reason(name, {**signed(name), header: empty}).startswith("empty ")


@pytest.mark.parametrize(("name", "header"), REQUIRED)
@pytest.mark.parametrize("shape", ["same twice", "good then bad", "bad then good"])
def test_duplicated_header_joined_with_comma(name: str, header: str, shape: str) -> None:
    good = signed(name)[header]
    bad = signed(name, cfg=VerifyConfig(name, OTHER_SECRET[name], CFG[name].header), now=NOW + 1)[header]
    value = {"same twice": f"{good}, {good}", "good then bad": f"{good}, {bad}", "bad then good": f"{bad}, {good}"}
    if header == "webhook-signature" and shape != "good then bad":
        # Standard Webhooks entries are space-separated: the last entry is the good signature itself, and the
        # reference library (like us) accepts when any v1 entry matches.
        verify(CFG[name], BODY, {**signed(name), header: value[shape]}, {}, now=NOW)
        return
    reason(name, {**signed(name), header: value[shape]})


def test_standard_entries_around_a_valid_signature_are_skipped_not_malformed() -> None:
    standard = signed("standard")["webhook-signature"]
    for value in (f"v1,!!!! {standard}", f"{standard} v1,", f"v2,a,b {standard}", f" {standard}",
                  f"{standard}  {standard}"):  # fmt: skip
        verify(CFG["standard"], BODY, {**signed("standard"), "webhook-signature": value}, {}, now=NOW)
    padded = {**signed("standard"), "webhook-signature": f"{standard}=="}
    assert reason("standard", padded) == "signature does not match"


@pytest.mark.parametrize("name", SIGNED)
@pytest.mark.parametrize("garbage", ["garbage", "sha256=", "v0=nothex", "v1,", "t=,v1=", "\u2603" * 64])
def test_garbage_signature(name: str, garbage: str) -> None:
    reason(name, {**signed(name), SIG_HEADER[name]: garbage})


@pytest.mark.parametrize("name", SIGNED)
def test_no_secret_configured(name: str) -> None:
    cfg = VerifyConfig(name, None, CFG[name].header)
    with pytest.raises(SignatureError, match=r"^source has no secret configured$"):
        verify(cfg, BODY, signed(name), {}, now=NOW)
    with pytest.raises(SignatureError, match=r"^source has no secret configured$"):
        sign(cfg, BODY, now=NOW)
    with pytest.raises(SignatureError, match="empty"):
        verify(VerifyConfig(name, "", CFG[name].header), BODY, signed(name), {}, now=NOW)


@pytest.mark.parametrize("name", ["github", "shopify", "standard"])
def test_sign_adds_a_delivery_id(name: str) -> None:
    id_header = {"github": "x-github-delivery", "shopify": "x-shopify-webhook-id", "standard": "webhook-id"}[name]
    assert signed(name)[id_header] == "msg_1"
    first, _ = sign(CFG[name], BODY, now=NOW)
    second, _ = sign(CFG[name], BODY, now=NOW)
    assert first[id_header] != second[id_header]


@pytest.mark.parametrize("name", ["github", "stripe", "slack", "shopify", "standard"])
def test_header_override(name: str) -> None:
    cfg = VerifyConfig(name, CFG[name].secret, header="X-Custom-Signature")
    headers, _ = sign(cfg, BODY, now=NOW)
    assert "x-custom-signature" in headers
    assert SIG_HEADER[name] not in headers
    verify(cfg, BODY, headers, {}, now=NOW)
    with pytest.raises(SignatureError, match="missing X-Custom-Signature header"):
        verify(cfg, BODY, signed(name), {}, now=NOW)


# --- timestamps -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (-300, True), (-299, True), (0, True), (299, True),
                                            (300, True), (301, False), (86_400, False)])  # fmt: skip
def test_default_tolerance(name: str, offset: int, ok: bool) -> None:
    headers = signed(name, now=NOW + offset)
    if ok:
        verify(CFG[name], BODY, headers, {}, now=NOW)
    else:
        assert reason(name, headers) == "timestamp outside the 300 s tolerance"


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize(("tolerance", "offset", "ok"), [(10, 10, True), (10, -11, False), (10, 11, False),
                                                         (3600, -3599, True), (3600, 3601, False), (0, 0, True),
                                                         (0, 1, False)])  # fmt: skip
def test_custom_tolerance(name: str, tolerance: int, offset: int, ok: bool) -> None:
    headers = signed(name, now=NOW + offset)
    if ok:
        verify(VerifyConfig(name, CFG[name].secret, tolerance=tolerance), BODY, headers, {}, now=NOW)
    else:
        assert reason(name, headers, tolerance=tolerance) == f"timestamp outside the {tolerance} s tolerance"


def test_fractional_now_is_compared_exactly() -> None:
    headers = signed("slack", now=NOW)
    verify(CFG["slack"], BODY, headers, {}, now=NOW + 300.0)
    assert "tolerance" in reason("slack", headers, now=NOW + 300.5)


BAD_TIMESTAMPS = ["soon", "1.7e9", f"{NOW}.0", f"-{NOW}", f"+{NOW}", f" {NOW}", f"{NOW} ", "0x6553f100",
                  "\u0661\u0667\u0660\u0660", "9" * 13, "9" * 5000, "NaN", "inf"]  # fmt: skip


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize("stamp", BAD_TIMESTAMPS, ids=[f"ts{i}" for i in range(len(BAD_TIMESTAMPS))])
def test_non_numeric_timestamp(name: str, stamp: str) -> None:
    headers = signed(name)
    if name == "stripe":
        headers["stripe-signature"] = headers["stripe-signature"].replace(f"t={NOW}", f"t={stamp}")
    else:
        headers[TS_HEADER[name]] = stamp
    assert "malformed" in reason(name, headers)


# --- hmac, token, none ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "sha256=", "SHA256=", "Sha256="])
@pytest.mark.parametrize("upper", [False, True])
def test_hmac_prefix_and_case(prefix: str, upper: bool) -> None:
    digest = hmac_hex(SECRET.encode("utf-8"), BODY)
    verify(CFG["hmac"], BODY, {"x-signature": prefix + (digest.upper() if upper else digest)}, {}, now=NOW)


def test_hmac_needs_a_header_name() -> None:
    cfg = VerifyConfig("hmac", SECRET)
    with pytest.raises(SignatureError, match=r"verify\.header"):
        verify(cfg, BODY, {"x-signature": hmac_hex(SECRET.encode(), BODY)}, {}, now=NOW)
    with pytest.raises(SignatureError, match=r"verify\.header"):
        sign(cfg, BODY, now=NOW)


def test_github_requires_its_prefix() -> None:
    digest = hmac_hex(SECRET.encode("utf-8"), BODY)
    assert "malformed" in reason("github", {"x-hub-signature-256": digest})
    assert "malformed" in reason("github", {"x-hub-signature-256": "sha1=" + digest[:40]})


def test_token_in_header_or_query() -> None:
    verify(CFG["token"], BODY, {"x-webhook-token": SECRET}, {}, now=NOW)
    verify(CFG["token"], BODY, {}, {"token": SECRET}, now=NOW)
    custom = VerifyConfig("token", SECRET, header="X-Api-Key")
    verify(custom, BODY, {"x-api-key": SECRET}, {}, now=NOW)
    assert sign(custom, BODY) == ({"x-api-key": SECRET}, {})
    with pytest.raises(SignatureError, match="missing X-Api-Key header"):
        verify(custom, BODY, {"x-webhook-token": SECRET}, {}, now=NOW)


@pytest.mark.parametrize(
    ("headers", "query", "message"),
    [
        ({}, {}, "missing X-Webhook-Token header"),
        ({}, {"token": ""}, "empty token query parameter"),
        ({}, {"token": SECRET + " "}, "token does not match"),
        ({}, {"token": SECRET.upper()}, "token does not match"),
        ({"x-webhook-token": "nope"}, {"token": SECRET}, "token does not match"),  # the header wins
        ({"x-webhook-token": ""}, {"token": SECRET}, "empty X-Webhook-Token header"),
        ({"x-webhook-token": SECRET[:-1]}, {}, "token does not match"),
        ({"x-webhook-token": "\ud800"}, {}, "token does not match"),
    ],
)
def test_token_refusals(headers: dict[str, str], query: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureError) as info:
        verify(CFG["token"], BODY, headers, query, now=NOW)
    assert str(info.value) == message


def test_none_always_passes() -> None:
    verify(CFG["none"], b"", {}, {})
    verify(VerifyConfig("none", "ignored"), BODY, {"x-hub-signature-256": "junk"}, {"token": "junk"}, now=0)
    assert sign(CFG["none"], BODY) == ({}, {})


# --- secrets ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "secret", "ok"),
    [
        ("github", "x", True),
        ("github", "", False),
        ("token", SECRET, True),
        ("none", "", True),
        ("standard", STD_SECRET, True),
        ("standard", STD_SECRET.removeprefix("whsec_"), True),
        ("standard", STD_SECRET.rstrip("="), True),
        ("standard", "whsec_", False),
        ("standard", "whsec_!!!!", False),
        ("standard", "whsec_not base64", False),
        ("standard", "whsec_\u00e9\u00e9\u00e9\u00e9", False),
        ("standard", "", False),
    ],
)
def test_validate_secret(name: str, secret: str, ok: bool) -> None:
    error = SCHEMES[name].validate_secret(secret)
    assert (error is None) is ok
    if not ok:
        assert isinstance(error, str)
        assert error


def test_unusable_standard_secret_is_a_signature_error() -> None:
    cfg = VerifyConfig("standard", "whsec_!!!!")
    with pytest.raises(SignatureError, match="whsec_"):
        verify(cfg, BODY, signed("standard"), {}, now=NOW)
    with pytest.raises(SignatureError, match="whsec_"):
        sign(cfg, BODY, now=NOW)


def test_secret_bytes_are_utf8_as_written() -> None:
    digest = hmac_hex(SECRET.encode("utf-8"), BODY)
    verify(CFG["github"], BODY, {"x-hub-signature-256": f"sha256={digest}"}, {}, now=NOW)
    latin1 = hmac_hex(SECRET.encode("latin-1"), BODY)
    assert reason("github", {"x-hub-signature-256": f"sha256={latin1}"}) == "signature does not match"


def _valid_plus_junk() -> list[tuple[str, str]]:
    """A correct signature header made malformed: strict parsing must refuse it even though a valid MAC is in it."""
    stripe = signed("stripe")["stripe-signature"]
    shopify, github = signed("shopify")["x-shopify-hmac-sha256"], signed("github")["x-hub-signature-256"]
    v1 = stripe.split("v1=")[1]
    return [
        ("stripe", f"t={NOW},t={NOW},v1={v1}"),
        ("stripe", f"{stripe},v0=\u00e9"),
        ("stripe", f"{stripe},"),
        ("stripe", f",{stripe}"),
        ("stripe", stripe.replace(",", ", ")),
        ("stripe", f"{stripe} "),
        ("stripe", f"{stripe},v1=zz"),
        ("shopify", f"{shopify}=="),
        ("shopify", f" {shopify}"),
        ("shopify", f"{shopify}\n"),
        ("github", f"{github} "),
        ("github", f"sha256=sha256={github[7:]}"),
        ("slack", signed("slack")["x-slack-signature"] + "0"),
        ("hmac", signed("hmac")["x-signature"] + "\n"),
    ]


@pytest.mark.parametrize(("name", "value"), _valid_plus_junk())
def test_strict_parsing(name: str, value: str) -> None:
    assert "malformed" in reason(name, {**signed(name), SIG_HEADER[name]: value})


# --- fuzz-ish: malformed values only ever raise SignatureError --------------------------------------------------------

H64 = "0" * 64
B44 = "A" * 43 + "="
FUZZ = [
    "", " ", ",", ", ", " , ", "=", "==", "====", "sha256=", "sha256= " + H64, "sha256=" + H64[:-1],
    "sha256=" + H64 + "0", "sha256=" + "g" * 64, "v0=", "v0=" + H64 + " ", "v1,", "v1, ", "v1,,", " v1," + B44,
    "v1," + B44 + " ", "v1," + B44 + "  v1," + B44, "v1," + B44[:-1], "v1," + B44 + "==", "t=,v1=", f"t={NOW},v1=",
    f"t={NOW},,v1={H64}", f",t={NOW},v1={H64}", f"t={NOW},v1={H64},", f"t={NOW},t={NOW},v1={H64}",
    f"t={NOW}, v1={H64}", f"t = {NOW},v1={H64}", f"t={NOW},v1={H64}=", "\x00", "\r\n", "\u00e9\u00e8\u00ea", "\ud800",
    "\udcff" * 8, "\U0001f4a5", "\u0663" * 64, "\uff10" * 64, "A" * 100_000, "-1", "1e3", "NaN", "9" * 5000,
]  # fmt: skip


@pytest.mark.parametrize("value", FUZZ, ids=[f"fuzz{i}" for i in range(len(FUZZ))])
@pytest.mark.parametrize(("name", "header"), REQUIRED)
def test_malformed_values_only_raise_signature_error(name: str, header: str, value: str) -> None:
    reason(name, {**signed(name), header: value})


@pytest.mark.parametrize("value", FUZZ, ids=[f"fuzz{i}" for i in range(len(FUZZ))])
def test_malformed_query_token_only_raises_signature_error(value: str) -> None:
    with pytest.raises(SignatureError):
        verify(CFG["token"], BODY, {}, {"token": value}, now=NOW)


@pytest.mark.parametrize("value", FUZZ[:12], ids=[f"fuzz{i}" for i in range(12)])
def test_malformed_hmac_header_name_only_raises_signature_error(value: str) -> None:
    cfg = VerifyConfig("hmac", SECRET, header=value or None)
    with pytest.raises(SignatureError):
        verify(cfg, BODY, {"x-signature": hmac_hex(SECRET.encode(), BODY)}, {}, now=NOW)
