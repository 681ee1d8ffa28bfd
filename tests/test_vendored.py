"""Vendored static files are the bytes web/static/VENDORED.md says they are."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"
VENDORED = STATIC / "VENDORED.md"


def recorded(field: str, section: str = "htmx.min.js") -> str:
    """A value from a file's table in VENDORED.md: the first `backticked` word, or the text, of its row."""
    text = VENDORED.read_text(encoding="utf-8").split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in text.splitlines() if line.startswith(f"| {field} |"))
    cell = row.split("|")[2].strip()
    quoted = re.search(r"`([^`]+)`", cell)
    return quoted.group(1) if quoted else cell


@pytest.mark.parametrize("name", ["htmx.min.js", "redoc.standalone.js"])
def test_vendored_file_matches_the_recorded_sha256(name: str) -> None:
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()
    expected = recorded(f"sha256 of `{name}`", name)
    assert re.fullmatch(r"[0-9a-f]{64}", expected)
    assert digest == expected


def test_htmx_is_the_recorded_2_0_release() -> None:
    text = (STATIC / "htmx.min.js").read_text(encoding="utf-8")
    found = re.findall(r'version:"([^"]+)"', text)
    assert len(found) == 1
    assert found[0].startswith("2.0.")
    assert recorded("version").split()[0] == found[0]
    assert recorded("source URL").endswith(f"/htmx.org-{found[0]}.tgz")


def test_redoc_is_the_recorded_release_with_its_licence() -> None:
    version = recorded("version", "redoc.standalone.js").split()[0]
    assert recorded("source URL", "redoc.standalone.js").endswith(f"/redoc-{version}.tgz")
    assert (STATIC / "redoc.standalone.js.LICENSE.txt").read_text(encoding="utf-8").strip()
    assert "cdn.redoc.ly/redoc/logo-mini.svg" in (STATIC / "redoc.standalone.js").read_text(encoding="utf-8"), (
        "schema.js blanks this CDN logo; check the new release still needs that"
    )
