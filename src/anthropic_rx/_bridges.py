"""Bridges between Observables and Python iteration: ``async for``, ``for``, ``await``.

- :func:`to_async_iterator`: ``async for`` over an Observable, paced: when the consumer falls
  ``max_buffer`` items behind, the source stops reading the network until it catches up.
- :func:`to_iterator`: a blocking ``for`` for scripts and sync workers, on a private event loop
  that runs only while the consumer waits for the next item.
- :func:`to_stream`: an aiostream ``Stream``, cold and closed by aiostream's ``streamcontext``.
- :func:`from_async_iterable`: a cold Observable over any async iterable.
- :func:`final_message`: await the whole message.

Disposal: leaving an ``async for`` with ``break`` (the iterator is dropped), ``aclose()``,
``async with``, cancelling the consuming task, or ``close()`` / leaving a ``for`` dispose the
subscription, which stops the source and closes its HTTP response. Errors are raised at the
``async for`` / ``for`` / ``await``, after the items that came before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Generic, TypeVar, cast

import aiostream
import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from ._builder_sharing import sharing_builder
from ._error_event import error_of_event
from ._events import ErrorEvent, Message, MessageStartEvent, MessageStreamEvent
from ._exceptions import IncompleteStreamError
from ._meta import ResponseMeta
from ._pacing import Demand, current_demand, demand_scope
from ._snapshot import MessageBuilder
from ._source import EventStream, event_loop_of

__all__ = [
    "AsyncObservableIterator",
    "ObservableAsyncIterable",
    "ObservableIterator",
    "final_message",
    "from_async_iterable",
    "to_async_iterator",
    "to_iterator",
    "to_stream",
]

T = TypeVar("T")

DEFAULT_MAX_BUFFER = 256


class _Inbox(Generic[T]):
    """What the subscription delivers, waiting for the consumer.

    The observer callbacks live here, not on the iterator, so the subscription never refers
    back to the iterator: dropping the iterator (``break``) frees it at once, and its
    ``__del__`` disposes the subscription.
    """

    __slots__ = ("closed", "completed", "demand", "error", "max_buffer", "queue", "waiter")

    def __init__(self, max_buffer: int) -> None:
        self.max_buffer = max_buffer
        self.queue: deque[T] = deque()
        self.demand = Demand()
        self.waiter: asyncio.Future[None] | None = None
        self.completed = False
        self.error: BaseException | None = None
        self.closed = False

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_next(self, item: T) -> None:
        # Once per item: the wake-up is inlined, and a paused demand is not paused again.
        if self.closed:
            return
        queue = self.queue
        queue.append(item)
        if len(queue) >= self.max_buffer and self.demand.ready:
            self.demand.pause()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_error(self, error: Exception) -> None:
        self.error = error
        self.wake()

    def on_completed(self) -> None:
        self.completed = True
        self.wake()


class AsyncObservableIterator(Generic[T]):
    """``async for`` over an Observable. Subscribes on the first ``__anext__``.

    Use it once. It is also an async context manager that disposes on exit.
    """

    def __init__(self, source: reactivex.Observable[T], *, max_buffer: int) -> None:
        self._subscription: abc.DisposableBase | None = None
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._source = source
        self._inbox: _Inbox[T] = _Inbox(max_buffer)

    def __aiter__(self) -> AsyncObservableIterator[T]:
        return self

    async def __anext__(self) -> T:
        inbox = self._inbox
        if self._subscription is None and not inbox.closed:
            self._subscribe()
        queue = inbox.queue
        while not queue:
            if inbox.error is not None:
                error, inbox.error = inbox.error, None
                inbox.closed = True
                raise error
            if inbox.completed or inbox.closed:
                raise StopAsyncIteration
            waiter = inbox.waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                self.dispose()
                raise
            finally:
                inbox.waiter = None
        item = queue.popleft()
        if not inbox.demand.ready and len(queue) <= inbox.max_buffer // 2:
            inbox.demand.resume()
        return item

    def _subscribe(self) -> None:
        loop = asyncio.get_running_loop()
        inbox = self._inbox
        with demand_scope(inbox.demand):
            self._subscription = self._source.subscribe(
                inbox.on_next, inbox.on_error, inbox.on_completed, scheduler=AsyncIOScheduler(loop)
            )

    def dispose(self) -> None:
        """Stop: dispose the subscription (closing the source's response) and drop the buffer."""
        inbox = self._inbox
        inbox.closed = True
        inbox.queue.clear()
        # A source shared with others (``share()``) is paced by this consumer's demand: left
        # paused, it would never read again for them.
        inbox.demand.resume()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.dispose()
        inbox.wake()

    async def aclose(self) -> None:
        """Dispose, then give the source's task a turn of the loop to close its response."""
        self.dispose()
        await asyncio.sleep(0)

    async def __aenter__(self) -> AsyncObservableIterator[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # ``break`` out of ``async for`` drops the iterator: that must stop the request too.
        subscription = getattr(self, "_subscription", None)
        if subscription is not None:
            subscription.dispose()


def to_async_iterator(
    source: reactivex.Observable[T], *, max_buffer: int = DEFAULT_MAX_BUFFER
) -> AsyncObservableIterator[T]:
    """Iterate an Observable with ``async for``.

    Args:
        source: any Observable; subscribed at the first iteration.
        max_buffer: items held for a consumer that falls behind; at this many, the source stops
            reading its network until half are taken.

    Returns:
        An async iterator; ``break``, ``aclose()``, ``async with`` exit and cancelling the task
        dispose the subscription and close the HTTP response.

    Raises:
        Exception: whatever the Observable errors with, at the ``async for``, after the items
            before it.

    Example:
        >>> async for text in arx.to_async_iterator(events.pipe(ops.text_deltas())): ...
    """
    return AsyncObservableIterator(source, max_buffer=max_buffer)


class ObservableIterator(Generic[T]):
    """A blocking iterator over an Observable, on a private event loop.

    The loop runs only inside ``next()``, so the network is read only while the consumer waits
    for an item. It cannot be used where an event loop is already running in the same thread.
    ``close()`` (also on garbage collection and on leaving ``with``) stops the request and waits
    until its response is closed.
    """

    def __init__(self, source: reactivex.Observable[T], *, max_buffer: int) -> None:
        self._inner = AsyncObservableIterator(source, max_buffer=max_buffer)
        self._loop = asyncio.new_event_loop()  # last: nothing to close if the above raised

    def __iter__(self) -> ObservableIterator[T]:
        return self

    def __next__(self) -> T:
        if self._loop.is_closed():
            raise StopIteration
        if _loop_running_here():
            raise RuntimeError(
                "to_iterator blocks and cannot run inside a running event loop; "
                "use `async for ... in anthropic_rx.to_async_iterator(...)` there"
            )
        try:
            return self._loop.run_until_complete(self._inner.__anext__())
        except StopAsyncIteration:
            self.close()
            raise StopIteration from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Dispose the subscription and run the loop until every task of it has finished.

        The private loop runs on this thread, or, where this thread runs an event loop of its
        own (the iterator dropped inside async code), on a short-lived thread of its own while
        this one waits: either way the response is closed before ``close`` returns.
        """
        loop = self._loop
        if loop.is_closed():
            return
        self._inner.dispose()
        if _loop_running_here():
            finisher = threading.Thread(target=_finish, args=(loop,), name="anthropic-rx-close")
            finisher.start()
            finisher.join()
        else:
            _finish(loop)

    def __enter__(self) -> ObservableIterator[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            self.close()


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the loop's tasks, let their ``finally`` (closing responses) run, close it."""
    try:
        pending = asyncio.all_tasks(loop)
        if pending:
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def to_iterator(
    source: reactivex.Observable[T], *, max_buffer: int = DEFAULT_MAX_BUFFER
) -> ObservableIterator[T]:
    """Iterate an Observable with a plain, blocking ``for`` (scripts, sync workers).

    Raises:
        RuntimeError: at the first ``next()`` when an event loop is running in this thread.
        Exception: whatever the Observable errors with, at the ``for``, after the items before
            it.

    Example:
        >>> for text in arx.to_iterator(events.pipe(ops.text_deltas())): print(text, end="")
    """
    return ObservableIterator(source, max_buffer=max_buffer)


class ObservableAsyncIterable(Generic[T]):
    """A re-iterable async iterable over an Observable: each ``aiter()`` is a new subscription.

    This is what aiostream needs: its ``streamcontext`` calls ``aiter()`` and closes the
    iterator (``aclose``) when the block exits, which disposes the subscription.
    """

    def __init__(self, source: reactivex.Observable[T], *, max_buffer: int) -> None:
        self._source = source
        self._max_buffer = max_buffer

    def __aiter__(self) -> AsyncObservableIterator[T]:
        return AsyncObservableIterator(self._source, max_buffer=self._max_buffer)


def to_stream(
    source: reactivex.Observable[T], *, max_buffer: int = DEFAULT_MAX_BUFFER
) -> aiostream.core.Stream[T]:
    """An aiostream ``Stream`` over an Observable, for aiostream's ``pipe`` operators.

    Like the Observable, the stream is cold: each ``async with stream.stream()`` (or
    ``async for``) subscribes anew, and leaving the block disposes that subscription and closes
    its HTTP response. Errors are raised inside the block.

    Example:
        >>> from aiostream import pipe
        >>> words = arx.to_stream(events.pipe(ops.text_deltas())) | pipe.take(10)
        >>> async with words.stream() as chunks:
        ...     async for chunk in chunks: ...
    """
    return aiostream.stream.iterate(ObservableAsyncIterable(source, max_buffer=max_buffer))


def from_async_iterable(iterable: AsyncIterable[T]) -> reactivex.Observable[T]:
    """A cold Observable over an async iterable; each subscription iterates it anew.

    Items are emitted from a task on the running event loop, paced by the consumer like the
    event source. Completion and errors are the iterable's. Dispose cancels the task and closes
    the iterator (``aclose``). An iterator that is also an async context manager (an aiostream
    ``Stream``'s) is entered while it is iterated. A one-shot iterable (an async generator) can
    be subscribed once.

    Raises:
        TypeError: ``iterable`` is not an async iterable (at call time).
    """
    if not isinstance(iterable, AsyncIterable):
        raise TypeError(
            f"from_async_iterable takes an async iterable, not {type(iterable).__name__}"
        )

    def subscribe(
        observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = event_loop_of(scheduler)
        demand = current_demand()
        iterator = aiter(iterable)
        stopped = False

        async def run() -> None:
            try:
                if hasattr(iterator, "__aenter__") and hasattr(iterator, "__aexit__"):
                    async with cast(AbstractAsyncContextManager[AsyncIterator[T]], iterator):
                        await emit()
                else:
                    await emit()
            except Exception as exc:
                if not stopped:
                    observer.on_error(exc)
                return
            finally:
                closer = getattr(iterator, "aclose", None)
                if closer is not None:
                    await closer()
            if not stopped:
                observer.on_completed()

        async def emit() -> None:
            async for item in iterator:
                if stopped:
                    return
                observer.on_next(item)
                if stopped:  # disposed from inside on_next: read nothing more
                    return
                if demand is not None and not demand.ready:
                    await demand.wait()

        task = loop.create_task(run())

        def dispose() -> None:
            nonlocal stopped
            stopped = True
            task.cancel()

        return Disposable(dispose)

    return reactivex.create(subscribe)


async def final_message(events: reactivex.Observable[MessageStreamEvent]) -> Message:
    """Await the complete message of a stream.

    Cancelling the awaiting task disposes the subscription and closes the response.

    Raises:
        APIError: the stream sent an ``error`` event (the typed subclass by ``error.type``,
            e.g. :class:`OverloadedError`), with ``.partial_message``.
        IncompleteStreamError: the stream completed without ``message_stop`` (e.g. a pipeline
            that cancelled it).
        Exception: any error of the stream itself (:class:`ProtocolError`,
            :class:`APIConnectionError`...).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Message] = loop.create_future()
    slot: list[MessageBuilder] = []
    own_builder = MessageBuilder()
    meta: ResponseMeta | None = None
    subscription: abc.DisposableBase | None = None

    def builder() -> MessageBuilder:
        return slot[0] if slot else own_builder

    def fail(error: BaseException) -> None:
        if not done.done():
            done.set_exception(error)
        if subscription is not None:
            subscription.dispose()

    def on_next(event: MessageStreamEvent) -> None:
        nonlocal meta
        if done.done():
            return
        kind = type(event)
        if kind is ErrorEvent:
            error_event = cast(ErrorEvent, event)
            fail(
                error_of_event(
                    error_event,
                    partial_message=builder().message(),
                    meta=error_event.response_meta or meta,
                )
            )
            return
        if kind is MessageStartEvent:
            meta = cast(MessageStartEvent, event).response_meta
        if not slot:
            own_builder.feed(event)

    def on_completed() -> None:
        if done.done():
            return
        current = builder()
        if not current.message_stopped:
            fail(
                IncompleteStreamError(
                    "the stream completed before message_stop",
                    partial_message=current.message(),
                    meta=meta,
                )
            )
            return
        message = current.message()
        # The builder refuses message_stop before message_start, so a stopped one has a message.
        assert message is not None
        done.set_result(message)

    # A stream no operator has changed is accumulated once, by its own reader, which then
    # need not hand this subscriber its deltas at all.
    sharing = (
        sharing_builder(slot, deltas=False)
        if isinstance(events, EventStream)
        else contextlib.nullcontext()
    )
    with demand_scope(Demand()), sharing:  # consumed at once: the demand never pauses
        subscription = events.subscribe(
            on_next, fail, on_completed, scheduler=AsyncIOScheduler(loop)
        )
    try:
        return await done
    finally:
        subscription.dispose()
