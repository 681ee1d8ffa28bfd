"""The builder's step forms, made from each action's settings model (its JSON Schema), not by hand.

Each setting becomes one field whose widget follows its schema type: a text input (or a text area for
message bodies), a select for an enum, a number, a list (comma-separated, or a ``[...]`` list), a
``Name: value`` per line mapping (headers, query) or a JSON/YAML box for free-form data. Required
settings are marked, descriptions are the hints, and every text field is a template (variable picker
and live preview). Parsing turns each field's text back into the value the rule's ``with`` holds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from router.actions import ACTIONS
from router.ui.builder_form import text

# Step kinds offered by "Add step": (kind, action, label, preset settings, default step id).
KINDS: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "slack": ("slack", "Slack message", {}, "notify"),
    "email": ("email", "Email", {}, "email"),
    "webhook": ("http", "Webhook (HTTP request)", {"method": "POST"}, "webhook"),
    "api": ("http", "API call (its response feeds later steps)", {"method": "GET"}, "call"),
    "emit": ("emit", "Emit an event into another source", {}, "emit"),
}
LONG_TEXT = frozenset({"text", "html", "body"})  # message bodies: a text area rather than one line
FEATURED = frozenset({"url", "text", "method", "json", "to", "subject", "source", "body"})
_INT = re.compile(r"^-?\d+$")
_STEP = re.compile(r"^step-(\d+)-(id|action|kind|when|extra|retry_attempts|retry_delays)$")
_STEP_FIELD = re.compile(r"^step-(\d+)-f-(.+)$")


@dataclass
class FieldView:
    name: str
    label: str
    widget: str  # text | longtext | enum | number | list | map | json
    required: bool
    hint: str
    options: list[str]
    raw: str = ""
    error: str = ""
    featured: bool = False
    item_type: str = "string"

    @property
    def template(self) -> bool:
        return self.widget in ("text", "longtext", "list", "map", "json")


@dataclass
class StepView:
    id: str
    action: str
    kind: str
    when: str = ""
    extra: str = ""  # the step's retry/limits as JSON: kept as they were, but for the two retry fields below
    fields: list[FieldView] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retry_attempts: str = ""  # retry.max_attempts, as typed
    retry_delays: str = ""  # retry.schedule, comma-separated durations

    @property
    def label(self) -> str:
        return KINDS[self.kind][1] if self.kind in KINDS else self.action


@dataclass(frozen=True)
class _Setting:
    name: str
    widget: str
    required: bool
    hint: str
    options: tuple[str, ...]
    default: Any
    item_type: str


def _types(prop: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    options = prop.get("anyOf") or [prop]
    return [o for o in options if o.get("type") != "null"]


@cache
def settings_of(action: str) -> tuple[_Setting, ...]:
    """The action's settings, in its model's order, with the widget each gets."""
    schema = ACTIONS[action].Config.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        kinds = _types(prop)
        kind = kinds[0] if len(kinds) == 1 else {}
        item_type = "string"
        if "enum" in prop:
            widget = "enum"
        elif kind.get("type") == "string":
            widget = "longtext" if name in LONG_TEXT else "text"
        elif kind.get("type") in ("number", "integer"):
            widget = "number"
        elif kind.get("type") == "array" and kind.get("items", {}).get("type") in ("string", "integer"):
            widget, item_type = "list", kind["items"]["type"]
        elif kind.get("type") == "object" and isinstance(kind.get("additionalProperties"), dict | bool):
            widget = "map"
        else:
            widget = "json"
        default = prop.get("default")
        options = tuple(str(v) for v in prop.get("enum", ()))
        out.append(_Setting(name, widget, name in required, prop.get("description", ""), options, default, item_type))
    return tuple(out)


def field_views(action: str, values: Mapping[str, Any], sources: list[str]) -> list[FieldView]:
    views = []
    for s in settings_of(action):
        options = list(s.options)
        widget = s.widget
        if action == "emit" and s.name == "source":
            widget, options = "enum", sources
        hint = s.hint
        if s.default not in (None, [], {}):
            hint = f"{hint} Default: {s.default}." if hint else f"Default: {s.default}."
        view = FieldView(
            s.name,
            s.name.replace("_", " "),
            widget,
            s.required,
            hint,
            options,
            raw=show(widget, values.get(s.name)),
            featured=s.required or s.name in FEATURED or s.name in values,
            item_type=s.item_type,
        )
        views.append(view)
    return views


def show(widget: str, value: Any) -> str:
    """A setting's value as its field shows it."""
    if value is None:
        return ""
    if widget == "map" and isinstance(value, dict):
        return "\n".join(f"{k}: {v if isinstance(v, str) else json.dumps(v)}" for k, v in value.items())
    if widget == "list" and isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return value
    if widget in ("number", "enum") and isinstance(value, int | float | bool):
        return json.dumps(value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def _yaml_value(raw: str) -> Any:
    yaml = YAML(typ="safe", pure=True)
    return yaml.load(raw)


def _number(raw: str) -> Any:
    stripped = raw.strip()
    if _INT.match(stripped):
        return int(stripped)
    try:
        return float(stripped)
    except ValueError:
        return raw  # a template: checked when it renders


def _list(raw: str, item_type: str | None) -> Any:
    stripped = raw.strip()
    if stripped.startswith("["):
        value = _yaml_value(stripped)
        if not isinstance(value, list):
            raise ValueError("write a list as [a, b] or as items separated by commas")
        return value
    if item_type == "integer":
        parts = [p.strip() for p in stripped.split(",") if p.strip()]
        if all(_INT.match(p) for p in parts):
            return [int(p) for p in parts]
    return raw


def _map(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(raw.split("\n"), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"line {number}: write one `Name: value` per line")
        out[name.strip()] = value.strip()
    return out


def parse_field(view: FieldView) -> Any:
    """The value a field's text means (``None``: leave the setting out); sets ``view.error`` if it is wrong."""
    raw = view.raw
    if not raw.strip():
        return None
    try:
        if view.widget in ("text", "longtext", "enum"):
            return raw
        if view.widget == "number":
            return _number(raw)
        if view.widget == "list":
            return _list(raw, view.item_type)
        if view.widget == "map":
            return _map(raw)
        return _yaml_value(raw)
    except (YAMLError, ValueError) as exc:
        message = str(exc).split("\n", 1)[0]
        view.error = message if view.widget != "json" else f"not valid JSON or YAML: {message}"
        return None


def kind_of(action: str, settings: Mapping[str, Any]) -> str:
    if action == "http":
        method = str(settings.get("method", "POST")).upper()
        return "api" if method in ("GET", "HEAD") else "webhook"
    return action


def step_from_spec(spec: Mapping[str, Any], sources: list[str]) -> StepView:
    action = str(spec.get("action", ""))
    settings = spec.get("with")
    settings = settings if isinstance(settings, dict) else {}
    extra = {k: spec[k] for k in ("retry", "limits") if k in spec}
    if action not in ACTIONS and settings:
        extra["with"] = settings  # kept until an action is chosen for them
    known = {s.name for s in settings_of(action)} if action in ACTIONS else set()
    retry = spec.get("retry") if isinstance(spec.get("retry"), dict) else {}
    assert isinstance(retry, dict)
    schedule = retry.get("schedule")
    view = StepView(
        id=str(spec.get("id", "")),
        action=action,
        kind=kind_of(action, settings),
        when=str(spec.get("when") or ""),
        extra=json.dumps(extra) if extra else "",
        fields=field_views(action, settings, sources) if action in ACTIONS else [],
        retry_attempts=str(retry["max_attempts"]) if retry.get("max_attempts") is not None else "",
        retry_delays=", ".join(str(d) for d in schedule) if isinstance(schedule, list) else "",
    )
    if action not in ACTIONS:
        view.errors.append(unknown_action(action))
    unknown = sorted(set(settings) - known)
    if unknown and action in ACTIONS:
        view.errors.append(f"unknown setting(s) {', '.join(unknown)} for action {action}: they are dropped")
    return view


def unknown_action(action: str) -> str:
    return f"unknown action {action!r}: choose one of {', '.join(sorted(ACTIONS))} below; the step's settings are kept"


def _carried(extra: str) -> tuple[dict[str, Any], str]:
    """Settings carried over from a step whose action was unknown (``with`` in its extra), and the extra without."""
    try:
        data = json.loads(extra) if extra.strip() else {}
    except ValueError:
        return {}, extra
    if not isinstance(data, dict) or not isinstance(data.get("with"), dict):
        return {}, extra
    carried = data.pop("with")
    return carried, json.dumps(data) if data else ""


def new_step(kind: str, taken: set[str], sources: list[str]) -> StepView:
    action, _label, preset, base = KINDS.get(kind, KINDS["webhook"])
    step_id, n = base, 2
    while step_id in taken:
        step_id, n = f"{base}-{n}", n + 1
    return StepView(step_id, action, kind if kind in KINDS else "webhook", fields=field_views(action, preset, sources))


def steps_from_form(form: Mapping[str, Any], sources: list[str]) -> list[StepView]:
    found: dict[int, dict[str, str]] = {}
    settings: dict[int, dict[str, str]] = {}
    for name in form:
        if m := _STEP.match(name):
            found.setdefault(int(m.group(1)), {})[m.group(2)] = text(form, name)
        elif m := _STEP_FIELD.match(name):
            settings.setdefault(int(m.group(1)), {})[m.group(2)] = text(form, name)
    steps = []
    for n in sorted(found)[:50]:
        parts = found[n]
        action = parts.get("action", "")
        if not action:
            continue
        if action not in ACTIONS:  # imported with an unknown action: kept, settings and all, until one is chosen
            unknown = StepView(id=parts.get("id", "").strip(), action=action, kind="", extra=parts.get("extra", ""))
            unknown.errors.append(unknown_action(action))
            steps.append(unknown)
            continue
        carried, extra = _carried(parts.get("extra", ""))
        views = field_views(action, carried, sources) if carried else field_views(action, {}, sources)
        for view in views:
            typed = settings.get(n, {}).get(view.name, "")
            view.raw = typed or view.raw
            view.featured = view.featured or bool(view.raw)
        parts["extra"] = extra
        kind = parts.get("kind", "")
        steps.append(
            StepView(
                id=parts.get("id", "").strip(),
                action=action,
                kind=kind if kind in KINDS else kind_of(action, {}),
                when=parts.get("when", ""),
                extra=parts.get("extra", ""),
                fields=views,
                retry_attempts=parts.get("retry_attempts", ""),
                retry_delays=parts.get("retry_delays", ""),
            )
        )
    return steps


def apply_step_action(steps: list[StepView], action: str, new_kind: str, sources: list[str]) -> None:
    """``add`` (a step of ``new_kind``), ``remove:<n>``, ``up:<n>`` or ``down:<n>``."""
    verb, _, raw = action.partition(":")
    if verb == "add":
        if len(steps) < 50:
            steps.append(new_step(new_kind, {s.id for s in steps}, sources))
        return
    if not raw.isdigit() or not 0 <= int(raw) < len(steps):
        return
    n = int(raw)
    if verb == "remove":
        del steps[n]
    elif verb == "up" and n > 0:
        steps[n - 1], steps[n] = steps[n], steps[n - 1]
    elif verb == "down" and n < len(steps) - 1:
        steps[n + 1], steps[n] = steps[n], steps[n + 1]


def step_spec(view: StepView) -> dict[str, Any]:
    """The step as a rule holds it; field errors are left on the views."""
    spec: dict[str, Any] = {"id": view.id, "action": view.action}
    if view.when.strip():
        spec["when"] = view.when.strip()
    settings: dict[str, Any] = {}
    for f in view.fields:
        value = parse_field(f)
        if value is not None:
            settings[f.name] = value
    spec["with"] = settings
    extra: Any = {}
    if view.extra.strip():
        try:
            extra = json.loads(view.extra)
        except ValueError:
            extra = {}
    if isinstance(extra, dict):
        spec.update({k: v for k, v in extra.items() if k in ("retry", "limits")})
        if view.action not in ACTIONS and isinstance(extra.get("with"), dict):
            spec["with"] = extra["with"]  # an unknown action's settings, as imported
    retry = retry_spec(spec.get("retry"), view.retry_attempts, view.retry_delays)
    spec.pop("retry", None)
    if retry:
        spec["retry"] = retry
    return spec


def retry_spec(kept: Any, attempts: str, delays: str) -> dict[str, Any]:
    """A step's ``retry``: the form's attempts and delays over the other settings it had (backoff, jitter)."""
    retry = {k: v for k, v in (kept if isinstance(kept, dict) else {}).items() if k not in ("max_attempts", "schedule")}
    if attempts.strip():
        retry["max_attempts"] = int(attempts) if attempts.strip().isdigit() else attempts.strip()
    if delays.strip():
        retry["schedule"] = [d.strip() for d in delays.replace(";", ",").split(",") if d.strip()]
        for key in ("backoff", "initial", "max"):  # delays listed one by one replace backoff settings
            retry.pop(key, None)
    return retry
