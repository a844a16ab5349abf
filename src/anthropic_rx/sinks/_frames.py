"""Server-Sent Events frames for a browser: pure encoders, no I/O.

A frame writer turns what a source emits — reply events, or :class:`~.Broadcast` entries of a
channel — and the way the source ended into the bytes of SSE frames. Three formats:

- :class:`TextFrames` (``format="text"``): ``data: {"text": "..."}`` per text delta, then one
  terminal frame, ``event: done`` (``{"stop_reason", "usage"}``), ``event: cancelled``
  (``{"usage", "usage_estimated"}``) or ``event: error`` (``{"type", "message"}``).
- :class:`EventFrames` (``format="events"``): every event as the API sent it (``event: <type>``,
  ``data: <wire JSON>``), pings as ``: ping`` comments; an error is the wire's own ``error``
  frame; a reply stopped on purpose ends with ``event: cancelled``
  (``{"type": "cancelled", "usage", "usage_estimated"}``), which a parser of the wire format
  reads as an unknown event, and then as a stream that ended without ``message_stop``.
- :class:`AiSdkFrames` (``format="ai-sdk"``): the chunks of
  :class:`~anthropic_rx.sinks._ai_sdk.AiSdkEncoder`, one ``data: <json>`` frame each, then
  ``data: [DONE]``.

Ids: every frame but a comment has an ``id:``. For reply events it is the event's 0-based
position among everything the source emitted (pings count, so an id is a position); the
terminal frame takes the next position, except an in-stream ``error`` event, which is itself
the terminal frame. For broadcast entries it is the entry's id, and the terminal frame is the
channel's terminal entry (so a browser's ``Last-Event-ID`` after the end resumes to nothing).

Broadcast entries: the terminal frame comes only from the terminal entry; an ``error`` event
entry and (in ``events``) the ``message_stop`` entry wait for it, so that the last id a browser
holds is the terminal's. A subscription that completes without a terminal entry writes no
terminal frame (the browser reconnects and resumes after the last id); an error after the
terminal entry writes nothing more; so does one dropped for being slow (``SlowSubscriberError``).
An error terminal entry of a class that is not an anthropic-rx error is written as
``internal_error``.

Framing: JSON on a single ``data:`` line; JSON escapes CR and LF, and U+2028, U+2029 and U+0085
are escaped too (line ends for ``str.splitlines`` and for JavaScript before ES2019), so no text
can add, end or split a frame. Ids and event names lose any CR, LF and NUL.

Errors reach a browser through :func:`public_error` only: never a traceback, never an API key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypeAlias

from .._error_event import error_of_event
from .._events import (
    ContentBlockDeltaEvent,
    ErrorEvent,
    Message,
    MessageDeltaEvent,
    MessageStopEvent,
    MessageStreamEvent,
    PingEvent,
    TextDelta,
    Usage,
)
from .._snapshot import MessageBuilder
from ..operators._accumulate import cancelled_snapshot
from ._broadcast import Broadcast, SlowSubscriberError
from ._errors import INTERNAL_ERROR, is_library_error, public_error, public_text

__all__ = [
    "PING_FRAME",
    "AiSdkFrames",
    "EventFrames",
    "FrameWriter",
    "SSEFormat",
    "TextFrames",
    "frame",
    "json_data",
    "retry_frame",
    "writer_for",
]

SSEFormat: TypeAlias = Literal["text", "events", "ai-sdk"]
"""The body formats of :func:`~anthropic_rx.sinks.sse_response`."""

PING_FRAME: Final = b": ping\n\n"
"""A keep-alive comment: ignored by every SSE parser, no id."""

_UNSAFE_FIELD = re.compile(r"[\r\n\x00]")
# Line ends for str.splitlines and pre-ES2019 JavaScript; plain text for SSE and JSON.
_LINE_SEPARATORS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})
_encode_string: Callable[[str], str] = json.encoder.encode_basestring
_DONE_DATA: Final = b"[DONE]"


# --- frames ----------------------------------------------------------------------------------


def json_data(value: object) -> bytes:
    """``value`` as compact JSON that fits on one ``data:`` line (UTF-8).

    CR, LF and other controls are escaped by JSON itself; U+2028, U+2029 and U+0085 are escaped
    here. A string holding a lone surrogate is written with ``\\uXXXX`` escapes instead of
    failing.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        return _line_safe(text)
    except UnicodeEncodeError:  # a lone surrogate: ASCII escapes are valid JSON for it
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode()


def _line_safe(text: str) -> bytes:
    """JSON text as UTF-8 with the non-SSE line separators escaped."""
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.translate(_LINE_SEPARATORS)
    return text.encode()


