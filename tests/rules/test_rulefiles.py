"""Rule files: what loads, and every mistake reported as file:line:col: path: message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router.errors import RuleSetError
from router.rules.ruleset import load_ruleset
from router.rules.templating import Compiled

SOURCE = """
sources:
  - id: shop
    verify: {scheme: none}
"""


def load(tmp_path: Path, files: dict[str, str], env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return load_ruleset(tmp_path, env=env or {})


def errors(tmp_path: Path, files: dict[str, str], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(RuleSetError) as info:
        load(tmp_path, files, env)
    return [str(e).replace(str(tmp_path) + "/", "") for e in info.value.errors]


def test_file_with_sources_and_rules_compiles(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        {
            "shop.yaml": SOURCE
            + """
rules:
  - id: big-order
    source: shop
    filter: body.total > `100`
    steps:
      - id: tell
        action: http
        with:
          url: https://example.com/{{ body.id }}
          json: {total: "{{ body.total }}", fixed: 3}
"""
        },
    )
    rule = rs.rules["big-order"]
    assert rule.filter is not None
    assert rule.filter.test({"body": {"total": 150}}) is True
    assert rule.filter.test({"body": {"total": 50}}) is False
    tree = rule.steps[0].with_tree
    assert isinstance(tree["url"], Compiled)
    assert tree["json"]["fixed"] == 3
    assert rs.by_source == {"shop": (rule,)}
    assert len(rs.version) == 12


def test_one_rule_at_top_level_and_nested_folders(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        {
            "sources.yml": SOURCE,
            "team/a/rule.yaml": """
            id: lonely
            source: shop
            steps:
              - {id: s, action: emit, with: {source: shop, body: {}}}
            """,
            "team/a/rule.test.yaml": "not: [a rule file",
        },
    )
    assert list(rs.rules) == ["lonely"]
    assert rs.rules["lonely"].location.endswith("team/a/rule.yaml:1:1")


@pytest.mark.parametrize(
    ("rule_yaml", "expected"),
    [
        (
            "    filter: body.total >>> 3\n    steps: [{id: s, action: emit, with: {source: shop}}]\n",
            "r.yaml:7:13: rules[0].filter: invalid JMESPath",
        ),
        (
            "    steps:\n      - id: s\n        action: carrier-pigeon\n",
            "r.yaml:9:17: rules[0].steps[0].action: unknown action 'carrier-pigeon'; use one of: email, emit, "
            "http, slack",
        ),
        (
            "    steps:\n      - id: s\n        action: http\n        with:\n          url: not a url\n",
            "r.yaml:11:16: rules[0].steps[0].with.url: not a valid URL",
        ),
        (
            "    steps:\n      - id: s\n        action: http\n        with:\n          url: https://x.test\n"
            "          colour: red\n",
            "r.yaml:12:19: rules[0].steps[0].with.colour: unknown field; allowed: body, headers, json, method, query, "
            "success, timeout, url",
        ),
        (
            "    steps:\n      - id: s\n        action: http\n        with:\n"
            "          url: https://x.test/{{ body.id\n",
            "r.yaml:11:16: rules[0].steps[0].with.url: invalid template: unexpected end of template",
        ),
        (  # templates compile on first use, but an unknown filter or test is still refused at load
            "    steps:\n      - id: s\n        action: http\n        with:\n"
            "          url: https://x.test/{{ body.id | nosuch }}\n",
            "r.yaml:11:16: rules[0].steps[0].with.url: invalid template: No filter named 'nosuch'.",
        ),
        (
            "    steps:\n      - id: s\n        action: http\n        with:\n"
            "          json: {n: '{{ body.id is nosuch }}'}\n",
            "r.yaml:11:21: rules[0].steps[0].with.json.n: invalid template: No test named 'nosuch'.",
        ),
        (
            "    steps:\n      - id: s\n        action: http\n        with:\n"
            "          url: https://x.test/{{ steps.nope.body }}\n",
            "r.yaml:11:16: rules[0].steps[0].with.url: reads steps.nope, but no earlier step has that id",
        ),
        ("    stepz: []\n", "r.yaml:7:12: rules[0].stepz: unknown field; allowed: description, enabled, filter, id,"),
        ("    enabled: true\n", "r.yaml:5:5: rules[0].steps: required field is missing"),
        (
            "    steps:\n      - id: s\n        action: email\n        with: {subject: hi, text: yo}\n",
            "r.yaml:10:15: rules[0].steps[0].with.to: required field is missing",
        ),
        (
            "    steps:\n      - {id: s, action: emit, with: {source: nowhere}}\n",
            "r.yaml:8:46: rules[0].steps[0].with.source: unknown source 'nowhere' to emit into",
        ),
    ],
)
def test_rule_mistakes_name_file_line_column_and_path(tmp_path: Path, rule_yaml: str, expected: str) -> None:
    text = SOURCE.lstrip("\n") + "rules:\n  - id: r1\n    source: shop\n" + rule_yaml
    found = errors(tmp_path, {"r.yaml": text})
    assert any(e.startswith(expected) for e in found), found


def test_later_step_reference_is_allowed_only_to_earlier_steps(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        {
            "r.yaml": SOURCE
            + """
