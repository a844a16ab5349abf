"""The event loop a subscription reads on: its asyncio scheduler's, else the running one."""

from __future__ import annotations

import asyncio

from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

__all__ = ["event_loop_of"]


def event_loop_of(scheduler: abc.SchedulerBase | None) -> asyncio.AbstractEventLoop:
    """The loop to run on: the scheduler's when it is an asyncio one, else the running loop.

    Raises:
        RuntimeError: no loop is running (use ``arx.to_iterator`` from synchronous code).
    """
    if isinstance(scheduler, AsyncIOScheduler):
        return scheduler._loop
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "this stream reads the network and must be subscribed with an asyncio event loop "
            "running; from synchronous code use anthropic_rx.to_iterator(...)"
        ) from None
