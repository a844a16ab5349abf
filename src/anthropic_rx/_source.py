"""The cold event source: response bytes in, typed events out, one reading per subscription.

:func:`from_sse_bytes` composes the pieces: a byte source opened as a body
(:mod:`anthropic_rx._byte_sources`), read by a driver (:mod:`anthropic_rx._drivers`) into an
event reader (:mod:`anthropic_rx._reader`, which also says how a stream ends). The HTTP client
composes the same reader and async driver, so a recorded ``.sse`` file and a live response go
through one path. :class:`EventStream` is the Observable both return.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import httpx
import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable
from reactivex.scheduler import CurrentThreadScheduler

from ._byte_sources import ByteSource, open_body
from ._drivers import drive_async, drive_sync, stop_reading
from ._event_loop import event_loop_of
from ._events import MessageStreamEvent
from ._pacing import current_demand
from ._reader import EventReader
from ._sse import DEFAULT_MAX_LINE_BYTES

__all__ = ["EventStream", "from_sse_bytes"]


class EventStream(reactivex.Observable[MessageStreamEvent]):
    """The cold Observable of one response's events (``from_sse_bytes``, ``Client.stream``).

    A plain ``reactivex.Observable`` in every way; the subclass only lets one-shot consumers
    such as :func:`~anthropic_rx.final_message` recognise a stream no operator has changed.
    """


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
        body = open_body(source)
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
                drive_sync(body, reader)

        # Scheduled on the trampoline, as reactivex's own from_iterable is: the subscription
        # is in place before the first event, so a subscriber can dispose mid-stream.
        trampoline = CurrentThreadScheduler.singleton()
        return CompositeDisposable(trampoline.schedule(run), Disposable(reader.stop))

    return EventStream(subscribe)
