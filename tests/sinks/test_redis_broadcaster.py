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
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

import anthropic_rx as arx
from anthropic_rx import sinks, testing
from anthropic_rx._pacing import Demand, demand_scope
from anthropic_rx.sinks._hub import Cursor, Lease, encode_event, encode_terminal
from anthropic_rx.sinks._redis import RedisBackend
from tests._services import RedisServer, redis_url, unique_prefix
from tests.sinks.test_broadcast import Feed, collect, opened, reply_events, until, wire, words

pytestmark = pytest.mark.services

WAIT = 5.0


@pytest.fixture
async def hub() -> AsyncIterator[sinks.RedisBroadcaster]:
    made = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix())
    yield made
    await made.aclose()


@pytest.fixture
async def backend() -> AsyncIterator[RedisBackend]:
    """A backend on the shared server under a prefix of its own, closed after the test."""
    made = RedisBackend(redis_url(), prefix=unique_prefix())
    yield made
    await made.aclose()


def stale() -> sinks.Broadcast:
    return sinks.Broadcast("", end="error", error_class="IncompleteStreamError", error_message="x")


async def logged(
    backend: RedisBackend, events: Sequence[arx.MessageStreamEvent]
) -> tuple[Lease, Cursor]:
    """Open a reply on ``"c"`` and log ``events`` in it: its lease, and a cursor at its start.

    Raises what the backend raises (``ChannelBusyError`` if a live reply holds the channel).
    """
    lease = await backend.try_open("c", lease=5, stale_terminal=stale(), ttl=60)
    await backend.append("c", lease, events)
    cursor = await backend.resolve("c", None)
    assert cursor is not None
    return lease, cursor


async def publishing(
    hub: sinks.RedisBroadcaster, reply: testing.Reply, first: int
) -> tuple[Feed, asyncio.Task[arx.Message | None]]:
    """Publish ``reply`` on ``"c"`` in a task, releasing its ``first`` events: its feed and the
    task, once the reply's first entry is logged (within ``WAIT`` seconds, else TimeoutError).
    The caller releases the rest and awaits or cancels the task."""
    feed = Feed(reply)
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(first)
    await opened(hub, "c")
    return feed, job


async def finish(feed: Feed, job: asyncio.Task[arx.Message | None]) -> arx.Message | None:
    """Release the rest of ``feed``, end it, and return what its publish returned (raising what
    it raised; TimeoutError after ``WAIT`` seconds)."""
    feed.send()
    feed.complete()
    return await asyncio.wait_for(job, WAIT)


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
        _, job = await publishing(hub, words(5), 3)
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


async def test_a_stale_publisher_can_never_write_into_the_reply_that_took_its_channel(
    backend: RedisBackend,
) -> None:
    events = reply_events(words(3))
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


async def test_an_append_retried_after_its_reply_was_lost_is_not_logged_twice(
    backend: RedisBackend,
) -> None:
    events = reply_events(words(3))
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


# --- trimming ---------------------------------------------------------------------------------


async def test_a_cursor_trimmed_off_the_stream_is_a_resume_error_never_a_gap() -> None:
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), max_entries=16)
    try:
        first_ids: list[str] = []
        feed, job = await publishing(hub, words(300), 5)
        async with asyncio.timeout(WAIT):
            async for item in arx.to_async_iterator(hub.subscribe("c")):
                first_ids.append(item.id)
                if len(first_ids) == 3:
                    break
        await finish(feed, job)
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
            feed, job = await publishing(hub, words(60), 2)
            subscribers = [asyncio.create_task(collect(hub.subscribe("c"))) for _ in range(100)]
            await asyncio.sleep(0.2)  # all of them waiting for the next entry
            for _ in range(6):
                feed.send(10)
                await asyncio.sleep(0.02)
            clients = await probe.client_list()
            await finish(feed, job)
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
        feed, job = await publishing(hub, words(5), 2)
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
        await finish(feed, job)
    finally:
        await hub.aclose()
    assert max(delays) < 0.1, delays