rules:
  - id: r1
    source: shop
    steps:
      - id: first
        action: http
        with: {url: "https://x.test/{{ steps.second.body.id }}"}
      - id: second
        action: http
        with: {url: "https://x.test/{{ steps.first.body.id }}"}
"""
        },
    )
    assert found == [
        "r.yaml:11:21: rules[0].steps[0].with.url: reads steps.second, but no earlier step has that id "
        "(this is the first step)"
    ]


def test_unknown_source_and_duplicate_ids_across_files(tmp_path: Path) -> None:
    rule = "rules:\n  - id: same\n    source: {src}\n    steps: [{{id: s, action: emit, with: {{source: shop}}}}]\n"
    found = errors(
        tmp_path,
        {
            "a.yaml": SOURCE + rule.format(src="shop"),
            "b.yaml": rule.format(src="shop"),
            "c.yaml": SOURCE + rule.format(src="ghost").replace("same", "other"),
        },
    )
    assert "b.yaml:2:9: rules[0].id: rule id 'same' is already defined at a.yaml:5:5" in found
    assert "c.yaml:2:9: sources[0].id: source id 'shop' is already defined at a.yaml:2:5" in found
    assert "c.yaml:6:13: rules[0].source: unknown source 'ghost'; defined sources: shop" in found


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    assert errors(tmp_path, {"bad.yaml": "sources:\n  - id: [unclosed\n"})[0].startswith("bad.yaml:3:1: invalid YAML")
    dup = errors(tmp_path, {"bad.yaml": "sources:\n  - id: a\n    id: b\n"})
    assert dup[0].startswith("bad.yaml:3:5: invalid YAML: while constructing a mapping")
    assert "duplicate key" in dup[0]


def test_yaml_tags_never_run_code(tmp_path: Path) -> None:
    found = errors(tmp_path, {"evil.yaml": "sources: !!python/object/apply:os.system ['touch pwned']\n"})
    assert found == [
        "evil.yaml:1:10: YAML tags such as !!python/object/apply:os.system are not allowed in rule "
        "files; remove the tag"
    ]
    assert not Path("pwned").exists()


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    files = {"s.yaml": "sources:\n  - id: gh\n    verify: {scheme: github, secret: '${GH_SECRET}'}\n"}
    assert errors(tmp_path, files) == [
        "s.yaml:3:38: sources[0].verify.secret: environment variable GH_SECRET is not set; export it or write "
        "${GH_SECRET:-default}"
    ]
    rs = load_ruleset(tmp_path, env={"GH_SECRET": "s3cret", "ROUTER_SECRET_TOKEN": "t0ken", "HOME": "/root"})
    verify = rs.sources["gh"].verify
    assert verify is not None
    assert verify.secret == "s3cret"
    assert rs.secrets == {"TOKEN": "t0ken"}
    assert rs.sources["gh"].dedupe is not None
    assert rs.sources["gh"].dedupe.source == 'headers."x-github-delivery"'


def test_default_secret_loads_with_a_warning(tmp_path: Path) -> None:
    rs = load(tmp_path, {"s.yaml": "sources:\n  - id: gh\n    verify: {scheme: github, secret: '${GH:-dev}'}\n"})
    assert rs.sources["gh"].verify is not None
    assert rs.sources["gh"].verify.secret == "dev"
    assert rs.warnings[0].endswith("set the environment variable GH before exposing it")


@pytest.mark.parametrize(
    ("verify", "expected"),
    [
        ("{scheme: rot13, secret: x}", "sources[0].verify.scheme: unknown scheme 'rot13'; use one of:"),
        ("{scheme: github}", "sources[0].verify: scheme 'github' needs a secret"),
        ("{scheme: hmac, secret: x}", "sources[0].verify: scheme 'hmac' needs `header`"),
        ("{scheme: standard, secret: 'whsec_!!!'}", "sources[0].verify.secret:"),
    ],
)
def test_source_mistakes(tmp_path: Path, verify: str, expected: str) -> None:
    found = errors(tmp_path, {"s.yaml": f"sources:\n  - id: x\n    verify: {verify}\n"})
    assert any(expected in e for e in found), found


def test_dedupe_defaults_and_off(tmp_path: Path) -> None:
    rs = load(
        tmp_path,
        {
            "s.yaml": """
            sources:
              - {id: a, verify: {scheme: stripe, secret: x}}
              - {id: b, verify: {scheme: stripe, secret: x}, dedupe: false}
              - {id: c, dedupe: body.delivery}
              - {id: d, verify: {scheme: slack, secret: x}}
            """
        },
    )
    assert rs.sources["a"].dedupe is not None
    assert rs.sources["a"].dedupe.source == "body.id"
    assert rs.sources["b"].dedupe is None
    assert rs.sources["c"].dedupe is not None
    assert rs.sources["c"].dedupe.source == "body.delivery"
    assert rs.sources["d"].dedupe is None


def test_bad_slug_and_missing_folder(tmp_path: Path) -> None:
    found = errors(tmp_path, {"s.yaml": "sources:\n  - id: Not A Slug\n"})
    assert found == [
        "s.yaml:2:9: sources[0].id: must be a slug: lower-case letters, digits, '-' and '_', "
        "starting with a letter or digit"
    ]
    with pytest.raises(RuleSetError, match="does not exist; set ROUTER_RULES_DIR"):
        load_ruleset(tmp_path / "nope")