def _text_data(text: str) -> bytes:
    """``{"text": text}``: the frame of nearly every event, so built without ``json.dumps``."""
    try:
        return b'{"text":' + _line_safe(_encode_string(text)) + b"}"
    except UnicodeEncodeError:
        return json_data({"text": text})


# The text frames of the broadcast entries written last, by ``id()`` (the entry is kept with
# its frame, so an id is not reused while it is cached): every subscriber of a channel writes
# the same entries, within a few turns of the loop of each other.
_entry_frames: dict[int, tuple[Broadcast, bytes]] = {}
_ENTRY_FRAMES_KEPT: Final = 4096


def _cache_entry_frame(entry: Broadcast, frames: bytes) -> None:
    if len(_entry_frames) >= _ENTRY_FRAMES_KEPT:
        _entry_frames.clear()  # atomic, unlike evicting one by one across threads
    _entry_frames[id(entry)] = (entry, frames)


def _field(value: str) -> bytes:
    if value.isdigit():  # nearly every id: a position or a memory broadcaster's entry id
        return value.encode()
    return (_UNSAFE_FIELD.sub("", value) if _UNSAFE_FIELD.search(value) else value).encode()


def frame(data: bytes, *, id: str | None = None, event: str | None = None) -> bytes:
    """One SSE frame: optional ``event:`` and ``id:`` lines, one ``data:`` line, a blank line.

    Args:
        data: the payload, already on one line (from :func:`json_data`).
        id: the frame's id (CR, LF and NUL removed).
        event: the event name (CR, LF and NUL removed); ``None`` for the default ``message``.
    """
    head = b"event: " + _field(event) + b"\n" if event is not None else b""
    if id is not None:
        head += b"id: " + _field(id) + b"\n"
    return head + b"data: " + data + b"\n\n"


def retry_frame(seconds: float) -> bytes:
    """The ``retry:`` frame telling an EventSource how long to wait before reconnecting."""
    return b"retry: %d\n\n" % round(seconds * 1000)


def _usage_json(usage: Usage | None) -> object:
    return None if usage is None else usage.model_dump(mode="json", exclude_none=True)


# --- writers ---------------------------------------------------------------------------------


class FrameWriter:
    """The frames of one response, from the items a source emits and the way it ended.

    Feed each item to :meth:`item`, then call :meth:`completed` or :meth:`failed` once. Every
    call returns the bytes to send (``b""`` for none); after the terminal frame every call
    returns ``b""``. Not thread-safe: one writer per response.

    Args:
        broadcast: the source is a broadcast subscription (its entries' ids are the frames'
            ids), known before its first entry arrives.
        initial_id: for a broadcast subscription, the ``last_event_id`` it resumes after: the
            id of an error frame written before any entry arrived.
    """

    def __init__(self, *, broadcast: bool = False, initial_id: str | None = None) -> None:
        self.ended = False
        self._position = 0
        self._last_id = initial_id
        self._broadcast = broadcast
        self._builder: MessageBuilder | None = MessageBuilder()
        self._stopped = False  # message_stop seen
        self._usage_reported = False  # message_delta seen

    # --- what the response calls ---------------------------------------------------------

    def item(self, item: MessageStreamEvent | Broadcast) -> bytes:
        """The frames for one item the source emitted (an event or a broadcast entry)."""
        if self.ended:
            return b""
        if type(item) is Broadcast:
            self._broadcast = True
            return self._entry(item)
        position = self._position
        self._position = position + 1
        event: MessageStreamEvent = item  # type: ignore[assignment]
        if type(event) is ErrorEvent:
            self.ended = True
            kind, message = public_error(error_of_event(event))
            return self._error(str(position), kind, message)
        self._feed(event)
        return self._event(event, str(position))

    def completed(self) -> bytes:
        """The terminal frame of a source that completed."""
        if self.ended:
            return b""
        self.ended = True
        if self._broadcast:
            return b""  # no terminal entry: the browser resumes after the last id
        terminal = str(self._position)
        message = self.message()
        if self._stopped:
            return self._done(terminal, message)
        if message is not None:
            message = cancelled_snapshot(message, estimate=not self._usage_reported)
        return self._cancelled(terminal, message)

    def failed(self, error: BaseException) -> bytes:
        """The terminal frame of a source that errored (nothing after a terminal frame).

        A broadcast subscriber dropped for being slow (``SlowSubscriberError``) gets no
        terminal frame: the browser reconnects and resumes after the last id it received.
        """
        if self.ended:
            return b""
        self.ended = True
        if self._broadcast and isinstance(error, SlowSubscriberError):
            return b""
        kind, message = public_error(error)
        terminal = self._last_id if self._broadcast else str(self._position)
        return self._error(terminal, kind, message)

    def message(self) -> Message | None:
        """The message as far as the events went, when they could be followed."""
        return self._builder.message() if self._builder is not None else None

    # --- broadcast entries ---------------------------------------------------------------

    def _entry(self, entry: Broadcast) -> bytes:
        self._last_id = entry.id
        end = entry.end
        if end is None:
            event = entry.event
            if event is None or type(event) is ErrorEvent:
                return b""  # the terminal entry that follows says how it ended
            self._feed(event)
            return self._event(event, entry.id)
        self.ended = True
        message = self.message()
        if message is not None and entry.usage is not None:
            message = message.model_copy(update={"usage": entry.usage})
        if end == "done":
            if message is not None and entry.stop_reason is not None:
                message = message.model_copy(update={"stop_reason": entry.stop_reason})
            return self._done(entry.id, message, entry.stop_reason, entry.usage)
        if end == "cancelled":
            if message is not None:
                message = message.model_copy(update={"cancelled": True})
            return self._cancelled(entry.id, message, entry.usage)
        if entry.error_class is not None and not is_library_error(entry.error_class):
            # A publisher's own failure: its text is for its log, not for a browser.
            kind, text = INTERNAL_ERROR
        else:
            kind = entry.error_type or INTERNAL_ERROR[0]
            text = public_text(entry.error_message or "")
        return self._error(entry.id, kind, text)

    def _feed(self, event: MessageStreamEvent) -> None:
        kind = type(event)
        if kind is MessageStopEvent:
            self._stopped = True
        elif kind is MessageDeltaEvent:
            self._usage_reported = True
        builder = self._builder
        if builder is not None:
            try:
                builder.feed(event)
            except ValueError:
                # A subscription resumed mid-reply, or a pipeline that filtered events: the
                # message cannot be followed, the frames still can.
                self._builder = None

    # --- what a format writes ------------------------------------------------------------

    def _event(self, event: MessageStreamEvent, id: str) -> bytes:
        raise NotImplementedError

    def _done(
        self,
        id: str,
        message: Message | None,
        stop_reason: str | None = None,
        usage: Usage | None = None,
    ) -> bytes:
        raise NotImplementedError

    def _cancelled(self, id: str, message: Message | None, usage: Usage | None = None) -> bytes:
        raise NotImplementedError

    def _error(self, id: str | None, kind: str, message: str) -> bytes:
        raise NotImplementedError


