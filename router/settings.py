"""One typed settings object, read from ``ROUTER_*`` environment variables.

A bad value fails at start with a message naming the variable and what it accepts.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.errors import SettingsError
from router.pipeline.retry import DEFAULT_SCHEDULE, RetryPolicy, parse_schedule

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/router.db"

_ACCEPTS: dict[str, str] = {
    "database_url": "a SQLAlchemy async URL such as sqlite+aiosqlite:///./data/router.db "
    "or postgresql+asyncpg://user@host/db",
    "redis_url": "redis://host:port/db, rediss://… or unix:///path/to/socket",
    "smtp_port": "a whole number from 1 to 65535",
    "smtp_starttls": "true or false",
    "max_body_bytes": "a whole number of bytes from 1 upwards",
    "max_emit_depth": "a whole number from 1 to 50",
    "poll_delay": "a number of seconds from 0.001 to 1",
    "worker_max_jobs": "a whole number from 1 to 1000",
    "worker_concurrency": "a whole number from 1 to 2000",
    "worker_nice": "a whole number from 0 (no change) to 19",
    "sweep_interval": "a number of seconds from 1 upwards",
    "log_level": "debug, info, warning or error",
    "egress_allow": "comma-separated CIDRs and host names",
    "retry_schedule": "comma-separated durations such as 5s,5m,30m,2h (each up to 7d)",
    "retry_jitter": "a fraction from 0 to 1",
    "shutdown_grace": "a whole number of seconds from 0 to 3600",
    "job_timeout": "a whole number of seconds from 5 to 3600",
    "poll_lease": "a number of seconds from 2 to 3600",
    "session_hours": "a number of hours from 0.1 to 720",
    "cookie_secure": "auto, true or false",
    "secret_key": "comma-separated Fernet keys (generate one with `router secrets keygen`)",
    "log_format": "auto, json or console",
    "database_pool_size": "a whole number from 1 to 500",
    "metrics_port": "a whole number from 1 to 65535",
    "heartbeat_timeout": "a number of seconds from 3 to 3600",
    "retention_days": "a number of days, 0 (keep forever) or more",
    "retention_max_events": "a whole number of events, 0 (no cap) or more",
    "retention_interval": "a number of seconds from 1 upwards",
    "retention_batch": "a whole number from 1 to 10000",
    "alert_interval": "a number of seconds from 1 to 3600",
    "public_url": "an http:// or https:// URL such as https://router.example.com",
    "rejections_keep": "a whole number from 10 upwards",
    "rejections_per_second": "a number above 0",
}

# Settings that are one of a few words, in any case (kept in lower case), and what a wrong one is told.
_CHOICES: dict[str, tuple[frozenset[str], str]] = {
    "cookie_secure": (frozenset({"auto", "true", "false"}), "not auto, true or false"),
    "log_format": (frozenset({"auto", "json", "console"}), "not auto, json or console"),
    "log_level": (frozenset({"debug", "info", "warning", "error"}), "not a log level"),
}


class Settings(BaseSettings):
    """Every ``ROUTER_*`` setting, with its default."""

    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore", frozen=True)

    database_url: str = Field(DEFAULT_DATABASE_URL, description="SQLAlchemy async database URL.")
    database_pool_size: int = Field(
        10, ge=1, le=500, description="PostgreSQL connections per process (as many more may open under load)."
    )
    redis_url: str | None = Field(None, description="Redis URL; unset makes `router dev` start an embedded Redis.")
    rules_dir: Path = Field(Path("./rules"), description="Folder of rule files, read recursively.")
    smtp_host: str = Field("localhost", description="SMTP server host for the email action.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port.")
    smtp_username: str | None = Field(None, description="SMTP user name, if the server needs a login.")
    smtp_password: str | None = Field(None, description="SMTP password.")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_from: str = Field("event-router@localhost", description="Default From address of emails.")
    max_body_bytes: int = Field(1024 * 1024, ge=1, description="Largest accepted webhook body, in bytes.")
    max_emit_depth: int = Field(5, ge=1, le=50, description="How deep `emit` steps may chain events.")
    poll_delay: float = Field(0.01, ge=0.001, le=1.0, description="How often an idle worker polls Redis.")
    worker_max_jobs: int = Field(
        50, ge=1, le=1000, description="arq jobs (retries, resumed runs, sweeps) one worker process runs at once."
    )
    worker_nice: int = Field(
        5,
        ge=0,
        le=19,
        description="How much `router worker` yields the CPU to other processes (Unix nice; 0: not at all). On a "
        "machine shared with `router serve`, accepting webhooks goes first and delivery catches up after a burst.",
    )
    worker_concurrency: int = Field(
        100, ge=1, le=2000, description="Events one worker process delivers at once (new events, claimed in batches)."
    )
    sweep_interval: float = Field(10.0, ge=1.0, description="Seconds between sweeps for events never enqueued.")
    slack_api_url: str = Field("https://slack.com/api", description="Base URL of Slack's Web API.")
    retry_schedule: str = Field(
        DEFAULT_SCHEDULE, description="Delays before each retry of a step that failed for a passing reason."
    )
    retry_jitter: float = Field(0.1, ge=0, le=1, description="Spread each retry delay by up to ± this fraction.")
    job_timeout: int = Field(
        30, ge=5, le=3600, description="Longest a worker job may run; a killed worker's work returns after this + 10 s."
    )
    poll_lease: float = Field(
        30.0,
        ge=2,
        le=3600,
        description="How long a poll's lease on its source lasts without renewal (renewed every third of it); "
        "a killed worker's poll is taken over after this.",
    )
    shutdown_grace: int = Field(
        25, ge=0, le=3600, description="Seconds a worker given SIGTERM waits for running jobs before handing them back."
    )
    rejections_keep: int = Field(
        10_000, ge=10, description="How many rejected ingest requests are kept (the oldest are deleted)."
    )
    rejections_per_second: float = Field(
        10.0,
        gt=0,
        description="Rejected ingest requests recorded (and logged) one by one per second; beyond it, each "
        "source and status's refusals are counted in one row.",
    )
    log_level: str = Field("info", description="Log level.")
    log_format: str = Field(
        "auto", description="Log lines as json, or console (readable); auto: console under `router dev`, else json."
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Port of a worker's Prometheus metrics (`router worker --metrics-port`)."
    )
    metrics_host: str = Field("127.0.0.1", description="Address a worker's metrics port listens on.")
    heartbeat_timeout: float = Field(
        30.0,
        ge=3,
        le=3600,
        description="/health/ready and `router worker --check` fail when no worker has beaten for this many seconds.",
    )
    retention_days: float = Field(0, ge=0, description="Keep events (with their runs) this many days; 0 keeps all.")
    retention_max_events: int = Field(0, ge=0, description="Keep at most this many events per source; 0: no cap.")
    retention_interval: float = Field(300.0, ge=1, description="Seconds between retention prunes.")
    retention_batch: int = Field(500, ge=1, le=10000, description="Most events one prune transaction deletes.")
    alert_interval: float = Field(30.0, ge=1, le=3600, description="Seconds between alert evaluations.")
    egress_allow: str = Field(
        "",
        description="Comma-separated CIDRs and host names outgoing calls may reach besides public addresses "
        "(loopback, private, link-local and metadata addresses are blocked otherwise).",
    )

    session_hours: float = Field(12.0, ge=0.1, le=720, description="How long a UI sign-in lasts, in hours.")
    cookie_secure: str = Field(
        "auto",
        description="Mark the session cookie Secure: auto (when the request came over HTTPS), true or false. "
        "Set true behind a TLS-terminating proxy.",
    )

    public_url: str | None = Field(
        None,
        description="The router's own address as others reach it, read by templates as `router.public_url` "
        "(the example rules deliver to its inbox); unset, `router dev` and `router serve` use the address they "
        "serve on, and a separate `router worker` http://127.0.0.1:8000.",
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1].strip("/")) == 0:
            raise ValueError("not an http(s) URL")
        return value.rstrip("/")

    secret_key: str | None = Field(
        None,
        description="Fernet key(s) encrypting secrets saved in the UI, comma-separated; the first encrypts, "
        "all decrypt (rotation).",
    )

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str | None) -> str | None:
        if not value:
            return None
        from router.access.secretstore import keyring

        keyring(value)  # a malformed key fails at start
        return value

    @field_validator(*_CHOICES)
    @classmethod
    def _choice(cls, value: str, info: ValidationInfo) -> str:
        words, refusal = _CHOICES[str(info.field_name)]
        if value.lower() not in words:
            raise ValueError(refusal)
        return value.lower()

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    def retry_policy(self) -> RetryPolicy:
        """The global retry policy (ROUTER_RETRY_SCHEDULE, ROUTER_RETRY_JITTER)."""
        return RetryPolicy(parse_schedule(self.retry_schedule), self.retry_jitter)

    @field_validator("egress_allow")
    @classmethod
    def _egress(cls, value: str) -> str:
        from router.pipeline.egress import EgressPolicy

        EgressPolicy.parse(value)  # a bad entry fails at start, naming it
        return value

    @field_validator("database_url")
    @classmethod
    def _db(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            if value.startswith(("postgres://", "postgresql://")):
                return "postgresql+asyncpg://" + value.split("://", 1)[1]
            if value.startswith("sqlite://"):
                return "sqlite+aiosqlite://" + value.split("://", 1)[1]
            raise ValueError("unsupported database URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("unsupported Redis URL")
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, turning a validation failure into a message naming each variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            accepts = _ACCEPTS.get(field, "a valid value")
            value = err.get("input")
            lines.append(f"ROUTER_{field.upper()}={value!r}: {err['msg']}; accepted: {accepts}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
