"""The documentation stays true to the code: names, commands and examples in docs/ are checked here.

Conventions for writing README.md and docs/*.md so that these tests can check them:

* **Rule-file blocks.** A fenced block with info string ``yaml`` is a rule file when a line starts
  with ``sources:`` or ``rules:``, or when it has both a top-level ``source:`` and ``steps:`` (one
  rule at top level). All rule-file blocks of one page are written as separate files into one
  folder and loaded together with ``router.rules.ruleset.load_ruleset`` (so a rule may use a source
  defined in another block of the same page, and ids must be unique within a page). They load with
  an empty environment and ``allow_missing_secrets=True``: ``${NAME}`` without a default is fine.
  Other YAML (docker compose, fragments of a step) is not a rule file and is not loaded.
* **Blocks that must fail.** A rule-file block whose first line is ``# expect-error: <text>`` is
  loaded on its own, with an empty environment and missing secrets not allowed, and must fail
  with an error whose ``file:line:col: path: message`` line contains ``<text>``.
* **Filter table** (docs/filters.md): a table whose header is ``| Filter | Result | Matches |``.
  Each filter (a code span; ``\\|`` for ``|``) is evaluated against the context described on that
  page (``doc_context()`` below); Result is the value as JSON, Matches is ``yes`` or ``no``.
* **Template table** (docs/templates.md): a table whose header is ``| Template | Result |``. Each
  template is rendered as one ``with`` leaf against the same context; Result is the value as JSON
  (so ``12`` is a number and ``"12"`` a string), or ``error: <text>`` when rendering must fail
  with a message containing ``<text>``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from router.actions import ACTIONS
from router.cli.commands import main
from router.errors import RuleSetError, TemplateRenderError
from router.pipeline.match import build_context, event_dict
from router.pipeline.signatures import SCHEMES
from router.rules.filters import compile_expression, truthy
from router.rules.ruleset import load_ruleset
from router.rules.templating import compile_string, render_tree
from router.settings import Settings

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
ALL_MARKDOWN = [REPO / "README.md", *PAGES]

FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.DOTALL | re.MULTILINE)
EXPECT_ERROR = re.compile(r"\A# expect-error: (?P<text>.+)\n")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def fenced_blocks(text: str, language: str) -> list[str]:
    return [m["body"] for m in FENCE.finditer(text) if m["info"].strip().split(" ")[0] == language]


def is_rule_file(block: str) -> bool:
    if re.search(r"^(sources|rules):", block, re.MULTILINE):
        return True
    return bool(re.search(r"^source:", block, re.MULTILINE) and re.search(r"^steps:", block, re.MULTILINE))


def rule_blocks(page: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The page's rule-file blocks: those that must load, and (expected error, block) pairs."""
    good: list[str] = []
    bad: list[tuple[str, str]] = []
    for block in fenced_blocks(read(page), "yaml"):
        if not is_rule_file(block):
            continue
        expected = EXPECT_ERROR.match(block)
        if expected:
            bad.append((expected["text"].strip(), block))
        else:
            good.append(block)
    return good, bad


def cells(row: str) -> list[str]:
    """Split a Markdown table row on unescaped pipes; ``\\|`` becomes ``|``."""
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def code_span(cell: str) -> str:
    match = re.fullmatch(r"(`+)\s?(.*?)\s?\1", cell, re.DOTALL)
    assert match, f"expected a code span, got {cell!r}"
    return match.group(2)


def table(page: Path, header: list[str]) -> list[list[str]]:
    """The body rows of the table on the page whose header row is ``header``."""
    lines = read(page).splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and cells(line) == header:
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append(cells(row))
            return rows
    raise AssertionError(f"{page.name} has no table with header {header}")


def doc_context() -> dict[str, Any]:
    """The context docs/filters.md and docs/templates.md describe for their tables."""
    body = json.loads(read(REPO / "samples" / "github-push.json"))
    event = event_dict(
        id="01JDOCS0000000000000000000",
        source="github",
        received_at="2026-11-25T10:15:02+00:00",
        headers={"content-type": "application/json", "x-github-event": "push"},
        query={"env": "prod"},
        body=body,
    )
    steps = {"notify": {"status": 200, "headers": {"content-type": "application/json"}, "body": {"ok": True}}}
    return build_context(event, {"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/XXXX"}, steps)


# -- names the code defines are documented ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_every_action_and_field_is_in_actions_md(name: str) -> None:
    text = read(DOCS / "actions.md")
    assert f"## `{name}`" in text, f"docs/actions.md has no section for action {name!r}"
    section = text.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
    for field_name, info in ACTIONS[name].Config.model_fields.items():
        key = info.alias or field_name
        assert f"`{key}`" in section, f"docs/actions.md, section {name}: field {key!r} is not documented"


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_in_settings_md(name: str) -> None:
    assert f"`ROUTER_{name.upper()}`" in read(DOCS / "settings.md")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_is_in_rules_md_and_sources_md(scheme: str) -> None:
    assert f"| `{scheme}` |" in read(DOCS / "rules.md"), f"docs/rules.md's scheme table lacks {scheme!r}"
    assert f"`{scheme}`" in read(DOCS / "sources.md")


def cli_commands() -> list[list[str]]:
    """Every command path of the ``router`` CLI, groups included: [], ["check"], ["db", "upgrade"], …"""
    import click

    found: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        found.append(path)
        if isinstance(command, click.Group):
            for name, sub in sorted(command.commands.items()):
                walk(sub, [*path, name])

    walk(main, [])
    return found