# --- live followers --------------------------------------------------------------------------


class Received:
    """A subscription's items as they arrive (``demand``: its consumer's pace, set by the test)."""

    def __init__(self, subscription: sinks.BroadcastSubscription, demand: Demand | None = None):
        self.items: list[sinks.Broadcast] = []
        self.error: BaseException | None = None
        self.done = asyncio.get_running_loop().create_future()
        self._want = 0
        self._enough = asyncio.Event()
        if demand is None:
            self.disposable = subscription.subscribe(self._next, self._error, self._completed)
        else:
            with demand_scope(demand):
                self.disposable = subscription.subscribe(self._next, self._error, self._completed)

    def _next(self, item: sinks.Broadcast) -> None:
        self.items.append(item)
        if len(self.items) >= self._want:
            self._enough.set()

    def _error(self, error: Exception) -> None:
        self.error = error
        self.done.set_result(None)

    def _completed(self) -> None:
        self.done.set_result(None)

    async def count(self, wanted: int) -> None:
        """Return once ``wanted`` items arrived (at most ``WAIT`` seconds)."""
        self._want = wanted
        self._enough.clear()
        if len(self.items) < wanted:
            await asyncio.wait_for(self._enough.wait(), WAIT)


def backend_of(hub: sinks.RedisBroadcaster) -> RedisBackend:
    return cast(RedisBackend, hub._backend)


def live_readers(hub: sinks.RedisBroadcaster, channel: str) -> int:
    live = backend_of(hub)._lives.get(channel)
    return 0 if live is None else len(live.readers)


class Reads:
    """Counts the backend's log reads (``_read_once``: one script each) and their tasks."""

    def __init__(self, backend: RedisBackend) -> None:
        self.tasks: list[asyncio.Task[Any] | None] = []
        read_once = backend._read_once

        async def counted(*args: Any) -> Any:
            self.tasks.append(asyncio.current_task())
            return await read_once(*args)

        backend._read_once = counted  # type: ignore[method-assign, assignment]


async def test_live_subscribers_are_handed_each_entry_by_one_shared_read() -> None:
    # stale_after=60: no tick ("look again") comes while the test runs.
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), stale_after=60)
    backend = backend_of(hub)
    try:
        feed, job = await publishing(hub, words(12), 2)
        received = [Received(hub.subscribe("c")) for _ in range(20)]
        for one in received:
            await one.count(2)
        # (And the one opened() disposed, dropped at the next entry.)
        await until(lambda: live_readers(hub, "c") >= 20)
        serving = backend._lives["c"].task
        reads = Reads(backend)
        for step in range(10):
            feed.send(1)
            for one in received:
                await one.count(3 + step)
        live_phase = list(reads.tasks)
        assert live_readers(hub, "c") == 20  # all still handed entries, none reading
        await finish(feed, job)
        for one in received:
            await asyncio.wait_for(one.done, WAIT)
        log, _ = await collect(hub.subscribe("c"))
    finally:
        await hub.aclose()
    # One script per delta for the twenty of them, each sent by the shared read, not by a
    # subscriber's task (without it: one per subscriber per delta, and one more coming back
    # empty).
    assert serving is not None and set(live_phase) == {serving}
    assert 10 <= len(live_phase) <= 12
    for one in received:
        assert one.error is None and one.items == log
    assert wire([item.event for item in log]) == wire(feed.events)
    assert backend._keys("c") is backend._keys("c")  # made once per channel


