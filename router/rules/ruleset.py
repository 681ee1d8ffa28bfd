"""Load rule files into an immutable, compiled rule set; report every problem as ``file:line:col: path: message``.

Everything is compiled here, once: JMESPath filters and ``when`` conditions, every Jinja template in a
step's ``with``, and each source's signature settings. Matching and rendering never parse again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from router.errors import RuleError, RuleSetError
from router.rules import collector
from router.rules.alerts import compile_alerts
from router.rules.compile import _Loader, secrets_from_env
from router.rules.compiled import CompiledRule, CompiledSource, Path_, RuleSet, by_source
from router.rules.schema import Rule, RuleFile, Source
from router.rules.yamlfile import Locator, parse_yaml


def rule_files(rules_dir: Path) -> list[Path]:
    """Every ``*.yaml``/``*.yml`` below the folder, except rule tests (``*.test.yaml``)."""
    files = [p for p in rules_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(p for p in files if not p.name.endswith((".test.yaml", ".test.yml")))


def load_ruleset(
    rules_dir: Path | str, env: Mapping[str, str] | None = None, allow_missing_secrets: bool = False
) -> RuleSet:
    """Load and compile every rule file; raise RuleSetError listing every problem found."""
    with collector.paused():  # a million long-lived objects for 10,000 rules: see router.rules.collector
        return _load_ruleset(rules_dir, env, allow_missing_secrets)


def _load_ruleset(rules_dir: Path | str, env: Mapping[str, str] | None, allow_missing_secrets: bool) -> RuleSet:
    env = os.environ if env is None else env
    root = Path(rules_dir)
    if not root.is_dir():
        raise RuleSetError(
            [RuleError(f"rules folder {str(root)!r} does not exist; set ROUTER_RULES_DIR", file=str(root))]
        )
    loader = _Loader(env, allow_missing_secrets)
    digest = hashlib.sha256()
    parsed: list[tuple[Locator, RuleFile]] = []
    path: Path_
    for file_path in rule_files(root):
        display = _display(file_path)
        text = file_path.read_bytes()
        digest.update(display.encode() + b"\0" + text + b"\0")
        data, locator, errors = parse_yaml(text, display)
        loader.errors.extend(errors)
        if errors or data is None:
            continue
        model = _validate_file(loader, data, locator)
        if model is not None:
            parsed.append((locator, model))
    sources: dict[str, CompiledSource] = {}
    raw_sources: dict[str, str] = {}
    for locator, model in parsed:
        for i, src in enumerate(model.sources):
            path = ("sources", i)
            if loader.redefined("source", src.id, raw_sources.get(src.id), locator, path):
                continue
            raw_sources[src.id] = locator.describe(path)
            sources[src.id] = loader.compile_source(src, locator, path)
    rules: dict[str, CompiledRule] = {}
    for locator, model in parsed:
        for i, rule in enumerate(model.rules):
            path = () if locator.single_rule else ("rules", i)
            if loader.redefined("rule", rule.id, _location(rules, rule.id), locator, path):
                continue
            rules[rule.id] = loader.compile_rule(rule, locator, path, raw_sources)
    alerts, alert_rules = compile_alerts(loader, parsed, sources)
    rules.update(alert_rules)
    if loader.errors:
        raise RuleSetError(loader.errors)
    return RuleSet(
        sources=sources,
        rules=rules,
        by_source=by_source(rules),
        version=digest.hexdigest()[:12],
        files=tuple(_display(p) for p in rule_files(root)),
        warnings=tuple(loader.warnings),
        secrets=secrets_from_env(env),
        alerts=alerts,
    )


def _location(rules: Mapping[str, CompiledRule], rule_id: str) -> str | None:
    """Where the rule ``rule_id`` is defined, if it is."""
    rule = rules.get(rule_id)
    return rule.location if rule is not None else None


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _validate_file(loader: _Loader, data: Any, locator: Locator) -> RuleFile | None:
    if not isinstance(data, dict):
        loader.error("expected a mapping with `sources:` and/or `rules:`, or one rule", locator, ())
        return None
    if not {"rules", "sources", "alerts"} & data.keys() and ("steps" in data or "source" in data):
        locator.single_rule = True
        try:
            return RuleFile(rules=[Rule.model_validate(data)])
        except ValidationError as exc:
            loader.validation_errors(exc, locator, (), lambda loc: _model_at(Rule, loc))
            return None
    try:
        return RuleFile.model_validate(data)
    except ValidationError as exc:
        loader.validation_errors(exc, locator, (), lambda loc: _model_at(RuleFile, loc))
        return None


def _model_at(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic model that validates the mapping at ``loc`` (to list its allowed fields)."""
    from router.polling.spec import PollSpec, ScheduleSpec
    from router.rules.schema import Alert, Expect, Retention, Step, Verify

    kinds = {
        "sources": Source,
        "rules": Rule,
        "steps": Step,
        "verify": Verify,
        "alerts": Alert,
        "notify": Step,
        "expect": Expect,
        "retention": Retention,
    }
    kinds |= {"poll": PollSpec, "reconcile": PollSpec, "schedule": ScheduleSpec}
    for part in loc:
        if isinstance(part, str) and part in kinds:
            model = kinds[part]
    return model


