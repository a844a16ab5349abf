"""The cold event source: response bytes in, typed events out, one reading per subscription.

:class:`EventReader` turns the bytes of one response into events for one observer and decides
how the stream ends. The drivers feed it: :func:`drive_async` from an async iterator of chunks
(a socket, paced by the consumer's :class:`~anthropic_rx._pacing.Demand`), and the synchronous
driver behind :func:`from_sse_bytes` from a plain iterable. The HTTP client feeds the same
reader, so a recorded ``.sse`` file and a live response go through one path.

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

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pydantic_core
import reactivex
from pydantic import ValidationError
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.scheduler import CurrentThreadScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler

from ._builder_sharing import BUILDER_SLOT, sharing_builder
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
from ._pacing import Demand, current_demand
from ._snapshot import MessageBuilder
from ._sse import DEFAULT_MAX_LINE_BYTES, ServerSentEvent, SSEDecoder
from ._watchdog import Watchdog

__all__ = [
    "Body",
    "EventReader",
    "EventStream",
    "drive_async",
    "event_loop_of",
    "from_sse_bytes",
    "sharing_builder",
    "stop_reading",
]

_DELTA_VALIDATOR = EVENT_VALIDATORS["content_block_delta"]
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 64 * 1024

ByteSource = (
    Iterable[bytes] | AsyncIterable[bytes] | httpx.Response | bytes | bytearray | memoryview
)


class EventStream(reactivex.Observable[MessageStreamEvent]):
    """The cold Observable of one response's events (``from_sse_bytes``, ``Client.stream``).

    A plain ``reactivex.Observable`` in every way; the subclass only lets one-shot consumers
    such as :func:`~anthropic_rx.final_message` recognise a stream no operator has changed.
    """


REDACTED = "[redacted]"


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
            _report_subscriber_error(self._observer, raised, "on_error", exc)

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
                                "message": detail.message.replace(secret, REDACTED),
                                "type": detail.type.replace(secret, REDACTED),
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
            _report_subscriber_error(self._observer, raised, "on_completed", None)


def _report_subscriber_error(
    observer: abc.ObserverBase[Any], raised: Exception, where: str, handling: Exception | None
) -> None:
    """Tell the running loop's exception handler what the subscriber's ``where`` raised.

    Raised inside a reading task, the exception would end the task and stay unseen until the
    task is collected ("Task exception was never retrieved"), often at interpreter exit.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise raised from None
    name = _subscriber_name(observer, where)
    if where == "on_error" and raised is handling:
        # reactivex's default on_error raises the error it is given.
        message = (
            f"anthropic-rx: the subscriber {name} did not handle {handling!r} (it has no "
            "on_error of its own, or its on_error raised it again); the stream was stopped "
            "and its response closed"
        )
    else:
        during = "" if handling is None else f" while handling {handling!r}"
        message = (
            f"anthropic-rx: the {where} of the subscriber {name} raised {raised!r}{during}; "
            "the stream was stopped and its response closed"
        )
    loop.call_exception_handler({"message": message, "exception": raised, "observer": observer})


def _subscriber_name(observer: abc.ObserverBase[Any], where: str) -> str:
    """The subscriber's own ``where`` function, else its ``on_next``, when reactivex's observer
    holds them (its defaults are not the subscriber's); else the observer."""
    for kind in (where.removeprefix("on_"), "next"):
        for attribute in (f"_on_{kind}", f"_handler_on_{kind}"):
            handler = getattr(observer, attribute, None)
            module = getattr(handler, "__module__", None) or ""
            name = getattr(handler, "__qualname__", None)
            if isinstance(name, str) and not module.startswith("reactivex."):
                return name
    return repr(observer)


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


# --- drivers ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Body:
    """The chunks of one response body and how to release them."""

    chunks: Iterator[bytes] | AsyncIterator[bytes]
    close: Callable[[], object] | None = None
    meta: ResponseMeta | None = None
    # Read what follows message_stop (the chunked terminator) so the connection can be reused.
    drain: bool = False


