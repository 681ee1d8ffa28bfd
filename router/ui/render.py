"""Page rendering for the UI: the template environment, the page context and HTML error pages."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig
from markupsafe import Markup

import router
from router.access.auth import Principal

NAV = (
    ("overview", "/", "Overview"),
    ("events", "/events", "Events"),
    ("rules", "/rules", "Rules"),
    ("dead", "/dead-letters", "Dead letters"),
    ("rejected", "/rejections", "Rejected"),
    ("inbox", "/inboxes", "Inbox"),
    ("secrets", "/settings/secrets", "Secrets"),
    ("users", "/settings/users", "Users & tokens"),
    ("audit", "/settings/audit", "Audit log"),
)

ADMIN_PAGES = frozenset({"audit", "secrets"})  # "users" also holds everyone's own API tokens
# What a settings page says after a change: a notice, a value shown once and its label, or a form's error
# and ``error_for`` (which form it belongs to).
OUTCOME = ("notice", "shown_once", "shown_once_label", "error", "error_for")


def web_dir() -> Path:
    """``router/web`` in an installed wheel, ``web/`` beside the package in a checkout."""
    package = Path(router.__file__).parent
    packaged = package / "web"
    return packaged if packaged.is_dir() else package.parent / "web"


_TICKED = re.compile(r"`([^`\n]+)`")


def ticks(value: Any) -> Markup:
    """Text whose `backticked` parts show as code (the text escaped first), for hints and messages."""
    return Markup(_TICKED.sub(r"<code>\1</code>", str(Markup.escape(str(value)))))


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@cache
def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(web_dir() / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = _pretty
    env.filters["tojson_attr"] = lambda value: Markup.escape(json.dumps(value))
    env.filters["ticks"] = ticks
    return env


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment()))


def base_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    return {
        "me": principal,
        "csrf": principal.csrf_token if principal else "",
        "nav": [item for item in NAV if principal is None or item[0] not in ADMIN_PAGES or principal.can("admin")],
        "path": request.url.path,
    }


def page(request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any) -> Template:
    """Render a full page (or an htmx fragment) with the signed-in user, CSRF token and navigation."""
    return Template(template_name=template, context=base_context(request) | context, status_code=status)


def settings_page(request: Request[Any, Any, Any], template: str, *, status: int = 200, **context: Any) -> Template:
    """A settings page (users, tokens, secrets), never cached; each part of ``OUTCOME`` not given is empty."""
    response = page(request, template, status=status, **(dict.fromkeys(OUTCOME, "") | context))
    response.headers["cache-control"] = "no-store"
    return response


def wants_html(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/hooks/", "/inbox/", "/health", "/schema")):
        return False
    return "text/html" in request.headers.get("accept", "") or bool(request.headers.get("hx-request"))


def error_page(request: Request[Any, Any, Any], status: int, title: str, detail: str) -> Template:
    return page(request, "error.html", status=status, title=title, detail=detail)
