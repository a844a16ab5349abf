"""``idle_timeout(...)``: fail a stream that stops making progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable

from .._events import MessageStreamEvent, PingEvent
from .._exceptions import APITimeoutError
from ._partial import PartialTracker
from ._schedulers import timer_scheduler

__all__ = ["idle_timeout"]


def idle_timeout(
    seconds: float,
    scheduler: abc.SchedulerBase | None = None,
    *,
    first_event_timeout: float | None = None,
) -> Callable[[reactivex.Observable[MessageStreamEvent]], reactivex.Observable[MessageStreamEvent]]:
    """Events unchanged, or :class:`~anthropic_rx.APITimeoutError` when no progress is made.

    Progress is any event but ``ping``: the API pings a stalled reply, and those pings must not
    keep it alive. The clock starts at subscribe.

    ```
    events:  -start--delta--ping--ping--ping-- ...      seconds = 5
    output:  -start--delta--ping--ping--ping---X        X at delta + 5: APITimeoutError
    ```

    Args:
        seconds: the longest wait for the next event other than ``ping``.
        scheduler: runs the timer; default the subscriber's scheduler, else the running event
            loop.
        first_event_timeout: the longest wait for the first such event (time to first
            token, usually longer); default ``seconds``.

    Returns:
        An operator. Completion and errors pass through and stop the timer; disposal stops it
        and disposes the upstream.

    Raises:
        APITimeoutError: (as ``on_error``) with ``kind="idle"``, ``.partial_message`` and the
            response ``.meta``; the upstream is disposed first (its HTTP response closed).
        ValueError: ``seconds`` or ``first_event_timeout`` not positive (at call time).

    Example:
        >>> events.pipe(ops.idle_timeout(30.0, first_event_timeout=120.0), ops.raise_on_error())
    """
    if not seconds > 0:
        raise ValueError("seconds must be positive")
    if first_event_timeout is not None and not first_event_timeout > 0:
        raise ValueError("first_event_timeout must be positive")
    idle = timedelta(seconds=seconds)
    first = timedelta(seconds=seconds if first_event_timeout is None else first_event_timeout)

    def operator(
        events: reactivex.Observable[MessageStreamEvent],
    ) -> reactivex.Observable[MessageStreamEvent]:
        def subscribe(
            observer: abc.ObserverBase[MessageStreamEvent],
            subscribed: abc.SchedulerBase | None = None,
        ) -> abc.DisposableBase:
            timers = timer_scheduler(scheduler, subscribed)
            tracker = PartialTracker()
            lock = threading.Lock()  # the timer may fire on another thread
            deadline = timers.now + first
            progressed = False
            last = deadline  # when the last event other than ping arrived
            stopped = False
            timer = SerialDisposable()
            upstream = SingleAssignmentDisposable()

            def check(_: abc.SchedulerBase, __: Any = None) -> None:
                # Rescheduling a timer per event costs microseconds; reading the clock does
                # not. The timer wakes at the earliest possible deadline and looks again.
                nonlocal stopped
                with lock:
                    if stopped:
                        return
                    due = last + idle if progressed else deadline
                    now = timers.now
                    if now < due:
                        timer.disposable = timers.schedule_relative(due - now, check)
                        return
                    stopped = True
                upstream.dispose()
                waited = seconds if progressed else first.total_seconds()
                observer.on_error(
                    APITimeoutError(
                        f"no event for {waited:g} s"
                        if progressed
                        else f"no first event within {waited:g} s",
                        kind="idle",
                        partial_message=tracker.partial_message(),
                        meta=tracker.meta,
                    )
                )

            def on_next(event: MessageStreamEvent) -> None:
                nonlocal progressed, last
                if stopped:
                    return
                if not isinstance(event, PingEvent):
                    progressed = True
                    last = timers.now
                tracker.feed(event)
                observer.on_next(event)

            def finish() -> bool:
                nonlocal stopped
                with lock:
                    if stopped:
                        return False
                    stopped = True
                timer.dispose()
                return True

            def on_error(error: Exception) -> None:
                if finish():
                    observer.on_error(error)

            def on_completed() -> None:
                if finish():
                    observer.on_completed()

            timer.disposable = timers.schedule_relative(first, check)
            upstream.disposable = events.subscribe(
                on_next, on_error, on_completed, scheduler=subscribed
            )
            return CompositeDisposable(upstream, timer)

        return reactivex.create(subscribe)

    return operator
