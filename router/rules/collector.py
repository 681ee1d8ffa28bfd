"""The cyclic garbage collector, paused while a rule set is compiled.

Compiling a rule set allocates about a million long-lived objects (10,000 rules). Every object that
survives makes CPython's collector run again, and each full collection walks the whole heap and stops
every thread of the process: loading 10,000 rules took 6.9 s, of which 4.9 s were collections (eleven
full ones, up to 1.0 s each), during which ingest answered nothing. Paused, the same load takes 1.8 s.

Nothing collectable is made while compiling (the objects are kept), so pausing loses nothing;
reference counting still frees what is dropped. Pauses nest and may come from several threads: the
collector runs again when the last one ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = True


@contextmanager
def paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (process-wide); restore it when the last pause ends."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