async def test_a_live_subscriber_that_falls_behind_reads_on_then_rejoins_without_gap_or_dup() -> (
    None
):
    hub = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), stale_after=60)
    try:
        feed, job = await publishing(hub, words(40), 2)
        demand = Demand()
        fast, slow = Received(hub.subscribe("c")), Received(hub.subscribe("c"), demand)
        await fast.count(2)
        await slow.count(2)
        await until(lambda: live_readers(hub, "c") >= 2)
        demand.pause()  # its consumer stops keeping up
        feed.send(10)
        await fast.count(12)
        # The shared read handed it nothing more: it went back to reading by its cursor.
        assert live_readers(hub, "c") == 1 and len(slow.items) == 2
        demand.resume()
        await slow.count(12)
        await until(lambda: live_readers(hub, "c") == 2)  # caught up: handed entries again
        feed.send(10)
        await slow.count(22)
        await finish(feed, job)
        await asyncio.wait_for(asyncio.gather(fast.done, slow.done), WAIT)
        log, _ = await collect(hub.subscribe("c"))
    finally:
        await hub.aclose()
    assert fast.error is None and slow.error is None
    assert fast.items == log and slow.items == log
    assert wire([item.event for item in log]) == wire(feed.events) and log[-1].end == "done"


class Pushed:
    """A live reader that keeps what it is handed (``looks``: how often told to read)."""

    def __init__(self) -> None:
        self.entries: list[sinks.Broadcast] = []
        self.looks = 0

    def push(self, entries: Sequence[sinks.Broadcast] | None) -> bool:
        if entries is None:
            self.looks += 1
            return False
        self.entries.extend(entries)
        return True


async def test_a_reader_registers_only_where_the_shared_read_misses_nothing_after_it(
    backend: RedisBackend,
) -> None:
    events = reply_events(words(4))
    lease, cursor = await logged(backend, events[:2])
    reply = cursor.reply
    start = Cursor(reply, (await backend.read("c", cursor, count=10, block=1.0))[-1].id)
    first, behind, at, ahead = Pushed(), Pushed(), Pushed(), Pushed()
    assert backend.follow_live("c", start, first, block=WAIT)
    await backend.append("c", lease, events[2:3])
    await until(lambda: len(first.entries) == 1)
    third = first.entries[0].id
    # Handed out after ``start``: a reader there would miss it, so it reads on itself.
    assert not backend.follow_live("c", start, behind, block=WAIT)
    assert backend.follow_live("c", Cursor(reply, third), at, block=WAIT)
    await backend.append("c", lease, events[3:4])
    # Its own read went past the shared one (or as far): it gets what follows, once.
    fourth = (await backend.read("c", Cursor(reply, third), count=10, block=0))[0].id
    assert backend.follow_live("c", Cursor(reply, fourth), ahead, block=WAIT)
    await backend.append("c", lease, events[4:5])
    await until(lambda: len(first.entries) == 3)
    await until(lambda: len(ahead.entries) == 1)
    log = await backend.read("c", cursor, count=10, block=0)
    ids = [entry.id for entry in log]
    assert [entry.id for entry in first.entries] == ids[2:5]
    assert [entry.id for entry in at.entries] == ids[3:5]
    assert [entry.id for entry in ahead.entries] == ids[4:5]
    await backend.finish("c", lease, sinks.Broadcast("", end="done"), ttl=60)
    await until(lambda: first.looks == at.looks == ahead.looks == 1)  # the end: read it
    assert first.entries[-1].end == "done" and behind.entries == [] and behind.looks == 0
    assert "c" not in backend._lives


async def test_a_live_reader_is_told_to_look_again_after_block_seconds_without_entries(
    backend: RedisBackend,
) -> None:
    _, cursor = await logged(backend, reply_events(words(1))[:1])
    entries = await backend.read("c", cursor, count=10, block=1.0)
    reader = Pushed()
    registered = time.monotonic()
    assert backend.follow_live("c", Cursor(cursor.reply, entries[-1].id), reader, block=0.1)
    await until(lambda: reader.looks == 1)  # so its follower checks for a stale publisher
    assert time.monotonic() - registered >= 0.09 and reader.entries == []
    assert "c" not in backend._lives


