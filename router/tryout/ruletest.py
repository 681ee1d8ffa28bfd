"""Rule tests kept in git: ``rules/x.test.yaml`` beside ``rules/x.yaml``, run by ``router test``.

A test file holds ``cases``; each case is an incoming request, the recorded responses of the steps that
call out, and what must happen: which rules match, and what each step renders (or that it is skipped).
Cases run on the compiled rule set with ``router.pipeline.match`` (the code the worker uses): no network,
no Redis, no database. Every failure is reported as ``file:line:col: path: message``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from router.errors import IngestError, RuleError, SignatureError, TemplateRenderError
from router.pipeline.ingest import fold_headers, parse_body
from router.pipeline.match import build_context, event_dict, render_step, rule_matches
from router.pipeline.record import SKIPPED_OUTPUT
from router.pipeline.signatures import verify
from router.rules.compile import pydantic_message
from router.rules.compiled import CompiledRule, RuleSet, format_path
from router.rules.yamlfile import Locator, parse_yaml
from router.tryout.ruletest_compare import Mismatch, compare, request_view, template_at
from router.tryout.ruletest_models import Case, StepCase, TestFile, model_at

Path_ = tuple[str | int, ...]
DEFAULT_OUTPUT: dict[str, Any] = {"status": 200, "headers": {}, "body": None}
REQUEST_KEYS = ("method", "url", "query", "headers", "json", "body")


@dataclass
class CaseResult:
    file: str
    name: str
    location: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class Report:
    results: list[CaseResult] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)  # test files that do not load

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.results)


def test_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith((".test.yaml", ".test.yml")))


def load_test_file(path: Path, display: str) -> tuple[TestFile | None, Locator, list[RuleError]]:
    data, locator, errors = parse_yaml(path.read_bytes(), display)
    if errors:
        return None, locator, errors
    if not isinstance(data, dict):
        return None, locator, [RuleError("expected a mapping with `cases:`", file=display, line=1, col=1)]
    try:
        return TestFile.model_validate(data), locator, []
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            path_ = tuple(err["loc"])
            line, col = locator.position(path_)
            model = model_at(path_) if err["type"] == "extra_forbidden" else None
            message = pydantic_message(err, model)
            out.append(RuleError(message, file=display, line=line, col=col, path=format_path(path_)))
        return None, locator, out


class _CaseRun:
    """Runs one case and collects its failures, each located in the test file."""

    def __init__(self, ruleset: RuleSet, case: Case, locator: Locator, path: Path_, base: Path) -> None:
        self.rs, self.case, self.locator, self.path, self.base = ruleset, case, locator, path, base
        self.failures: list[str] = []

    def fail(self, sub: Path_, message: str) -> None:
        full = (*self.path, *sub)
        self.failures.append(f"{self.locator.describe(full)}: {format_path(full)}: {message}")

    def event(self) -> tuple[dict[str, Any], bytes] | None:
        c = self.case
        headers = fold_headers((str(k), str(v)) for k, v in c.headers.items())
        if c.body_file is not None:
            if "body" in c.model_fields_set:
                self.fail(("body_file",), "give `body` or `body_file`, not both")
                return None
            file = self.base / c.body_file
            if not file.is_file():
                self.fail(("body_file",), f"no such file: {file}")
                return None
            raw = file.read_bytes()
            ctype = headers.get("content-type") or ("application/json" if file.suffix == ".json" else "text/plain")
            headers.setdefault("content-type", ctype)
            try:
                body = parse_body(raw, ctype)
            except IngestError as exc:
                self.fail(("body_file",), f"{file}: {exc.title}: {exc.detail}")
                return None
        else:
            body = c.body
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            if body is not None and not isinstance(body, str):
                headers.setdefault("content-type", "application/json")
            elif isinstance(body, str) and headers.get("content-type"):
                try:  # a text body is parsed as its content type says, as ingest does
                    body = parse_body(raw, headers["content-type"])
                except IngestError as exc:
                    self.fail(("body",), f"{exc.title}: {exc.detail}")
                    return None
        event = event_dict(
            id="01TESTCASE" + str(self.path[-1]).zfill(16),
            source=c.source,
            received_at=c.received_at,
            method=c.method.upper(),
            path=f"/hooks/{c.source}",
            headers=headers,
            query=c.query,
            body=body,
        )
        return event, raw

    def check_signature(self, event: dict[str, Any], raw: bytes) -> None:
        source = self.rs.sources[self.case.source]
        if source.verify is None:
            return
        try:
            when = datetime.fromisoformat(self.case.received_at).timestamp()
        except ValueError:
            self.fail(("received_at",), "not an ISO 8601 time, e.g. 2026-01-01T00:00:00+00:00")
            return
        query = {k: v if isinstance(v, str) else str(v[0]) for k, v in event["query"].items()}
        try:
            verify(source.verify, raw, event["headers"], query, when)
        except SignatureError as exc:
            self.fail(("verify",), f"signature does not verify ({source.verify.scheme}): {exc}")

    def run(self, secrets: dict[str, str]) -> None:
        c = self.case
        if c.source not in self.rs.sources:
            self.fail(
                ("source",), f"unknown source {c.source!r}; defined sources: {', '.join(sorted(self.rs.sources))}"
            )
            return
        for key, ids in (("matches", c.matches or []), ("not_matches", c.not_matches)):
            for i, rid in enumerate(ids):
                if rid not in self.rs.rules:
                    self.fail((key, i), f"unknown rule {rid!r}")
        if c.poll is not None:
            from router.tryout.ruletest_poll import poll_event

            built = poll_event(self, secrets)
        else:
            built = self.event()
        if built is None:
            return
        event, raw = built
        if c.verify and c.poll is None:
            self.check_signature(event, raw)
        ctx = build_context(event, secrets) | {"now": c.received_at}
        matched = self.matched(ctx)
        self.check_matches(ctx, matched)
        if c.steps:
            self.run_steps(ctx, matched)

    def matched(self, ctx: dict[str, Any]) -> list[str]:
        """The ids of the case's source's rules whose filter matches (a failing filter is the case's failure)."""
        matched: list[str] = []
        for rule in self.rs.rules.values():
            if rule.source != self.case.source:
                continue
            try:
                if rule_matches(rule, ctx):
                    matched.append(rule.id)
            except TemplateRenderError as exc:
                self.fail(("source",), f"rule {rule.id!r}: the filter failed: {exc}")
        return matched

    def check_matches(self, ctx: dict[str, Any], matched: list[str]) -> None:
        """``matches`` and ``not_matches`` against the rules that matched."""
        c = self.case
        shown = ", ".join(matched) or "none"
        if c.matches is not None:
            if not c.matches and matched:
                self.fail(("matches",), f"expected no rule to match; matched: {shown}")
            for i, rid in enumerate(c.matches):
                if rid in self.rs.rules and rid not in matched:
                    self.fail(
                        ("matches", i), f"rule {rid!r} did not match ({self.why_not(rid, ctx)}); matched: {shown}"
                    )
        for i, rid in enumerate(c.not_matches):
            if rid in matched:
                self.fail(("not_matches", i), f"rule {rid!r} matched, filter at {self.rs.rules[rid].location}")

    def why_not(self, rule_id: str, ctx: dict[str, Any]) -> str:
        rule = self.rs.rules[rule_id]
        if rule.source != self.case.source:
            return f"it is a rule of source {rule.source!r}"
        if not rule.enabled:
            return f"it is disabled at {rule.location}"
        assert rule.filter is not None
        return f"filter at {rule.filter.location} is false: {rule.filter.source}"

    def target(self, matched: list[str]) -> CompiledRule | None:
        c = self.case
        rid = c.rule or (c.matches[0] if c.matches and len(c.matches) == 1 else None)
        if rid is None and len(matched) == 1:
            rid = matched[0]
        if rid is None:
            why = (
                "no rule matched, so no step runs" if not matched else "say which rule's steps these are: `rule: <id>`"
            )
            self.fail(("steps",), why)
            return None
        rule = self.rs.rules.get(rid)
        if rule is None:
            if c.rule is not None:
                self.fail(("rule",), f"unknown rule {rid!r}")
            return None
        if rid not in matched:
            self.fail(("steps",), f"rule {rid!r} did not match, so no step runs")
            return None
        return rule

    def run_steps(self, ctx: dict[str, Any], matched: list[str]) -> None:
        rule = self.target(matched)
        if rule is None:
            return
        known = {s.id for s in rule.steps}
        for sid in self.case.steps:
            if sid not in known:
                self.fail(("steps", sid), f"rule {rule.id!r} has no step {sid!r}; its steps: {', '.join(known)}")
        outputs: dict[str, Any] = {}
        failed: str | None = None
        for step in rule.steps:
            want = self.case.steps.get(step.id)
            here: Path_ = ("steps", step.id)
            if failed is not None:
                if want is not None:
                    self.fail(here, f"not run: step {failed!r} failed before it")
                continue
            rendered = render_step(step, ctx | {"steps": dict(outputs)})
            if rendered.skipped:
                outputs[step.id] = SKIPPED_OUTPUT
                if want is not None and (want.skipped is False or _expects_request(want)):
                    assert step.when is not None
                    at = (*here, "skipped") if want.skipped is False else here
                    self.fail(at, f"skipped: its when ({step.when.source}) at {step.when.location} is false")
                continue
            if want is not None and want.skipped:
                cond = f"its when ({step.when.source}) is true" if step.when else "it has no `when`"
                self.fail((*here, "skipped"), f"expected the step to be skipped, but it ran: {cond}")
            if rendered.error is not None:
                failed = step.id
                if want is not None and want.error is not None:
                    if want.error not in str(rendered.error):
                        self.fail(
                            (*here, "error"), f"expected an error containing {want.error!r}; got: {rendered.error}"
                        )
                else:
                    self.fail(here, f"did not render: {rendered.error}{self.hint(step, outputs)}")
                continue
            if want is not None and want.error is not None:
                self.fail((*here, "error"), f"expected an error containing {want.error!r}, but the step rendered")
            if want is not None:
                self.check_step(step, want, rendered.with_, rendered.config, here)
            response = want.response if want is not None else None
            outputs[step.id] = response.model_dump() if response is not None else dict(DEFAULT_OUTPUT)

    def hint(self, step: Any, outputs: dict[str, Any]) -> str:
        from router.tryout.dryrun import step_inputs

        bare = [s for s in sorted(step_inputs(step)) if s in outputs and not self.recorded(s)]
        if not bare:
            return ""
        names = ", ".join(f"steps.{s}" for s in bare)
        return f" (it reads {names}, which has no recorded `response` in this case: the default is 200 with no body)"

    def recorded(self, step_id: str) -> bool:
        want = self.case.steps.get(step_id)
        return want is not None and want.response is not None

    def check_step(self, step: Any, want: StepCase, with_: Any, config: Any, here: Path_) -> None:
        mismatches: list[Mismatch] = []
        if _expects_request(want):
            view = request_view(step.action, config)
            if view is None:
                self.fail(here, f"a {step.action!r} step sends no HTTP request; check its settings with `with:`")
            else:
                expected = {k: getattr(want, "json_" if k == "json" else k) for k in REQUEST_KEYS}
                given = {k: v for k, v in expected.items() if k in _set_fields(want)}
                mismatches += compare(given, view, (), headers_at=("headers",))
        if want.with_ is not None:
            mismatches += [
                Mismatch(("with", *m.path), m.expected, m.actual, m.note) for m in compare(want.with_, with_, ())
            ]
        for m in mismatches:
            self.fail((*here, *m.path), m.describe(template_at(step, m.path)))


def _set_fields(want: StepCase) -> set[str]:
    return {"json" if f == "json_" else f for f in want.model_fields_set}


def _expects_request(want: StepCase) -> bool:
    return bool(_set_fields(want) & set(REQUEST_KEYS))


def run_tests(root: Path, ruleset: RuleSet, display: Any = str) -> Report:
    """Run every ``*.test.yaml`` below ``root`` (or the one file ``root``) against the rule set."""
    report = Report()
    for file in test_files(root):
        shown = display(file)
        model, locator, errors = load_test_file(file, shown)
        report.errors += errors
        if model is None:
            continue
        for i, case in enumerate(model.cases):
            path: Path_ = ("cases", i)
            runner = _CaseRun(ruleset, case, locator, path, file.parent)
            runner.run(model.secrets | case.secrets)
            report.results.append(CaseResult(shown, case.name, locator.describe(path), runner.failures))
    return report


def run_folder(root: Path, fmt: str = "text", verbose: bool = False) -> tuple[str, int]:
    """``router test``: load the folder's rules (or a test file's folder's), run the tests; (output, exit code)."""
    from router.errors import RuleSetError
    from router.rules.ruleset import _display, load_ruleset

    rules_dir = root.parent if root.is_file() else root
    try:
        # An empty environment: tests give their own secrets, and every ${NAME:-default} takes its default.
        ruleset = load_ruleset(rules_dir, env={}, allow_missing_secrets=True)
    except RuleSetError as exc:
        if fmt == "json":
            return json.dumps({"ok": False, "errors": [e.as_dict() for e in exc.errors], "cases": []}, indent=2), 1
        return "\n".join([*(str(e) for e in exc.errors), f"{len(exc.errors)} problem(s) in the rule files"]), 1
    report = run_tests(root, ruleset, _display)
    code = 0 if report.ok else 1
    if fmt == "json":
        cases = [
            {"file": r.file, "name": r.name, "location": r.location, "failures": r.failures} for r in report.results
        ]
        out = {"ok": report.ok, "errors": [e.as_dict() for e in report.errors], "cases": cases}
        return json.dumps(out, indent=2), code
    lines = [str(e) for e in report.errors]
    for r in report.results:
        if r.failures:
            lines.append(f"FAIL {r.location}: {r.name}")
            lines += [f"  {f}" for f in r.failures]
        elif verbose:
            lines.append(f"ok   {r.location}: {r.name}")
    passed = sum(r.ok for r in report.results)
    failed = len(report.results) - passed
    files = len({r.file for r in report.results})
    if not report.results and not report.errors:
        lines.append(f"no rule tests (*.test.yaml) in {root}")
    else:
        summary = f"{passed} passed, {failed} failed in {files} file(s)"
        if report.errors:
            summary += f"; {len(report.errors)} problem(s) in test files"
        lines.append(summary)
    return "\n".join(lines), code
