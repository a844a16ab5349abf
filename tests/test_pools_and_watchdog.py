"""The client's connection pools and the read watchdog."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from anthropic_rx._pools import _MAX_POOLS, _STREAMS_PER_POOL, _Pools
from anthropic_rx._watchdog import Watchdog


async def test_pools_grow_only_under_load_and_reuse_the_first() -> None:
    made: list[httpx.AsyncClient] = []

    def grow() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient())
        return made[-1]

    first = httpx.AsyncClient()
    pools = _Pools(first, grow=grow)
    # One stream at a time: always the first pool, so its kept-alive connection.
    for _ in range(3):
        pool = pools.acquire()
        assert pool is first
        pools.release(pool)
    held = [pools.acquire() for _ in range(_STREAMS_PER_POOL)]
    assert made == []
    extra = pools.acquire()
    assert extra is made[0]  # every pool was full: a second one
    assert pools.acquire() is made[0]  # the least busy: 2 streams against 32
    for pool in held:
        pools.release(pool)
    assert pools.acquire() is first  # emptied: the least busy again
    for _ in range(_STREAMS_PER_POOL * (_MAX_POOLS + 2)):
        pools.acquire()
    assert len(made) == _MAX_POOLS - 1  # bounded
    await pools.aclose()
    assert first.is_closed
    assert all(pool.is_closed for pool in made)


async def test_single_pool_never_grows() -> None:
    only = httpx.AsyncClient()
    pools = _Pools(only)
    assert all(pools.acquire() is only for _ in range(_STREAMS_PER_POOL * 3))
    await pools.aclose()


async def test_watchdog_idle_is_reset_by_progress_and_expires_without_it() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):  # noqa: PT012
        with Watchdog(0.1, None) as watchdog:
            for _ in range(5):  # 0.25 s of progress every 0.05 s: no timeout
                await asyncio.sleep(0.05)
                watchdog.progress()
            await asyncio.sleep(1)
    assert watchdog.expired == "idle"
    assert 0.3 <= loop.time() - started < 0.9


async def test_watchdog_total_deadline_and_pause() -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):  # noqa: PT012
        with Watchdog(0.05, loop.time() + 0.3) as watchdog:
            watchdog.pause()
            await asyncio.sleep(0.15)  # paused: not idle
            watchdog.resume()
            while True:
                await asyncio.sleep(0.01)
                watchdog.progress()
    assert watchdog.expired == "total"


async def test_watchdog_leaves_an_outside_cancellation_alone() -> None:
    async def guarded() -> None:
        with Watchdog(5.0, None):
            await asyncio.sleep(10)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_watchdog_needs_a_task() -> None:
    async def outside() -> None:
        return None

    with pytest.raises(RuntimeError, match="running"):
        Watchdog(1.0, None)
    asyncio.run(outside())
