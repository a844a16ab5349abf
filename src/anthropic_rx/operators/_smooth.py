"""``smooth(...)``: re-chunk text into whole words or lines, paced for a steady display."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, Literal

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, SerialDisposable, SingleAssignmentDisposable

from ._schedulers import timer_scheduler

__all__ = ["smooth"]

# A chunk ends after the first match: a word with the whitespace after it, or a run of line
# breaks (what the Vercel AI SDK's smoothStream cuts on).
_UNITS = {"word": re.compile(r"\S+\s+"), "line": re.compile(r"\n+")}


def smooth(
    unit: Literal["word", "line"] | re.Pattern[str] = "word",
    interval: float = 0.01,
    scheduler: abc.SchedulerBase | None = None,
    *,
    max_backlog: int | None = 4096,
) -> Callable[[reactivex.Observable[str]], reactivex.Observable[str]]:
    """Text chunks → whole words (or lines), one every ``interval`` seconds; lossless.

    A chunk is the text up to the end of the first match of the unit: for ``"word"`` a word
    and the whitespace after it (leading whitespace rides with the first word), for ``"line"``
    everything up to and including a run of ``\\n``. Text not yet ending a unit waits for more.
    The first chunk goes at once; each next one ``interval`` seconds after the one before, or
    as soon as it is complete when the text arrives slower than that. At completion the paced
    chunks continue, the remainder (text without a unit end) is emitted last, then the
    completion. When more than ``max_backlog`` characters are waiting, the next chunk takes
    every whole unit at once, so a slow pace never lets the buffer grow without bound.

    ```
    input:   -"Hel"-"lo wor"-"ld. Bye"-|          interval = 3 ticks
    output:  -------"Hello "--"world. "--"Bye"|
    ```

    Args:
        unit: ``"word"``, ``"line"``, or a compiled pattern whose first match ends a chunk.
        interval: seconds between chunks (``0``: no pause, re-chunking only).
        scheduler: runs the pacing; default the subscriber's scheduler, else the running event
            loop.
        max_backlog: characters waiting above which the pace catches up; ``None``: never.

    Returns:
        An operator on ``str`` streams. Errors emit everything buffered as one chunk at once,
        then pass on. Disposal drops the buffer and the timer and disposes the upstream. An
        exception raised by the subscriber on a paced chunk disposes the upstream and is
        passed to ``on_error``.

    Raises:
        ValueError: an unknown ``unit``, a negative ``interval`` or a ``max_backlog`` below 1
            (at call time).

    Example:
        >>> words = events.pipe(ops.text_deltas(), ops.smooth("word", interval=0.02))
    """
    pattern = unit if isinstance(unit, re.Pattern) else _UNITS.get(unit)
    if pattern is None:
        raise ValueError(f"unit must be 'word', 'line' or a compiled pattern, not {unit!r}")
    if interval < 0:
        raise ValueError("interval must not be negative")
    if max_backlog is not None and max_backlog < 1:
        raise ValueError("max_backlog must be at least 1")

    def cut(text: str, *, final: bool) -> int:
        """Where the next chunk of ``text`` ends; 0 when no whole unit is there yet."""
        if max_backlog is not None and len(text) > max_backlog:
            ends = [m.end() for m in pattern.finditer(text) if m.end() > 0]
            if ends:
                return len(text) if final else ends[-1]
        found = pattern.search(text)
        if found is not None and found.end() > 0:
            return found.end()
        return len(text) if final else 0

    def operator(source: reactivex.Observable[str]) -> reactivex.Observable[str]:
        def subscribe(
            observer: abc.ObserverBase[str], subscribed: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            timers = timer_scheduler(scheduler, subscribed)
            lock = threading.RLock()  # the pace may run on another thread
            buffer = ""
            idle = True  # no chunk went out within the last interval
            completed = False
            stopped = False
            broken = False  # the subscriber raised on a chunk
            timer = SerialDisposable()
            upstream = SingleAssignmentDisposable()

            def pump() -> None:
                """Emit the next chunk now and pace the one after, or go idle."""
                nonlocal buffer, idle, stopped
                end = cut(buffer, final=completed)
                if end:
                    chunk, buffer = buffer[:end], buffer[end:]
                    if completed and not buffer:  # the last chunk: nothing left to pace
                        stopped = True
                        observer.on_next(chunk)
                        observer.on_completed()
                        return
                    idle = False
                    timer.disposable = timers.schedule_relative(interval, on_tick)
                    observer.on_next(chunk)
                    return
                idle = True
                if completed:
                    stopped = True
                    observer.on_completed()

            def on_tick(_: abc.SchedulerBase, __: Any = None) -> None:
                with lock:
                    if stopped:
                        return
                    try:
                        pump()
                    except Exception as exc:  # the subscriber failed: stop, and tell it
                        subscriber_failed(exc)

            def subscriber_failed(error: Exception) -> None:
                nonlocal stopped
                stopped = True
                timer.dispose()
                upstream.dispose()
                observer.on_error(error)

            def on_next(text: str) -> None:
                nonlocal buffer, broken
                with lock:
                    if stopped:
                        return
                    buffer += text
                    if idle:
                        try:
                            pump()
                        except Exception:
                            # The subscriber failed; the upstream hands its error back to
                            # fail(), which must not feed that subscriber the rest.
                            broken = True
                            raise

            def fail(error: Exception) -> None:
                nonlocal buffer, stopped
                with lock:
                    if stopped:
                        return
                    stopped = True
                    timer.dispose()
                    upstream.dispose()
                    rest, buffer = buffer, ""
                    if rest and not broken:
                        observer.on_next(rest)
                    observer.on_error(error)

            def on_completed() -> None:
                nonlocal completed
                with lock:
                    if stopped:
                        return
                    completed = True
                    if idle:
                        pump()

            upstream.disposable = source.subscribe(
                on_next, fail, on_completed, scheduler=subscribed
            )
            return CompositeDisposable(upstream, timer)

        return reactivex.create(subscribe)

    return operator
