"""The router's own public URL (``ROUTER_PUBLIC_URL``): where it can be reached, for rules and for the CLI.

Templates read it as ``{{ router.public_url }}`` (the example rules deliver to ``<it>/inbox/<name>``).
``router dev`` and ``router serve`` set it to the address they serve on when it is not set, so their
worker and web processes agree; a separate ``router worker`` reads it from its environment (default
``http://127.0.0.1:8000``). ``router dev`` also leaves a note of its address in its data folder, so that
``router send`` finds the running dev server without being told the port.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "ROUTER_PUBLIC_URL"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
DEV_NOTE = "dev-server.json"


def public_url() -> str:
    """The URL in force: ``ROUTER_PUBLIC_URL``, else the default address, without a trailing slash."""
    return (os.environ.get(ENV) or DEFAULT).rstrip("/")


def serving_url(host: str, port: int) -> str:
    """The URL a server bound to ``host:port`` is reached at from this machine (0.0.0.0 and :: are loopback)."""
    shown = {"0.0.0.0": DEFAULT_HOST, "::": "[::1]", "": DEFAULT_HOST}.get(host, host)
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def adopt(host: str, port: int) -> str:
    """Set ``ROUTER_PUBLIC_URL`` to the serving address unless it is set already; return the URL in force."""
    if not os.environ.get(ENV):
        os.environ[ENV] = serving_url(host, port)
    return public_url()


def write_dev_note(data_dir: Path, url: str) -> Path:
    """Record that a dev server of this process serves ``url`` (read by ``find_dev_server``)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    note = data_dir / DEV_NOTE
    note.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    return note


def remove_dev_note(note: Path) -> None:
    try:
        if json.loads(note.read_text()).get("pid") == os.getpid():
            note.unlink()
    except (OSError, ValueError):
        pass


def find_dev_server(data_dir: Path) -> str | None:
    """The URL of the dev server running from ``data_dir``, or None when none runs (a stale note is ignored)."""
    try:
        note = json.loads((data_dir / DEV_NOTE).read_text())
        pid, url = int(note["pid"]), str(note["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return url.rstrip("/")


def send_target(explicit: str | None, data_dir: Path) -> tuple[str, str]:
    """Where ``router send`` posts, and why: --url, else ROUTER_PUBLIC_URL, else the running dev server, else
    the default address."""
    if explicit:
        return explicit.rstrip("/"), "--url"
    if os.environ.get(ENV):
        return public_url(), ENV
    found = find_dev_server(data_dir)
    if found:
        return found, f"the dev server noted in {data_dir / DEV_NOTE}"
    return DEFAULT, "the default address"
