"""``take_until_cancel(signal)``: complete cleanly when a stop signal fires."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

import reactivex
from reactivex import abc
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .._cancel import CancelToken

__all__ = ["CancelSignal", "take_until_cancel"]

_T = TypeVar("_T")

CancelSignal: TypeAlias = "asyncio.Event | CancelToken | abc.ObservableBase[Any]"
"""What ``take_until_cancel`` listens to."""

# How one kind of signal is watched: called with (fire, fail, scheduler), returns the
# disposable that stops watching.
_Watch: TypeAlias = Callable[
    [Callable[[], None], Callable[[Exception], None], abc.SchedulerBase | None],
    abc.DisposableBase,
]


def take_until_cancel(
    signal: CancelSignal,
) -> Callable[[reactivex.Observable[_T]], reactivex.Observable[_T]]:
    """Items until ``signal`` fires, then complete (a stop on purpose is not an error).

    The upstream subscription is disposed at once, before the completion is passed on: the
    source's task is cancelled and its HTTP response closed, even while it waits for the next
    event. No item is passed on after the signal has fired, even one that arrives before the
    signal's callback has run. A signal already fired at subscribe time (a cancelled token, a
    set event, a stop requested before ``flags.watch``, an Observable that emits while being
    subscribed such as a ``BehaviorSubject``) completes at once, without subscribing upstream.

    ```
    events:  -a--b--c------d--e-|
    signal:  -----------x
    output:  -a--b--c---|                upstream disposed at x
    ```

    Args:
        signal: an :class:`asyncio.Event` (watched by a task on the running event loop, which
            must exist at subscribe); an :class:`~anthropic_rx.CancelToken`, including the
            tokens cancel flags hand out (``flags.watch(name)``); or an Observable, whose first
            item or completion fires it and whose error is passed on as the error.

    Returns:
        An operator. Upstream items, completion and errors pass through until the signal fires;
        disposal disposes the upstream and stops watching the signal.

    Raises:
        TypeError: ``signal`` is none of those (at call time).
        RuntimeError: (as ``on_error``) an ``asyncio.Event`` subscribed outside an event loop.

    Example:
        >>> text = events.pipe(ops.take_until_cancel(flags.watch("stop-1")), ops.text_deltas())
    """
    fired, watch = _watcher(signal)

    def operator(source: reactivex.Observable[_T]) -> reactivex.Observable[_T]:
        def subscribe(
            observer: abc.ObserverBase[_T], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            if fired():
                observer.on_completed()
                return Disposable()
            upstream = SingleAssignmentDisposable()
            watching = SingleAssignmentDisposable()
            lock = threading.Lock()
            stopped = False

            def stop() -> bool:
                # The signal may fire on another thread while the upstream ends.
                nonlocal stopped
                with lock:
                    if stopped:
                        return False
                    stopped = True
                upstream.dispose()
                watching.dispose()
                return True

            def fire() -> None:
                if stop():
                    observer.on_completed()

            def fail(error: Exception) -> None:
                if stop():
                    observer.on_error(error)

            def on_next(item: _T) -> None:
                if stopped:
                    return
                if fired():
                    # Fired, but its callback is still queued on the event loop (a token
                    # cancelled on the loop's own thread): stop here, not events later.
                    fire()
                    return
                observer.on_next(item)

            watching.disposable = watch(fire, fail, scheduler)
            if fired():  # fired while being watched (a cancel flag consumed just now)
                fire()
            if not stopped:
                upstream.disposable = source.subscribe(on_next, fail, fire, scheduler=scheduler)
            return CompositeDisposable(upstream, watching)

        return reactivex.create(subscribe)

    return operator


def _watcher(signal: object) -> tuple[Callable[[], bool], _Watch]:
    if isinstance(signal, CancelToken):
        token = signal
        return (lambda: token.cancelled), (lambda fire, _fail, _scheduler: token.add_callback(fire))
    if isinstance(signal, asyncio.Event):
        return signal.is_set, _event_watch(signal)
    if isinstance(signal, abc.ObservableBase):
        observable: abc.ObservableBase[Any] = signal

        def watch_observable(
            fire: Callable[[], None],
            fail: Callable[[Exception], None],
            scheduler: abc.SchedulerBase | None,
        ) -> abc.DisposableBase:
            return observable.subscribe(lambda _: fire(), fail, fire, scheduler=scheduler)

        return (lambda: False), watch_observable
    raise TypeError(
        "take_until_cancel takes an asyncio.Event, an anthropic_rx.CancelToken (e.g. "
        f"flags.watch(name)) or an Observable, not {type(signal).__name__}"
    )


def _event_watch(event: asyncio.Event) -> _Watch:
    def watch(
        fire: Callable[[], None],
        fail: Callable[[Exception], None],
        scheduler: abc.SchedulerBase | None,
    ) -> abc.DisposableBase:
        if isinstance(scheduler, AsyncIOScheduler):
            loop = scheduler._loop
        else:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "take_until_cancel(asyncio.Event) must be subscribed with an asyncio event "
                    "loop running; use an anthropic_rx.CancelToken from synchronous code"
                ) from None
        task = loop.create_task(event.wait())

        def done(finished: asyncio.Task[Any]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()  # e.g. an Event bound to another event loop
            if isinstance(error, Exception):
                fail(error)
            else:
                fire()

        task.add_done_callback(done)

        def stop_watching() -> None:
            task.cancel()

        return Disposable(stop_watching)

    return watch