def compile_rule_spec(spec: Mapping[str, Any], ruleset: RuleSet) -> CompiledRule:
    """Compile one rule given as data (the dry-run API); raise RuleSetError on problems."""
    loader = _Loader(os.environ, allow_missing_secrets=True)
    locator = Locator("rule", {})
    try:
        rule = Rule.model_validate(spec)
    except ValidationError as exc:
        loader.validation_errors(exc, locator, (), lambda loc: _model_at(Rule, loc))
        raise RuleSetError(loader.errors) from None
    compiled = loader.compile_rule(rule, locator, (), ruleset.sources)
    if loader.errors:
        raise RuleSetError(loader.errors)
    return compiled


def load_rule_file(
    file: Path | str,
    known_sources: Mapping[str, CompiledSource] | None = None,
    env: Mapping[str, str] | None = None,
    allow_missing_secrets: bool = True,
) -> RuleSet:
    """Load one rule file on its own (a draft, for what-if); its rules may use ``known_sources`` too.

    Sources the file defines take the place of known ones with the same id. Problems raise
    RuleSetError as ``file:line:col: path: message``.
    """
    env = os.environ if env is None else env
    path = Path(file)
    display = _display(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise RuleSetError([RuleError(f"cannot read the file: {exc.strerror or exc}", file=display)]) from None
    loader = _Loader(env, allow_missing_secrets)
    data, locator, errors = parse_yaml(text, display)
    loader.errors.extend(errors)
    model = _validate_file(loader, data, locator) if not errors and data is not None else None
    if loader.errors or model is None:
        raise RuleSetError(loader.errors or [RuleError("the file is empty: expected sources and rules", file=display)])
    sources = dict(known_sources or {})
    names: dict[str, Any] = dict.fromkeys(sources, True)
    own: set[str] = set()
    for i, src in enumerate(model.sources):
        if src.id in own:
            loader.error(f"source id {src.id!r} is defined twice in this file", locator, ("sources", i, "id"))
            continue
        own.add(src.id)
        sources[src.id] = loader.compile_source(src, locator, ("sources", i))
        names[src.id] = True
    rules: dict[str, CompiledRule] = {}
    for i, rule in enumerate(model.rules):
        rpath: Path_ = () if locator.single_rule else ("rules", i)
        if loader.redefined("rule", rule.id, _location(rules, rule.id), locator, rpath):
            continue
        rules[rule.id] = loader.compile_rule(rule, locator, rpath, names)
    if loader.errors:
        raise RuleSetError(loader.errors)
    if not rules:
        raise RuleSetError([RuleError("the file defines no rule", file=display)])
    return RuleSet(
        sources=sources,
        rules=rules,
        by_source=by_source(rules),
        version=hashlib.sha256(text).hexdigest()[:12],
        files=(display,),
        warnings=tuple(loader.warnings),
        secrets=secrets_from_env(env),
    )
