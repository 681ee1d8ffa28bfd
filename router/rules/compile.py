"""Compiling one rule file's sources, rules and steps: filters, templates, signature settings and secrets.

``_Loader`` collects every problem as ``file:line:col: path: message`` instead of stopping at the first;
router.rules.ruleset runs it over each file and builds the RuleSet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from router.actions import ACTIONS
from router.errors import RuleError
from router.pipeline.presets import PRESETS
from router.pipeline.retry import parse_duration
from router.pipeline.signatures import SCHEMES, VerifyConfig
from router.rules.compiled import CompiledRule, CompiledSource, CompiledStep, Path_, format_path
from router.rules.filters import Expression, compile_expression, syntax_error_message
from router.rules.schema import Rule, Source
from router.rules.templating import Compiled, compile_tree, has_template, step_references
from router.rules.yamlfile import Locator

_ENV_REF = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>.*))?\}$", re.DOTALL)
SECRET_PREFIX = "ROUTER_SECRET_"


def secrets_from_env(env: Mapping[str, str]) -> dict[str, str]:
    """``secrets.NAME`` is ``ROUTER_SECRET_NAME``; nothing else from the environment is reachable.

    ``ROUTER_SECRET_KEY`` is the key that encrypts the UI's secrets, not a secret for rules: never exposed.
    """
    return {
        k[len(SECRET_PREFIX) :]: v
        for k, v in env.items()
        if k.startswith(SECRET_PREFIX) and len(k) > 14 and k != "ROUTER_SECRET_KEY"
    }


_FRIENDLY = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
}


def _pydantic_message(err: Mapping[str, Any], model: type[Any] | None = None) -> str:
    kind = err["type"]
    if kind == "string_pattern_mismatch" and "a-z0-9" in str(err.get("ctx", {}).get("pattern", "")):
        return "must be a slug: lower-case letters, digits, '-' and '_', starting with a letter or digit"
    if kind == "too_short":
        return f"needs at least {err.get('ctx', {}).get('min_length', 1)} item(s)"
    msg = _FRIENDLY.get(kind) or str(err["msg"])
    if kind == "extra_forbidden" and model is not None:
        fields = sorted(f.alias or name for name, f in model.model_fields.items())
        msg += f"; allowed: {', '.join(fields)}"
    return msg.removeprefix("Value error, ")


pydantic_message = _pydantic_message  # for other file formats (rule tests) that report the same way


class _Loader:
    def __init__(self, env: Mapping[str, str], allow_missing_secrets: bool) -> None:
        self.env = env
        self.allow_missing_secrets = allow_missing_secrets
        self.errors: list[RuleError] = []
        self.warnings: list[str] = []

    def error(self, message: str, locator: Locator, path: Path_) -> None:
        line, col = locator.position(path)
        self.errors.append(RuleError(message, file=locator.file, line=line, col=col, path=format_path(path)))

    def redefined(self, kind: str, item_id: str, defined_at: str | None, locator: Locator, path: Path_) -> bool:
        """Whether ``item_id`` was already defined (at ``defined_at``); if so, say so at the item's ``id``."""
        if defined_at is None:
            return False
        self.error(f"{kind} id {item_id!r} is already defined at {defined_at}", locator, (*path, "id"))
        return True

    def validation_errors(
        self, exc: ValidationError, locator: Locator, prefix: Path_, models: Callable[[Path_], Any]
    ) -> None:
        for err in exc.errors():
            path = (*prefix, *err["loc"])
            model = models(tuple(err["loc"][:-1])) if err["type"] == "extra_forbidden" else None
            self.error(_pydantic_message(err, model), locator, path)

    # -- sources ---------------------------------------------------------------------------
    def resolve_secret(self, raw: str, locator: Locator, path: Path_, source_id: str) -> str | None:
        match = _ENV_REF.match(raw)
        if not match:
            return raw
        name, default = match.group("name"), match.group("default")
        if name in self.env:
            return self.env[name]
        if default is not None:
            line, col = locator.position(path)
            self.warnings.append(
                f"{locator.file}:{line}:{col}: source {source_id!r} uses the default secret written in the file; "
                f"set the environment variable {name} before exposing it"
            )
            return default
        if self.allow_missing_secrets:
            return None
        self.error(f"environment variable {name} is not set; export it or write ${{{name}:-default}}", locator, path)
        return None

    def compile_source(self, src: Source, locator: Locator, path: Path_) -> CompiledSource:
        preset = None
        if src.preset is not None:
            preset = PRESETS.get(src.preset)
            if preset is None:
                self.error(
                    f"unknown preset {src.preset!r}; use one of: {', '.join(sorted(PRESETS))}",
                    locator,
                    (*path, "preset"),
                )
        verify: VerifyConfig | None = None
        default_dedupe: str | None = preset.dedupe if preset else None
        v = src.verify
        scheme_name = v.scheme if v is not None and v.scheme is not None else (preset.scheme if preset else None)
        if v is not None and scheme_name is None:
            self.error("required field is missing; or set the source's `preset`", locator, (*path, "verify", "scheme"))
        if scheme_name is not None and scheme_name != "none":
            scheme = SCHEMES.get(scheme_name)
            if scheme is None:
                self.error(
                    f"unknown scheme {scheme_name!r}; use one of: {', '.join(sorted(SCHEMES))}",
                    locator,
                    (*path, "verify", "scheme"),
                )
            else:
                if preset is None or scheme_name != preset.scheme:
                    default_dedupe = scheme.default_dedupe
                secret = None
                raw_secret = v.secret if v is not None else None
                if raw_secret is not None:
                    secret = self.resolve_secret(raw_secret, locator, (*path, "verify", "secret"), src.id)
                    if secret is not None and (problem := scheme.validate_secret(secret)):
                        self.error(problem, locator, (*path, "verify", "secret"))
                elif scheme.needs_secret:
                    given = f"preset {preset.name!r} verifies with scheme" if preset and v is None else "scheme"
                    self.error(
                        f"{given} {scheme_name!r} needs a secret, e.g. verify: {{secret: "
                        f"${{{src.id.upper().replace('-', '_')}_SECRET}}}}",
                        locator,
                        (*path, "verify") if v is not None else (*path, "preset"),
                    )
                header = v.header if v is not None else None
                if scheme_name == "hmac" and not header:
                    self.error(
                        "scheme 'hmac' needs `header`: the header carrying the signature", locator, (*path, "verify")
                    )
                tolerance = v.tolerance if v is not None else None
                if tolerance is None and preset is not None and scheme_name == preset.scheme:
                    tolerance = preset.tolerance
                verify = VerifyConfig(scheme=scheme_name, secret=secret, header=header, tolerance=tolerance)
        dedupe_src = default_dedupe if src.dedupe is None else (src.dedupe or None)
        dedupe = self.expression(dedupe_src, locator, (*path, "dedupe")) if dedupe_src else None
        from router.polling.compile import compile_pull

        pull, pull_type = compile_pull(src, self, locator, path, dedupe is not None)
        type_src = src.event_type if src.event_type is not None else (preset.event_type if preset else pull_type)
        event_type = self.expression(type_src, locator, (*path, "event_type")) if type_src else None
        return CompiledSource(
            src.id,
            src.description,
            verify,
            dedupe,
            locator.describe(path),
            preset=preset.name if preset else None,
            event_type=event_type,
            pull=pull,
            expect_at_least=src.expect.at_least if src.expect else 0,
            expect_every=parse_duration(src.expect.every) if src.expect else 0.0,
            retention_days=src.retention.days if src.retention else None,
            retention_max_events=src.retention.max_events if src.retention else None,
        )

    # -- rules -----------------------------------------------------------------------------
    def expression(self, source: str, locator: Locator, path: Path_) -> Expression | None:
        try:
            return compile_expression(source, locator.describe(path))
        except Exception as exc:  # jmespath raises several unrelated exception types
            self.error(syntax_error_message(exc), locator, path)
            return None

    def compile_rule(self, rule: Rule, locator: Locator, path: Path_, sources: Mapping[str, Any]) -> CompiledRule:
        if rule.source not in sources:
            known = ", ".join(sorted(sources)) or "none defined"
            self.error(f"unknown source {rule.source!r}; defined sources: {known}", locator, (*path, "source"))
        filt = self.expression(rule.filter, locator, (*path, "filter")) if rule.filter else None
        steps = []
        earlier: list[str] = []
        for i, step in enumerate(rule.steps):
            spath: Path_ = (*path, "steps", i)
            steps.append(self.compile_step(step, locator, spath, earlier, sources))
            earlier.append(step.id)
        spec = rule.model_dump(by_alias=True, exclude_none=True)
        return CompiledRule(
            rule.id,
            rule.source,
            rule.description,
            rule.enabled,
            filt,
            tuple(steps),
            locator.describe(path),
            spec,
            rule.retry,
        )

    def compile_step(
        self, step: Any, locator: Locator, path: Path_, earlier: list[str], sources: Mapping[str, Any]
    ) -> CompiledStep:
        action = ACTIONS.get(step.action)
        if action is None:
            self.error(
                f"unknown action {step.action!r}; use one of: {', '.join(sorted(ACTIONS))}", locator, (*path, "action")
            )
        when = self.expression(step.when, locator, (*path, "when")) if step.when else None
        wpath: Path_ = (*path, "with")
        try:
            tree = compile_tree(step.with_, lambda p: locator.describe((*wpath, *p)))
        except TemplateSyntaxError as exc:
            leaf = (*wpath, *getattr(exc, "router_path", ()))
            self.error(f"invalid template: {exc.message} (template line {exc.lineno})", locator, leaf)
            tree = None
        if tree is not None:
            self.check_references(tree, locator, wpath, earlier, step.id)
            if action is not None:
                self.check_config(action.Config, step.with_, tree, locator, wpath)
                emit_target = step.with_.get("source")
                if (
                    step.action == "emit"
                    and isinstance(emit_target, str)
                    and emit_target not in sources
                    and not isinstance(tree.get("source"), Compiled)
                ):
                    self.error(f"unknown source {emit_target!r} to emit into", locator, (*wpath, "source"))
        return CompiledStep(step.id, step.action, when, tree, locator.describe(path), step.retry, step.limits)

    def check_references(self, tree: Any, locator: Locator, path: Path_, earlier: list[str], own: str) -> None:
        if isinstance(tree, Compiled):
            for ref in sorted(step_references(tree.source) - set(earlier)):
                why = "a step cannot read its own output" if ref == own else "no earlier step has that id"
                hint = f"earlier steps: {', '.join(earlier)}" if earlier else "this is the first step"
                self.error(f"reads steps.{ref}, but {why} ({hint})", locator, path)
        elif isinstance(tree, dict):
            for k, v in tree.items():
                self.check_references(v, locator, (*path, k), earlier, own)
        elif isinstance(tree, list):
            for i, v in enumerate(tree):
                self.check_references(v, locator, (*path, i), earlier, own)

    def check_config(self, model: Any, raw: dict[str, Any], tree: Any, locator: Locator, path: Path_) -> None:
        """Validate the settings that are already known; a templated value is checked when it renders."""
        try:
            model.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                if _under_template(tree, loc):
                    continue
                self.error(_pydantic_message(err, model), locator, (*path, *loc))


def _under_template(tree: Any, loc: tuple[Any, ...]) -> bool:
    node = tree
    for part in loc:
        if isinstance(node, Compiled):
            return True
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return False
    return isinstance(node, Compiled) or has_template(node)
