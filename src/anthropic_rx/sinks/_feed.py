"""One step every sink takes per event of a reply: feed its builder, or learn how it ended."""

from __future__ import annotations

from .._error_event import error_of_event
from .._events import ErrorEvent, MessageStreamEvent
from .._exceptions import AnthropicRxError, ProtocolError
from .._snapshot import MessageBuilder

__all__ = ["feed_or_error"]


def feed_or_error(builder: MessageBuilder, event: MessageStreamEvent) -> AnthropicRxError | None:
    """Feed ``event`` to ``builder``; the error that ends the reply there, else ``None``.

    An in-stream ``error`` event is not fed: it becomes its typed :class:`APIError`, and an
    event out of the protocol's order (which the builder refuses) its :class:`ProtocolError`,
    each with the message built so far as ``partial_message``. Pings are fed like any event (the
    builder ignores them); a sink that must not pass them on checks for them first.
    """
    if type(event) is ErrorEvent:
        return error_of_event(event, partial_message=event.partial_message or builder.message())
    try:
        builder.feed(event)
    except ProtocolError as error:
        if error.partial_message is None:
            error.partial_message = builder.message()
        return error
    return None
