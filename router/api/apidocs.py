"""``/schema``: the API reference, rendered by Redoc from files served here (no CDN, no web fonts).

Redoc's standalone bundle is vendored under ``web/static`` (pinned, checksum-tested; see
``web/static/VENDORED.md``) and started by ``web/static/schema.js``: no inline script. The page keeps the
UI's Content-Security-Policy, plus a per-response nonce for the ``<style>`` elements Redoc creates
(styled-components sets the nonce Redoc is given): nothing inline is allowed that did not come from this
response. Search (a blob: web worker) is turned off, so no worker source is needed either.
"""

from __future__ import annotations

import html
import secrets
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

NONCE_KEY = "csp_style_nonce"
# Two <style> elements the pinned bundle creates as it loads, before Redoc.init can hand it the nonce: an
# empty one and one fixed stylesheet. Allowed by their hashes (CSP3); an upgrade that changes them shows up
# as a CSP violation in tests/browser/test_newcomer.py.
STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='",
)


class VendoredRedoc(OpenAPIRenderPlugin):
    """Redoc at ``/schema`` (and ``/schema/redoc``), loaded from ``/static``."""

    def __init__(self) -> None:
        super().__init__(
            path=["/", "/redoc"], favicon='<link rel="icon" href="/favicon.ico" type="image/svg+xml">', style=""
        )

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        nonce = secrets.token_urlsafe(18)
        request.scope.setdefault("state", {})[NONCE_KEY] = nonce  # read by router.access.guard.security_headers
        title = html.escape(str(openapi_schema.get("info", {}).get("title", "API")))
        return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · API reference</title>
  {self.favicon}
  <link rel="stylesheet" href="/static/schema.css">
  <script src="/static/redoc.standalone.js" defer></script>
  <script src="/static/schema.js" defer></script>
</head>
<body>
  <noscript>The API reference needs JavaScript; the raw description is at
    <a href="/schema/openapi.json">/schema/openapi.json</a>.</noscript>
  <div id="redoc" data-spec-url="/schema/openapi.json" data-nonce="{nonce}">
    <p class="loading">Loading the API reference…</p>
  </div>
</body>
</html>
""".encode()


def style_sources(scope: Any) -> str | None:
    """The extra ``style-src`` sources the API reference rendered for this request needs (its nonce and the
    bundle's fixed styles), or None for every other response."""
    state = scope.get("state") or {}
    nonce = state.get(NONCE_KEY)
    return f"'nonce-{nonce}' {' '.join(STYLE_HASHES)}" if isinstance(nonce, str) else None
