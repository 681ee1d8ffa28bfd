"""Field checks the actions share: URLs and header-safe strings."""

from __future__ import annotations

import functools
import re
from typing import Any

from yarl import URL

# CR, LF, NUL, and every other character str.splitlines() breaks on: a header written from a template
# must stay one line whatever later code (email folding, a proxy, a log line) treats as a line end.
_FORBIDDEN = frozenset("\r\n\0\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)


@functools.lru_cache(maxsize=8192)
def check_url(value: str) -> str:
    """An absolute http(s) URL with a host, read by the parser the outgoing client uses (yarl)."""
    try:
        url = URL(value)
        port = url.port  # an out-of-range or non-numeric port fails here
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host or port is None:
        raise ValueError("not a valid URL: use an absolute http:// or https:// URL")
    if any(c in value for c in "\\ \t\r\n"):
        raise ValueError("not a valid URL: it contains a space, a backslash or a line break")
    return value


def check_header_text(value: str, what: str = "header value") -> str:
    if not _FORBIDDEN.isdisjoint(value):
        raise ValueError(
            f"{what} must not contain CR, LF or NUL characters, nor another line break "
            "(U+000B, U+000C, U+001C-U+001E, U+0085, U+2028, U+2029)"
        )
    return value


def check_header_name(value: str) -> str:
    check_header_text(value, "header name")
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"header name {value!r} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
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
        out[check_header_name(str(name))] = check_header_text(text)
    return out
