"""Property-based fuzzing (hypothesis) of the two parsers that read attacker- or user-supplied text:
the signature verifiers (any header values, any body) and the rule-file loader (any YAML text).

Each may accept or refuse with its own typed error; any other exception is a bug.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.errors import RuleSetError, SignatureError
from router.pipeline.signatures import SCHEMES, VerifyConfig, sign, verify

pytestmark = pytest.mark.security

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # a valid Standard Webhooks secret; the others take any text
HEADER_NAMES = [
    "x-hub-signature-256",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "x-shopify-hmac-sha256",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-signature",
    "x-token",
    "authorization",
]
SIGNED = [name for name in sorted(SCHEMES) if name != "none"]
hostile_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
header_values = st.one_of(
    hostile_text,
    st.from_regex(r"(sha256=|v1,|t=\d{1,12},v1=|v0=)?[0-9a-fA-F=+/,]{0,130}", fullmatch=True),
)
COUNT = {"n": 0}


def config(scheme: str) -> VerifyConfig:
    header = "x-token" if scheme == "token" else ("x-signature" if scheme == "hmac" else None)
    return VerifyConfig(scheme=scheme, secret=SECRET, header=header, tolerance=300)


@pytest.mark.parametrize("scheme", SIGNED)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=300),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=6),
    query=st.dictionaries(st.sampled_from(["token", "signature"]), hostile_text, max_size=2),
)
def test_verifiers_accept_or_raise_signature_error_only(
    scheme: str, body: bytes, headers: dict[str, str], query: dict[str, str]
) -> None:
    COUNT["n"] += 1
    try:
        verify(config(scheme), body, headers, query, now=1_700_000_000)
    except SignatureError:
        return
    # accepted: only possible if the random headers happen to carry a valid signature, which they cannot
    raise AssertionError(f"{scheme} accepted forged headers {headers!r}")


@pytest.mark.parametrize("scheme", SIGNED)
@settings(max_examples=60, deadline=None)
@given(body=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=299))
def test_a_signed_body_verifies_and_any_changed_byte_does_not(scheme: str, body: bytes, flip: int) -> None:
    cfg = config(scheme)
    headers, query = sign(cfg, body, now=1_700_000_000, msg_id="msg_1")
    verify(cfg, body, headers, query, now=1_700_000_000)
    if scheme == "token" or not body:  # a token does not cover the body
        return
    changed = bytearray(body)
    changed[flip % len(body)] ^= 0x01
    with pytest.raises(SignatureError):
        verify(cfg, bytes(changed), headers, query, now=1_700_000_000)


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), hostile_text)
rule_like = st.fixed_dictionaries(
    {
        "sources": st.lists(
            st.fixed_dictionaries(
                {"id": hostile_text}, optional={"verify": st.dictionaries(hostile_text, yaml_scalars)}
            ),
            max_size=2,
        ),
        "rules": st.lists(
            st.fixed_dictionaries(
                {"id": hostile_text, "source": hostile_text},
                optional={
                    "filter": hostile_text,
                    "steps": st.lists(
                        st.fixed_dictionaries(
                            {"id": hostile_text, "action": st.sampled_from(["http", "slack", "email", "emit", "x"])},
                            optional={"with": st.dictionaries(hostile_text, yaml_scalars, max_size=3)},
                        ),
                        max_size=2,
                    ),
                },
            ),
            max_size=2,
        ),
    }
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(hostile_text, rule_like.map(json.dumps)))
def test_the_rule_loader_loads_or_raises_located_errors_only(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "fuzz.yaml").write_text(text, encoding="utf-8")
        from router.rules.ruleset import load_ruleset

        errors: list[str] = []
        try:
            load_ruleset(Path(folder), env={})
        except RuleSetError as exc:
            errors = [str(e) for e in exc.errors] or ["(a refusal without a reason)"]
        assert all("fuzz.yaml" in e for e in errors), errors  # every refusal names the file (and where in it)


def test_figure() -> None:
    print(f"fuzz: {len(SIGNED)} signature schemes x (150 forged + 60 signed/bit-flipped) cases; 150 rule files")
