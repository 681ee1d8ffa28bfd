"""`router test` cases for polled sources: recorded pages stand in for the API (no network)."""

from __future__ import annotations

import json
from pathlib import Path

from router.tryout.ruletest import run_folder
from tests.conftest import REPO, write_rules

RULES = """
sources:
  - id: shop
    poll:
      preset: shopify-orders
      url: https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json
      every: 1m
      headers: {x-shopify-access-token: "{{ secrets.SHOPIFY_TOKEN }}"}
rules:
  - id: big-order-to-slack
    source: shop
    filter: "to_number(body.total_price) > `100` && event.via == 'poll'"
    steps:
      - id: tell
        action: slack
        with:
          url: https://hooks.slack.com/services/T0/B0/X
          text: "Order {{ body.name }}: {{ body.total_price }} {{ body.currency }}"
"""

PAGE_1 = json.loads((REPO / "samples/shopify/orders-page-1.json").read_text())
LINK_1 = '<https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json?limit=250&page_info=abc>; rel="next"'

TESTS = f"""
secrets: {{SHOPIFY_TOKEN: shpat_test}}
cases:
  - name: two pages of orders, one already stored
    source: shop
    received_at: "2026-11-25T16:00:00+00:00"
    poll:
      cursor: "2026-11-25T00:00:00-05:00"
      stored: ["5873419731202"]
      pages:
        - headers: {{link: '{LINK_1}'}}
          body_file: {REPO}/samples/shopify/orders-page-1.json
        - body_file: {REPO}/samples/shopify/orders-page-2.json
    emits: ["5873421107458", "5873422352642", "5873423040770"]
    next_cursor: "2026-11-25T10:40:02-05:00"
    requests:
      - url: https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json
        query: {{updated_at_min: "2026-11-25T00:00:00-05:00", status: any, limit: "250"}}
        headers: {{X-Shopify-Access-Token: shpat_test}}
      - url: https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json?limit=250&page_info=abc
    item: 0
    matches: [big-order-to-slack]
    steps:
      tell:
        json: {{text: "Order #1043: {PAGE_1["orders"][1]["total_price"]} USD"}}
  - name: the first poll starts from when the source was first polled
    source: shop
    received_at: "2026-11-25T16:00:00+00:00"
    poll:
      pages:
        - body: {{orders: []}}
    emits: []
    next_cursor: null
    requests:
      - query: {{updated_at_min: "2026-11-25T16:00:00Z"}}
"""

BROKEN = """
secrets: {SHOPIFY_TOKEN: shpat_test}
cases:
  - name: wrong expectations
    source: shop
    poll:
      pages:
        - headers:
            link: '<https://event-router-demo.myshopify.com/admin/api/2025-01/orders.json?page_info=x>; rel="next"'
          body: {orders: [{id: 1, updated_at: "2026-01-01T00:00:00Z", total_price: "5.00"}]}
    emits: ["2"]
"""


def test_recorded_pages_drive_the_poll_and_its_items_the_rules(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "rules", {"shop.yaml": RULES, "shop.test.yaml": TESTS})
    output, code = run_folder(folder, verbose=True)
    assert code == 0, output
    assert "2 passed, 0 failed in 1 file(s)" in output


def test_a_wrong_expectation_or_a_missing_page_is_reported_at_file_line_col(tmp_path: Path) -> None:
    folder = write_rules(tmp_path / "rules", {"shop.yaml": RULES, "shop.test.yaml": BROKEN})
    output, code = run_folder(folder)
    assert code == 1
    assert "shop.test.yaml:6:7: cases[0].poll: the poll failed: no recorded page for request 2 (GET " in output
    assert "add a page to `poll.pages`, or make the last one end the paging" in output
    fixed = BROKEN.replace('rel="next"', 'rel="prev"')
    write_rules(folder, {"shop.test.yaml": fixed})
    output, code = run_folder(folder)
    assert code == 1
    assert 'shop.test.yaml:10:12: cases[0].emits: expected ["2"] to be emitted, the poll emits ["1"]' in output
