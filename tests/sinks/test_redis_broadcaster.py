"""What only the Redis broadcaster does: stream ids, keys, fencing, trimming, faults, processes.

The behaviour every broadcaster shares is in ``test_broadcast.py`` (``backend`` = ``"redis"``).
Fault tests run a private ``redis-server`` they kill and restart; the others use the shared one
under a key prefix of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

import anthropic_rx as arx
from anthropic_rx import sinks, testing
from anthropic_rx.sinks._hub import encode_event, encode_terminal
from anthropic_rx.sinks._redis import RedisBackend
from tests._services import RedisServer, redis_url, unique_prefix
from tests.sinks.test_broadcast import Feed, collect, opened, reply_events, wire, words

pytestmark = pytest.mark.services

WAIT = 5.0


@pytest.fixture
async def hub() -> AsyncIterator[sinks.RedisBroadcaster]:
    made = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix())
    yield made
    await made.aclose()


def stale() -> sinks.Broadcast:
    return sinks.Broadcast("", end="error", error_class="IncompleteStreamError", error_message="x")


# --- ids, keys, names ------------------------------------------------------------------------


async def test_ids_are_stream_entry_ids_and_keys_share_the_channels_hash_tag(
    hub: sinks.RedisBroadcaster,
) -> None:
    await hub.publish("conversation.42", arx.from_sse_bytes(words(3).to_sse()))
    items, error = await collect(hub.subscribe("conversation.42"))
    assert error is None
    assert all(re.fullmatch(r"\d{13,}-\d+", item.id) for item in items)
    client = Redis.from_url(redis_url())
    try:
        found = sorted([key.decode() async for key in client.scan_iter(f"{hub.prefix}:*")])
        assert found == [
            f"{hub.prefix}:{{conversation.42}}:log",
            f"{hub.prefix}:{{conversation.42}}:meta",
        ]  # the lease went with the terminal entry
        stream: Any = await client.xrange(f"{hub.prefix}:{{conversation.42}}:log")
        assert [entry_id.decode() for entry_id, _ in stream] == [item.id for item in items]
        fields = [next(iter(entry)) for _, entry in stream]
        assert fields == [b"e"] * (len(items) - 1) + [b"t"]
        ttl = await client.pttl(f"{hub.prefix}:{{conversation.42}}:log")
        assert 0 < ttl <= 3600 * 1000
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "bad", ["", "a b", "x}y", "{x}", "conv\n1", "tab\t", "é", "c" * 201, "a*", "k\x00"]
)
async def test_an_unsafe_channel_name_is_a_value_error_at_the_call(
    hub: sinks.RedisBroadcaster, bad: str
) -> None:
    feed = Feed(words(2))
    with pytest.raises(ValueError, match="must match"):
        await hub.publish(bad, feed.observable())
    assert feed.subscriptions == 0
    with pytest.raises(ValueError, match="must match"):
        hub.subscribe(bad)


async def test_a_live_replys_keys_expire_after_the_publisher_stops_renewing_them() -> None:
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), ttl=0.3, stale_after=0.3)
    client = Redis.from_url(redis_url())
    try:
        feed = Feed(words(5))
        job = asyncio.create_task(hub.publish("c", feed.observable()))
        feed.send(3)
        await opened(hub, "c")
        ttl = await client.pttl(f"{hub.prefix}:{{c}}:log")
        assert 0 < ttl <= 300 + 200 + 50  # ttl + the lease (stale_after * 2/3)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await asyncio.sleep(0.4)
        assert await client.exists(f"{hub.prefix}:{{c}}:log", f"{hub.prefix}:{{c}}:meta") == 0
    finally:
        await client.aclose()
        await hub.aclose()


# --- fencing ---------------------------------------------------------------------------------


async def test_a_stale_publisher_can_never_write_into_the_reply_that_took_its_channel() -> None:
    backend = RedisBackend(redis_url(), prefix=unique_prefix())
    events = reply_events(words(3))
    try:
        old = await backend.try_open("c", lease=0.05, stale_terminal=stale(), ttl=60)
        await backend.append("c", old, events[:2])
        await asyncio.sleep(0.1)  # its lease lapsed: it stopped beating
        new = await backend.try_open("c", lease=5, stale_terminal=stale(), ttl=60)
        for write in (
            backend.append("c", old, events[2:]),
            backend.heartbeat("c", old, duration=5),
            backend.finish("c", old, sinks.Broadcast("", end="done"), ttl=60),
        ):
            with pytest.raises(sinks.BroadcastError):
                await write
        await backend.append("c", new, events)
        cursor = await backend.resolve("c", None)
        assert cursor is not None and cursor.reply == new.reply
        entries = await backend.read("c", cursor, count=100, block=0)
        assert wire([entry.event for entry in entries]) == wire(events)  # nothing of the old
        # The old reply ended with the stale terminal (its readers learn it stopped).
        with pytest.raises(sinks.ChannelBusyError):
            await backend.try_open("c", lease=5, stale_terminal=stale(), ttl=60)
    finally:
        await backend.aclose()


async def test_an_append_retried_after_its_reply_was_lost_is_not_logged_twice() -> None:
    backend = RedisBackend(redis_url(), prefix=unique_prefix())
    events = reply_events(words(3))
    try:
        lease = await backend.try_open("c", lease=5, stale_terminal=stale(), ttl=60)
        await backend.append("c", lease, events[:2])
        keys = backend.keys("c")
        # The same append twice, as redis-py's retry sends it when a reply was lost.
        args: list[bytes | str | int] = [
            lease.token,
            "nonce-1",
            backend.max_entries,
            "w",
            encode_event(events[2]),
        ]
        for _ in range(2):
            await backend._append(keys=keys[:2], args=args)
        await backend.finish("c", lease, sinks.Broadcast("", end="cancelled"), ttl=60)
        await backend.finish("c", lease, sinks.Broadcast("", end="cancelled"), ttl=60)
        cursor = await backend.resolve("c", None)
        assert cursor is not None
        entries = await backend.read("c", cursor, count=100, block=0)
        assert [entry.end for entry in entries] == [None, None, None, "cancelled"]
        assert wire([entry.event for entry in entries]) == wire(events[:3])
        assert encode_terminal(entries[-1]) == encode_terminal(sinks.Broadcast("", end="cancelled"))
    finally:
        await backend.aclose()


# --- trimming ---------------------------------------------------------------------------------


async def test_a_cursor_trimmed_off_the_stream_is_a_resume_error_never_a_gap() -> None:
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), max_entries=16)
    try:
        first_ids: list[str] = []
        feed = Feed(words(300))
        job = asyncio.create_task(hub.publish("c", feed.observable()))
        feed.send(5)
        await opened(hub, "c")
        async with asyncio.timeout(WAIT):
            async for item in arx.to_async_iterator(hub.subscribe("c")):
                first_ids.append(item.id)
                if len(first_ids) == 3:
                    break
        feed.send()
        feed.complete()
        await asyncio.wait_for(job, WAIT)
        items, error = await collect(hub.subscribe("c"))
        assert items == [] and isinstance(error, sinks.ResumeError)
        items, error = await collect(hub.subscribe("c", last_event_id=first_ids[1]))
        assert items == [] and isinstance(error, sinks.ResumeError)
        # The tail is still there: a cursor it holds resumes exactly.
        client = Redis.from_url(redis_url())
        try:
            tail: Any = await client.xrevrange(f"{hub.prefix}:{{c}}:log", count=3)
        finally:
            await client.aclose()
        resumed, error = await collect(hub.subscribe("c", last_event_id=tail[-1][0].decode()))
        assert error is None and [item.id for item in resumed] == [
            entry_id.decode() for entry_id, _ in reversed(tail[:-1])
        ]
    finally:
        await hub.aclose()


# --- connections -----------------------------------------------------------------------------


async def test_a_hundred_subscribers_share_a_few_connections_and_their_reads() -> None:
    with RedisServer() as server:
        hub = sinks.RedisBroadcaster(server.url, max_connections=4)
        probe = Redis.from_url(server.url)
        try:
            feed = Feed(words(60))
            job = asyncio.create_task(hub.publish("c", feed.observable()))
            feed.send(2)
            await opened(hub, "c")
            subscribers = [asyncio.create_task(collect(hub.subscribe("c"))) for _ in range(100)]
            await asyncio.sleep(0.2)  # all of them waiting for the next entry
            for _ in range(6):
                feed.send(10)
                await asyncio.sleep(0.02)
            clients = await probe.client_list()
            feed.send()
            feed.complete()
            await asyncio.wait_for(job, WAIT)
            results = await asyncio.gather(*subscribers)
            stats = await probe.info("commandstats")
        finally:
            await probe.aclose()
            await hub.aclose()
    assert len(clients) - 1 <= 4 + 1  # the pool, the pub/sub connection (not the probe)
    # Readers at one cursor share one read per wake-up: far fewer than one per subscriber.
    scripts = stats["cmdstat_evalsha"]["calls"] + stats.get("cmdstat_eval", {}).get("calls", 0)
    assert scripts < 100 * 3
    first, _ = results[0]
    assert len(first) == 60 + 6 and all(r == (first, None) for r in results)


async def test_a_waiting_subscriber_is_woken_by_the_write_not_by_its_poll() -> None:
    # stale_after=60: a subscriber looks again every 10 s unless a wake-up comes.
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), stale_after=60)
    try:
        feed = Feed(words(5))
        job = asyncio.create_task(hub.publish("c", feed.observable()))
        feed.send(2)
        await opened(hub, "c")
        iterator = arx.to_async_iterator(hub.subscribe("c"))
        async with asyncio.timeout(WAIT):
            for _ in range(2):
                await iterator.__anext__()
            delays = []
            for _ in range(3):
                await asyncio.sleep(0.05)  # the subscriber waits at the live end
                sent = time.monotonic()
                feed.send(1)
                await iterator.__anext__()
                delays.append(time.monotonic() - sent)
        await iterator.aclose()
        feed.send()
        feed.complete()
        await asyncio.wait_for(job, WAIT)
    finally:
        await hub.aclose()
    assert max(delays) < 0.1, delays


# --- faults ----------------------------------------------------------------------------------


async def test_redis_killed_mid_reply_ends_both_sides_with_api_connection_error() -> None:
    with RedisServer() as server:
        hub = sinks.RedisBroadcaster(server.url, retry_window=0.3, stale_after=1.0)
        try:
            feed = Feed(words(50))
            job = asyncio.create_task(hub.publish("c", feed.observable()))
            feed.send(10)
            await opened(hub, "c")
            live = [asyncio.create_task(collect(hub.subscribe("c"))) for _ in range(3)]
            await asyncio.sleep(0.1)
            server.kill()
            killed = time.monotonic()
            feed.send()
            async with asyncio.timeout(WAIT):
                with pytest.raises(arx.APIConnectionError) as raised:
                    await job
                results = await asyncio.gather(*live)
            took = time.monotonic() - killed
        finally:
            await hub.aclose()
    assert isinstance(raised.value.__cause__, RedisError)
    assert feed.closed  # the source was disposed (its request closed)
    for items, error in results:
        assert isinstance(error, arx.APIConnectionError)
        assert isinstance(error.__cause__, RedisError)
        assert wire([item.event for item in items]) == wire(feed.events[: len(items)])
    assert took < 3.0


async def test_redis_restarted_within_the_retry_window_resumes_without_gap_or_duplicate() -> None:
    with RedisServer(persistent=True) as server:
        hub = sinks.RedisBroadcaster(server.url, retry_window=3.0, stale_after=10)
        try:
            feed = Feed(words(60))
            job = asyncio.create_task(hub.publish("c", feed.observable()))
            feed.send(10)
            await opened(hub, "c")
            live = asyncio.create_task(collect(hub.subscribe("c"), within=15))
            await asyncio.sleep(0.1)
            server.kill()
            feed.send(20)
            await asyncio.sleep(0.3)
            server.start()
            feed.send()
            feed.complete()
            async with asyncio.timeout(15):
                message = await job
                items, error = await live
            log, _ = await collect(hub.subscribe("c"))
        finally:
            await hub.aclose()
    assert error is None and message is not None
    assert items == log and wire([item.event for item in items]) == wire(feed.events)
    assert items[-1].end == "done"


async def test_redis_not_reachable_is_an_api_connection_error_for_both_sides() -> None:
    hub = sinks.RedisBroadcaster("redis://127.0.0.1:1/0", retry_window=0.1)
    feed = Feed(words(2))
    try:
        async with asyncio.timeout(WAIT):
            with pytest.raises(arx.APIConnectionError) as raised:
                await hub.publish("c", feed.observable())
            items, error = await collect(hub.subscribe("c"))
    finally:
        await hub.aclose()
    assert isinstance(raised.value.__cause__, RedisError) and feed.subscriptions == 0
    assert items == [] and isinstance(error, arx.APIConnectionError)
    assert isinstance(error.__cause__, RedisError)


# --- processes -------------------------------------------------------------------------------

_SUBSCRIBER = """
import asyncio, json, sys
import anthropic_rx as arx
from anthropic_rx import sinks

