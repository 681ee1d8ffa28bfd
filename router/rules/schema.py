"""The rule-file format: pydantic models for sources, rules and steps, and the JSON Schema made from them.

A rule file holds a ``sources:`` list, a ``rules:`` list, both, or one rule at top level.
Semantic checks (JMESPath and Jinja syntax, action settings, secrets, ids across files) live in
``router.rules.ruleset``; these models check the shape.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from router.actions import ACTIONS
from router.pipeline.limits import LimitSpec
from router.pipeline.presets import PRESETS
from router.pipeline.retry import Duration, RetrySpec
from router.pipeline.signatures import SCHEMES
from router.polling.spec import PollSpec, ScheduleSpec

SLUG = r"^[a-z0-9][a-z0-9_-]{0,63}$"
Slug = Annotated[str, Field(pattern=SLUG, description="Lower-case letters, digits, '-' and '_'; at most 64.")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Verify(_Model):
    """How a source proves a request came from the provider."""

    scheme: str | None = Field(
        None,
        description="Signature scheme; required unless the source sets `preset` (then it overrides the preset's).",
        json_schema_extra={"enum": list[Any](sorted(SCHEMES))},
        examples=["github", "stripe", "standard"],
    )
    secret: str | None = Field(
        None,
        description="The shared secret; write `${NAME}` to read environment variable NAME at load "
        "(`${NAME:-default}` gives a default).",
        examples=["${GITHUB_WEBHOOK_SECRET}"],
    )
    header: str | None = Field(
        None, description="Header carrying the signature or token (hmac, token).", examples=["x-form-token"]
    )
    tolerance: int | None = Field(
        None, ge=1, le=86400, description="Largest accepted age of a signed timestamp, in seconds.", examples=[300]
    )


class Expect(_Model):
    """Traffic a source should get; an alert of kind `source_silent` fires when it gets less."""

    at_least: int = Field(1, ge=1, description="Events at least…", examples=[1])
    every: Duration = Field(description="…in every window this long.", examples=["1h"])


class Retention(_Model):
    """How long this source's events are kept (overrides ROUTER_RETENTION_DAYS / ROUTER_RETENTION_MAX_EVENTS)."""

    days: float | None = Field(None, ge=0, description="Keep events this many days; 0 keeps them all.", examples=[7])
    max_events: int | None = Field(
        None, ge=0, description="Keep at most this many events (the newest); 0: no cap.", examples=[100000]
    )


class Source(_Model):
    """Where events come from: webhooks at ``POST /hooks/{id}``, or an API polled, or a schedule."""

    id: Slug = Field(description="The source id; a webhook source's URL is `POST /hooks/{id}`.", examples=["github"])
    description: str = Field("", description="What sends to this source.", examples=["GitHub repository webhooks"])
    preset: str | None = Field(
        None,
        description="Provider preset: sets the verify scheme, tolerance, dedupe key and event type; the source "
        "still gives `verify.secret`, and its own `verify` fields, `dedupe` and `event_type` override the preset's.",
        json_schema_extra={"enum": list[Any](sorted(PRESETS))},
        examples=["github"],
    )
    verify: Verify | None = Field(None, description="Signature verification; absent means none (or the preset's).")
    dedupe: str | Literal[False] | None = Field(
        None,
        description="JMESPath giving the provider's delivery id, used to drop repeats. Absent: the preset's, else "
        "the scheme's default; false: no dedupe.",
        examples=['headers."x-github-delivery"'],
    )
    event_type: str | None = Field(
        None,
        description="JMESPath giving the event's type (shown to rule builders). Absent: the preset's.",
        examples=['headers."x-github-event"', "body.type"],
    )
    poll: PollSpec | None = Field(
        None, description="Poll an API instead of receiving webhooks: each new item becomes an event (no webhook URL)."
    )
    reconcile: PollSpec | None = Field(
        None,
        description="Poll the provider's API to emit the events whose webhooks never arrived (`event.via` is "
        "reconcile); items whose id matches a received webhook's dedupe key are skipped.",
    )
    schedule: ScheduleSpec | None = Field(None, description="Emit one event per tick of a clock (no webhook URL).")
    expect: Expect | None = Field(
        None, description="Traffic this source should get; a `source_silent` alert fires when it gets less."
    )
    retention: Retention | None = Field(None, description="How long this source's events are kept.")


