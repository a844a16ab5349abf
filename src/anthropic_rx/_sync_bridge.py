"""The blocking ``for`` bridge: an Observable iterated by synchronous code (scripts, workers).

Each iterator runs a private event loop only inside ``next()``, so the network is read only
while the consumer waits for an item. ``close()``, leaving ``with``, leaving the ``for`` or
garbage collection disposes the subscription and waits until its response is closed. Errors are
raised at the ``for``, after the items that came before them.
"""

from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Generic, TypeVar

import reactivex

from ._async_bridge import DEFAULT_MAX_BUFFER, AsyncObservableIterator

__all__ = ["ObservableIterator", "to_iterator"]

T = TypeVar("T")


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
