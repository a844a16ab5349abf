"""Which scheduler a timed operator's timers run on."""

from __future__ import annotations

import asyncio

from reactivex import abc
from reactivex.scheduler import (
    CurrentThreadScheduler,
    ImmediateScheduler,
    TimeoutScheduler,
    TrampolineScheduler,
)
from reactivex.scheduler.eventloop import AsyncIOScheduler

__all__ = ["timer_scheduler"]

# These run an action in the calling thread and sleep through any delay: never for timers.
_BLOCKING = (CurrentThreadScheduler, ImmediateScheduler, TrampolineScheduler)


def timer_scheduler(
    given: abc.SchedulerBase | None, subscribed: abc.SchedulerBase | None
) -> abc.SchedulerBase:
    """The operator's own scheduler, else the subscriber's, else the running event loop.

    Timers must fire on the thread that delivers the events (the event loop's, for a stream
    read from the network); a thread timer is the last resort, outside any event loop.
    """
    if given is not None:
        return given
    if subscribed is not None and not isinstance(subscribed, _BLOCKING):
        return subscribed
    try:
        return AsyncIOScheduler(asyncio.get_running_loop())
    except RuntimeError:
        return TimeoutScheduler.singleton()
