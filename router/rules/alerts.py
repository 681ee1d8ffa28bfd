"""Alerts in rule files: compiled beside the rules, each with the steps it notifies through.

An alert's ``notify`` steps become a rule of the internal source ``_alerts`` (its id ``alert:<id>``, a
filter on ``body.alert``): when an alert fires or resolves, the evaluator (router/ops/alerts.py) stores an
event in ``_alerts`` and the workers deliver it like any other, with the actions' retries, dead
letters and ledger. ``_alerts`` cannot be a user's source (ids start with a letter or digit), and
``POST /hooks/_alerts`` answers 404: nobody outside can raise an alert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router.pipeline.destinations import url_destination
from router.pipeline.retry import parse_duration
from router.rules.compiled import CompiledRule, CompiledSource
from router.rules.filters import compile_expression
from router.rules.schema import Alert, RuleFile, Step
from router.rules.yamlfile import Locator

SOURCE = "_alerts"
RULE_PREFIX = "alert:"
DEFAULTS: dict[str, dict[str, Any]] = {
    "destination_failing": {"for_": "5m"},
    "dead_letters": {"at_least": 1, "within": "15m"},
}
DEFAULT_OLDER_THAN = "5m"
# The fields each kind reads (besides id, kind, description, notify).
FIELDS = {
    "destination_failing": {"for_", "destinations"},
    "dead_letters": {"at_least", "within"},
    "backlog": {"older_than"},
    "source_silent": {"sources"},
    "rule_errors": set(),
}
ALIASES = {"for_": "for"}
# What a notification says when its step does not: the alert itself.
DEFAULT_WITH: dict[str, dict[str, Any]] = {
    "slack": {"text": "{{ body.summary }}"},
    "http": {"json": "{{ body }}"},
    "email": {"subject": "{{ body.summary }}", "text": "{{ body.detail }}"},
}


@dataclass(frozen=True)
class CompiledAlert:
    id: str
    kind: str
    description: str
    location: str
    rule_id: str
    for_seconds: float = 0.0
    destinations: tuple[str, ...] | None = None
    at_least: int = 1
    within_seconds: float = 900.0
    older_than_seconds: float = 300.0
    sources: tuple[str, ...] | None = None


def rule_id(alert_id: str) -> str:
    return f"{RULE_PREFIX}{alert_id}"


def is_alert_rule(rule: CompiledRule) -> bool:
    return rule.source == SOURCE


def _with_defaults(step: Step) -> Step:
    defaults = DEFAULT_WITH.get(step.action, {})
    present = set(step.with_)
    if step.action == "slack" and "blocks" in present:
        present.add("text")
    if step.action == "http" and "body" in present:
        present.add("json")
    if step.action == "email" and "html" in present:
        present.add("text")
    missing = {k: v for k, v in defaults.items() if k not in present}
    return step.model_copy(update={"with_": {**missing, **step.with_}}) if missing else step


def compile_alerts(
    loader: Any, parsed: Sequence[tuple[Locator, RuleFile]], sources: Mapping[str, CompiledSource]
) -> tuple[dict[str, CompiledAlert], dict[str, CompiledRule]]:
    """Every file's ``alerts:``, checked (errors go to ``loader``), and their notification rules."""
    alerts: dict[str, CompiledAlert] = {}
    rules: dict[str, CompiledRule] = {}
    for locator, model in parsed:
        for i, alert in enumerate(model.alerts):
            path = ("alerts", i)
            defined = alerts.get(alert.id)
            if loader.redefined("alert", alert.id, defined.location if defined else None, locator, path):
                continue
            compiled = _compile(loader, alert, locator, path, sources)
            alerts[alert.id] = compiled
            rules[compiled.rule_id] = _notify_rule(loader, alert, compiled, locator, path, sources)
    return alerts, rules


