"""``router test``: rule tests in git, run with no network, Redis or database; failures as file:line:col."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from router.cli.commands import main
from tests.conftest import REPO, write_rules
from tests.helpers import github_signature

RULES = """
sources:
  - id: shop
    verify: {scheme: github, secret: "${SHOP_SECRET:-shop-dev-secret}"}
rules:
  - id: big-order
    source: shop
    filter: body.total > `100` && body.currency == 'usd'
    steps:
      - id: customer
        action: http
        with:
          method: GET
          url: "https://api.example.test/customers/{{ body.customer_id }}"
          query: {expand: orders}
          headers: {Authorization: "Bearer {{ secrets.API_TOKEN }}"}
      - id: notify
        action: http
        when: steps.customer.body.vip
        with:
          url: https://hooks.example.test/vip
          json:
            total: "{{ body.total }}"
            name: "{{ steps.customer.body.name }}"
      - id: mail
        action: email
        with:
          to: "{{ steps.customer.body.email }}"
          subject: "Order of {{ body.total }}"
          text: "Thanks, {{ steps.customer.body.name }}!"
  - id: any-order
    source: shop
    steps:
      - {id: log, action: emit, with: {source: shop, body: {seen: "{{ body.total }}"}}}
"""

PASSING = """
secrets: {API_TOKEN: tok-1}
cases:
  - name: a VIP's big order notifies
    source: shop
    body_file: order.json
    matches: [big-order, any-order]
    rule: big-order
    steps:
      customer:
        method: get
        url: https://api.example.test/customers/c1?expand=orders
        query: {expand: orders}
        headers: {authorization: Bearer tok-1}
        response: {status: 200, body: {vip: true, name: Ada, email: ada@example.com}}
      notify:
        json: {total: 150, name: Ada}
      mail:
        with: {to: ada@example.com, subject: Order of 150}
  - name: a regular customer's order skips the notification
    source: shop
    body: {total: 150, currency: usd, customer_id: c2}
    rule: big-order
    steps:
      customer:
        response: {body: {vip: false, name: Bob, email: bob@example.com}}
      notify: {skipped: true}
      mail:
        with: {text: "Thanks, Bob!"}
  - name: small orders only reach the catch-all rule
    source: shop
    body: {total: 50, currency: usd}
    matches: [any-order]
    not_matches: [big-order]
    steps:
      log:
        with: {source: shop, body: {seen: 50}}
