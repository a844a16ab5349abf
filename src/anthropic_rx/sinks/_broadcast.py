"""What a broadcaster hands its subscribers, and the errors of a channel.

A channel's log is a sequence of :class:`Broadcast` entries with strictly increasing ids: one
per event of the reply, then exactly one terminal entry (``end`` set). The ids are what the SSE
sink writes as ``id:``, so a browser's ``Last-Event-ID`` names the last entry it saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

import reactivex

from .._events import MessageStreamEvent, Usage
from .._exceptions import AnthropicRxError

__all__ = [
    "Broadcast",
    "BroadcastError",
    "BroadcastSubscription",
    "ChannelBusyError",
    "ChannelNotFound",
    "End",
    "ResumeError",
    "SlowPolicy",
    "SlowSubscriberError",
]

End: TypeAlias = Literal["done", "cancelled", "error"]
"""How a reply on a channel ended."""

SlowPolicy: TypeAlias = Literal["coalesce", "disconnect", "error"]
"""What a broadcaster does with a subscriber that falls a whole buffer behind the live end."""


@dataclass(frozen=True, slots=True)
class Broadcast:
    """One entry of a channel's log, as a subscriber receives it.

    Attributes:
        id: the entry's id, strictly increasing within a channel (memory: ``"1"``, ``"2"``, …;
            Redis: the stream entry id). Pass the last one seen as ``last_event_id`` to resume.
        event: the reply's event; ``None`` for the terminal entry.
        end: ``None`` for an event; ``"done"``, ``"cancelled"`` or ``"error"`` for the terminal
            entry, the last of the reply.
        stop_reason: at ``"done"``, the final message's stop reason.
        usage: at ``"done"`` and ``"cancelled"``, the usage of the reply so far (``None`` when the
            reply carried none); at ``"cancelled"`` before ``message_delta``, estimated
            (``usage.estimated``).
        error_type: at ``"error"``, the API's error type (``"overloaded_error"``…), or the name of
            the library's error class for errors that have none (``"IncompleteStreamError"``).
        error_message: at ``"error"``, the error's message (never holding an API key).
        error_class: at ``"error"``, the name of the anthropic-rx exception class that ended the
            reply, so a subscriber in any process raises the same class.
    """

    id: str
    event: MessageStreamEvent | None = None
    end: End | None = None
    stop_reason: str | None = None
    usage: Usage | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_class: str | None = None

    @property
    def is_end(self) -> bool:
        """Whether this is the channel's terminal entry for the reply."""
        return self.end is not None


class BroadcastSubscription(reactivex.Observable[Broadcast]):
    """The cold Observable ``hub.subscribe(channel, last_event_id)`` returns.

    A subclass so that :func:`~anthropic_rx.sinks.sse_response` knows it serves a resumable
    broadcast (its ``Last-Event-ID`` resumes) rather than a direct reply (where it answers 204).

    Attributes:
        channel: the channel subscribed to.
        last_event_id: the id the subscription resumes after, or ``None`` for the start.
    """

    channel: str
    last_event_id: str | None


class BroadcastError(AnthropicRxError):
    """Root of the errors of a broadcaster's channels."""


class ChannelBusyError(BroadcastError):
    """``publish`` on a channel that already has a live publisher (the app answers 409).

    Raised before the events are subscribed to: no request is made for the refused reply.
    """


class ChannelNotFound(BroadcastError, LookupError):
    """``subscribe`` to a channel that never had a reply, or whose history expired (``ttl``)."""


class ResumeError(BroadcastError, LookupError):
    """``last_event_id`` is not an id the channel's log still holds (malformed, or trimmed).

    Never a silent jump: the subscriber learns that events between its id and the log are gone,
    and can load the stored message instead.
    """


_SHOWN_ID_CHARS = 40


def shown_id(last_event_id: str) -> str:
    """``last_event_id`` as an error message quotes it: its repr, cut to its first
    ``_SHOWN_ID_CHARS`` characters with its length said, so a hostile header of kilobytes
    does not become a log line of kilobytes."""
    if len(last_event_id) <= _SHOWN_ID_CHARS:
        return repr(last_event_id)
    return f"{last_event_id[:_SHOWN_ID_CHARS]!r}... ({len(last_event_id):,} characters)"


class SlowSubscriberError(BroadcastError):
    """A subscriber fell a whole buffer behind the live end (policy ``slow="error"``).

    Nothing was skipped: every entry up to :attr:`last_event_id` was delivered, so a new
    subscription with ``last_event_id=error.last_event_id`` resumes exactly.

    Attributes:
        last_event_id: the id of the last entry the subscriber received (``None``: none).
    """

    last_event_id: str | None

    def __init__(self, message: str, *, last_event_id: str | None = None) -> None:
        super().__init__(message)
        self.last_event_id = last_event_id
