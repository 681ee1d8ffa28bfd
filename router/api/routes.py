"""How the JSON API declares its operations: Litestar's route decorators, with what they share said once.

Each API module makes one ``Routes`` with its OpenAPI tag (and any ``opt`` all its operations share, such as
a role) and declares its handlers with it::

    delivery = Routes("delivery")

    @delivery.post("/api/runs/{run_id:str}/retry", operation_id="RetryRun", status_code=202)
    async def retry(principal: SignedIn, runtime: Runtime, run_id: RunId) -> Response[Any]:
        \"\"\"Retry a failed or dead run from its failed step, or from the start.

        The rest of the docstring is for the code's readers only.
        \"\"\"

What every operation gets besides:

- its OpenAPI summary is the first line of its docstring, without the final period (a handler without
  a docstring is refused when its module is imported; ``summary=`` given to the decorator wins);
- it answers 200 unless it says otherwise (``status_code=201`` created, ``202`` accepted): a DELETE
  answers with what it removed and a POST that creates nothing with what it did, not Litestar's
  204 and 201;
- it may take ``principal: SignedIn``, the user or token the guard admitted (``router.access.guard``),
  whose ``actor`` is what the audit log records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler

from router.access.auth import Principal
from router.access.guard import principal_of

# How a handler asks for who is calling: `async def handler(principal: SignedIn)`.
SignedIn = NamedDependency[Principal]

Declare = Callable[[Callable[..., Any]], HTTPRouteHandler]

_PRINCIPAL = Provide(principal_of, sync_to_thread=False)


def summary_of(handler: Callable[..., Any]) -> str:
    """The first line of the handler's docstring, without its final period: the operation's OpenAPI summary."""
    doc = (handler.__doc__ or "").strip()
    if not doc:
        raise TypeError(f"{handler.__qualname__}: an API handler's docstring is its OpenAPI summary; give it one")
    return doc.splitlines()[0].removesuffix(".")


class Routes:
    """The route decorators of one API module: ``get``, ``post``, ``put``, ``patch`` and ``delete``.

    Each takes the path and Litestar's keyword arguments (``operation_id``, ``status_code``, ...); those
    given to ``Routes`` apply to every operation unless one gives its own.
    """

    def __init__(self, tag: str, **shared: Any) -> None:
        self.tag = tag
        self.shared = shared

    def _declare(self, kind: Callable[..., HTTPRouteHandler], path: str, given: dict[str, Any]) -> Declare:
        def declare(handler: Callable[..., Any]) -> HTTPRouteHandler:
            common = {"tags": [self.tag], "status_code": 200, "dependencies": {"principal": _PRINCIPAL}}
            options = common | self.shared | given
            if "summary" not in options:
                options["summary"] = summary_of(handler)
            return kind(path, **options)(handler)

        return declare

    def get(self, path: str, **kwargs: Any) -> Declare:
        return self._declare(get, path, kwargs)

    def post(self, path: str, **kwargs: Any) -> Declare:
        return self._declare(post, path, kwargs)

    def put(self, path: str, **kwargs: Any) -> Declare:
        return self._declare(put, path, kwargs)

    def patch(self, path: str, **kwargs: Any) -> Declare:
        return self._declare(patch, path, kwargs)

    def delete(self, path: str, **kwargs: Any) -> Declare:
        return self._declare(delete, path, kwargs)
