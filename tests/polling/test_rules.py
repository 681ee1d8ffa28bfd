"""The rule-file side of polling: poll, reconcile and schedule blocks load, or fail as file:line:col; timing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from router.errors import IngestError, RuleSetError
from router.pipeline.ingest import Incoming, accept
from router.polling.compile import CompiledPoll, CompiledSchedule, effective_spec
from router.polling.spec import PollSpec
from router.polling.timing import Cron, Every, after_failure, after_success, ticks_between
from router.rules.ruleset import load_ruleset
from tests.conftest import write_rules

CONTRACT = """
sources:
  - id: shop-orders
    poll:
      url: "https://shop.example.com/api/orders"
      every: 30s
      method: GET
      headers: {Authorization: "Bearer {{ secrets.SHOP_TOKEN }}"}
      query: {updated_since: "{{ cursor | default('1970-01-01T00:00:00Z') }}"}
      items: body.orders
      id: id
      cursor: max_by(body.orders, &updated_at).updated_at
      next: body.next_page
      max_pages: 20
  - id: stripe
    verify: {scheme: stripe, secret: "${STRIPE_WEBHOOK_SECRET:-whsec_test}"}
    dedupe: body.id
    reconcile:
      url: "https://api.stripe.com/v1/events"
      every: 1h
      headers: {Authorization: "Bearer {{ secrets.STRIPE_KEY }}"}
      query: {"created[gte]": "{{ cursor | default(0) }}"}
      items: body.data
      id: id
      cursor: max_by(body.data, &created).created
      next: "body.has_more && {starting_after: body.data[-1].id}"
  - id: weekday-morning
    schedule: {cron: "0 9 * * 1-5", timezone: Europe/Berlin}