def stop_reading(reader: EventReader, task: asyncio.Task[None]) -> None:
    """Dispose: no more events; cancel the reading unless it already ended.

    A task whose reader has finished is only draining and closing its response: cancelling it
    could cut that close short.
    """
    finished = reader.finished
    reader.stop()
    if not finished:
        task.cancel()


async def drive_async(
    body: Body,
    reader: EventReader,
    demand: Demand | None,
    *,
    idle_timeout: float | None = None,
    deadline: float | None = None,
) -> None:
    """Read ``body`` into ``reader`` until it stops, then close the body.

    Waits on ``demand`` between chunks. ``idle_timeout``: seconds without an event other than
    ``ping`` (time spent waiting for a slow consumer does not count); ``deadline``: the loop
    time by which the body must have ended. Either failing gives :class:`APITimeoutError`.
    Every exception of the chunks reaches the reader (the subscriber's ``on_error``).
    Cancellation closes the body and propagates, even when the close raises.
    """
    chunks = cast(AsyncIterator[bytes], body.chunks)
    try:
        try:
            if idle_timeout is None and deadline is None:
                async for chunk in chunks:
                    if not reader.feed(chunk):
                        break
                    if demand is not None and not demand.ready:
                        await demand.wait()
                else:
                    reader.end()
            else:
                await _drive_timed(chunks, reader, demand, idle_timeout, deadline)
            if body.drain and reader.completed:
                await _drain(chunks)
        except httpx.DecodingError as exc:
            reader.undecodable(exc)
        except httpx.TransportError as exc:
            reader.transport_failed(exc)
        except Exception as exc:
            if reader.finished:  # raised by the subscriber's own on_completed / on_error
                raise
            reader.fail(exc)  # a failing user iterable or transport stream: its error, unchanged
    except BaseException:
        # Cancelled, or the subscriber's own error on its way out: that is what goes on; a
        # close failing as well must not replace it.
        with contextlib.suppress(Exception):
            await _close_async(body)
        raise
    await _close_async(body)


async def _drive_timed(
    chunks: AsyncIterator[bytes],
    reader: EventReader,
    demand: Demand | None,
    idle_timeout: float | None,
    deadline: float | None,
) -> None:
    watchdog = Watchdog(idle_timeout, deadline)
    progress = reader.progress
    try:
        with watchdog:
            async for chunk in chunks:
                if not reader.feed(chunk):
                    return
                if reader.progress != progress:  # pings do not count as progress
                    progress = reader.progress
                    watchdog.progress()
                if demand is not None and not demand.ready:
                    watchdog.pause()
                    await demand.wait()
                    watchdog.resume()
            reader.end()
    except TimeoutError as exc:
        kind = watchdog.expired or "read"
        error = APITimeoutError(
            f"no event for {idle_timeout} s" if kind == "idle" else "the stream took too long",
            kind=kind,
        )
        error.__cause__ = exc
        reader.fail(error)


async def _drain(chunks: AsyncIterator[bytes]) -> None:
    """Read the rest of a completed body, briefly and boundedly, then let it be closed.

    A response closed before its end cannot return its connection to the pool; what follows
    ``message_stop`` is normally only the end of the chunked encoding.
    """
    size = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(_DRAIN_SECONDS):
            async for chunk in chunks:
                size += len(chunk)
                if size > _DRAIN_BYTES:
                    return


async def _close_async(body: Body) -> None:
    closer = body.close
    if closer is None:
        closer = getattr(body.chunks, "aclose", None)
    if closer is not None:
        result = closer()
        if inspect.isawaitable(result):
            await cast("Awaitable[object]", result)


def _drive_sync(body: Body, reader: EventReader) -> None:
    chunks = cast("Iterator[bytes]", body.chunks)
    closer = body.close or getattr(chunks, "close", None)
    try:
        try:
            for chunk in chunks:
                if not reader.feed(chunk):
                    break
            else:
                reader.end()
        except httpx.DecodingError as exc:
            reader.undecodable(exc)
        except httpx.TransportError as exc:
            reader.transport_failed(exc)
        except Exception as exc:
            if reader.finished:  # raised by the subscriber's own on_completed / on_error
                raise
            reader.fail(exc)
    except BaseException:
        # The exception on its way out is what matters; a close failing too must not hide it.
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()
        raise
    if closer is not None:
        closer()


