"""Hostile rule files: code-running tags, alias bombs, duplicate keys, oversized files; refused fast, no code runs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from router.errors import RuleSetError
from router.rules.ruleset import load_ruleset
from router.rules.yamlfile import MAX_FILE_BYTES

pytestmark = pytest.mark.security

ANCHORS = "YAML anchors and aliases (&name / *name) are not allowed in rule files; repeat the value"
HEAD = "sources:\n  - id: shop\nrules:\n  - id: r\n    source: shop\n    steps:\n"


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    lines = ['a0: &a0 "lol"']
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    return "\n".join(lines) + "\n" + HEAD + "      - {id: s, action: emit, with: {source: shop, body: *a9}}\n"


def corpus(canary: Path) -> list[tuple[str, str, str]]:
    """(name, file text, expected ``file:line:col: message`` prefix or fragment)."""
    step = "      - {id: s, action: emit, with: {source: shop, body: {}}}\n"
    touch = f'["touch {canary}"]'
    return [
        ("9x9 alias bomb", alias_bomb(), f"rules.yaml:1:5: {ANCHORS}"),
        ("30x30 alias bomb", alias_bomb(30, 30), f"rules.yaml:1:5: {ANCHORS}"),
        ("anchor on a mapping", f"{HEAD}      - &step {{id: s, action: emit, with: {{source: shop}}}}\n",
         f"rules.yaml:7:9: {ANCHORS}"),
        ("anchor on a scalar", f"x: &v shop\n{HEAD}{step}", f"rules.yaml:1:4: {ANCHORS}"),
        ("merge key", f"base: &b {{action: emit}}\n{HEAD}      - {{<<: *b, id: s, with: {{source: shop}}}}\n",
         f"rules.yaml:1:7: {ANCHORS}"),
        ("alias of an undefined anchor", f"{HEAD}      - *nothing\n", f"rules.yaml:7:9: {ANCHORS}"),
        ("!!python/object/apply:os.system", f"x: !!python/object/apply:os.system {touch}\n{HEAD}{step}",
         "YAML tags such as !!python/object/apply:os.system are not allowed"),
        ("!!python/object/apply:subprocess.check_output",
         f"x: !!python/object/apply:subprocess.check_output [[touch, {canary}]]\n{HEAD}{step}",
         "YAML tags such as !!python/object/apply:subprocess.check_output are not allowed"),
        ("!!python/object/new", f"x: !!python/object/new:os.system {touch}\n{HEAD}{step}",
         "YAML tags such as !!python/object/new:os.system are not allowed"),
        ("!!python/name", f"x: !!python/name:os.system\n{HEAD}{step}",
         "YAML tags such as !!python/name:os.system are not allowed"),
        ("!!python/module", f"x: !!python/module:os\n{HEAD}{step}",
         "YAML tags such as !!python/module:os are not allowed"),
        ("exec via apply", f"x: !!python/object/apply:builtins.exec [\"open('{canary}', 'w')\"]\n{HEAD}{step}",
         "YAML tags such as !!python/object/apply:builtins.exec are not allowed"),
        ("tag in a step", f"{HEAD}      - !!python/object/apply:os.system {touch}\n", "YAML tags such as"),
        ("local tag", f"x: !custom thing\n{HEAD}{step}", "YAML tags such as !custom are not allowed"),
        ("!!binary (standard tag, builds bytes only)", f"x: !!binary aGVsbG8=\n{HEAD}{step}", "x: unknown field"),
        ("duplicate key", "sources:\n  - id: shop\nsources: []\n", "rules.yaml:3:1: invalid YAML"),
        ("duplicate key in a step", f"{HEAD}      - {{id: s, id: t, action: emit}}\n", "duplicate key"),
        ("file over the size limit", "# " + "x" * (5 * 1024 * 1024) + "\n",
         f"rules.yaml: file is over {MAX_FILE_BYTES} bytes; split it"),
        ("not UTF-8", "x: caf\udce9\n", "rules.yaml: file is not UTF-8"),
    ]  # fmt: skip


@pytest.mark.no_cover  # it times the code: coverage's tracer would be measured too
def test_hostile_rule_files_are_refused_fast_and_run_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    cases = corpus(canary)
    slowest = 0.0
    for n, (name, text, expected) in enumerate(cases):
        folder = tmp_path / f"rules-{n}"
        folder.mkdir()
        (folder / "rules.yaml").write_bytes(text.encode("utf-8", "surrogateescape"))
        started = time.monotonic()
        with pytest.raises(RuleSetError) as caught:
            load_ruleset(folder)
        elapsed = time.monotonic() - started
        slowest = max(slowest, elapsed)
        messages = [str(e) for e in caught.value.errors]
        assert any(expected in m for m in messages), (name, messages)
        assert elapsed < 1.0, (name, elapsed)
        assert not canary.exists(), name
    print(f"yaml corpus: {len(cases)} hostile files, {len(cases)} refused, slowest {slowest:.2f} s, code run 0 times")


def test_the_same_rules_without_anchors_load(tmp_path: Path) -> None:
    """The refusal names the fix (repeat the value), and the repeated form loads."""
    folder = tmp_path / "rules"
    folder.mkdir()
    step = "{id: s, action: emit, with: {source: shop, body: {a: '&not-an-anchor *nor-alias'}}}"
    (folder / "rules.yaml").write_text(f"{HEAD}      - {step}\n")
    ruleset = load_ruleset(folder)
    assert "shop" in ruleset.sources
