"""The typed exception of an in-stream ``error`` event."""

from __future__ import annotations

from ._events import ErrorEvent, Message
from ._exceptions import APIError, api_error_from_body
from ._meta import ResponseMeta

__all__ = ["error_of_event"]


def error_of_event(
    event: ErrorEvent, *, partial_message: Message | None = None, meta: ResponseMeta | None = None
) -> APIError:
    """The :class:`APIError` subclass named by ``event.error.type``, with ``status_code=200``.

    ``partial_message`` and ``meta`` default to what the source attached to the event.
    """
    return api_error_from_body(
        event.model_dump(mode="json"),
        status_code=200,
        fallback_message="the API sent an error event",
        partial_message=partial_message or event.partial_message,
        meta=meta or event.response_meta,
    )