class Step(_Model):
    """One action of a rule; steps run in order and may read earlier steps' output."""

    id: Slug = Field(description="Step id, unique in its rule; later steps read `steps.<id>`.", examples=["notify"])
    action: str = Field(description="The action to run.", json_schema_extra={"enum": list[Any](sorted(ACTIONS))})
    when: str | None = Field(
        None, description="JMESPath; the step runs only when it is truthy.", examples=["steps.customer.body.vip"]
    )
    with_: dict[str, Any] = Field(
        default_factory=dict,
        alias="with",
        description="The action's settings; every string is a Jinja template rendered leaf by leaf.",
        examples=[{"url": "https://hooks.example.com/in", "json": {"id": "{{ body.id }}"}}],
    )
    retry: RetrySpec | None = Field(None, description="How this step is retried; default: the rule's, else global.")
    limits: LimitSpec | None = Field(
        None, description="Rate and concurrency limits for the destination this step calls, shared by all workers."
    )


class Rule(_Model):
    """Which events of a source to act on, and the steps to run for each."""

    id: Slug = Field(description="Rule id, unique across all rule files.", examples=["github-push-to-slack"])
    source: Slug = Field(description="Id of the source whose events this rule sees.", examples=["github"])
    description: str = Field("", description="What the rule does.")
    enabled: bool = Field(True, description="A disabled rule matches nothing.")
    filter: str | None = Field(
        None,
        description="JMESPath over the event; the rule matches when it is truthy. Absent: every event.",
        examples=["body.ref == 'refs/heads/main'"],
    )
    steps: list[Step] = Field(min_length=1, description="The steps to run, in order.")
    retry: RetrySpec | None = Field(None, description="How this rule's steps are retried; default: global.")

    @model_validator(mode="after")
    def _unique_steps(self) -> Rule:
        seen: set[str] = set()
        for step in self.steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice in rule {self.id!r}")
            seen.add(step.id)
        return self


ALERT_KINDS = ("destination_failing", "dead_letters", "backlog", "source_silent", "rule_errors")


class Alert(_Model):
    """A condition watched by the workers; `notify` runs when it fires and again when it resolves."""

    id: Slug = Field(description="Alert id, unique across all rule files.", examples=["slack-down"])
    kind: Literal["destination_failing", "dead_letters", "backlog", "source_silent", "rule_errors"] = Field(
        description="destination_failing: a destination's attempts have failed for `for` (or its breaker is open); "
        "dead_letters: at least `at_least` runs died within `within`; backlog: work has waited longer than "
        "`older_than`; source_silent: a source with `expect` got too few events; rule_errors: rule files "
        "do not load."
    )
    description: str = Field("", description="What the alert is for; shown in the UI and the notification.")
    for_: Duration | None = Field(
        None, alias="for", description="destination_failing: failing this long, no success since (default 5m)."
    )
    destinations: list[str] | None = Field(
        None,
        description="destination_failing: only these destinations (scheme://host:port, e.g. "
        "https://hooks.slack.com:443); default all.",
    )
    at_least: int | None = Field(None, ge=1, description="dead_letters: this many dead runs (default 1)…")
    within: Duration | None = Field(None, description="dead_letters: …within this window (default 15m).")
    older_than: Duration | None = Field(None, description="backlog: work waiting longer than this (default 5m).")
    sources: list[Slug] | None = Field(
        None, description="source_silent: only these sources (each needs `expect`); default every source with one."
    )
    notify: list[Step] = Field(
        min_length=1,
        description="Steps run when the alert fires and when it resolves (`body.status`: firing or resolved); "
        "their templates see the alert as `body`.",
    )


class RuleFile(_Model):
    """A rule file: a `sources:` list, a `rules:` list, an `alerts:` list, or several."""

    model_config = ConfigDict(extra="forbid", title="Event Router rule file")

    sources: list[Source] = Field(default_factory=list, description="Sources: webhooks, polled APIs, schedules.")
    rules: list[Rule] = Field(default_factory=list, description="Rules.")
    alerts: list[Alert] = Field(default_factory=list, description="Alerts (see docs/alerts.md).")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, for editors (`# yaml-language-server: $schema=...`)."""
    file_schema = RuleFile.model_json_schema(by_alias=True)
    rule_schema = {"$ref": "#/$defs/Rule"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Event Router rule file",
        "description": "A `sources:` list, a `rules:` list, an `alerts:` list, or one rule at top level.",
        "$defs": file_schema.pop("$defs", {}) | {"RuleFile": file_schema},
        "anyOf": [{"$ref": "#/$defs/RuleFile"}, rule_schema],
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
