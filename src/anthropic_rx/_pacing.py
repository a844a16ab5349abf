"""Consumer pacing: how a slow consumer makes the source read the network more slowly.

Rx pushes; a socket should be pulled. A consumer that can fall behind (an ``async for`` bridge,
an SSE response writing to a slow client) creates a :class:`Demand` and subscribes while it is
current (:func:`demand_scope`). The source captures the current demand when it is subscribed,
through any number of synchronous operators in between, and awaits :meth:`Demand.wait` before
reading each network chunk. Between the socket and the consumer there is then at most one
chunk's events beyond the consumer's high-water mark: no unbounded queue anywhere.

Why a ``ContextVar`` and not an argument: ``reactivex.Observable.subscribe`` passes nothing but
the observer and a scheduler, and between the consumer and the source stand the caller's own
operators, each wrapping the observer and subscribing upstream inside its own ``subscribe``.
Neither the observer (wrapped at every step) nor the scheduler (which an operator is free to
replace) reaches the source intact, so an explicit argument would need every operator to
forward it. Those inner subscriptions happen synchronously, within the consumer's
``subscribe``, so a variable set around that call is seen by every source of the pipeline, and
by nothing subscribed elsewhere. A subscription made later, outside the scope (from a task or a
callback), sees no demand and is not paced unless whoever makes it enters the scope again, as
the relay sink does.
The variable is read once per subscription, in the source's ``subscribe``; per chunk the source
reads only the captured demand's plain ``ready`` attribute, so the hot path costs the same
either way.
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
