"""``coalesce(...)``: merge consecutive text chunks for a sink slower than the deltas."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable

from ._schedulers import timer_scheduler

__all__ = ["coalesce"]


def coalesce(
    max_delay: float | None = 0.05,
    max_chars: int | None = None,
    scheduler: abc.SchedulerBase | None = None,
) -> Callable[[reactivex.Observable[str]], reactivex.Observable[str]]:
    """Text chunks → fewer, longer chunks; lossless (the joined output is the joined input).

    Operates on ``str`` (after ``text_deltas()``), so it also serves thinking text or any text.
    A chunk is emitted ``max_delay`` seconds after the first character it holds arrived, as
    soon as it holds ``max_chars`` characters (a single longer input is not split), and when
    the input completes or fails. Empty strings are dropped. ``max_delay=0`` merges what
    arrives in one turn of the event loop (one network read's deltas).

    ```
    input:   -a-b-c-------d-e-|        max_delay = 4 ticks
    output:  -------abc--------de|
    ```

    Args:
        max_delay: seconds a character may wait; ``None`` for no timer.
        max_chars: characters that trigger a flush at once; ``None`` for no limit.
        scheduler: runs the timer; default the subscriber's scheduler, else the running event
            loop.

    Returns:
        An operator. Completion and errors flush what is buffered first, then pass on.
        Disposal drops the buffer and the timer and disposes the upstream. An exception raised
        by the subscriber on a timed flush disposes the upstream and is passed to ``on_error``.

    Raises:
        ValueError: a negative ``max_delay``, a ``max_chars`` below 1, or both ``None`` (the
            buffer would be unbounded), at call time.

    Example:
        >>> chunks = events.pipe(ops.text_deltas(), ops.coalesce(max_delay=0.1, max_chars=512))
    """
    if max_delay is None and max_chars is None:
        raise ValueError("coalesce needs max_delay or max_chars")
    if max_delay is not None and max_delay < 0:
        raise ValueError("max_delay must not be negative")
    if max_chars is not None and max_chars < 1:
        raise ValueError("max_chars must be at least 1")

    def operator(source: reactivex.Observable[str]) -> reactivex.Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], subscribed: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            timers = timer_scheduler(scheduler, subscribed)
            lock = threading.RLock()  # the timer may fire on another thread
            buffer: list[str] = []
            size = 0
            generation = 0  # which buffer a timer was set for
            stopped = False
            timer = SerialDisposable()
            upstream = SingleAssignmentDisposable()

            def take() -> str | None:
                nonlocal size
                if not buffer:
                    return None
                chunk = "".join(buffer)
                buffer.clear()
                size = 0
                return chunk

            def on_timer(_: abc.SchedulerBase, expected: Any = None) -> None:
                with lock:
                    if stopped or expected != generation:
                        return
                    chunk = take()
                    if chunk is None:
                        return
                    try:
                        observer.on_next(chunk)
                    except Exception as exc:  # the subscriber failed: stop, and tell it
                        fail(exc)

            def on_next(text: str) -> None:
                nonlocal size, generation
                if not text:
                    return
                with lock:
                    if stopped:
                        return
                    buffer.append(text)
                    size += len(text)
                    if max_chars is not None and size >= max_chars:
                        generation += 1  # the pending timer no longer applies
                        observer.on_next(take() or "")
                    elif len(buffer) == 1 and max_delay is not None:
                        generation += 1
                        timer.disposable = timers.schedule_relative(max_delay, on_timer, generation)

            def stop() -> str | None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                return take()

            def fail(error: Exception) -> None:
                with lock:
                    if stopped:
                        return
                    chunk = stop()
                    upstream.dispose()
                    if chunk is not None:
                        observer.on_next(chunk)
                    observer.on_error(error)

            def on_completed() -> None:
                with lock:
                    if stopped:
                        return
                    chunk = stop()
                    if chunk is not None:
                        observer.on_next(chunk)
                    observer.on_completed()

            upstream.disposable = source.subscribe(
                on_next, fail, on_completed, scheduler=subscribed
            )
            return CompositeDisposable(upstream, timer)

        return reactivex.create(subscribe)

    return operator
