"""Helpers the test modules share that are not fixtures (those are in conftest.py).

The signatures are computed here with hmac/hashlib, not with router.signatures.sign, so the tests check
the router against an independent reading of the senders' documentation.
"""

from __future__ import annotations

import hashlib
import hmac


def hmac_hex(secret: str | bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``body`` under ``secret`` (a str is taken as UTF-8)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def github_signature(body: bytes, secret: str | bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends with ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return f"sha256={hmac_hex(secret, body)}"


def github_headers(body: bytes, secret: str, *, delivery: str = "d-1", event: str = "push") -> dict[str, str]:
    """The headers of a signed GitHub delivery of a JSON ``body``."""
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-hub-signature-256": github_signature(body, secret),
    }
