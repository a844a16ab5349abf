"""CancelToken: a one-shot, thread-safe "stop now" signal for ``ops.take_until_cancel``."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable

__all__ = ["CancelToken"]


class _Registration:
    """One callback: where it runs, and whether it still wants to."""

    __slots__ = ("active", "fn", "key", "loop")

    def __init__(
        self, key: int, fn: Callable[[], object], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        self.key = key
        self.fn = fn
        self.loop = loop
        self.active = True

    def run(self) -> None:
        # A callback already queued on its loop may have been removed since.
        if self.active:
            self.active = False
            self.fn()


class CancelToken:
    """A one-shot signal to stop a stream on purpose: set once, observed anywhere.

    ``cancel()`` may be called from any thread, any number of times; the first call wins and
    its ``reason`` is kept. A callback added from inside a running event loop runs on that loop
    (``call_soon_threadsafe``), so a stop pressed on another thread reaches the stream on its
    own loop; a callback added outside any loop runs in the thread that cancels.

    Example:
        >>> token = arx.CancelToken(); events.pipe(ops.take_until_cancel(token)); token.cancel()
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._reason: str | None = None
        self._callbacks: dict[int, _Registration] = {}
        self._keys = itertools.count()

    def __repr__(self) -> str:
        state = f"cancelled reason={self._reason!r}" if self._cancelled else "active"
        return f"<{type(self).__name__} {state}>"

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    @property
    def reason(self) -> str | None:
        """The reason given to the first :meth:`cancel` call."""
        return self._reason

    def cancel(self, reason: str | None = None) -> None:
        """Fire the signal; later calls do nothing. Thread-safe.

        Raises:
            Exception: the first exception raised by a callback that runs in this call
                (callbacks bound to an event loop are queued there instead); the remaining
                callbacks still run.
        """
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self._reason = reason
            registrations = list(self._callbacks.values())
            self._callbacks.clear()
        if registrations:
            self._stop_watching()
        first_error: Exception | None = None
        for registration in registrations:
            loop = registration.loop
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(registration.run)
                except RuntimeError:  # the loop is closed: nothing there can be stopped
                    registration.active = False
                continue
            try:
                registration.run()
            except Exception as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def add_callback(self, fn: Callable[[], object]) -> abc.DisposableBase:
        """Call ``fn()`` once when the token is cancelled.

        Args:
            fn: called with no arguments; on the event loop running here, if one is, else in
                the thread that calls :meth:`cancel`. When the token is already cancelled,
                ``fn`` runs at once, in this call.

        Returns:
            A disposable that removes the callback (a callback removed after being queued on
            its loop does not run).
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            if not self._cancelled:
                registration = _Registration(next(self._keys), fn, loop)
                self._callbacks[registration.key] = registration
                first = len(self._callbacks) == 1
            else:
                registration = None
        if registration is None:
            fn()
            return Disposable()
        if first:
            self._start_watching()
        return Disposable(lambda: self._remove(registration))

    def _remove(self, registration: _Registration) -> None:
        registration.active = False
        with self._lock:
            removed = self._callbacks.pop(registration.key, None) is not None
            last = removed and not self._callbacks
        if last:
            self._stop_watching()

    async def wait(self) -> str | None:
        """Wait until the token is cancelled; returns the reason.

        Cancelling the waiting task removes its callback.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done() -> None:
            if not future.done():
                future.set_result(None)

        remover = self.add_callback(done)
        try:
            await future
        finally:
            remover.dispose()
        return self._reason

    def as_observable(self) -> reactivex.Observable[str | None]:
        """A cold Observable that emits the reason and completes when the token is cancelled.

        Subscribing to an already cancelled token emits at once. Dispose removes the callback.
        """

        def subscribe(
            observer: abc.ObserverBase[str | None], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            def fire() -> None:
                observer.on_next(self._reason)
                observer.on_completed()

            return self.add_callback(fire)

        return reactivex.create(subscribe)

    # Hooks for cancel flags (``anthropic_rx.cancel``): a token that hears its stop from
    # elsewhere listens only while something waits on it, so a finished stream cannot swallow
    # a stop meant for the next one.

    def _start_watching(self) -> None:
        """Called when the first callback is added (outside the lock)."""

    def _stop_watching(self) -> None:
        """Called when the last callback is removed or has been fired (outside the lock)."""
