"""An async iterable as a cold Observable: each subscription iterates it anew, in a task on the
running event loop, paced by the consumer like the event source."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TypeVar, cast

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable

from ._event_loop import event_loop_of
from ._pacing import current_demand

__all__ = ["from_async_iterable"]

T = TypeVar("T")


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
