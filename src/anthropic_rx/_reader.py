"""The event reader: one response's bytes in, typed events out, and how the stream ends.

:class:`EventReader` decodes the body of one response for one observer. A driver
(:mod:`anthropic_rx._drivers`) feeds it chunk by chunk, whether the bytes come from a recorded
``.sse`` file or a live response, so both go through one path. A frame the fast path does not
take is named by its data here too, and a frame named ``error`` whose data is not the API's
error event (a gateway's own shape) is salvaged as the :class:`ErrorEvent` it names.

How a stream ends:

- ``message_stop`` → ``on_completed`` at once (nothing after it is read);
- an ``error`` event → emitted as :class:`ErrorEvent` (with the partial message attached), then
  ``on_completed``: the error is data, for a relay to forward; :func:`final_message`,
  ``ops.raise_on_error()`` and the operators that turn events into something else raise it;
- end of body before either → :class:`IncompleteStreamError`;
- bad bytes, bad JSON or an impossible event order → :class:`ProtocolError`;
- a transport error → :class:`APIConnectionError` (:class:`APITimeoutError` for timeouts);
- an exception raised by the subscriber's ``on_next`` → stops reading and is passed to its
  ``on_error``;
- an exception raised by the subscriber's ``on_error`` (reactivex's default one raises what
  it is given) or ``on_completed`` → on a source read by a task, where a raise would be lost
  until the task is collected, it goes to the running loop's exception handler at once
  (``loop.call_exception_handler``), naming the subscriber; on a source read during
  ``subscribe``, it propagates to the caller;
- dispose → no further emission, the body is closed.

Every error of the library's own carries ``.partial_message`` and the response ``.meta``;
an exception of the chunk iterable or of the subscriber is passed on as it is.
"""

from __future__ import annotations

import httpx
import pydantic_core
from pydantic import ValidationError
from reactivex import abc

from ._builder_sharing import BUILDER_SLOT
from ._events import (
    EVENT_VALIDATORS,
    ContentBlockDeltaEvent,
    ErrorDetail,
    ErrorEvent,
    Message,
    MessageStreamEvent,
    PingEvent,
    parse_event,
)
from ._exceptions import (
    AnthropicRxError,
    APIConnectionError,
    APITimeoutError,
    IncompleteStreamError,
    ProtocolError,
)
from ._meta import ResponseMeta
from ._redact import _REDACTED
from ._snapshot import MessageBuilder
from ._sse import DEFAULT_MAX_LINE_BYTES, ServerSentEvent, SSEDecoder
from ._subscriber_errors import report_subscriber_error

__all__ = ["EventReader"]

_DELTA_VALIDATOR = EVENT_VALIDATORS["content_block_delta"]


