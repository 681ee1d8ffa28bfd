"""Field checks the actions share: URLs and header-safe strings."""

from __future__ import annotations

from typing import Any

import httpx

_FORBIDDEN = ("\r", "\n", "\0")


def check_url(value: str) -> str:
    """An absolute http(s) URL with a host."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("not a valid URL: use an absolute http:// or https:// URL")
    return value


def check_header_text(value: str, what: str = "header value") -> str:
    if any(c in value for c in _FORBIDDEN):
        raise ValueError(f"{what} must not contain CR, LF or NUL characters")
    return value


def header_map(value: Any) -> dict[str, str]:
    """Headers as strings (a number renders as its text); CR/LF/NUL refused."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be a mapping of header names to values")
    out: dict[str, str] = {}
    for name, raw in value.items():
        text = raw if isinstance(raw, str) else str(raw).lower() if isinstance(raw, bool) else str(raw)
        out[check_header_text(str(name), "header name")] = check_header_text(text)
    return out
