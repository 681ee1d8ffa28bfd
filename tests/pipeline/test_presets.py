"""Provider presets: scheme, tolerance, dedupe and event type from one word; real samples through real sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.errors import RuleSetError
from router.pipeline.match import build_context, event_dict
from router.pipeline.presets import PRESETS, Sample, samples
from router.pipeline.signatures import VerifyConfig, sign
from router.rules.filters import compile_expression
from router.rules.ruleset import load_ruleset
from tests.conftest import RouterFactory, write_rules

SECRETS = {
    "github": "gh-secret",
    "stripe": "whsec_stripe_test",
    "shopify": "shp-secret",
    "slack": "slack-signing-secret",
    "standard": "whsec_c3RhbmRhcmQtd2ViaG9va3Mtc2VjcmV0",
}
ALL = samples()


def preset_rules() -> dict[str, str]:
    sources = [{"id": f"in-{name}", "preset": name, "verify": {"secret": SECRETS[name]}} for name in PRESETS]
    return {"sources.yaml": json.dumps({"sources": sources})}


def test_every_preset_ships_samples_that_exist() -> None:
    assert set(PRESETS) == {"github", "stripe", "shopify", "slack", "standard"}
    for name, preset in PRESETS.items():
        assert preset.samples, f"preset {name} has no sample"
        assert samples(name) == list(preset.samples)
        for sample in preset.samples:
            assert sample.file.is_file(), sample.file
            assert sample.file.parent.name == name
    assert {s.name for s in samples("github")} == {"push", "pull_request"}
    assert {s.name for s in samples("stripe")} == {"payment_intent.succeeded", "charge.refunded"}
    assert samples("nope") == []
    assert ALL[0].as_dict()["headers"]["x-github-event"] == "push"


@pytest.mark.parametrize("sample", ALL, ids=lambda s: f"{s.preset}/{s.name}")
def test_each_sample_matches_its_preset_event_type_path(sample: Sample) -> None:
    preset = PRESETS[sample.preset]
    event = event_dict(
        id="e", source="s", received_at="2026-01-01T00:00:00+00:00", headers=sample.headers, body=sample.body()
    )
    ctx = build_context(event, {})
    assert compile_expression(preset.event_type).search(ctx) == sample.event_type
    if preset.dedupe and sample.name != "url_verification":
        assert compile_expression(preset.dedupe).search(ctx) or sample.preset == "standard"  # standard: signing adds it


async def test_samples_load_through_real_sources(router_factory: RouterFactory) -> None:
    async with router_factory(preset_rules(), worker=False) as r:
        listed = {s["id"]: s for s in (await r.client.get("/api/rules")).json()["sources"]}
        for sample in ALL:
            source = listed[f"in-{sample.preset}"]
            preset = PRESETS[sample.preset]
            raw = sample.body_bytes()
            cfg = VerifyConfig(scheme=preset.scheme, secret=SECRETS[sample.preset])
            msg_id = sample.headers.get("x-github-delivery") or sample.headers.get("x-shopify-webhook-id")
            added, query = sign(cfg, raw, msg_id=msg_id or sample.headers.get("webhook-id"))
            headers = dict(sample.headers) | added
            first = await r.client.post(f"/hooks/{source['id']}", content=raw, headers=headers, params=query)
            assert first.status_code == 202, (sample.name, first.text)
            stored = await r.event(first.json()["event_id"])
            ctx = build_context(
                event_dict(**{k: stored[k] for k in ("id", "source", "received_at", "headers", "body")}), {}
            )
            assert compile_expression(source["event_type"]).search(ctx) == sample.event_type
            again = await r.client.post(f"/hooks/{source['id']}", content=raw, headers=headers, params=query)
            if stored["dedupe_key"] is not None:
                assert again.status_code == 200, sample.name
                assert again.json()["duplicate"] is True
            tampered = await r.client.post(f"/hooks/{source['id']}", content=raw + b" ", headers=headers, params=query)
            assert tampered.status_code == 401, sample.name
    assert listed["in-github"] | {"location": ""} == {
        "id": "in-github",
        "description": "",
        "url": "/hooks/in-github",
        "verify": "github",
        "dedupe": 'headers."x-github-delivery"',
        "preset": "github",
        "event_type": 'headers."x-github-event"',
        "location": "",
    }
    assert listed["in-slack"]["event_type"] == "body.event.type || body.type"
    assert listed["in-slack"]["dedupe"] == "body.event_id"


def test_explicit_fields_override_the_preset(tmp_path: Path) -> None:
    folder = write_rules(
        tmp_path / "rules",
        {
            "s.yaml": """
            sources:
              - id: plain
                preset: stripe
                verify: {secret: whsec_x}
              - id: patient
                preset: stripe
                verify: {secret: whsec_x, tolerance: 900}
                dedupe: false
                event_type: body.data.object.object
              - id: swapped
                preset: github
                verify: {scheme: token, secret: tok-12345}
              - id: open
                preset: shopify
                verify: {scheme: none}
            """
        },
    )
    rs = load_ruleset(folder, env={})
    plain, patient, swapped, open_ = (rs.sources[k] for k in ("plain", "patient", "swapped", "open"))
    assert plain.verify == VerifyConfig(scheme="stripe", secret="whsec_x", tolerance=300)
    assert plain.dedupe is not None
    assert plain.dedupe.source == "body.id"
    assert plain.event_type is not None
    assert plain.event_type.source == "body.type"
    assert patient.verify is not None
    assert patient.verify.tolerance == 900
    assert patient.dedupe is None
    assert patient.event_type is not None
    assert patient.event_type.source == "body.data.object.object"
    assert swapped.verify == VerifyConfig(scheme="token", secret="tok-12345")
    assert swapped.dedupe is None  # the token scheme's default, not GitHub's delivery header
    assert swapped.event_type is not None
    assert swapped.event_type.source == 'headers."x-github-event"'
    assert swapped.preset == "github"
    assert open_.verify is None
    assert open_.event_type is not None
    assert open_.event_type.source == 'headers."x-shopify-topic"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sources:\n  - id: a\n    preset: gitlab\n",
            "s.yaml:3:13: sources[0].preset: unknown preset 'gitlab'; use one of: github, shopify",
        ),
        (
            "sources:\n  - id: a\n    preset: github\n",
            "s.yaml:3:13: sources[0].preset: preset 'github' verifies with scheme 'github' needs a secret",
        ),
        (
            "sources:\n  - id: a\n    verify: {secret: x}\n",
            "s.yaml:3:13: sources[0].verify.scheme: required field is missing; or set",
        ),
        (
            'sources:\n  - id: a\n    preset: standard\n    verify: {secret: "not base64!"}\n',
            "s.yaml:4:22: sources[0].verify.secret: secret must be whsec_",
        ),
        (
            "sources:\n  - id: a\n    preset: stripe\n    verify: {secret: whsec_x}\n    event_type: body..x\n",
            "sources[0].event_type: invalid JMESPath",
        ),
    ],
)
def test_preset_mistakes_are_located(tmp_path: Path, text: str, expected: str) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "s.yaml").write_text(text)
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(folder, env={})
    lines = [str(e) for e in caught.value.errors]
    assert any(expected in line for line in lines), lines
