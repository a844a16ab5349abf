"""Bridges between Observables and Python iteration: ``async for``, ``for``, ``await``.

- :func:`to_async_iterator` (:mod:`anthropic_rx._async_bridge`): ``async for`` over an
  Observable, paced: when the consumer falls ``max_buffer`` items behind, the source stops
  reading the network until it catches up.
- :func:`to_iterator` (:mod:`anthropic_rx._sync_bridge`): a blocking ``for`` for scripts and sync
  workers, on a private event loop that runs only while the consumer waits for the next item.
- :func:`to_stream` (:mod:`anthropic_rx._aiostream_bridge`): an aiostream ``Stream``, cold and
  closed by aiostream's ``streamcontext``.
- :func:`from_async_iterable` (:mod:`anthropic_rx._from_async_iterable`): a cold Observable over
  any async iterable.
- :func:`final_message` (:mod:`anthropic_rx._final_message`): await the whole message.

Disposal: leaving an ``async for`` with ``break`` (the iterator is dropped), ``aclose()``,
``async with``, cancelling the consuming task, or ``close()`` / leaving a ``for`` dispose the
subscription, which stops the source and closes its HTTP response. Errors are raised at the
``async for`` / ``for`` / ``await``, after the items that came before them.

This module only gathers the bridges under one name; each lives in a module of its own.
"""

from __future__ import annotations

from ._aiostream_bridge import ObservableAsyncIterable, to_stream
from ._async_bridge import AsyncObservableIterator, to_async_iterator
from ._final_message import final_message
from ._from_async_iterable import from_async_iterable
from ._sync_bridge import ObservableIterator, to_iterator

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
