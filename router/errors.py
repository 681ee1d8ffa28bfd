"""Every error Event Router raises on purpose.

    RouterError
    ├── SettingsError        a ROUTER_* variable has a bad value (names the variable)
    ├── RuleError            one problem in a rule file, with file:line:col and a path
    │   └── RuleSetError     several RuleErrors found while loading a rule set
    ├── SignatureError       an incoming request failed its source's verify scheme (HTTP 401)
    ├── IngestError          an incoming request was refused (carries the HTTP status)
    ├── TemplateRenderError  a template or expression failed at render time
    └── ActionError          a step's action failed
        ├── TransientError   worth retrying (connection errors, timeouts, 408, 429, 5xx)
        └── PermanentError   retrying cannot help (other 4xx, invalid settings)

They are converted to HTTP problem responses or CLI messages only at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RouterError(Exception):
    """Base class of every error raised on purpose by Event Router."""


class SettingsError(RouterError):
    """A setting read from the environment has a bad value."""


class RuleError(RouterError):
    """One problem in a rule file, located as ``file:line:col: path: message``."""

    def __init__(self, message: str, *, file: str = "", line: int = 0, col: int = 0, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.path = path

    def location(self) -> str:
        if not self.file:
            return ""
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file

    def __str__(self) -> str:
        parts = [p for p in (self.location(), self.path) if p]
        return ": ".join([*parts, self.message])

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "path": self.path, "message": self.message}


class RuleSetError(RouterError):
    """Loading a rule set found one or more problems; ``errors`` lists each one."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class SignatureError(RouterError):
    """The request's signature, token or timestamp did not verify."""


class IngestError(RouterError):
    """An incoming request was refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail


class TemplateRenderError(RouterError):
    """A Jinja template or JMESPath expression failed while rendering for an event."""

    def __init__(self, message: str, *, path: str = "", location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.location = location

    def __str__(self) -> str:
        parts = [p for p in (self.location, self.path) if p]
        return ": ".join([*parts, self.message])


class ActionError(RouterError):
    """A step's action failed. ``response`` holds what the far side answered, if anything."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        request: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.response = response
        self.retry_after = retry_after


class TransientError(ActionError):
    """A failure that may pass: connection error, timeout, 408, 429 or 5xx."""

    retryable = True


class PermanentError(ActionError):
    """A failure that a retry cannot fix: other 4xx, invalid settings, a refused address."""
