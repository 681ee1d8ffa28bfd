"""Logging: structlog for our own lines, stdlib loggers (arq, uvicorn) routed through the same level."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", json_logs: bool | None = None) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    json_logs = (not sys.stderr.isatty()) if json_logs is None else json_logs
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # arq logs every job at INFO; that is one line per delivery, too chatty by default.
    logging.getLogger("arq.worker").setLevel(max(lvl, logging.WARNING))
    # httpx/httpcore log every outgoing URL at INFO/DEBUG, and a URL may carry a secret: never below WARNING.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
