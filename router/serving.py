"""What `router serve` runs in each web process: logging set up for production, then the app.

uvicorn starts ``--workers N`` processes that each import ``create_served_app``; a process inherits the
environment (the settings and ``PROMETHEUS_MULTIPROC_DIR``) but not the parent's logging, so it is set up here.
"""

from __future__ import annotations

from litestar import Litestar

from router import logs
from router.app import create_app
from router.settings import get_settings


def create_served_app() -> Litestar:
    settings = get_settings()
    logs.configure(settings.log_level, logs.json_for("serve", settings.log_format))
    return create_app(settings)