def _cancel_payload(message: Message | None, usage: Usage | None) -> dict[str, Any]:
    usage = usage if usage is not None else (message.usage if message is not None else None)
    return {"usage": _usage_json(usage), "usage_estimated": bool(usage and usage.estimated)}


class TextFrames(FrameWriter):
    """``format="text"``: the text deltas, then ``done``, ``cancelled`` or ``error``.

    A broadcast subscription follows no message: its terminal entry carries the stop reason
    and usage that the terminal frame reports (a builder per subscriber, fed every delta, would
    cost a thousand subscribers a thousand builders). A text delta — nearly every item — is
    written on a path of its own, and one broadcast entry's frame, the same for every
    subscriber of the channel, is encoded once.
    """

    def __init__(self, *, broadcast: bool = False, initial_id: str | None = None) -> None:
        super().__init__(broadcast=broadcast, initial_id=initial_id)
        if broadcast:
            self._builder = None

    def item(self, item: MessageStreamEvent | Broadcast) -> bytes:
        kind = type(item)
        if kind is ContentBlockDeltaEvent and not self.ended:
            event: ContentBlockDeltaEvent = item  # type: ignore[assignment]
            position = self._position
            self._position = position + 1
            builder = self._builder
            if builder is not None:
                try:
                    builder.feed(event)
                except ValueError:
                    self._builder = None
            delta = event.delta
            if type(delta) is not TextDelta:
                return b""
            return b"id: %d\ndata: %b\n\n" % (position, _text_data(delta.text))
        if kind is Broadcast and not self.ended:
            entry: Broadcast = item  # type: ignore[assignment]
            cached = _entry_frames.get(id(entry))
            if cached is not None and cached[0] is entry and self._builder is None:
                self._broadcast = True
                self._last_id = entry.id
                return cached[1]
            event_of = entry.event
            if entry.end is None and type(event_of) is ContentBlockDeltaEvent and self._broadcast:
                frames = self._entry(entry)
                if self._builder is None:  # the frame depends on the entry alone
                    _cache_entry_frame(entry, frames)
                return frames
        return super().item(item)

    def _event(self, event: MessageStreamEvent, id: str) -> bytes:
        if type(event) is not ContentBlockDeltaEvent:
            return b""
        delta = event.delta
        if type(delta) is not TextDelta:
            return b""
        return b"id: " + _field(id) + b"\ndata: " + _text_data(delta.text) + b"\n\n"

    def _done(
        self,
        id: str,
        message: Message | None,
        stop_reason: str | None = None,
        usage: Usage | None = None,
    ) -> bytes:
        if message is not None:
            stop_reason = stop_reason or message.stop_reason
            usage = usage or message.usage
        payload = {"stop_reason": stop_reason, "usage": _usage_json(usage)}
        return frame(json_data(payload), id=id, event="done")

    def _cancelled(self, id: str, message: Message | None, usage: Usage | None = None) -> bytes:
        return frame(json_data(_cancel_payload(message, usage)), id=id, event="cancelled")

    def _error(self, id: str | None, kind: str, message: str) -> bytes:
        return frame(json_data({"type": kind, "message": message}), id=id, event="error")


