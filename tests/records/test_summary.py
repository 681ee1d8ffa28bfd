"""The event list's summary: the event type and a few key fields, not the start of raw JSON."""

from __future__ import annotations

import json

from router.records.summary import summarize
from router.rules.ruleset import load_ruleset
from tests.conftest import REPO


def sample(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((REPO / "samples" / name).read_text())
    return data


def test_a_github_push_shows_its_type_repository_and_branch() -> None:
    rules = load_ruleset(REPO / "rules", allow_missing_secrets=True)
    got = summarize(sample("github-push.json"), {"x-github-event": "push"}, rules.sources["github"])
    assert got.kind == "push"
    assert got.fields[:2] == [("repository.full_name", "octo-org/event-router"), ("ref", "refs/heads/main")]
    assert "{" not in str(got)


def test_a_stripe_event_shows_its_type_and_amount() -> None:
    rules = load_ruleset(REPO / "rules", allow_missing_secrets=True)
    got = summarize(sample("stripe-payment_intent.succeeded.json"), {}, rules.sources["stripe"])
    assert got.kind == "payment_intent.succeeded"
    assert ("data.object.amount", "12900") in got.fields
    assert len(got.fields) == 3


def test_a_body_without_known_paths_shows_its_first_scalar_fields_and_text_its_start() -> None:
    got = summarize({"nested": {"a": 1}, "city": "Lyon", "n": 3, "ok": True, "more": "x"}, {}, None)
    assert got.fields == [("city", "Lyon"), ("n", "3"), ("ok", "true")]
    assert summarize("hello   world " * 20, {}, None).text.startswith("hello world hello")
    long = summarize({"note": "y" * 200}, {}, None)
    assert long.fields[0][1].endswith("…")
    assert len(long.fields[0][1]) == 48
