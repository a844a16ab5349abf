"""The drivers: feed the chunks of one body into an :class:`~anthropic_rx._reader.EventReader`
until it stops, then close the body.

:func:`drive_async` reads an async iterator of chunks in a task of its own (a socket), paced by
the consumer's :class:`~anthropic_rx._pacing.Demand` and bounded by the idle and total
timeouts; :func:`drive_sync` reads a plain iterator on the subscribing thread. Either passes
every exception of the chunks to the reader (the subscriber's ``on_error``) and closes the body
whatever happens: a cancellation, or an exception of the subscriber's own ``on_completed`` /
``on_error``, goes on after the close, and a close that fails as well does not replace it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import cast

import httpx

from ._exceptions import APITimeoutError
from ._meta import ResponseMeta
from ._pacing import Demand
from ._reader import EventReader
from ._watchdog import Watchdog

__all__ = ["Body", "drive_async", "drive_sync", "stop_reading"]

_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 64 * 1024


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
        except Exception as exc:
            _reading_failed(reader, exc)
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


def drive_sync(body: Body, reader: EventReader) -> None:
    """Read ``body`` into ``reader`` on this thread until it stops, then close the body.

    Every exception of the chunks reaches the reader (the subscriber's ``on_error``); one the
    subscriber's own ``on_completed`` / ``on_error`` raises propagates, the body closed first.
    """
    chunks = cast("Iterator[bytes]", body.chunks)
    closer = body.close or getattr(chunks, "close", None)
    try:
        try:
            for chunk in chunks:
                if not reader.feed(chunk):
                    break
            else:
                reader.end()
        except Exception as exc:
            _reading_failed(reader, exc)
    except BaseException:
        # The exception on its way out is what matters; a close failing too must not hide it.
        if closer is not None:
            with contextlib.suppress(Exception):
                closer()
        raise
    if closer is not None:
        closer()


def _reading_failed(reader: EventReader, exc: Exception) -> None:
    """End the stream with what reading its body raised (a driver's ``except`` calls it).

    Raises:
        Exception: ``exc`` again when the reader had finished already: the subscriber's own
            ``on_completed`` / ``on_error`` raised it, and it goes on its way.
    """
    if isinstance(exc, httpx.DecodingError):
        reader.undecodable(exc)
    elif isinstance(exc, httpx.TransportError):
        reader.transport_failed(exc)
    elif reader.finished:
        raise exc
    else:
        reader.fail(exc)  # a failing user iterable or transport stream: its error, unchanged
