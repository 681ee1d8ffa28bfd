"""Logging: one pipeline for our structlog lines and every library's stdlib logger (arq, httpx, uvicorn,
sqlalchemy), rendered as JSON lines in production or readable lines in a terminal (``router dev``).

Every line passes ``redact_secrets``: any value of a secret the process knows (``ROUTER_SECRET_*``,
secrets saved in the UI, sources' signing secrets, the SMTP password, passwords in the database and
Redis URLs) is replaced by ``[redacted]``, in our fields, in a library's message and in tracebacks.

Lines about an event carry ``event_id``, lines about a run ``rule``, ``run_id`` and ``step``: the worker
binds them with structlog's context variables (``bind``) for the job it runs.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

REDACTED = "[redacted]"
HANDLER_NAME = "router"
MIN_SECRET = 4
_secrets: set[str] = set()
_needles: tuple[str, ...] = ()

bind = structlog.contextvars.bind_contextvars
_debug = False


def debugging() -> bool:
    """Whether DEBUG lines are written: checked before the per-event lines of the hot path, so a process
    at INFO does not even build them (structlog's lazy logger would otherwise bind on every call)."""
    return _debug


def remember_secrets(values: Iterable[str | None]) -> None:
    """Add secret values to redact from now on (kept for the life of the process, so a rotated one stays hidden)."""
    global _needles
    fresh = {v for v in values if v and len(v) >= MIN_SECRET} - _secrets
    if fresh:
        _secrets.update(fresh)
        _needles = tuple(sorted(_secrets, key=len, reverse=True))  # longest first: a secret inside another


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def remember_environment(env: MutableMapping[str, str] | None = None) -> None:
    """The secrets the environment gives this process."""
    env = os.environ if env is None else env
    values: list[str | None] = [v for k, v in env.items() if k.startswith("ROUTER_SECRET_")]
    values += [env.get("ROUTER_SMTP_PASSWORD")]
    values += [_url_password(env.get(k)) for k in ("ROUTER_DATABASE_URL", "ROUTER_REDIS_URL")]
    remember_secrets(values)


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        for needle in _needles:
            if needle in value:
                value = value.replace(needle, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def redact_secrets(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: every known secret out of every value."""
    if not _needles:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str | dict | list | tuple):
            event_dict[key] = scrub(value)
    return event_dict


_base_factory = logging.getLogRecordFactory()


def _scrubbed_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Every stdlib record is made without secrets, whichever handler (ours, a test's) formats it."""
    record = _base_factory(*args, **kwargs)
    if _needles:
        if isinstance(record.msg, dict):  # a structlog event on its way to our formatter
            record.msg = scrub(record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a library's malformed format string: leave it to the handler to report
                return record
            record.msg, record.args = scrub(message), None
    return record


# Libraries whose lines go through the pipeline, and the level each is held at (None: the root level).
# aiosqlite and httpcore log every call at DEBUG, which says nothing an operator needs.
def _library_levels(level: int) -> dict[str, int | None]:
    debug = level <= logging.DEBUG
    return {
        "uvicorn": None,
        "uvicorn.error": None,
        # a line per request: at DEBUG only (3,000 webhooks a second would be 3,000 lines, a third of the CPU)
        "uvicorn.access": logging.INFO if debug else logging.WARNING,
        "arq": None,
        "arq.worker": logging.INFO if debug else max(level, logging.WARNING),  # a line per job otherwise
        "httpx": logging.INFO if debug else logging.WARNING,  # each outgoing call, URL redacted
        "httpcore": logging.WARNING,
        "aiosqlite": logging.WARNING,
        "asyncio": logging.WARNING,
        "watchfiles": logging.WARNING,
        "sqlalchemy": logging.WARNING,
        "sqlalchemy.engine": logging.INFO if debug else logging.WARNING,  # SQL with its parameters at DEBUG
    }


def configure(level: str = "info", json_logs: bool | None = None) -> None:
    """Set up the pipeline. ``json_logs`` None: JSON unless standard error is a terminal."""
    global _debug
    lvl = getattr(logging, level.upper(), logging.INFO)
    _debug = lvl <= logging.DEBUG
    json_logs = (not sys.stderr.isatty()) if json_logs is None else json_logs
    remember_environment()
    logging.setLogRecordFactory(_scrubbed_record)
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:  # ours, from an earlier call
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name, held in _library_levels(lvl).items():
        logger = logging.getLogger(name)
        for old in list(logger.handlers):  # uvicorn's own handlers: its lines come through ours instead
            logger.removeHandler(old)
        logger.propagate = True
        logger.setLevel(held if held is not None else logging.NOTSET)


def reset() -> None:
    """Undo ``configure`` (tests): our handler off the root logger, stdlib records and structlog as they were."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.setLevel(logging.WARNING)
    logging.setLogRecordFactory(_base_factory)
    for name in _library_levels(logging.INFO):
        logging.getLogger(name).setLevel(logging.NOTSET)
    structlog.reset_defaults()


def json_for(command: str, log_format: str) -> bool | None:
    """Whether ``command`` logs JSON under ``ROUTER_LOG_FORMAT`` (auto: console for dev, JSON otherwise)."""
    if log_format == "json":
        return True
    if log_format == "console":
        return False
    return command != "dev"
