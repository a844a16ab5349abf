"""RedisCancelFlags and its pub/sub listener at their edges: hooks called off the event loop,
handlers that raise, a stop heard as its last watcher leaves, Redis stalled or killed while
a stop is looked for, given back or consumed, and closing while a command hangs.

Fault tests run a private ``redis-server`` (:class:`tests._services.RedisServer`) and stop or
kill that one only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
from reactivex import abc

import redis
from anthropic_rx import cancel
from anthropic_rx._redis_flags import (
    _REQUEST_STOP,
    PubSubListener,
    RedisCancelFlags,
    redis_client,
)
from tests._services import RedisServer, redis_url, unique_prefix

pytestmark = pytest.mark.services

WAIT = 5.0


@pytest.fixture
async def url() -> str:
    return redis_url()


@pytest.fixture
async def flags(url: str) -> AsyncIterator[RedisCancelFlags]:
    made = RedisCancelFlags(url, prefix=unique_prefix())
    yield made
    await made.aclose()


async def subscribed(url: str, channel: str, count: int = 1) -> None:
    """Until the server counts ``count`` subscribers of ``channel`` (bounded)."""
    probe = redis.asyncio.Redis.from_url(url)
    try:
        async with asyncio.timeout(WAIT):
            while True:
                [(_, numsub)] = await probe.pubsub_numsub(channel)
                if numsub == count:
                    return
                await asyncio.sleep(0.01)  # polled: a count on the server, nothing to await
    finally:
        await probe.aclose()


async def settled(flags: RedisCancelFlags) -> None:
    """Until the commands the flags started (looking for, giving back, consuming) ended."""
    async with asyncio.timeout(WAIT):
        while flags._tasks:
            await asyncio.gather(*flags._tasks, return_exceptions=True)


def request_stop_now(url: str, flags: RedisCancelFlags, name: str) -> None:
    """``flags.request_stop(name)`` from a synchronous client: done before this returns,
    without giving the event loop a turn. Then a PING: the server has run another cycle, so
    the message was written to every subscriber's socket."""
    with redis.Redis.from_url(url) as sync:
        sync.eval(
            _REQUEST_STOP,
            1,
            flags._pending_key(name),
            uuid.uuid4().hex,
            int(flags.ttl * 1000),
            flags._channel(name),
        )
        sync.ping()


def pending(url: str, flags: RedisCancelFlags, name: str) -> bytes | None:
    with redis.Redis.from_url(url) as sync:
        value = sync.get(flags._pending_key(name))
    return value if isinstance(value, bytes) else None


@contextmanager
def stalled(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP): connections stay open, nothing is answered."""
    process = server._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


async def closed(client: redis.asyncio.Redis) -> None:
    """Close a client made by ``redis_client``, its pool too (the pool is its own)."""
    await client.aclose()
    await client.connection_pool.disconnect()


def watching(token: cancel.CancelToken) -> tuple[abc.DisposableBase, asyncio.Event]:
    """Something waiting on ``token`` (it starts watching); the event is set at its stop."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    return token.add_callback(lambda: loop.call_soon_threadsafe(stopped.set)), stopped


# --- options and loops ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl must be positive"),
        ({"ttl": -1.0}, "ttl must be positive"),
        ({"ttl": float("nan")}, "ttl must be positive"),
        ({"max_connections": 0}, "max_connections must be at least 1"),
    ],
)
def test_options_out_of_range_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisCancelFlags("redis://127.0.0.1:6379/0", **options)  # type: ignore[arg-type]


def test_a_listener_cannot_start_outside_an_event_loop() -> None:
    client = redis_client("redis://127.0.0.1:6379/0", max_connections=1, retry_window=0.1)
    listener = PubSubListener(client, on_message=lambda c, d: None, on_ack=lambda c: None)
    with pytest.raises(RuntimeError, match="inside a running event loop"):
        listener.want("some-channel")
    assert listener.loop is None


async def test_tokens_watched_from_other_threads_are_stopped_on_the_flags_loop(
    url: str, flags: RedisCancelFlags
) -> None:
    """The first watch of a name from a thread subscribes on the flags' loop (a stop then
    reaches it); a second one from a thread looks for a pending stop there and takes it."""
    home = flags.watch("edge-warm")
    home_watch, _ = watching(home)  # the listener's loop is this one from now
    listener = flags._listener
    assert listener.loop is asyncio.get_running_loop()
    first, second = flags.watch("edge-thread"), flags.watch("edge-thread")
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def fire() -> None:
        loop.call_soon_threadsafe(stopped.set)

    await asyncio.to_thread(first.add_callback, fire)
    await subscribed(url, flags._channel("edge-thread"))
    await settled(flags)
    # A stop whose message was missed (as while the listener reconnects): only its pending
    # key says so, and only a new watch's look finds it.
    with redis.Redis.from_url(url) as sync:
        sync.set(flags._pending_key("edge-thread"), b"nonce-1", px=30_000)
    await asyncio.to_thread(second.add_callback, lambda: None)
    async with asyncio.timeout(WAIT):
        await stopped.wait()
    assert first.reason == second.reason == cancel.STOP_REASON
    assert pending(url, flags, "edge-thread") is None  # taken once
    home_watch.dispose()