def event_loop_of(scheduler: abc.SchedulerBase | None) -> asyncio.AbstractEventLoop:
    """The loop to run on: the scheduler's when it is an asyncio one, else the running loop.

    Raises:
        RuntimeError: no loop is running (use ``arx.to_iterator`` from synchronous code).
    """
    if isinstance(scheduler, AsyncIOScheduler):
        return scheduler._loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "this stream reads the network and must be subscribed with an asyncio event loop "
            "running; from synchronous code use anthropic_rx.to_iterator(...)"
        ) from None


def _open_body(source: ByteSource) -> Body:
    if isinstance(source, httpx.Response):
        meta = ResponseMeta.from_headers(source.status_code, source.headers)
        if getattr(source, "_content", None) is not None:
            return Body(iter((source.content,)), None, meta)
        if isinstance(source.stream, httpx.AsyncByteStream):
            return Body(source.aiter_bytes(), source.aclose, meta)
        return Body(source.iter_bytes(), source.close, meta)
    if isinstance(source, bytes | bytearray | memoryview):
        return Body(iter((bytes(source),)))
    if isinstance(source, AsyncIterable):
        return Body(aiter(source))
    return Body(iter(source))


def from_sse_bytes(
    source: ByteSource,
    *,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> EventStream:
    """The cold Observable of typed events over the bytes of a Messages API stream.

    ``source`` is an iterable or async iterable of byte chunks (a recorded ``.sse`` file's
    bytes, a proxy's body), all the bytes at once, or an open ``httpx.Response``. Nothing is read
    before subscribe; each subscription reads the source again (a one-shot source, such as a
    response or a generator, can be subscribed once: use ``ops.share()`` to fan it out).

    A synchronous source is read on the subscribing thread, before ``subscribe`` returns unless
    the subscriber disposes. An asynchronous one is read by a task on the running event loop,
    paced by the consumer; dispose cancels it and closes the body.

    Completion: after ``message_stop``, or after an ``error`` event (emitted as data).

    Errors: :class:`IncompleteStreamError` when the body ends before ``message_stop``;
    :class:`ProtocolError` for bad bytes, JSON or event order; :class:`APIConnectionError` for
    transport failures; each with ``.partial_message``.

    Raises:
        TypeError: ``source`` is a ``str`` or not iterable (at call time, not at subscribe).

    Example:
        >>> message = await arx.final_message(arx.from_sse_bytes(Path("reply.sse").read_bytes()))
    """
    if isinstance(source, str):
        raise TypeError("from_sse_bytes takes bytes; encode the text first (text.encode())")
    if not isinstance(
        source, httpx.Response | bytes | bytearray | memoryview | Iterable | AsyncIterable
    ):
        raise TypeError(
            f"from_sse_bytes takes bytes, an (async) iterable of bytes or an httpx.Response, "
            f"not {type(source).__name__}"
        )
    if max_line_bytes < 1:
        raise ValueError("max_line_bytes must be positive")

    def subscribe(
        observer: abc.ObserverBase[MessageStreamEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        body = _open_body(source)
        in_task = isinstance(body.chunks, AsyncIterator)
        reader = EventReader(
            observer, max_line_bytes=max_line_bytes, meta=body.meta, in_task=in_task
        )
        if in_task:
            loop = event_loop_of(scheduler)
            task = loop.create_task(drive_async(body, reader, current_demand()))

            return Disposable(lambda: stop_reading(reader, task))

        def run(_: abc.SchedulerBase, __: Any = None) -> None:
            if not reader.finished:
                _drive_sync(body, reader)

        # Scheduled on the trampoline, as reactivex's own from_iterable is: the subscription
        # is in place before the first event, so a subscriber can dispose mid-stream.
        trampoline = CurrentThreadScheduler.singleton()
        return CompositeDisposable(trampoline.schedule(run), Disposable(reader.stop))

    return EventStream(subscribe)