class EventReader:
    """Decodes one response body into events for one observer.

    Not thread-safe; one per subscription. :attr:`progress` counts events other than pings, for
    idle timeouts that pings must not reset.

    ``in_task``: the reader is fed by a task of its own (``drive_async``), so an exception the
    subscriber's ``on_error`` or ``on_completed`` raises is reported to the running loop's
    exception handler; ``False`` when it is fed during ``subscribe``, where it propagates.
    """

    __slots__ = (
        "_builder",
        "_decoder",
        "_emit_deltas",
        "_in_task",
        "_observer",
        "completed",
        "finished",
        "meta",
        "progress",
        "secret",
    )

    def __init__(
        self,
        observer: abc.ObserverBase[MessageStreamEvent],
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        meta: ResponseMeta | None = None,
        in_task: bool = True,
        secret: str | None = None,
    ) -> None:
        self._observer = observer
        self._in_task = in_task
        self._decoder = SSEDecoder(max_line_bytes=max_line_bytes)
        self._builder = MessageBuilder()
        self._emit_deltas = True
        sharing = BUILDER_SLOT.get()
        if sharing is not None:
            sharing[0].append(self._builder)
            self._emit_deltas = sharing[1]
        self.meta = meta
        # The API key, blanked wherever an error event echoes it (a proxy's, a gateway's).
        self.secret = secret
        self.finished = False
        self.completed = False  # ended by message_stop or an error event, not by a failure
        self.progress = 0

    @property
    def started(self) -> bool:
        """Whether any event was emitted (after which a request is never retried)."""
        return self._builder.started or self.progress > 0

    def partial_message(self) -> Message | None:
        """The message accumulated so far, or ``None`` before ``message_start``."""
        return self._builder.message()

    def feed(self, chunk: bytes) -> bool:
        """Decode ``chunk`` and emit its events. Returns whether to keep reading."""
        if self.finished:
            return False
        if not isinstance(chunk, bytes | bytearray | memoryview):
            self.fail(TypeError(f"SSE chunks must be bytes, not {type(chunk).__name__}"))
            return False
        frames: list[ServerSentEvent] = []
        try:
            self._decoder.feed_into(bytes(chunk) if type(chunk) is not bytes else chunk, frames)
        except ProtocolError as exc:
            # The frames completed before the bad line are emitted first, as they would be
            # had they come in a chunk of their own.
            if self._emit_all(frames, truncated=False):
                self.fail(exc)
            return False
        return self._emit_all(frames, truncated=False)

    def end(self) -> None:
        """The body ended: emit a last unterminated event, then complete or fail."""
        if self.finished:
            return
        try:
            frames = self._decoder.flush()
        except ProtocolError as exc:
            # The unterminated tail of a body that never reached message_stop (a cut inside a
            # multi-byte character, say): the stream is incomplete before it is malformed.
            error = IncompleteStreamError(f"the stream ended inside an event: {exc}")
            error.__cause__ = exc
            self.fail(error)
            return
        if not self._emit_all(frames, truncated=True):
            return
        self.fail(
            IncompleteStreamError(
                "the stream ended before message_stop"
                if self._builder.started
                else "the stream ended before any event"
            )
        )

    def transport_failed(self, exc: BaseException) -> None:
        """The connection failed mid-body: an :class:`APIConnectionError` from ``exc``."""
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            error: AnthropicRxError = APITimeoutError("timed out reading the stream", kind="read")
        else:
            error = APIConnectionError(
                f"connection lost mid-stream: {str(exc) or type(exc).__name__}"
            )
        error.__cause__ = exc
        self.fail(error)

    def undecodable(self, exc: httpx.DecodingError) -> None:
        """The body's content encoding (gzip...) did not decode: bad bytes, a ProtocolError."""
        error = ProtocolError(f"the response body could not be decoded: {exc}")
        error.__cause__ = exc
        self.fail(error)

    def fail(self, exc: Exception) -> None:
        """End with ``exc``, attaching the partial message and meta to our own errors."""
        if self.finished:
            return
        self.finished = True
        if isinstance(exc, AnthropicRxError):
            if exc.partial_message is None:
                exc.partial_message = self._builder.message()
            if exc.meta is None:
                exc.meta = self.meta
        try:
            self._observer.on_error(exc)
        except Exception as raised:
            if not self._in_task:
                raise
            report_subscriber_error(self._observer, raised, "on_error", exc)

    def stop(self) -> None:
        """Disposed: emit nothing more."""
        self.finished = True

    def _emit_all(self, frames: list[ServerSentEvent], *, truncated: bool) -> bool:
        validators = EVENT_VALIDATORS
        delta_validator = _DELTA_VALIDATOR
        builder = self._builder
        emit = self._observer.on_next
        emit_deltas = self._emit_deltas
        for frame in frames:
            if self.finished:
                return False
            name, data = frame.event, frame.data
            if not data and name != "error":
                continue  # the SDKs skip empty frames too; pings with no data carry nothing
            validator = delta_validator if name == "content_block_delta" else validators.get(name)
            try:
                try:
                    # One pass from JSON to the model the event name announces.
                    if validator is None:
                        event = _frame_event(frame, truncated)
                    else:
                        event = validator.validate_json(data)
                        # (the attribute, not the ``model_fields_set`` property: a call less)
                        if "type" not in event.__pydantic_fields_set__:  # the default filled it
                            event = _frame_event(frame, truncated)
                except ValidationError:
                    event = _frame_event(frame, truncated)
                builder.feed(event)
            except ProtocolError as exc:
                # The last frame of a cut body is cut, not malformed.
                self.fail(
                    IncompleteStreamError(f"the stream ended inside an event: {exc}")
                    if truncated
                    else exc
                )
                return False
            # Nearly every event: nothing else to decide (unless its data named another type).
            if validator is delta_validator and type(event) is ContentBlockDeltaEvent:
                self.progress += 1
                if not emit_deltas:  # the subscriber reads the builder alone
                    continue
                try:
                    emit(event)
                except Exception as exc:  # the subscriber's own code failed: stop, and tell it
                    self.fail(exc)
                    return False
                continue
            kind = event.type
            if kind != "ping":
                self.progress += 1
                if kind == "error":
                    # What arrived before the error travels with it, for whoever raises it.
                    update: dict[str, object] = {
                        "response_meta": self.meta,
                        "partial_message": builder.message(),
                    }
                    secret = self.secret
                    detail = event.error  # type: ignore[union-attr]
                    if secret and (secret in detail.message or secret in detail.type):
                        update["error"] = detail.model_copy(
                            update={
                                "message": detail.message.replace(secret, _REDACTED),
                                "type": detail.type.replace(secret, _REDACTED),
                            }
                        )
                    event = event.model_copy(update=update)
                elif self.meta is not None and kind == "message_start":
                    event = event.model_copy(update={"response_meta": self.meta})
            try:
                emit(event)
            except Exception as exc:
                self.fail(exc)
                return False
            if kind == "message_stop" or kind == "error":
                self.finished = self.completed = True
                self._complete()
                return False
        return not self.finished

    def _complete(self) -> None:
        try:
            self._observer.on_completed()
        except Exception as raised:
            if not self._in_task:
                raise
            report_subscriber_error(self._observer, raised, "on_completed", None)


