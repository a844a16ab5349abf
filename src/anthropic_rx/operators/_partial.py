"""The partial message and response meta of a stream, tracked at O(1) per event for errors."""

from __future__ import annotations

from .._events import ErrorEvent, Message, MessageStartEvent, MessageStreamEvent
from .._exceptions import ProtocolError
from .._meta import ResponseMeta
from .._snapshot import MessageBuilder

__all__ = ["PartialTracker"]


class PartialTracker:
    """Feeds a :class:`MessageBuilder`, leniently: order is the source's job to check.

    A stream that does not begin with ``message_start`` (a replay resumed mid-message) has no
    partial message; that is not an error here.
    """

    __slots__ = ("_builder", "meta")

    def __init__(self) -> None:
        self._builder: MessageBuilder | None = MessageBuilder()
        self.meta: ResponseMeta | None = None

    def feed(self, event: MessageStreamEvent) -> None:
        if isinstance(event, MessageStartEvent) and event.response_meta is not None:
            self.meta = event.response_meta
        builder = self._builder
        if builder is not None:
            try:
                builder.feed(event)
            except ProtocolError:
                self._builder = None

    def meta_for(self, event: ErrorEvent) -> ResponseMeta | None:
        """The meta an error event carries, else the one ``message_start`` carried."""
        return event.response_meta or self.meta

    def partial_message(self) -> Message | None:
        """The message so far, ``None`` before ``message_start`` or after a broken order."""
        return self._builder.message() if self._builder is not None else None
