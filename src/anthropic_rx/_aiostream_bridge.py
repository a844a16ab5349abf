"""The aiostream bridge: an Observable as a cold aiostream ``Stream``.

Each ``async with stream.stream()`` (or ``async for``) subscribes anew through the ``async for``
bridge; aiostream's ``streamcontext`` closes the iterator when the block exits, which disposes
that subscription and closes its HTTP response. Errors are raised inside the block.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import aiostream
import reactivex

from ._async_bridge import DEFAULT_MAX_BUFFER, AsyncObservableIterator

__all__ = ["ObservableAsyncIterable", "to_stream"]

T = TypeVar("T")


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