async def main():
    hub = sinks.RedisBroadcaster(sys.argv[1], prefix=sys.argv[2])
    print("ready", flush=True)
    while True:
        try:
            async for item in arx.to_async_iterator(hub.subscribe("c")):
                event = None if item.event is None else item.event.model_dump(
                    mode="json", exclude_none=True)
                print(json.dumps({"id": item.id, "event": event, "end": item.end}), flush=True)
            break
        except sinks.ChannelNotFound:
            await asyncio.sleep(0.01)
    await hub.aclose()

asyncio.run(main())
"""


async def test_a_subscriber_in_another_process_gets_every_event_in_order(
    hub: sinks.RedisBroadcaster,
) -> None:
    fake = testing.FakeAnthropic()
    reply = words(80)
    fake.add_stream(reply, tokens_per_second=400)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SUBSCRIBER,
        redis_url(),
        hub.prefix,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(20):
            assert (await process.stdout.readline()).strip() == b"ready"
            async with fake.client() as client:
                message = await hub.publish(
                    "c",
                    client.stream(
                        model="claude-sonnet-4-5",
                        max_tokens=64,
                        messages=[{"role": "user", "content": "Hi"}],
                    ),
                )
            out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    received = [json.loads(line) for line in out.decode().splitlines()]
    log, _ = await collect(hub.subscribe("c"))
    assert [entry["id"] for entry in received] == [item.id for item in log]
    assert [entry["event"] for entry in received[:-1]] == wire(reply_events(reply))
    assert received[-1]["end"] == "done" and message == reply.message()


_PUBLISHER = """
import asyncio, sys
import anthropic_rx as arx
from anthropic_rx import sinks, testing

async def main():
    hub = sinks.RedisBroadcaster(sys.argv[1], prefix=sys.argv[2], stale_after=0.6)
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*(f"w{i} " for i in range(2000))), tokens_per_second=100)
    async with fake.client() as client:
        await hub.publish("c", client.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]))

asyncio.run(main())
"""


async def test_a_publisher_process_killed_mid_reply_ends_its_subscribers_incomplete() -> None:
    # Both sides agree on stale_after (the publisher beats every 0.2 s, its lease is 0.4 s).
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), stale_after=0.6)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PUBLISHER, redis_url(), hub.prefix, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(20):
            await opened(hub, "c")
        live = asyncio.create_task(collect(hub.subscribe("c"), within=WAIT))
        await asyncio.sleep(0.2)
        process.kill()
        killed = time.monotonic()
        await process.wait()
        items, error = await live
        waited = time.monotonic() - killed
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        else:
            # The channel is free for the next reply.
            assert await hub.publish("c", arx.from_sse_bytes(words(2).to_sse())) is not None
        await hub.aclose()
    assert isinstance(error, arx.IncompleteStreamError) and waited < 0.6 + 0.3
    assert items[-1].error_class == "IncompleteStreamError" and len(items) > 5
    assert error.partial_message is not None
