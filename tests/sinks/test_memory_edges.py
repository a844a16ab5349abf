"""The memory backend's edges: expiry seen before its timer fires, readers of a reply that is
gone or replaced, abandoning what is not the caller's, and its one timer per reply."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from anthropic_rx import sinks
from anthropic_rx.sinks._hub import Cursor
from anthropic_rx.sinks._memory import MemoryBackend, _Reply
from tests.sinks.test_broadcast import reply_events, words

WAIT = 2.0
STALE = sinks.Broadcast("", end="error", error_type="stale", error_message="gone")
DONE = sinks.Broadcast("", end="done")


class Reader:
    """A live reader that keeps what it is handed (``None``: told to look again)."""

    def __init__(self) -> None:
        self.pushed: list[Sequence[sinks.Broadcast] | None] = []

    def push(self, entries: Sequence[sinks.Broadcast] | None) -> bool:
        self.pushed.append(entries)
        return True


async def test_an_ended_channel_whose_ttl_has_passed_is_gone_before_its_timer_fires() -> None:
    backend = MemoryBackend()
    lease = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    await backend.append("c", lease, reply_events(words(2)))
    # ttl 0: the expiry is due at once, but its timer only runs at the loop's next turn; the
    # next look at the channel must not serve it meanwhile.
    await backend.finish("c", lease, DONE, ttl=0)
    cursor = Cursor(lease.reply)
    with pytest.raises(sinks.ChannelNotFound):
        await backend.resolve("c", None)
    with pytest.raises(sinks.ChannelNotFound, match="expired"):
        await backend.read("c", cursor, count=10, block=0)
    assert backend.follow_live("c", cursor, Reader(), block=1) is False
    assert await backend.abandon("c", lease.reply, STALE, ttl=1) is False
    # The cancelled timer never forgets a channel opened again under the same name.
    again = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    await asyncio.sleep(0)
    assert (await backend.resolve("c", None)) == Cursor(again.reply)


async def test_a_reader_of_a_replaced_reply_reads_it_to_its_end_then_not_further() -> None:
    backend = MemoryBackend()
    first = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    await backend.append("c", first, reply_events(words(1)))
    await backend.finish("c", first, DONE, ttl=60)
    second = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    old = await backend.read("c", Cursor(first.reply), count=100, block=0)
    assert old[-1].end == "done"  # the reply just before is still read whole
    await backend.finish("c", second, DONE, ttl=60)
    await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    # Two replies on, the first is no longer kept for its readers: never a jump into another.
    with pytest.raises(sinks.ResumeError, match="moved on"):
        await backend.read("c", Cursor(first.reply), count=100, block=0)


async def test_abandon_refuses_another_reply_an_ended_one_and_a_live_lease() -> None:
    backend = MemoryBackend()
    assert await backend.abandon("none", "r1", STALE, ttl=1) is False
    lease = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    assert await backend.abandon("c", "r-other", STALE, ttl=1) is False
    assert await backend.abandon("c", lease.reply, STALE, ttl=1) is False  # its lease is live
    await backend.finish("c", lease, DONE, ttl=60)
    assert await backend.abandon("c", lease.reply, STALE, ttl=1) is False  # ended already
    entries = await backend.read("c", Cursor(lease.reply), count=10, block=0)
    assert [entry.end for entry in entries] == ["done"]  # no second terminal was written


async def test_following_a_channel_that_does_not_exist_is_refused() -> None:
    backend = MemoryBackend()
    assert backend.follow_live("nowhere", Cursor("r1"), Reader(), block=1) is False


async def test_an_earlier_deadline_replaces_the_replys_timer_and_wakes_everyone_then() -> None:
    backend = MemoryBackend()
    lease = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    cursor = Cursor(lease.reply)
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = asyncio.create_task(backend.read("c", cursor, count=10, block=30))
    await asyncio.sleep(0)
    fast = asyncio.create_task(backend.read("c", cursor, count=10, block=0.05))
    async with asyncio.timeout(WAIT):
        # One timer per reply, moved to the earlier deadline: both readers look again then,
        # not after 30 s (waking early is allowed: "up to block seconds").
        assert [list(entries) for entries in await asyncio.gather(slow, fast)] == [[], []]
    assert loop.time() - started < 1.0


async def test_appending_with_no_live_reader_only_wakes_the_waiting_ones() -> None:
    reply = _Reply("r1", "t1", 0.0)
    reply.push([DONE])  # nobody at the live end: nothing to do, nothing raised
    assert reply.pushed == set()
    waiter = reply.wait(asyncio.get_running_loop(), 30)
    reply.appended()
    assert waiter.done()
    assert reply.tick is not None  # the reply has not ended: its timer stays for the others
    reply.tick.cancel()


async def test_a_reader_behind_the_live_end_is_not_followed_live() -> None:
    backend = MemoryBackend()
    lease = await backend.try_open("c", lease=10, stale_terminal=STALE, ttl=60)
    await backend.append("c", lease, reply_events(words(2)))
    reader = Reader()
    # Behind the end it must read what it has not seen first: pushing would skip entries.
    assert backend.follow_live("c", Cursor(lease.reply), reader, block=1) is False
    entries = await backend.read("c", Cursor(lease.reply), count=100, block=0)
    at_end = Cursor(lease.reply, entries[-1].id)
    assert backend.follow_live("c", at_end, reader, block=1) is True
    await backend.append("c", lease, reply_events(words(1))[:1])
    assert reader.pushed and reader.pushed[0] is not None and len(reader.pushed[0]) == 1