def _compile(
    loader: Any, alert: Alert, locator: Locator, path: tuple[Any, ...], sources: Mapping[str, CompiledSource]
) -> CompiledAlert:
    given = {name for name in Alert.model_fields if name not in ("id", "kind", "description", "notify")}
    for name in sorted(given - FIELDS[alert.kind]):
        if getattr(alert, name) is not None:
            key = ALIASES.get(name, name)
            allowed = ", ".join(sorted(ALIASES.get(f, f) for f in FIELDS[alert.kind])) or "none"
            loader.error(
                f"`{key}` does not apply to kind {alert.kind!r} (its settings: {allowed})", locator, (*path, key)
            )
    values: dict[str, Any] = {}
    defaults = DEFAULTS.get(alert.kind, {})
    if alert.kind == "destination_failing":
        values["for_seconds"] = parse_duration(alert.for_ if alert.for_ is not None else defaults["for_"])
        if alert.destinations is not None:
            values["destinations"] = tuple(_destinations(loader, alert.destinations, locator, path))
    elif alert.kind == "dead_letters":
        values["at_least"] = alert.at_least or defaults["at_least"]
        values["within_seconds"] = parse_duration(alert.within if alert.within is not None else defaults["within"])
    elif alert.kind == "backlog":
        values["older_than_seconds"] = parse_duration(
            alert.older_than if alert.older_than is not None else DEFAULT_OLDER_THAN
        )
    elif alert.kind == "source_silent":
        values["sources"] = _silent_sources(loader, alert, locator, path, sources)
    return CompiledAlert(alert.id, alert.kind, alert.description, locator.describe(path), rule_id(alert.id), **values)


def _destinations(loader: Any, given: list[str], locator: Locator, path: tuple[Any, ...]) -> list[str]:
    out = []
    for j, raw in enumerate(given):
        if "://" not in raw:
            loader.error(
                f"{raw!r} is not a destination; write scheme://host:port, e.g. https://hooks.slack.com:443",
                locator,
                (*path, "destinations", j),
            )
            continue
        out.append(raw if raw.startswith("smtp://") else url_destination(raw))
    return out


def _silent_sources(
    loader: Any, alert: Alert, locator: Locator, path: tuple[Any, ...], sources: Mapping[str, CompiledSource]
) -> tuple[str, ...] | None:
    if alert.sources is None:
        if not any(s.expect_every for s in sources.values()):
            loader.warnings.append(
                f"{locator.describe(path)}: alert {alert.id!r} watches sources with `expect`, and none has one; "
                "add e.g. `expect: {at_least: 1, every: 1h}` to a source"
            )
        return None
    for j, source_id in enumerate(alert.sources):
        source = sources.get(source_id)
        if source is None:
            known = ", ".join(sorted(sources)) or "none defined"
            loader.error(f"unknown source {source_id!r}; defined sources: {known}", locator, (*path, "sources", j))
        elif not source.expect_every:
            loader.error(
                f"source {source_id!r} has no `expect`; add e.g. `expect: {{at_least: 1, every: 1h}}` to it",
                locator,
                (*path, "sources", j),
            )
    return tuple(alert.sources)


def _notify_rule(
    loader: Any,
    alert: Alert,
    compiled: CompiledAlert,
    locator: Locator,
    path: tuple[Any, ...],
    sources: Mapping[str, CompiledSource],
) -> CompiledRule:
    names: dict[str, Any] = dict.fromkeys(sources, True)  # what an `emit` step of a notification may target
    steps = []
    earlier: list[str] = []
    for j, step in enumerate(alert.notify):
        steps.append(loader.compile_step(_with_defaults(step), locator, (*path, "notify", j), earlier, names))
        earlier.append(step.id)
    condition = compile_expression(f"body.alert == '{alert.id}'", locator.describe(path))  # ids are slugs
    spec = {
        "id": compiled.rule_id,
        "source": SOURCE,
        "steps": [s.model_dump(by_alias=True, exclude_none=True) for s in alert.notify],
    }
    return CompiledRule(
        compiled.rule_id,
        SOURCE,
        alert.description or f"notifications of alert {alert.id}",
        True,
        condition,
        tuple(steps),
        locator.describe(path),
        spec,
    )
