"""Vendored static files are the bytes web/static/VENDORED.md says they are."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
VENDORED = STATIC / "VENDORED.md"


def recorded(field: str) -> str:
    """A value from the htmx table in VENDORED.md: the first `backticked` word, or the text, of its row."""
    section = VENDORED.read_text(encoding="utf-8").split("## htmx.min.js", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith(f"| {field} |"))
    cell = row.split("|")[2].strip()
    quoted = re.search(r"`([^`]+)`", cell)
    return quoted.group(1) if quoted else cell


def test_htmx_matches_the_recorded_sha256() -> None:
    digest = hashlib.sha256((STATIC / "htmx.min.js").read_bytes()).hexdigest()
    expected = recorded("sha256 of `htmx.min.js`")
    assert re.fullmatch(r"[0-9a-f]{64}", expected)
    assert digest == expected


def test_htmx_is_the_recorded_2_0_release() -> None:
    text = (STATIC / "htmx.min.js").read_text(encoding="utf-8")
    found = re.findall(r'version:"([^"]+)"', text)
    assert len(found) == 1
    assert found[0].startswith("2.0.")
    assert recorded("version").split()[0] == found[0]
    assert recorded("source URL").endswith(f"/htmx.org-{found[0]}.tgz")
