"""Idle and total timeouts for reading one body, at O(1) per chunk.

``asyncio.timeout(...).reschedule()`` on every chunk that brought an event costs a timer
cancellation and a new timer each time. The watchdog instead only notes the time of the last
progress; its one timer, when it fires, either finds the deadline passed and cancels the task,
or sets itself again for the deadline that progress has moved.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType

__all__ = ["Watchdog"]


class Watchdog:
    """Cancels the current task when ``idle`` seconds pass without :meth:`progress`, or at the
    loop time ``deadline``; the ``with`` block then raises :class:`TimeoutError` and
    :attr:`expired` says which (``"idle"`` or ``"total"``).

    Waiting between :meth:`pause` and :meth:`resume` (a slow consumer) does not count as idle.
    A cancellation from outside stays a cancellation. Use inside the task it guards.
    """

    __slots__ = ("_deadline", "_handle", "_idle", "_last", "_loop", "_paused", "_task", "expired")

    def __init__(self, idle: float | None, deadline: float | None) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a Watchdog guards a task: use it inside one")
        self._task = task
        self._idle = math.inf if idle is None else idle
        self._deadline = math.inf if deadline is None else deadline
        self._last = self._loop.time()
        self._paused = False
        self._handle: asyncio.TimerHandle | None = None
        self.expired: str | None = None

    def progress(self) -> None:
        """Something other than a keep-alive arrived: the idle time starts again."""
        self._last = self._loop.time()

    def pause(self) -> None:
        """The reader waits for its consumer: idle time does not run."""
        self._paused = True

    def resume(self) -> None:
        """The consumer caught up: idle time runs again, from now."""
        self._paused = False
        self._last = self._loop.time()
        self._arm()

    def _due(self) -> float:
        if self._paused:
            return self._deadline
        return min(self._deadline, self._last + self._idle)

    def _arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        due = self._due()
        if due != math.inf:
            self._handle = self._loop.call_at(due, self._check)

    def _check(self) -> None:
        self._handle = None
        now = self._loop.time()
        if now >= self._deadline:
            self.expired = "total"
        elif not self._paused and now >= self._last + self._idle:
            self.expired = "idle"
        else:  # progress moved the deadline since this timer was set
            self._arm()
            return
        self._task.cancel()

    def __enter__(self) -> Watchdog:
        self._arm()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if (
            self.expired is not None
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() == 0
        ):
            raise TimeoutError(f"{self.expired} timeout") from exc
