"""``/favicon.ico``: the icon browsers ask for on every page (an SVG, which browsers take at that path too)."""

from __future__ import annotations

from functools import cache

from litestar import Response, get

from router.ui.render import web_dir


@cache
def _icon() -> bytes:
    return (web_dir() / "static" / "favicon.svg").read_bytes()


@get("/favicon.ico", include_in_schema=False, opt={"public": True})
async def favicon() -> Response[bytes]:
    return Response(_icon(), media_type="image/svg+xml", headers={"cache-control": "public, max-age=86400"})


HANDLERS = [favicon]
