"""What only the in-process broadcaster does: its ids, its timers, its immediacy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import anthropic_rx as arx
from anthropic_rx import sinks, testing
from anthropic_rx.sinks._memory import MemoryBackend
from tests.sinks.test_broadcast import Feed, collect, opened, reply_events, until, words


async def test_ids_count_from_one_across_channels_and_are_never_reused() -> None:
    hub = sinks.MemoryBroadcaster(ttl=0.05)
    await hub.publish("a", arx.from_sse_bytes(words(2).to_sse()))
    first, _ = await collect(hub.subscribe("a"))
    assert [item.id for item in first] == [str(n) for n in range(1, len(first) + 1)]
    await hub.publish("b", arx.from_sse_bytes(words(2).to_sse()))
    other, _ = await collect(hub.subscribe("b"))
    assert int(other[0].id) == len(first) + 1
    await asyncio.sleep(0.1)  # "a" expired: a new reply there still gets new ids
    assert isinstance((await collect(hub.subscribe("a")))[1], sinks.ChannelNotFound)
    await hub.publish("a", arx.from_sse_bytes(words(2).to_sse()))
    again, _ = await collect(hub.subscribe("a"))
    assert int(again[0].id) == int(other[-1].id) + 1
    # an id of the expired reply is an earlier reply's: the current one replays from its start
    assert (await collect(hub.subscribe("a", last_event_id=first[2].id)))[0] == again


@pytest.mark.parametrize("offset", [1, 1000, 10**30])
async def test_an_id_never_issued_to_a_live_reply_is_a_resume_error(offset: int) -> None:
    hub = sinks.MemoryBroadcaster()
    feed = Feed(words(10))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(4)
    await opened(hub, "c")
    await asyncio.sleep(0.01)
    items, error = await collect(hub.subscribe("c", last_event_id=str(4 + offset)), within=0.5)
    assert items == [] and isinstance(error, sinks.ResumeError)
    feed.send()
    feed.complete()
    await job


async def test_an_id_of_another_channel_inside_the_replys_range_is_a_resume_error() -> None:
    hub = sinks.MemoryBroadcaster()
    feed_a, feed_b = Feed(words(5)), Feed(words(5))
    jobs = [
        asyncio.create_task(hub.publish("a", feed_a.observable())),
        asyncio.create_task(hub.publish("b", feed_b.observable())),
    ]
    for _ in range(5):  # interleave the two logs' ids
        feed_a.send(1)
        await asyncio.sleep(0.005)
        feed_b.send(1)
        await asyncio.sleep(0.005)
    for feed in (feed_a, feed_b):
        feed.send()
        feed.complete()
    await asyncio.gather(*jobs)
    a_items, _ = await collect(hub.subscribe("a"))
    b_items, _ = await collect(hub.subscribe("b"))
    foreign = next(b.id for b in b_items if int(b.id) > int(a_items[0].id))
    assert int(foreign) < int(a_items[-1].id)
    items, error = await collect(hub.subscribe("a", last_event_id=foreign))
    assert items == [] and isinstance(error, sinks.ResumeError)


async def test_a_cancelled_publish_ends_its_subscribers_at_once() -> None:
    hub = sinks.MemoryBroadcaster()  # stale_after=10: the heartbeat is not what ends them
    feed = Feed(words(10))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(4)
    await opened(hub, "c")
    live = asyncio.create_task(collect(hub.subscribe("c")))
    await asyncio.sleep(0.01)
    job.cancel()
    started = time.monotonic()
    items, error = await live
    assert time.monotonic() - started < 0.2
    assert isinstance(error, arx.IncompleteStreamError) and items[-1].end == "error"
    assert feed.closed  # the source was disposed
    with pytest.raises(asyncio.CancelledError):
        await job


async def test_a_subscriber_at_the_live_end_is_handed_each_entry_by_the_publishers_call() -> None:
    hub = sinks.MemoryBroadcaster()
    feed = Feed(words(20))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(3)
    await opened(hub, "c")
    callers: list[asyncio.Task[Any] | None] = []
    items: list[sinks.Broadcast] = []
    done = asyncio.Event()

    def on_next(item: sinks.Broadcast) -> None:
        callers.append(asyncio.current_task())
        items.append(item)

    hub.subscribe("c").subscribe(on_next, on_completed=done.set)
    await until(lambda: len(items) == 3)
    replayed_by = set(callers)  # the log so far: read by the subscription's own task
    await asyncio.sleep(0.01)  # it waits at the live end now
    feed.send(5)
    await until(lambda: len(items) == 8)
    assert set(callers[3:]) == {job}  # no task woken per entry: the append delivered them
    assert job not in replayed_by and None not in replayed_by
    feed.send()
    feed.complete()
    await job
    await asyncio.wait_for(done.wait(), 5)
    log, _ = await collect(hub.subscribe("c"))
    assert items == log and items[-1].end == "done"  # the terminal through the task again


async def test_a_live_subscriber_that_raises_fails_alone_and_never_reaches_the_publisher() -> None:
    hub = sinks.MemoryBroadcaster()
    feed = Feed(words(20))
    job = asyncio.create_task(hub.publish("c", feed.observable()))
    feed.send(3)
    await opened(hub, "c")
    boom = RuntimeError("subscriber bug")
    seen: list[sinks.Broadcast] = []
    failures: list[Exception] = []

    def on_next(item: sinks.Broadcast) -> None:
        seen.append(item)
        if len(seen) == 5:
            raise boom

    hub.subscribe("c").subscribe(on_next, failures.append)
    other = asyncio.create_task(collect(hub.subscribe("c")))
    await until(lambda: len(seen) == 3)
    await asyncio.sleep(0.01)
    feed.send()  # the fifth entry raises inside the publisher's append
    feed.complete()
    message = await asyncio.wait_for(job, 5)
    items, error = await other
    assert message is not None and error is None and items[-1].end == "done"
    assert failures == [boom] and len(seen) == 5


async def test_an_expired_channel_is_freed_without_being_asked_for() -> None:
    backend = MemoryBackend()
    hub = sinks.Broadcaster(backend, ttl=0.05)
    await hub.publish("c", arx.from_sse_bytes(words(2).to_sse()))
    assert "c" in backend._channels
    await asyncio.sleep(0.1)
    assert backend._channels == {}


async def test_a_lapsed_publisher_gives_the_channel_to_the_next_one() -> None:
    hub = sinks.MemoryBroadcaster(stale_after=0.15)
    feed = Feed(words(10))
    frozen = hub.publish("c", feed.observable())
    feed.send(3)
    waited = frozen.send(None)  # it runs to its first wait for events, and is never resumed
    assert waited is not None
    await asyncio.sleep(0)
    with pytest.raises(sinks.ChannelBusyError):
        await hub.publish("c", arx.from_sse_bytes(words(2).to_sse()))
    await asyncio.sleep(0.15)
    message = await hub.publish("c", arx.from_sse_bytes(words(2).to_sse()))
    assert message is not None
    frozen.close()
    await until(lambda: feed.closed)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"ttl": 0}, "ttl"),
        ({"stale_after": -1}, "stale_after"),
        ({"buffer": 1}, "buffer"),
        ({"slow": "drop"}, "slow"),
    ],
)
def test_options_out_of_range_are_value_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sinks.MemoryBroadcaster(**options)


async def test_a_request_is_closed_when_the_publish_coroutine_is_dropped() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(words(300), tokens_per_second=300)
    hub = sinks.MemoryBroadcaster()
    async with fake.client() as client:
        publishing = hub.publish(
            "c",
            client.stream(model="m", max_tokens=9, messages=[{"role": "user", "content": "x"}]),
        )
        waited = publishing.send(None)
        await asyncio.wait([waited])
        await asyncio.sleep(0.05)
        assert fake.open_streams == 1
        publishing.close()
        await fake.wait_closed()


async def test_a_publisher_back_after_losing_its_channel_fails_and_writes_nothing() -> None:
    hub = sinks.MemoryBroadcaster(stale_after=0.15)
    feed = Feed(words(10))
    frozen = hub.publish("c", feed.observable())
    feed.send(3)
    waited = frozen.send(None)
    await asyncio.sleep(0.15)
    await hub.publish("c", arx.from_sse_bytes(words(2).to_sse()))  # takes the lapsed channel
    log, _ = await collect(hub.subscribe("c"))
    await asyncio.wait([waited])
    with pytest.raises(sinks.BroadcastError, match="lost channel"):
        frozen.send(None)  # it resumes and tries to append what it queued
    assert (await collect(hub.subscribe("c")))[0] == log
    await until(lambda: feed.closed)


async def test_a_synchronous_source_of_many_events_is_logged_whole() -> None:
    hub = sinks.MemoryBroadcaster()
    reply = words(3000)  # queued faster than appended: the publisher pauses its source
    message = await hub.publish("c", arx.from_sse_bytes(reply.to_sse()))
    log, error = await collect(hub.subscribe("c"))
    assert message == reply.message() and error is None and len(log) == 3000 + 6


class _SlowAppends(MemoryBackend):
    """A store slower than the source (as a remote one can be): each append takes 10 ms."""

    async def append(self, channel: str, lease: Any, events: Any) -> None:
        await asyncio.sleep(0.01)
        await super().append(channel, lease, events)


async def test_a_publisher_kept_busy_by_a_fast_source_still_renews_its_lease() -> None:
    hub = sinks.Broadcaster(_SlowAppends(), stale_after=0.15)  # a lease of 0.1 s
    events = reply_events(words(400))

    async def arriving() -> AsyncIterator[arx.MessageStreamEvent]:
        for event in events:  # one every ms: every append finds new ones waiting
            await asyncio.sleep(0.001)
            yield event

    job = asyncio.create_task(hub.publish("c", arx.from_async_iterable(arriving())))
    await asyncio.sleep(0.3)
    assert not job.done()
    with pytest.raises(sinks.ChannelBusyError):
        await hub.publish("c", arx.from_sse_bytes(words(2).to_sse()))
    assert await asyncio.wait_for(job, 5) is not None
    log, error = await collect(hub.subscribe("c"))
    assert error is None and log[-1].end == "done" and len(log) == len(events) + 1
