"""A server shutdown reaches the SSE responses of every event loop, not only the first one a
thread ran (sse-starlette's own watcher is one per thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sse_starlette.sse import AppStatus

from anthropic_rx.sinks import _shutdown


@pytest.fixture
def exit_flag() -> Iterator[None]:
    before = AppStatus.should_exit
    try:
        yield
    finally:
        AppStatus.should_exit = before


def test_a_second_loop_of_the_thread_hears_the_shutdown(exit_flag: None) -> None:
    first = asyncio.new_event_loop()
    try:
        # A loop that started waiting, then stopped running (its waiter is left pending).
        early = first.create_task(_shutdown.wait_for_shutdown())
        first.run_until_complete(asyncio.sleep(0.01))
        assert not early.done()

        async def second() -> None:
            waiting = asyncio.ensure_future(_shutdown.wait_for_shutdown())
            await asyncio.sleep(0.05)
            assert not waiting.done()
            AppStatus.should_exit = True
            async with asyncio.timeout(_shutdown.POLL_INTERVAL * 3):
                await waiting

        asyncio.run(second())
    finally:
        early.cancel()
        first.run_until_complete(asyncio.sleep(0.01))
        first.close()


async def test_waiting_during_a_shutdown_returns_at_once(exit_flag: None) -> None:
    AppStatus.should_exit = True
    async with asyncio.timeout(0.1):
        await _shutdown.wait_for_shutdown()


async def test_the_watcher_ends_when_nothing_waits() -> None:
    waiting = asyncio.ensure_future(_shutdown.wait_for_shutdown())
    await asyncio.sleep(0)
    watcher = _shutdown._watchers[asyncio.get_running_loop()]
    waiting.cancel()
    async with asyncio.timeout(_shutdown.POLL_INTERVAL * 3):
        await watcher.task
    assert asyncio.get_running_loop() not in _shutdown._watchers
