"""A server shutdown, watched once per event loop.

sse-starlette keeps one shutdown watcher per thread: once a loop of a thread has started it,
a later loop of the same thread (a test runner's next loop while an earlier one lives, a
second ``asyncio.run`` beside a long-lived loop) never hears of the shutdown, and its open
responses run until uvicorn's graceful timeout cancels them. Here each loop has its own
watcher, polling the same two signals sse-starlette polls (``AppStatus.should_exit`` and the
running uvicorn server's ``should_exit``) every half second while something waits, and gone
when nothing does.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, cast

from sse_starlette import sse as _sse_starlette

__all__ = ["POLL_INTERVAL", "shutting_down", "wait_for_shutdown"]

POLL_INTERVAL = 0.5


class _Watcher:
    """The responses of one loop waiting for a shutdown, and the task polling for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiters: set[asyncio.Future[None]] = set()
        self.task = loop.create_task(self._watch(loop))

    async def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self.waiters:
                await asyncio.sleep(POLL_INTERVAL)
                if shutting_down():
                    for waiter in list(self.waiters):
                        if not waiter.done():
                            waiter.set_result(None)
                    return
        finally:
            if _watchers.get(loop) is self:
                del _watchers[loop]


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watcher] = (
    weakref.WeakKeyDictionary()
)


def shutting_down() -> bool:
    """Whether the server this process runs is shutting down."""
    status = _sse_starlette.AppStatus
    if status.should_exit:
        return True
    if not status.enable_automatic_graceful_drain:
        return False
    # The uvicorn server whose SIGTERM handler is installed (sse-starlette's own lookup).
    server: Any = cast(Any, _sse_starlette)._get_uvicorn_server()
    return server is not None and bool(server.should_exit)


async def wait_for_shutdown() -> None:
    """Return once the server shuts down (at once if it is); cancellable."""
    if shutting_down():
        return
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = _Watcher(loop)
    waiter: asyncio.Future[None] = loop.create_future()
    watcher.waiters.add(waiter)
    try:
        await waiter
    finally:
        watcher.waiters.discard(waiter)