def _frame_event(frame: ServerSentEvent, truncated: bool) -> MessageStreamEvent:
    """The event of a frame the fast path did not take: named by its data, with two exceptions.

    A frame named ``ping`` is a ping whatever its data (the SDKs skip such frames unread), and a
    frame named ``error`` is an :class:`ErrorEvent` whatever the shape of its data.
    """
    if frame.event == "ping":
        try:
            event = parse_event(frame.data, "ping")
        except ProtocolError:
            return PingEvent()
        return event if isinstance(event, PingEvent) else PingEvent()
    if frame.event == "error":
        return _error_frame_event(frame.data, truncated)
    return parse_event(frame.data, frame.event)


def _error_frame_event(data: str, truncated: bool) -> ErrorEvent:
    try:
        event = parse_event(data, "error")
    except ProtocolError:
        if truncated:  # cut inside the error's own JSON: the stream is incomplete
            raise
        event = None
    if isinstance(event, ErrorEvent):
        return event
    # Not the API's error event (a gateway's own shape): the error it names, else its text.
    try:
        obj = pydantic_core.from_json(data)
    except ValueError:
        obj = None
    if isinstance(obj, dict):
        inner = obj.get("error")
        named = inner if isinstance(inner, dict) else obj
        error_type, message = named.get("type"), named.get("message")
        if isinstance(error_type, str) and (named is inner or error_type.endswith("_error")):
            text = message if isinstance(message, str) else data
            return ErrorEvent(error=ErrorDetail(type=error_type, message=text))
    return ErrorEvent(error=ErrorDetail(type="api_error", message=data or "error"))
