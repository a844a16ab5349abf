"""The frames of one SSE response, between its source and its body: a bounded, paced queue.

```
 source ─ on_next ─▶ FrameWriter.item ─▶ frames (deque) ─▶ body: await ready(), take()
   ▲                                       │ ≥ HIGH_WATER frames: demand paused
   └────── Demand (the source waits before its next network read) ◀─ ≤ half: resumed
```

The response subscribes its source with an observer of its own, so a frame is queued in the
same call that delivers the event: no task between the source and the body, one wake-up per
frame (the body's). The queue paces the source through the consumer demand of
:mod:`anthropic_rx._pacing`: a browser that stops reading holds at most ``HIGH_WATER`` frames
here (plus one network chunk's events), then the source stops reading the model's response.

Must be used on the event loop thread that runs the source (as every source of the library
is). ``close`` ends it: the subscription is disposed (the model request closed) or, detached,
left to run to its end with nobody reading its frames.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final

import reactivex
from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .._exceptions import AnthropicRxError
from .._pacing import Demand, demand_scope
from ._frames import PING_FRAME, FrameWriter

__all__ = ["HIGH_WATER", "FrameQueue"]

logger = logging.getLogger("anthropic_rx.sinks")

HIGH_WATER: Final = 64  # frames held for a browser that is behind before the source waits

# Detached queues run with no response left to hold them.
_detached: set[FrameQueue] = set()


class FrameQueue:
    """Subscribes a source on :meth:`start`; queues the frames its items and its end make.

    Attributes:
        items: how many items the source emitted.
        error: the source's error (or the writer's), once it failed.
        finished: the source ended; its terminal frames (if any) are queued.
        first: set at the source's first notification (an item or its end).
    """

    __slots__ = (
        "_demand",
        "_detached",
        "_frames",
        "_source",
        "_subscription",
        "_waiter",
        "_writer",
        "error",
        "finished",
        "first",
        "items",
    )

    def __init__(self, source: reactivex.Observable[object], writer: FrameWriter) -> None:
        self._source = source
        self._writer = writer
        self._frames: deque[bytes] = deque()
        self._demand = Demand()
        self._waiter: asyncio.Future[None] | None = None
        self._subscription: abc.DisposableBase | None = None
        self._detached = False
        self.items = 0
        self.error: BaseException | None = None
        self.finished = False
        self.first = asyncio.Event()

    def start(self) -> None:
        """Subscribe the source (it may deliver at once, before this returns)."""
        scheduler = AsyncIOScheduler(asyncio.get_running_loop())
        with demand_scope(self._demand):
            subscription = self._source.subscribe(
                self._on_next, self._on_error, self._on_completed, scheduler=scheduler
            )
        if self.finished:
            subscription.dispose()
        else:
            self._subscription = subscription

    # --- the source's side ---------------------------------------------------------------

    def _on_next(self, item: object) -> None:
        if self.finished:
            return
        self.items += 1
        if self.items == 1:
            self.first.set()
        if self._detached:
            return
        try:
            frames = self._writer.item(item)  # type: ignore[arg-type]
        except Exception as exc:  # a bug of ours or an odd item: the response ends with it
            self._dispose()
            self._failed(exc)
            return
        if frames:
            queue = self._frames
            queue.append(frames)
            if len(queue) >= HIGH_WATER and self._demand.ready:
                self._demand.pause()
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _on_error(self, error: Exception) -> None:
        if not self.finished:
            self._failed(error)

    def _on_completed(self) -> None:
        if not self.finished:
            self._end(self._writer.completed())

    def _failed(self, error: Exception) -> None:
        self.error = error
        if not isinstance(error, AnthropicRxError):
            logger.error("the source of an SSE response failed", exc_info=error)
        self._end(self._writer.failed(error))

    def _end(self, tail: bytes) -> None:
        self.finished = True
        self._subscription = None
        _detached.discard(self)
        if tail and not self._detached:
            self._frames.append(tail)
        self.first.set()
        self._wake()

    # --- the body's side -----------------------------------------------------------------

    def take(self, limit: int) -> bytes:
        """The frames waiting, joined, up to about ``limit`` bytes (``b""`` when none)."""
        queue = self._frames
        if not queue:
            return b""
        frames = queue.popleft()
        if queue and len(frames) < limit:
            batch = [frames]
            size = len(frames)
            while queue and size < limit:
                more = queue.popleft()
                batch.append(more)
                size += len(more)
            frames = b"".join(batch)
        if not self._demand.ready and len(queue) <= HIGH_WATER // 2:
            self._demand.resume()
        return frames

    @property
    def drained(self) -> bool:
        """The source ended and every frame was taken: the body is done."""
        return self.finished and not self._frames

    async def ready(self) -> None:
        """Return once a frame waits or the source ended (at once if so already)."""
        if self._frames or self.finished:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def ping(self) -> bool:
        """Queue a ``: ping`` comment when nothing else waits; whether one was queued."""
        if self._frames or self.finished:
            return False
        self._frames.append(PING_FRAME)
        self._wake()
        return True

    def close(self, *, detach: bool) -> None:
        """Stop feeding the body: dispose the source, or leave it running (``detach``)."""
        self._frames.clear()
        if self.finished:
            return
        if detach:
            if not self._detached:
                self._detached = True
                self._demand.resume()
                _detached.add(self)
            return
        self.finished = True
        self._dispose()

    def _dispose(self) -> None:
        # A source shared with others (``share()``) is paced by this demand: left paused, it
        # would never read again for them.
        self._demand.resume()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.dispose()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
