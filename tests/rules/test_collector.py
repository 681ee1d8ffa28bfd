"""router.rules.collector: the cyclic collector is off while a rule set compiles, and back on after."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

from router.rules import collector
from router.rules.ruleset import load_ruleset
from tests.conftest import write_rules


def test_pauses_nest_and_the_collector_comes_back() -> None:
    assert gc.isenabled()
    with collector.paused():
        assert not gc.isenabled()
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still runs
    assert gc.isenabled()


def test_a_pause_in_another_thread_keeps_the_collector_off_until_both_end() -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector.paused():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with collector.paused():
        thread.start()
        assert inside.wait(5)
    assert not gc.isenabled()  # the other thread's pause has not ended
    release.set()
    thread.join(5)
    assert gc.isenabled()


def test_loading_rules_runs_no_collection_and_leaves_the_collector_on(tmp_path: Path) -> None:
    folder = write_rules(
        tmp_path / "rules",
        {
            "shop.yaml": """
sources:
  - id: shop
rules:
"""
            + "".join(
                f"""  - id: r{i}
    source: shop
    filter: body.type == 'x.{i}'
    steps:
      - id: s
        action: http
        with: {{url: "http://127.0.0.1:9/{i}", body: "{{{{ body.id }}}}"}}
"""
                for i in range(300)
            )
        },
    )
    runs: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            runs.append(info["generation"])

    gc.collect()
    gc.callbacks.append(count)
    try:
        ruleset = load_ruleset(folder)
    finally:
        gc.callbacks.remove(count)
    assert len(ruleset.rules) == 300
    assert 2 not in runs  # no full collection (a young one may run once the pause ends)
    assert len(runs) <= 1
    assert gc.isenabled()