_HELP_PROGRAM = """
import contextlib, io, json, sys
from router.cli.commands import main
texts = {}
for command in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main.main(args=[*command, "--help"], prog_name="router", standalone_mode=False)
    texts[" ".join(command)] = [code, out.getvalue()]
print(json.dumps(texts))
"""


@functools.cache
def help_texts() -> dict[str, list[Any]]:
    """Each command's ``--help`` as a user sees it on an 80-column terminal: ``{"db upgrade": [exit code, text]}``.

    One process for all of them, apart from this one's (where click caches a command's help option
    once another test has invoked the command), instead of a process per command.
    """
    env = {**os.environ, "COLUMNS": "80"}
    commands = json.dumps(cli_commands())
    result = subprocess.run(
        [sys.executable, "-c", _HELP_PROGRAM, commands], capture_output=True, text=True, env=env, check=True
    )
    texts: dict[str, list[Any]] = json.loads(result.stdout)
    return texts


@pytest.mark.parametrize("command", cli_commands(), ids=lambda c: " ".join(c) or "router")
def test_every_cli_command_and_its_help_is_in_cli_md(command: list[str]) -> None:
    text = read(DOCS / "cli.md")
    if command:
        assert f"## `router {' '.join(command)}`" in text, f"docs/cli.md has no section for {command}"
    code, help_text = help_texts()[" ".join(command)]
    assert code == 0, help_text
    expected = help_text.strip()
    assert expected, f"{command} printed no help"
    assert expected in text, f"docs/cli.md does not have the current `--help` text of {command}"


def test_every_endpoint_is_in_api_md(tmp_path: Path) -> None:
    from router.app import create_app
    from router.settings import load_settings

    settings = load_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings)
    text = read(DOCS / "api.md")
    documented = [  # the API: UI pages and static files are left out of the schema, and out of api.md
        route
        for route in app.routes
        if any(h.resolve_include_in_schema() for h in getattr(route, "route_handlers", []))
    ]
    paths = {re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path) for route in documented}
    paths = {p for p in paths if not p.startswith("/schema")} | {"/schema"}
    for path in sorted(paths):
        assert f"`{path}`" in text or f" {path}`" in text, f"docs/api.md does not document {path}"


# -- examples in the docs run ------------------------------------------------------------------


PAGES_WITH_RULES = [p for p in ALL_MARKDOWN if rule_blocks(p)[0]]
PAGES_WITH_BAD_RULES = [(p, text, block) for p in ALL_MARKDOWN for text, block in rule_blocks(p)[1]]


def test_docs_have_rule_file_examples() -> None:
    names = {p.name for p in PAGES_WITH_RULES}
    assert {"README.md", "rules.md", "filters.md", "templates.md", "actions.md", "sources.md"} <= names


@pytest.mark.parametrize("page", PAGES_WITH_RULES, ids=lambda p: p.name)
def test_rule_file_blocks_load(page: Path, tmp_path: Path) -> None:
    good, _ = rule_blocks(page)
    for i, block in enumerate(good):
        (tmp_path / f"{page.stem}-{i:02d}.yaml").write_text(block, encoding="utf-8")
    try:
        ruleset = load_ruleset(tmp_path, env={}, allow_missing_secrets=True)
    except RuleSetError as exc:
        pytest.fail(f"rule-file blocks of docs/{page.name} do not load:\n{exc}")
    assert ruleset.sources or ruleset.rules


@pytest.mark.parametrize(
    ("page", "expected", "block"), PAGES_WITH_BAD_RULES, ids=lambda v: v.name if isinstance(v, Path) else ""
)
def test_expect_error_blocks_fail_as_documented(page: Path, expected: str, block: str, tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(block, encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(tmp_path, env={})
    lines = [str(e) for e in caught.value.errors]
    assert any(expected in line for line in lines), f"docs/{page.name}: expected {expected!r} in {lines}"


@pytest.mark.parametrize(
    "row", table(DOCS / "filters.md", ["Filter", "Result", "Matches"]), ids=lambda r: r[0].strip("`")[:40]
)
def test_filter_table(row: list[str]) -> None:
    expression, result, matches = code_span(row[0]), code_span(row[1]), row[2]
    value = compile_expression(expression).search(doc_context())
    assert value == json.loads(result), f"{expression}: got {json.dumps(value)}"
    assert truthy(value) is (matches == "yes"), f"{expression}: truthiness is {truthy(value)}"


@pytest.mark.parametrize("row", table(DOCS / "templates.md", ["Template", "Result"]), ids=lambda r: r[0][:40])
def test_template_table(row: list[str]) -> None:
    template, result = code_span(row[0]), row[1]
    compiled = compile_string(template, "docs")
    if result.startswith("error:"):
        with pytest.raises(TemplateRenderError) as caught:
            render_tree(compiled, doc_context(), "with.x")
        assert result.removeprefix("error:").strip().strip("`") in str(caught.value)
        return
    value = render_tree(compiled, doc_context(), "with.x")
    expected = json.loads(code_span(result))
    # Compared as JSON text, so types count: 2 is not "2", true is not 1.
    assert json.dumps(value, sort_keys=True) == json.dumps(expected, sort_keys=True), f"{template}: got {value!r}"


# -- the README and links -------------------------------------------------------------------------


def test_readme_has_the_two_commands() -> None:
    text = read(REPO / "README.md")
    assert "python -m pip install -c constraints.txt -e '.[lite]' && router dev" in text
    assert "python -m pip install -c constraints.txt -e '.[test]' && python -m pytest" in text


@pytest.mark.parametrize("page", ALL_MARKDOWN, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = read(page)
    for target in re.findall(r"\]\((?!https?://|#|mailto:)([^)#\s]+)(?:#[^)]*)?\)", text):
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
