"""Consumer pacing: how a slow consumer makes the source read the network more slowly.

Rx pushes; a socket should be pulled. A consumer that can fall behind (an ``async for`` bridge,
an SSE response writing to a slow client) creates a :class:`Demand` and subscribes while it is
current (:func:`demand_scope`). The source captures the current demand when it is subscribed,
through any number of synchronous operators in between, and awaits :meth:`Demand.wait` before
reading each network chunk. Between the socket and the consumer there is then at most one
chunk's events beyond the consumer's high-water mark: no unbounded queue anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["Demand", "current_demand", "demand_scope"]


class Demand:
    """A gate the source waits on between chunks; open while the consumer keeps up.

    Must be used from the event loop thread of the source. ``ready`` is read for every chunk
    and set for nearly every item of a consumer that has fallen behind, so it is a plain
    attribute, and pausing a paused demand costs nothing.

    Attributes:
        ready: whether the source may read the next chunk now (read it; do not set it).
    """

    __slots__ = ("_open", "ready")

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self.ready = True

    def pause(self) -> None:
        """Stop the source before its next read."""
        if self.ready:
            self.ready = False
            self._open.clear()

    def resume(self) -> None:
        """Let the source read again."""
        if not self.ready:
            self.ready = True
            self._open.set()

    async def wait(self) -> None:
        """Return when the source may read again (at once when not paused)."""
        await self._open.wait()


_CURRENT: ContextVar[Demand | None] = ContextVar("anthropic_rx_demand", default=None)


def current_demand() -> Demand | None:
    """The demand of the consumer subscribing now, if it paces its source."""
    return _CURRENT.get()


@contextlib.contextmanager
def demand_scope(demand: Demand) -> Iterator[Demand]:
    """Make ``demand`` current while subscribing, so the source captures it."""
    token = _CURRENT.set(demand)
    try:
        yield demand
    finally:
        _CURRENT.reset(token)