"""


def folder(tmp_path: Path, tests: str, rules: str = RULES) -> Path:
    root = write_rules(tmp_path / "rules", {"shop.yaml": rules, "shop.test.yaml": tests})
    (root / "order.json").write_text(json.dumps({"total": 150, "currency": "usd", "customer_id": "c1"}))
    return root


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["test", str(root), *args])


def test_passing_cases(tmp_path: Path) -> None:
    result = run(folder(tmp_path, PASSING), "-v")
    assert result.exit_code == 0, result.output
    assert "3 passed, 0 failed in 1 file(s)" in result.output
    assert "ok   " in result.output


def test_failures_show_expected_rendered_and_the_template(tmp_path: Path) -> None:
    wrong = PASSING.replace("json: {total: 150, name: Ada}", "json: {total: '150', name: Bea, extra: 1}")
    result = run(folder(tmp_path, wrong))
    assert result.exit_code == 1
    out = result.output.replace(str(tmp_path) + "/", "")
    assert "FAIL rules/shop.test.yaml:3:5: a VIP's big order notifies" in out
    assert 'rules/shop.test.yaml:16:23: cases[0].steps.notify.json.total: expected "150", rendered 150' in out
    assert "template at rules/shop.yaml:22:20: {{ body.total }}" in out
    assert 'cases[0].steps.notify.json.name: expected "Bea", rendered "Ada"' in out
    assert "template at rules/shop.yaml:23:19: {{ steps.customer.body.name }}" in out
    assert "cases[0].steps.notify.json.extra: expected 1, but it is not there" in out
    assert "2 passed, 1 failed in 1 file(s)" in out


def test_multiline_strings_get_a_unified_diff(tmp_path: Path) -> None:
    rules = RULES.replace(
        'text: "Thanks, {{ steps.customer.body.name }}!"', 'text: "Hi\\n{{ steps.customer.body.name }}\\nbye"'
    )
    tests = PASSING.replace('with: {text: "Thanks, Bob!"}', 'with: {text: "Hi\\nRob\\nbye"}')
    out = run(folder(tmp_path, tests, rules)).output
    assert "      -Rob" in out
    assert "      +Bob" in out


def test_match_expectations(tmp_path: Path) -> None:
    tests = """
    cases:
      - name: wrong
        source: shop
        body: {total: 50, currency: usd}
        matches: [big-order, ghost]
        not_matches: [any-order]
      - name: none
        source: shop
        body: {total: 50}
        matches: []
    """
    out = run(folder(tmp_path, tests)).output
    assert "cases[0].matches[0]: rule 'big-order' did not match (filter at " in out
    assert "is false: body.total > `100` && body.currency == 'usd'); matched: any-order" in out
    assert "cases[0].matches[1]: unknown rule 'ghost'" in out
    assert "cases[0].not_matches[0]: rule 'any-order' matched" in out
    assert "cases[1].matches: expected no rule to match; matched: any-order" in out


def test_step_expectations_that_cannot_hold(tmp_path: Path) -> None:
    tests = """
    secrets: {API_TOKEN: t}
    cases:
      - name: skipped wrongly
        source: shop
        body: {total: 150, currency: usd, customer_id: c1}
        rule: big-order
        steps:
          customer: {skipped: true, response: {body: {vip: false, name: A, email: a@example.com}}}
          notify: {url: https://hooks.example.test/vip}
          mail: {method: POST}
          nope: {skipped: true}
      - name: no recorded answer
        source: shop
        body: {total: 150, currency: usd, customer_id: c1}
        rule: big-order
        steps:
          notify: {skipped: true}
    """
    out = run(folder(tmp_path, tests)).output
    assert "cases[0].steps.customer.skipped: expected the step to be skipped, but it ran: it has no `when`" in out
    assert "cases[0].steps.notify: skipped: its when (steps.customer.body.vip) at rules/shop.yaml" in out.replace(
        str(tmp_path) + "/", ""
    )
    assert "cases[0].steps.mail: a 'email' step sends no HTTP request; check its settings with `with:`" in out
    assert "cases[0].steps.nope: rule 'big-order' has no step 'nope'" in out
    # notify is skipped (no answer, so no vip), then mail cannot render: the hint names the missing response.
    assert "cases[1].steps: " not in out
    assert "steps.mail: did not render:" in out
    assert "reads steps.customer, which has no recorded `response` in this case" in out


def test_expected_render_error(tmp_path: Path) -> None:
    tests = """
    secrets: {API_TOKEN: t}
    cases:
      - name: the mail step needs the customer's address
        source: shop
        body: {total: 150, currency: usd, customer_id: c1}
        rule: big-order
        steps:
          customer: {response: {body: {vip: false, name: A}}}
          mail: {error: "has no field `steps.customer.body.email`"}
    """
    result = run(folder(tmp_path, tests))
    assert result.exit_code == 0, result.output


def test_signatures_are_checked_only_when_asked(tmp_path: Path) -> None:
    raw = (tmp_path / "order.json").read_bytes() if (tmp_path / "order.json").exists() else None
    assert raw is None
    root = folder(tmp_path, PASSING)
    raw = (root / "order.json").read_bytes()
    good = github_signature(raw, "shop-dev-secret")
    tests = f"""
    cases:
      - name: signed
        source: shop
        verify: true
        headers: {{X-Hub-Signature-256: "{good}"}}
        body_file: order.json
        matches: [big-order]
      - name: badly signed
        source: shop
        verify: true
        headers: {{X-Hub-Signature-256: "sha256={"0" * 64}"}}
        body_file: order.json
      - name: unsigned, not verified
        source: shop
        body_file: order.json
        matches: [big-order]
    """
    (root / "shop.test.yaml").write_text(tests)
    out = run(root).output
    assert "cases[1].verify: signature does not verify (github)" in out
    assert "2 passed, 1 failed" in out


@pytest.mark.parametrize(
    ("tests", "expected"),
    [
        ("cases: []\n", "shop.test.yaml:1:8: cases: needs at least 1 item(s)"),
        (
            "cases:\n  - name: x\n    source: shop\n    colour: red\n",
            "shop.test.yaml:4:13: cases[0].colour: unknown field",
        ),
        (
            "cases:\n  - name: x\n    source: shop\n    steps: {a: {respons: {}}}\n",
            "shop.test.yaml:4:26: cases[0].steps.a.respons: unknown field; allowed: body, error, headers, json",
        ),
        ("cases:\n  - {name: x, source: nowhere}\n", "shop.test.yaml:2:23: cases[0].source: unknown source 'nowhere'"),
        ("cases:\n  - {name: x, source: shop, body_file: no.json}\n", "cases[0].body_file: no such file: "),
        ("cases: [\n", "shop.test.yaml:2:1: invalid YAML"),
        (
            "cases:\n  - name: x\n    source: shop\n    body: {total: 500, currency: usd}\n    steps: {log: {}}\n",
            "cases[0].steps: say which rule's steps these are: `rule: <id>`",
        ),
        (
            "cases:\n  - name: x\n    source: shop\n    body: '{'\n    headers: {content-type: application/json}\n",
            "cases[0].body: Body is not valid JSON",
        ),
    ],
)
def test_mistakes_in_test_files_are_located(tmp_path: Path, tests: str, expected: str) -> None:
    result = run(folder(tmp_path, tests))
    assert result.exit_code == 1
    assert expected in result.output.replace(str(tmp_path) + "/", "")


def test_broken_rules_fail_before_any_test(tmp_path: Path) -> None:
    result = run(folder(tmp_path, PASSING, RULES.replace("body.total > `100`", "body.total >>> 1")))
    assert result.exit_code == 1
    assert "rules[0].filter: invalid JMESPath" in result.output
    assert "1 problem(s) in the rule files" in result.output


def test_json_output(tmp_path: Path) -> None:
    result = run(
        folder(tmp_path, PASSING.replace("total: 150, name: Ada", "total: 151, name: Ada")), "--format", "json"
    )
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ok"] is False
    assert [len(c["failures"]) for c in data["cases"]] == [1, 0, 0]
    assert "cases[0].steps.notify.json.total: expected 151, rendered 150" in data["cases"][0]["failures"][0]


def test_a_folder_without_tests(tmp_path: Path) -> None:
    root = write_rules(tmp_path / "rules", {"shop.yaml": RULES})
    result = run(root)
    assert result.exit_code == 0
    assert "no rule tests (*.test.yaml) in" in result.output


def test_shipped_examples_pass_with_no_redis_database_or_network(tmp_path: Path) -> None:
    """The CLI as a user's CI runs it: services pointed at closed ports, no secret set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUTER_", "GITHUB_", "STRIPE_", "FORMS_"))}
    env |= {"ROUTER_REDIS_URL": "redis://127.0.0.1:9/0", "ROUTER_DATABASE_URL": "postgresql+asyncpg://127.0.0.1:9/x"}
    env |= {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "router", "test", "rules/", "-v"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("github", "stripe", "forms"):
        assert f"ok   rules/{name}.test.yaml:" in done.stdout
    assert " 0 failed in 3 file(s)" in done.stdout


def test_every_shipped_rule_file_has_tests() -> None:
    rules = sorted(p.stem for p in (REPO / "rules").glob("*.yaml") if not p.name.endswith(".test.yaml"))
    tests = sorted(p.name.removesuffix(".test.yaml") for p in (REPO / "rules").glob("*.test.yaml"))
    assert rules == tests


def test_the_worked_example_in_docs_runs_as_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    text = (REPO / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```yaml\n# file: (\S+)\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    consoles = re.findall(r"^```console\n\$ (router test[^\n]*)\n(.*?)^```$", text, re.DOTALL | re.MULTILINE)
    assert [name for name, _ in blocks] == ["rules/orders.yaml", "rules/orders.test.yaml"]
    assert len(consoles) == 2
    for name, body in blocks:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# file: {name}\n{body}")
    monkeypatch.chdir(tmp_path)
    for i, (command, expected) in enumerate(consoles):
        if i == 1:  # the edit the page describes
            rule = tmp_path / "rules/orders.yaml"
            rule.write_text(rule.read_text().replace("{{ body.total }} USD", "{{ body.total }} {{ body.currency }}"))
        result = CliRunner().invoke(main, command.split()[1:])
        assert result.output == expected, result.output
        assert result.exit_code == i
