"""Every error Event Router raises on purpose.

    RouterError
    ├── SettingsError           a ROUTER_* variable has a bad value (names the variable)
    ├── RuleError               one problem in a rule file, with file:line:col and a path
    ├── TemplateRenderError     a template or expression failed at render time
    ├── TemplateLimitError      a render went over one of the template limits (becomes the render's error)
    ├── EgressBlocked           the egress policy refuses a connection (becomes the step's PermanentError)
    ├── ActionError             a step's action failed
    │   ├── TransientError      worth retrying (connection errors, timeouts, 408, 429, 5xx)
    │   └── PermanentError      retrying cannot help (other 4xx, invalid settings)
    └── ClientError             what a client asked cannot be done: carries the HTTP status and title
        ├── IngestError         an incoming request was refused (its status and title given)
        ├── SignatureError      an incoming request failed its source's verify scheme (401)
        ├── RuleSetError        several RuleErrors found while loading a rule set (422 Invalid rule)
        ├── ConditionError      a builder condition is not valid (400; names the field)
        ├── WhatIfError         a what-if run that cannot be done (400)
        ├── AuthError           a user, password or token is not valid (400 Invalid request)
        │   ├── NotFoundError   no such user or token (404 Not Found)
        │   └── ConflictError   a taken name, the last admin (409 Conflict)
        ├── SecretStoreError    a stored secret or the key is not valid (400 Invalid request)
        │   └── NoSuchSecret    no stored secret by that name (404 Not Found)
        └── StateError          no such event or run, or not in a state for it (the raise gives 404 or 409)
            ├── ReplayError     an event cannot be replayed ("Cannot replay")
            │   ├── RetryError  a run cannot be retried ("Cannot retry")
            │   └── NotConfirmed  a bulk retry's token does not match its preview ("Not confirmed")
            └── RunWaitError    a waiting run cannot be tried now ("Cannot retry now")

They are converted to answers only at the boundary: a ClientError by one exception handler
(``router.api.problems.on_client_error``: an RFC 9457 problem for the API, an error page for the UI;
forms show ``str(exc)`` beside the field), the rest into a step's outcome, a CLI message or a 500.
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


class ClientError(RouterError):
    """What a client asked cannot be done: one exception handler answers it with ``status`` and ``title``.

    ``detail`` says what was wrong and how to fix it (the problem's detail, the message a form shows);
    ``str()`` is the detail, or the title when there is none. A subclass sets ``status`` and ``title``;
    a raise may give others.
    """

    status: int = 400
    title: str = "Invalid request"

    def __init__(self, detail: str = "", *, status: int | None = None, title: str | None = None) -> None:
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        super().__init__(detail or self.title)
        self.detail = detail

    def extra(self) -> dict[str, Any]:
        """Members of the problem besides type, title, status and detail."""
        return {}


class RuleSetError(ClientError):
    """Loading a rule set found one or more problems; ``errors`` lists each one."""

    status = 422
    title = "Invalid rule"

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        count = len(self.errors)
        super().__init__("\n".join(str(e) for e in self.errors))
        self.detail = f"{count} problem{'s' if count > 1 else ''}: " + "; ".join(str(e) for e in self.errors)

    def extra(self) -> dict[str, Any]:
        return {"errors": [e.as_dict() for e in self.errors]}


class SignatureError(ClientError):
    """The request's signature, token or timestamp did not verify."""

    status = 401
    title = "Signature verification failed"


class IngestError(ClientError):
    """An incoming request was refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(detail, status=status, title=title)


class ConditionError(ClientError, ValueError):
    """Something a user of the builder got wrong; the message names the field.

    ``errors`` holds every (location, message) pair when several fields were wrong at once.
    """

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors if errors is not None else [("", message)]


class WhatIfError(ClientError):
    """A what-if request that cannot run (no such rule in the file, the database cannot be read)."""


class AuthError(ClientError, ValueError):
    """A user-caused problem with a user, password or token (the message says which and how to fix it)."""


class NotFoundError(AuthError):
    """What the request names does not exist: a user, a token, a loaded rule, an event (HTTP 404)."""

    status = 404
    title = "Not Found"


class ConflictError(AuthError):
    """The change clashes with the current state: a taken name, the last admin (HTTP 409)."""

    status = 409
    title = "Conflict"


class SecretStoreError(ClientError, ValueError):
    """A user-caused problem with a stored secret or the key (the message names the fix)."""


class NoSuchSecret(SecretStoreError):
    """No stored secret by that name (HTTP 404)."""

    status = 404
    title = "Not Found"


class StateError(ClientError):
    """What a request names is missing or not in a state for it; ``status`` (404, 409) is given by the raise."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status=status)


class ReplayError(StateError):
    """The event cannot be replayed as asked (unknown id, wrong state)."""

    title = "Cannot replay"


class RetryError(ReplayError):
    """The run cannot be retried as asked (unknown id, not failed or dead)."""

    title = "Cannot retry"


class NotConfirmed(ReplayError):
    """A bulk retry whose confirmation token does not match the selection's preview."""

    title = "Not confirmed"


class RunWaitError(StateError):
    """The run cannot be hurried as asked (unknown id, not waiting, started meanwhile)."""

    title = "Cannot retry now"


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


class TemplateLimitError(RouterError):
    """A render went over one of the limits."""


class EgressBlocked(RouterError):
    """A connection the egress policy refuses; ``str()`` is the message for the step's error."""


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
