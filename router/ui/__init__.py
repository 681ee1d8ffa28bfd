"""The web UI: server-rendered Jinja pages with htmx (vendored under web/static), no build step."""

from __future__ import annotations

from typing import Any

from litestar import Router

from router.ui import audit as audit_ui
from router.ui import builder as builder_ui
from router.ui import deadletters as deadletters_ui
from router.ui import events as events_ui
from router.ui import favicon, signin
from router.ui import inbox as inbox_ui
from router.ui import overview as overview_ui
from router.ui import rejections as rejections_ui
from router.ui import rules as rules_ui
from router.ui import secrets as secrets_ui
from router.ui import sources as sources_ui
from router.ui import users as users_ui
from router.ui.render import template_config, web_dir

HANDLERS: list[Any] = [signin.login_form, signin.login, signin.logout, *favicon.HANDLERS]
HANDLERS += [*users_ui.HANDLERS, *secrets_ui.HANDLERS, *audit_ui.HANDLERS]
HANDLERS += [*rules_ui.HANDLERS, *builder_ui.HANDLERS]
HANDLERS += [*overview_ui.HANDLERS, *events_ui.HANDLERS, *deadletters_ui.HANDLERS, *sources_ui.HANDLERS]
HANDLERS += [*rejections_ui.HANDLERS, *inbox_ui.HANDLERS]


def ui_router() -> Router:
    """Every UI page and fragment, kept out of the OpenAPI schema (they are HTML, not the API)."""
    return Router(path="/", route_handlers=HANDLERS, include_in_schema=False)


__all__ = ["HANDLERS", "template_config", "ui_router", "web_dir"]