async def test_readers_asking_at_once_share_one_read_and_a_later_one_sees_every_write(
    backend: RedisBackend,
) -> None:
    events = reply_events(words(3))
    lease, cursor = await logged(backend, events[:2])
    reads = Reads(backend)
    together = await asyncio.gather(
        *(backend.read("c", cursor, count=10, block=0) for _ in range(5))
    )
    assert len(reads.tasks) == 1 and all(entries == together[0] for entries in together)
    sent = asyncio.create_task(backend.read("c", cursor, count=10, block=0))
    await asyncio.sleep(0)  # the read is on its way
    await backend.append("c", lease, events[2:3])
    after = await backend.read("c", cursor, count=10, block=0)
    assert len(await sent) in (2, 3) and len(after) == 3  # never the read sent before it


async def test_a_reader_at_the_end_it_read_waits_for_the_wake_up_without_reading_again(
    backend: RedisBackend,
) -> None:
    events = reply_events(words(3))
    lease, cursor = await logged(backend, events[:2])
    first = await backend.read("c", cursor, count=100, block=1.0)
    assert len(first) == 2
    wake = backend._wakes[f"{backend.prefix}:{{c}}:wake"]
    await until(lambda: wake.generation >= 1)  # subscribed: every write is announced now
    at_end = Cursor(cursor.reply, first[-1].id)
    assert await backend.read("c", at_end, count=100, block=0.05) == []
    reads = Reads(backend)
    waiting = asyncio.create_task(backend.read("c", at_end, count=100, block=WAIT))
    await asyncio.sleep(0.05)  # it waits, having read nothing yet
    assert reads.tasks == [] and not waiting.done()
    await backend.append("c", lease, events[2:3])
    entries = await asyncio.wait_for(waiting, WAIT)
    assert wire([entry.event for entry in entries]) == wire(events[2:3])
    assert len(reads.tasks) == 1  # woken once, read once


# --- faults ----------------------------------------------------------------------------------


async def restart(server: RedisServer, feed: Feed) -> None:
    """Kill ``server`` mid-reply, release 20 more events while it is down, start it again within
    the publisher's retry window (0.3 s later), then release the rest of ``feed`` and end it."""
    server.kill()
    feed.send(20)
    await asyncio.sleep(0.3)  # down a while: the publisher retries meanwhile
    server.start()
    feed.send()
    feed.complete()


async def test_redis_killed_mid_reply_ends_both_sides_with_api_connection_error() -> None:
    with RedisServer() as server:
        hub = sinks.RedisBroadcaster(server.url, retry_window=0.3, stale_after=1.0)
        try:
            feed, job = await publishing(hub, words(50), 10)
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
            feed, job = await publishing(hub, words(60), 10)
            live = asyncio.create_task(collect(hub.subscribe("c"), within=15))
            await asyncio.sleep(0.1)
            await restart(server, feed)
            async with asyncio.timeout(15):
                message = await job
                items, error = await live
            log, _ = await collect(hub.subscribe("c"))
        finally:
            await hub.aclose()
    assert error is None and message is not None
    assert items == log and wire([item.event for item in items]) == wire(feed.events)
    assert items[-1].end == "done"


async def test_a_redis_restart_mid_reply_resumes_live_subscribers_without_gap_or_dup() -> None:
    with RedisServer(persistent=True) as server:
        hub = sinks.RedisBroadcaster(server.url, retry_window=3.0, stale_after=10)
        try:
            feed, job = await publishing(hub, words(60), 10)
            received = [Received(hub.subscribe("c")) for _ in range(5)]
            for one in received:
                await one.count(10)
            await until(lambda: live_readers(hub, "c") >= 5)  # handed entries by one read
            await restart(server, feed)
            async with asyncio.timeout(15):
                message = await job
                for one in received:
                    await one.done
            log, _ = await collect(hub.subscribe("c"))
        finally:
            await hub.aclose()
    assert message is not None and log[-1].end == "done"
    assert wire([item.event for item in log]) == wire(feed.events)
    for one in received:
        assert one.error is None and one.items == log


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
