"""What the UI's form handlers share: the body they take, and the one way a refused change is answered.

A service raises a ``ClientError`` (``router.errors``) when what a form asks cannot be done. A handler
marked ``@refusals(answer)`` just calls the service; a ClientError it lets through becomes that page's own
answer, ``answer(exc, **the handler's arguments)``: the page again with the error beside the form, or the
notice after Post/Redirect/Get (``router.ui.flash``), with the error's status. Keywords given to
``refusals`` reach ``answer`` too (which form it was, the heading above the problems). A ClientError of an
unmarked handler reaches the app's handler (``router.api.problems.on_client_error``): an error page.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar, cast

from litestar import Response
from litestar.enums import RequestEncodingType
from litestar.params import Body

from router.errors import ClientError

Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]
Answer = Callable[..., Awaitable[Response[Any]]]
Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])


def refusals(answer: Answer, **given: str) -> Callable[[Handler], Handler]:
    """Answer a ClientError raised by the handler with ``answer(exc, **handler's arguments, **given)``."""

    def mark(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(**arguments: Any) -> Any:
            try:
                return await handler(**arguments)
            except ClientError as exc:
                return await answer(exc, **arguments, **given)

        return cast(Handler, handle)

    return mark