async def test_a_watch_from_a_thread_before_any_loop_does_nothing_and_leaks_nothing(
    url: str,
) -> None:
    """A token hook on a thread, before the flags ever ran on a loop: refused (the listener
    has no loop), and the pending-stop look a second token would start is dropped unawaited
    without a "never awaited" warning."""
    flags = RedisCancelFlags(url, prefix=unique_prefix())
    try:
        first, second = flags.watch("edge-noloop"), flags.watch("edge-noloop")

        def hooks() -> list[warnings.WarningMessage]:
            with pytest.raises(RuntimeError, match="inside a running event loop"):
                first.add_callback(lambda: None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                second.add_callback(lambda: None)
                gc.collect()
            return caught

        caught = await asyncio.to_thread(hooks)
        assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []
        assert flags._listener.loop is None and not flags._tasks
    finally:
        await flags.aclose()


async def test_a_want_arriving_after_close_starts_nothing(url: str) -> None:
    client = redis_client(url, max_connections=1, retry_window=0.1)
    acks: list[str] = []
    listener = PubSubListener(client, on_message=lambda c, d: None, on_ack=acks.append)
    a, b = f"{unique_prefix()}:a", f"{unique_prefix()}:b"
    try:
        listener.want(a)  # starts on this loop
        await subscribed(url, a)
        thread = threading.Thread(target=listener.want, args=(b,))
        thread.start()
        thread.join()  # queued on this loop, not run yet
        await listener.aclose()
        await asyncio.sleep(0)  # the queued want runs now, on a closed listener
        assert listener._task is None
        await subscribed(url, b, count=0)
        await subscribed(url, a, count=0)
    finally:
        await closed(client)
    assert acks == [a]


async def test_a_handler_that_raises_is_logged_and_the_listener_goes_on(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis_client(url, max_connections=2, retry_window=0.1)
    heard: list[bytes] = []
    got = asyncio.Event()

    def on_message(channel: str, data: bytes) -> None:
        heard.append(data)
        if len(heard) == 1:
            raise ValueError("a handler's own bug")
        got.set()

    channel = f"{unique_prefix()}:edge"
    listener = PubSubListener(client, on_message=on_message, on_ack=lambda c: None)
    try:
        with caplog.at_level(logging.ERROR, "anthropic_rx.redis"):
            listener.want(channel)
            await subscribed(url, channel)
            await client.publish(channel, b"one")
            await client.publish(channel, "two")
            async with asyncio.timeout(WAIT):
                await got.wait()
    finally:
        await listener.aclose()
        await closed(client)
    assert heard == [b"one", b"two"]
    assert "a Redis pub/sub handler raised" in caplog.text
    assert "ValueError: a handler's own bug" in caplog.text


# --- stops racing the watchers -------------------------------------------------------------


async def test_a_stop_heard_as_its_last_watcher_leaves_is_kept_for_the_next_watch(
    url: str, flags: RedisCancelFlags
) -> None:
    token = flags.watch("edge-left")
    leaving, _ = watching(token)
    await subscribed(url, flags._channel("edge-left"))
    await settled(flags)
    # In one turn of the loop: the watcher leaves, then the stop is published (its message
    # is on the listener's socket before the UNSUBSCRIBE is sent).
    leaving.dispose()
    request_stop_now(url, flags, "edge-left")
    await subscribed(url, flags._channel("edge-left"), count=0)
    await settled(flags)
    assert not token.cancelled
    assert pending(url, flags, "edge-left") is not None  # not consumed: nobody was stopped
    async with asyncio.timeout(WAIT):
        assert await flags.watch("edge-left").wait() == cancel.STOP_REASON


# --- Redis stalled or killed -------------------------------------------------------------------


async def test_a_failed_look_for_a_pending_stop_is_logged_and_the_token_keeps_watching(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server:
        flags = RedisCancelFlags(server.url, prefix=unique_prefix(), retry_window=0.1)
        try:
            first = flags.watch("edge-dead")
            first_watch, _ = watching(first)
            await subscribed(server.url, flags._channel("edge-dead"))
            await settled(flags)
            server.kill()
            second = flags.watch("edge-dead")
            with caplog.at_level(logging.WARNING, "anthropic_rx.redis"):
                second_watch, _ = watching(second)  # already subscribed: only a GETDEL
                await settled(flags)
            assert "could not look for a pending stop of 'edge-dead'" in caplog.text
            assert not first.cancelled and not second.cancelled
            first_watch.dispose()
            second_watch.dispose()
        finally:
            async with asyncio.timeout(WAIT):
                await flags.aclose()


async def test_a_stop_taken_for_a_watcher_that_left_meanwhile_is_given_back() -> None:
    with RedisServer() as server:
        flags = RedisCancelFlags(server.url, prefix=unique_prefix(), retry_window=0.1)
        try:
            first = flags.watch("edge-back")
            first_watch, _ = watching(first)
            await subscribed(server.url, flags._channel("edge-back"))
            await settled(flags)
            # A stop whose message was missed (as while the listener reconnects): only its
            # pending key says so.
            with redis.Redis.from_url(server.url) as sync:
                sync.set(flags._pending_key("edge-back"), b"nonce-1", px=30_000)
            with stalled(server):
                second = flags.watch("edge-back")
                second_watch, _ = watching(second)  # its GETDEL waits on the stalled server
                await asyncio.sleep(0)  # the look starts: past its "anyone watching?" check
                first_watch.dispose()
                second_watch.dispose()  # both leave before the answer
            await settled(flags)
            assert not first.cancelled and not second.cancelled
            assert pending(server.url, flags, "edge-back") == b"nonce-1"  # given back
            async with asyncio.timeout(WAIT):
                assert await flags.watch("edge-back").wait() == cancel.STOP_REASON
        finally:
            async with asyncio.timeout(WAIT):
                await flags.aclose()


async def test_a_stop_heard_as_redis_dies_stops_the_token_and_logs_the_lost_consume(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with RedisServer() as server:
        flags = RedisCancelFlags(server.url, prefix=unique_prefix(), retry_window=0.1)
        try:
            token = flags.watch("edge-consume")
            token_watch, stopped = watching(token)
            await subscribed(server.url, flags._channel("edge-consume"))
            await settled(flags)
            with caplog.at_level(logging.WARNING, "anthropic_rx.redis"):
                request_stop_now(server.url, flags, "edge-consume")
                server.kill()  # the message is on the listener's socket; Redis is gone
                async with asyncio.timeout(WAIT):
                    await stopped.wait()
                await settled(flags)
            assert token.reason == cancel.STOP_REASON
            assert "could not consume the stop of 'edge-consume'" in caplog.text
            token_watch.dispose()
        finally:
            async with asyncio.timeout(WAIT):
                await flags.aclose()


async def test_the_listener_resubscribes_after_redis_restarts() -> None:
    with RedisServer() as server:
        flags = RedisCancelFlags(server.url, prefix=unique_prefix(), retry_window=0.3)
        try:
            token = flags.watch("edge-restart")
            token_watch, stopped = watching(token)
            channel = flags._channel("edge-restart")
            await subscribed(server.url, channel)
            server.restart()
            await subscribed(server.url, channel)  # subscribed again on its own
            await flags.request_stop("edge-restart")
            async with asyncio.timeout(WAIT):
                await stopped.wait()
            assert token.reason == cancel.STOP_REASON
            token_watch.dispose()
        finally:
            async with asyncio.timeout(WAIT):
                await flags.aclose()


async def test_aclose_does_not_wait_for_a_command_to_a_stalled_redis() -> None:
    with RedisServer() as server:
        flags = RedisCancelFlags(server.url, prefix=unique_prefix(), retry_window=0.1)
        first = flags.watch("edge-stall")
        first_watch, _ = watching(first)
        await subscribed(server.url, flags._channel("edge-stall"))
        await settled(flags)
        with stalled(server):
            second = flags.watch("edge-stall")
            second_watch, _ = watching(second)  # a GETDEL no answer will come to
            await asyncio.sleep(0)  # the look starts and waits for its answer
            assert flags._tasks
            loop = asyncio.get_running_loop()
            began = loop.time()
            # The command's own limit is 5 s; closing cancels it instead of waiting.
            async with asyncio.timeout(2.0):
                await flags.aclose()
            assert loop.time() - began < 2.0 and not flags._tasks
        first_watch.dispose()
        second_watch.dispose()
