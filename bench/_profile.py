"""py-spy profiles of the measured processes, summed up as a few headline lines.

``Profiler(folder)`` records each named process with ``py-spy record --format raw`` (collapsed stacks)
while a load runs, keeps the raw files in ``folder`` and reports, per profile, the functions with the
largest inclusive share of samples (frames present in nearly every sample, such as the event loop, left
out). With no folder nothing is recorded.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def _py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:]+)(?::\d+)?\)$")


class Profiler:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.files: list[tuple[str, Path]] = []
        if folder is not None:
            if _py_spy() is None:
                raise SystemExit("--profile needs py-spy: pip install py-spy")
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def record(self, label: str, procs: Mapping[str, Any], seconds: float) -> None:
        """Record every process of ``procs`` (name → Child) for ``seconds``, all at once."""
        if self.folder is None:
            return
        running = []
        for name, child in procs.items():
            if child is None:
                continue
            out = self.folder / f"{label}-{name}.txt"
            argv = [str(_py_spy()), "record", "--pid", str(child.pid), "--duration", str(int(seconds)), "--rate", "200"]
            argv += ["--format", "raw", "--output", str(out), "--nonblocking"]
            running.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.files.append((f"{label} {name}", out))
        for proc in running:
            proc.wait(seconds + 60)

    @contextlib.contextmanager
    def during(self, label: str, procs: Mapping[str, Any], seconds: float, run: int) -> Iterator[None]:
        """Record in the background while the body runs (first run of a series only)."""
        thread = None
        if self.enabled and run == 0:
            thread = threading.Thread(target=self.record, args=(label, procs, max(1, seconds - 1)), daemon=True)
            thread.start()
        try:
            yield
        finally:
            if thread is not None:
                thread.join()

    def headlines(self, top: int = 7) -> list[str]:
        lines = []
        for name, path in self.files:
            if path.exists():
                lines.append(f"{name}: {summarize(path, top)}  [{path}]")
        return lines


# Frames every sample of a thread passes through (entry points, run loops): they say nothing.
_STRUCTURAL_FILES = (
    "core.py",  # click
    "threading.py",
    "base_events.py",
    "events.py",
    "runners.py",
    "main.py",
    "server.py",
    "__main__.py",
    "<frozen runpy>",
    "cli.py",
    "worker.py",  # arq's run loop and ours
    "thread.py",
    "_compat.py",
)


def _structural(key: str) -> bool:
    return key.startswith("<module>") or any(key.endswith(f"({name})") for name in _STRUCTURAL_FILES)


def summarize(path: Path, top: int = 7) -> str:
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        seen = set()
        for frame in stack.split(";"):
            match = _FRAME.match(frame.strip())
            key = f"{match.group('func')} ({Path(match.group('file')).name})" if match else frame.strip()
            if key not in seen:
                seen.add(key)
                inclusive[key] += count
    if not total:
        return "no samples"
    picked = [(k, v) for k, v in inclusive.most_common() if v / total < 0.9 and not _structural(k)][:top]
    return "; ".join(f"{v / total:.0%} {k}" for k, v in picked)