"""


def test_the_issues_contract_loads(tmp_path: Path) -> None:
    rs = load_ruleset(write_rules(tmp_path, {"pull.yaml": CONTRACT}), env={})
    shop, stripe, clock = rs.sources["shop-orders"], rs.sources["stripe"], rs.sources["weekday-morning"]
    assert (shop.kind, stripe.kind, clock.kind) == ("poll", "reconcile", "schedule")
    assert isinstance(shop.pull, CompiledPoll)
    assert shop.pull.timing == Every(30.0)
    assert shop.pull.max_pages == 20
    assert shop.pull.items.source == "body.orders"
    assert isinstance(stripe.pull, CompiledPoll)
    assert stripe.verify is not None  # still a webhook source
    assert stripe.takes_webhooks
    assert not shop.takes_webhooks
    assert not clock.takes_webhooks
    assert isinstance(clock.pull, CompiledSchedule)
    assert clock.pull.timing == Cron("0 9 * * 1-5", "Europe/Berlin")


BAD = [
    (
        "sources:\n  - id: a\n    poll: {url: 'https://x.test/a', items: body, id: id}\n",
        "pull.yaml:3:11: sources[0].poll: give `every` (e.g. 30s) or `cron`",
    ),
    (
        "sources:\n  - id: a\n    poll: {url: 'https://x.test/a', every: 1m, items: 'body.[[', id: id}\n",
        "pull.yaml:3:55: sources[0].poll.items: invalid JMESPath",
    ),
    (
        "sources:\n  - id: a\n    poll:\n      url: 'https://x.test/a'\n      every: 1m\n"
        "      items: body\n      id: id\n"
        "      query: {since: '{{ cursor | default(0'}\n",
        "pull.yaml:8:22: sources[0].poll.query.since: invalid template",
    ),
    (
        "sources:\n  - id: a\n    poll:\n      url: 'https://x.test/a'\n      every: 1m\n"
        "      items: body\n      id: id\n"
        "      headers: {x-id: '{{ body.id }}'}\n",
        "pull.yaml:8:23: sources[0].poll.headers.x-id: this template reads body, which a poll does not have",
    ),
    (
        "sources:\n  - id: a\n    poll: {url: 'https://x.test/a', cron: '*/5 * * *', items: body, id: id}\n",
        "pull.yaml:3:43: sources[0].poll.cron: '*/5 * * *' is not a cron expression: write five fields",
    ),
    (
        "sources:\n  - id: a\n    schedule: {cron: '0 9 * * *', timezone: Europe/Nowhere}\n",
        "pull.yaml:3:45: sources[0].schedule.timezone: unknown time zone 'Europe/Nowhere'",
    ),
    (
        "sources:\n  - id: a\n    poll: {url: 'https://x.test/a', every: 1m, id: id}\n",
        "sources[0].poll.items: required field is missing: JMESPath giving the items",
    ),
    (
        "sources:\n  - id: a\n    poll: {url: 'https://x.test/a', every: 1m, items: body, id: id, pages: 3}\n",
        "sources[0].poll.pages: unknown field; allowed: cron, cursor, etag, every",
    ),
    (
        "sources:\n  - id: a\n    verify: {scheme: none}\n"
        "    poll: {url: 'https://x.test/a', every: 1m, items: body, id: id}\n",
        "pull.yaml:3:13: sources[0].verify: a polled source takes no `verify`: it has no webhook URL",
    ),
    (
        "sources:\n  - id: a\n    verify: {scheme: none}\n"
        "    reconcile: {url: 'https://x.test/a', every: 1h, items: body, id: id}\n",
        "sources[0].reconcile: reconcile skips the items whose webhook was received by comparing `id`",
    ),
    (
        "sources:\n  - id: a\n    schedule: {every: 1h}\n"
        "    poll: {url: 'https://x.test/a', every: 1m, items: body, id: id}\n",
        "a source has one of poll, reconcile and schedule; this one has poll and schedule",
    ),
    (
        "sources:\n  - id: a\n    poll: {preset: github-events, every: 1m}\n",
        "sources[0].poll.url: required field is missing: the URL to poll, e.g. https://api.github.com/repos/OWNER/REPO",
    ),
    (
        "sources:\n  - id: a\n    poll: {url: 'ftp://x.test/a', every: 1m, items: body, id: id}\n",
        "sources[0].poll.url: 'ftp://x.test/a' is not an http(s) URL",
    ),
    (
        "sources:\n  - id: a\n    schedule: {every: 500ms}\n",
        "sources[0].schedule.every: '500ms' is too often: poll at most once a second",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[b[1].split(": ", 2)[-1][:40] for b in BAD])
def test_bad_blocks_fail_with_file_line_col(
    tmp_path: Path, text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_rules(tmp_path, {"pull.yaml": text})
    with pytest.raises(RuleSetError) as caught:
        load_ruleset(tmp_path, env={})
    lines = [str(e) for e in caught.value.errors]
    assert any(expected in line for line in lines), lines


def test_a_polled_or_scheduled_source_has_no_webhook_url(tmp_path: Path) -> None:
    rs = load_ruleset(write_rules(tmp_path, {"pull.yaml": CONTRACT}), env={})
    for source in ("shop-orders", "weekday-morning"):
        with pytest.raises(IngestError) as caught:
            accept(rs, Incoming(source, "POST", f"/hooks/{source}", {}, {}, b"{}"))
        assert caught.value.status == 404
        assert "has no webhook URL" in caught.value.detail


def test_presets_fill_in_and_the_block_overrides() -> None:
    spec = PollSpec.model_validate(
        {
            "preset": "github-events",
            "url": "https://api.github.com/repos/o/r/events",
            "every": "1m",
            "headers": {"Authorization": "Bearer x"},
            "query": {"per_page": "30"},
        }
    )
    eff = effective_spec(spec)
    assert eff["headers"] == {
        "accept": "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
        "authorization": "Bearer x",
    }
    assert eff["query"] == {"per_page": "30"}
    assert (eff["items"], eff["id"], eff["next"]) == ("body", "id", "link")
    assert eff["stop_at_seen"] is eff["etag"] is True


def test_cron_in_a_time_zone_across_daylight_saving() -> None:
    berlin = Cron("0 9 * * *", "Europe/Berlin")
    before = datetime(2026, 3, 28, 9, 0, tzinfo=UTC)
    first = berlin.next_after(before)
    assert first == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # CEST from 29 March: 09:00 is 07:00 UTC
    assert berlin.next_after(datetime(2026, 3, 27, 8, 0, tzinfo=UTC)) == datetime(2026, 3, 28, 8, 0, tzinfo=UTC)
    ticks, total = ticks_between(
        berlin, datetime(2026, 3, 27, 0, 0, tzinfo=UTC), datetime(2026, 3, 30, 0, 0, tzinfo=UTC), 10
    )
    assert total == 3
    assert [t.hour for t in ticks] == [8, 8, 7]


def test_every_ticks_on_whole_multiples_of_its_interval() -> None:
    assert Every(3600.0).next_after(datetime(2026, 5, 4, 10, 17, 3, tzinfo=UTC)) == datetime(2026, 5, 4, 11, tzinfo=UTC)
    assert Every(30.0).next_after(datetime(2026, 5, 4, 10, 17, 30, tzinfo=UTC)) == datetime(
        2026, 5, 4, 10, 18, tzinfo=UTC
    )
    ticks, total = ticks_between(
        Every(60.0), datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC), datetime(2026, 5, 4, 10, 3, tzinfo=UTC), 5
    )
    assert total == 3
    assert [t.minute for t in ticks] == [1, 2, 3]


def test_every_ticks_and_a_long_gap_keeps_only_the_newest() -> None:
    every = Every(60.0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks, total = ticks_between(every, start, start + timedelta(days=30), 1)
    assert total == 30 * 24 * 60
    assert ticks == [start + timedelta(days=30)]


def test_backoff_doubles_up_to_an_hour_and_retry_after_is_a_floor() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    every = Every(30.0)
    waits = [(after_failure(every, now, n) - now).total_seconds() for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert (after_failure(every, now, 1, retry_after=90) - now).total_seconds() == 90
    assert (after_failure(Every(7200.0), now, 5) - now).total_seconds() == 7200  # an interval over an hour stays
    assert after_success(every, now, now + timedelta(seconds=5)) == now + timedelta(seconds=30)
    cron = Cron("*/5 * * * *")
    assert after_failure(cron, now, 3) == now + timedelta(minutes=20)


def test_router_check_reports_poll_problems_as_file_line_col(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from router.cli.commands import main

    monkeypatch.chdir(tmp_path)
    write_rules(tmp_path / "rules", {"pull.yaml": CONTRACT})
    ok = CliRunner().invoke(main, ["check", "rules"])
    assert ok.exit_code == 0, ok.output
    assert "ok: 3 source(s), 0 rule(s) in 1 file(s)" in ok.output
    broken = CONTRACT.replace("items: body.orders", "items: body.orders[?")
    write_rules(tmp_path / "rules", {"pull.yaml": broken})
    result = CliRunner().invoke(main, ["check", "rules"])
    assert result.exit_code == 1
    assert "rules/pull.yaml:9:14: sources[0].poll.items: invalid JMESPath" in result.output
