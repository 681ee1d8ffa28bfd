"""Test-only crash points: die like `kill -9` at a named place, to prove the ledger and the reconciler.

NOT A FEATURE. Never set these variables in production; they exist for tests/pipeline/test_chaos.py and
bench/chaos.py, which start real `router serve` / `router worker` processes with them.

    ROUTER_FAULT_CRASH_AT=after_commit     # the point's name (see POINTS)
    ROUTER_FAULT_CRASH_AFTER=3             # die at its 3rd hit in this process (default 1)

At that hit the process ends at once with ``os._exit(137)`` (the status a SIGKILL gives under a
shell): no `finally`, no flushing, no commit, no reply, exactly as a crash. Both variables are read
once, at import, so an unset hook costs the hot path one comparison against None.
"""

from __future__ import annotations

import os
import sys

POINTS = {
    "after_commit": "capture: the events are committed, before they are enqueued on Redis",
    "after_send": "delivery: the action returned (e.g. the sink answered 2xx), before its outcome is recorded",
    "mid_chain": "delivery: a step is recorded, before the run's next step starts",
    "poll_fetched": "polling: a poll's pages are fetched, before its events and cursor are committed",
    "poll_committed": "polling: a poll's events and cursor are committed, before their routing is queued",
}

CRASH_EXIT_CODE = 137

_AT: str | None = os.environ.get("ROUTER_FAULT_CRASH_AT") or None
_AFTER: int = max(1, int(os.environ.get("ROUTER_FAULT_CRASH_AFTER") or 1))
_hits = 0

if _AT is not None and _AT not in POINTS:
    raise RuntimeError(f"ROUTER_FAULT_CRASH_AT={_AT!r}: not a crash point; known: {', '.join(sorted(POINTS))}")


def crash_point(name: str, when: bool = True) -> None:
    """End the process like `kill -9` when ROUTER_FAULT_CRASH_AT names this point (test-only hook).

    `when=False` makes this call not count as a hit (e.g. `mid_chain` after a run's last step)."""
    if name != _AT or not when:
        return
    global _hits
    _hits += 1
    if _hits >= _AFTER:
        sys.stderr.write(f"router.faults: crash point {name!r} hit {_hits} time(s): os._exit({CRASH_EXIT_CODE})\n")
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