class EventFrames(FrameWriter):
    """``format="events"``: the wire events as the API sent them; pings as comments."""

    def _event(self, event: MessageStreamEvent, id: str) -> bytes:
        if type(event) is PingEvent:
            return PING_FRAME
        if self._broadcast and type(event) is MessageStopEvent:
            return b""  # written with the terminal entry's id
        try:
            data = _line_safe(event.model_dump_json())
        except ValueError:  # a lone surrogate (built in code; parsed events never hold one)
            data = json_data(event.model_dump(mode="json"))
        return frame(data, id=id, event=event.type)

    def _done(
        self,
        id: str,
        message: Message | None,
        stop_reason: str | None = None,
        usage: Usage | None = None,
    ) -> bytes:
        if not self._broadcast:
            return b""  # the wire's message_stop was the terminal frame
        return frame(b'{"type":"message_stop"}', id=id, event="message_stop")

    def _cancelled(self, id: str, message: Message | None, usage: Usage | None = None) -> bytes:
        payload = {"type": "cancelled", **_cancel_payload(message, usage)}
        return frame(json_data(payload), id=id, event="cancelled")

    def _error(self, id: str | None, kind: str, message: str) -> bytes:
        payload = {"type": "error", "error": {"type": kind, "message": message}}
        return frame(json_data(payload), id=id, event="error")


class AiSdkFrames(FrameWriter):
    """``format="ai-sdk"``: Vercel AI SDK UI message stream chunks, then ``data: [DONE]``.

    Args:
        encoder: the ``AiSdkEncoder`` of this response.
        initial_id: as for :class:`FrameWriter`.
    """

    def __init__(
        self, encoder: Any, *, broadcast: bool = False, initial_id: str | None = None
    ) -> None:
        super().__init__(broadcast=broadcast, initial_id=initial_id)
        self._encoder = encoder

    def _chunks(self, chunks: list[Mapping[str, object]], id: str | None) -> bytes:
        return b"".join(frame(json_data(chunk), id=id) for chunk in chunks)

    def _event(self, event: MessageStreamEvent, id: str) -> bytes:
        return self._chunks(self._encoder.event(event), id)

    def _finish(self, chunks: list[Mapping[str, object]], id: str | None) -> bytes:
        return self._chunks(chunks, id) + frame(_DONE_DATA, id=id)

    def _done(
        self,
        id: str,
        message: Message | None,
        stop_reason: str | None = None,
        usage: Usage | None = None,
    ) -> bytes:
        return self._finish(self._encoder.done(message), id)

    def _cancelled(self, id: str, message: Message | None, usage: Usage | None = None) -> bytes:
        return self._finish(self._encoder.cancelled(message), id)

    def _error(self, id: str | None, kind: str, message: str) -> bytes:
        return self._finish(self._encoder.error(kind, message), id)


def writer_for(
    format: SSEFormat,
    *,
    broadcast: bool = False,
    initial_id: str | None = None,
    message_id: str | None = None,
) -> FrameWriter:
    """A new frame writer for ``format`` (see :class:`FrameWriter` for the arguments;
    ``message_id`` is the ``messageId`` of an ``ai-sdk`` stream, default the API's).

    Raises:
        ValueError: ``format`` is not ``"text"``, ``"events"`` or ``"ai-sdk"``.
    """
    if format == "text":
        return TextFrames(broadcast=broadcast, initial_id=initial_id)
    if format == "events":
        return EventFrames(broadcast=broadcast, initial_id=initial_id)
    if format == "ai-sdk":
        from ._ai_sdk import AiSdkEncoder

        encoder = AiSdkEncoder(message_id=message_id)
        return AiSdkFrames(encoder, broadcast=broadcast, initial_id=initial_id)
    raise ValueError(f'format must be "text", "events" or "ai-sdk", not {format!r}')
