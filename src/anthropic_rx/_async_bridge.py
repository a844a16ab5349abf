"""The ``async for`` bridge: an Observable iterated by a coroutine, paced by its consumer.

When the consumer falls ``max_buffer`` items behind, the source stops reading its network until
half are taken (:mod:`anthropic_rx._pacing`). Leaving the ``async for`` with ``break`` (the
iterator is dropped), ``aclose()``, ``async with`` exit or cancelling the consuming task
disposes the subscription, which stops the source and closes its HTTP response. Errors are
raised at the ``async for``, after the items that came before them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Generic, TypeVar

import reactivex
from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from ._pacing import Demand, demand_scope

__all__ = ["DEFAULT_MAX_BUFFER", "AsyncObservableIterator", "to_async_iterator"]

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
