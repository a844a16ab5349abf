"""The in-process broadcaster: channel logs in memory, for one process (the embedded default)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import replace

from .._events import MessageStreamEvent
from ._broadcast import (
    Broadcast,
    BroadcastError,
    ChannelBusyError,
    ChannelNotFound,
    ResumeError,
    SlowPolicy,
    shown_id,
)
from ._hub import Broadcaster, Cursor, Lease, LiveReader

__all__ = ["MemoryBackend", "MemoryBroadcaster"]

_log = logging.getLogger("anthropic_rx.sinks")

# Longer "ids" than this are not ours (and int() of a huge digit string is slow).
_MAX_ID_DIGITS = 20


class _Reply:
    """The log of one reply: entries, their ids as numbers (for bisect), who writes it."""

    __slots__ = (
        "ended",
        "entries",
        "id",
        "lease_until",
        "numbers",
        "pushed",
        "tick",
        "tick_at",
        "token",
        "waiters",
    )

    def __init__(self, reply_id: str, token: str, lease_until: float) -> None:
        self.id = reply_id
        self.token = token
        self.lease_until = lease_until
        self.entries: list[Broadcast] = []
        self.numbers: list[int] = []
        self.ended = False
        self.waiters: list[asyncio.Future[None]] = []
        # Readers at the live end, handed each append in the publisher's call (no task wakes
        # for them): with many subscribers the wake-ups cost more than the entries.
        self.pushed: set[LiveReader] = set()
        # One timer for all the readers waiting on this reply (not one per read): with many
        # subscribers, per-read timers cost more than the entries they wait for.
        self.tick: asyncio.TimerHandle | None = None
        self.tick_at = 0.0

    def wait(self, loop: asyncio.AbstractEventLoop, block: float) -> asyncio.Future[None]:
        """A future set at the next append, or within ``block`` seconds at the latest."""
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.append(waiter)
        self.arm(loop, block)
        return waiter

    def arm(self, loop: asyncio.AbstractEventLoop, block: float) -> None:
        """Wake everyone waiting on this reply within ``block`` seconds at the latest."""
        due = loop.time() + block
        if self.tick is None or due < self.tick_at:
            if self.tick is not None:
                self.tick.cancel()
            self.tick = loop.call_at(due, self._ticked)
            self.tick_at = due

    def push(self, entries: Sequence[Broadcast] | None) -> None:
        """Hand ``entries`` (``None``: "look again") to the live readers; drop those that
        leave. A reader's failure is its own: it never reaches the publisher."""
        pushed = self.pushed
        if not pushed:
            return
        for reader in list(pushed):
            try:
                stays = reader.push(entries)
            except Exception:  # pragma: no cover - push catches its subscriber's errors
                _log.exception("a live broadcast reader failed")
                stays = False
            if not stays:
                pushed.discard(reader)

    def _ticked(self) -> None:
        self.tick = None
        self.wake()

    def wake(self) -> None:
        """Everyone looks again: the waiting readers, and the live ones (the reply ended, the
        channel was forgotten, or a tick: a stale publisher is noticed)."""
        if self.pushed:
            self.push(None)
        self.appended()

    def appended(self) -> None:
        """Entries were appended: the waiting readers read them (the live ones have them)."""
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        if self.ended and self.tick is not None:
            self.tick.cancel()
            self.tick = None


class _Channel:
    __slots__ = ("expires_at", "expiry", "previous", "reply")

    def __init__(self, reply: _Reply, previous: _Reply | None = None) -> None:
        self.reply = reply
        # The reply this one replaced, ended: whoever was still reading it reads it to its end.
        self.previous = previous
        self.expires_at: float | None = None  # time.monotonic() after the terminal + ttl
        self.expiry: asyncio.TimerHandle | None = None


class MemoryBackend:
    """A :class:`~anthropic_rx.sinks._hub.BroadcastBackend` in this process's memory.

    Entries are kept as :class:`~anthropic_rx.sinks.Broadcast` values (no serialisation).
    Ids are decimal strings from one counter per backend (``"1"``, ``"2"``, …), so an id is
    never reused, not even by a channel created again after its history expired. A reply's log
    is kept whole until ``ttl`` after its terminal entry. Not thread-safe: one event loop.
    """

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._numbers = itertools.count(1)
        self._replies = itertools.count(1)

    def _channel(self, channel: str) -> _Channel | None:
        found = self._channels.get(channel)
        if (
            found is not None
            and found.expires_at is not None
            and time.monotonic() >= found.expires_at
        ):
            self._forget(channel, found)
            return None
        return found

    def _forget(self, channel: str, found: _Channel) -> None:
        if self._channels.get(channel) is found:
            del self._channels[channel]
        if found.expiry is not None:
            found.expiry.cancel()
            found.expiry = None
        found.reply.wake()

    def _owned(self, channel: str, lease: Lease) -> _Reply:
        found = self._channels.get(channel)
        if found is None or found.reply.token != lease.token or found.reply.ended:
            raise BroadcastError(
                f"the publisher lost channel {channel!r} (its lease lapsed or the reply ended)"
            )
        return found.reply

    def _end(self, channel: str, found: _Channel, terminal: Broadcast, ttl: float) -> None:
        reply = found.reply
        number = next(self._numbers)
        reply.entries.append(replace(terminal, id=str(number)))
        reply.numbers.append(number)
        reply.ended = True
        found.expires_at = time.monotonic() + ttl
        if found.expiry is not None:
            found.expiry.cancel()
        found.expiry = asyncio.get_running_loop().call_later(ttl, self._expire, channel, found)
        reply.wake()

    def _expire(self, channel: str, found: _Channel) -> None:
        found.expiry = None
        if self._channels.get(channel) is found and found.expires_at is not None:
            self._forget(channel, found)

    async def try_open(
        self, channel: str, *, lease: float, stale_terminal: Broadcast, ttl: float
    ) -> Lease:
        """See :meth:`BroadcastBackend.try_open`."""
        now = time.monotonic()
        found = self._channel(channel)
        if found is not None and not found.reply.ended:
            if found.reply.lease_until > now:
                raise ChannelBusyError(f"channel {channel!r} already has a live publisher")
            self._end(channel, found, stale_terminal, ttl)
        number = next(self._replies)
        reply = _Reply(f"r{number}", f"t{number}", now + lease)
        previous = None
        if found is not None:
            if found.expiry is not None:
                found.expiry.cancel()
            previous = found.reply
        self._channels[channel] = _Channel(reply, previous)
        return Lease(reply.token, reply.id)

    async def append(
        self, channel: str, lease: Lease, events: Sequence[MessageStreamEvent]
    ) -> None:
        """See :meth:`BroadcastBackend.append`."""
        reply = self._owned(channel, lease)
        entries = reply.entries
        numbers = reply.numbers
        counter = self._numbers
        first = len(entries)
        for event in events:
            number = next(counter)
            entries.append(Broadcast(str(number), event))
            numbers.append(number)
        if reply.pushed:
            reply.push(entries[first:])
        reply.appended()

    async def finish(self, channel: str, lease: Lease, terminal: Broadcast, *, ttl: float) -> None:
        """See :meth:`BroadcastBackend.finish`."""
        self._owned(channel, lease)
        self._end(channel, self._channels[channel], terminal, ttl)

    async def heartbeat(self, channel: str, lease: Lease, *, duration: float) -> None:
        """See :meth:`BroadcastBackend.heartbeat`."""
        self._owned(channel, lease).lease_until = time.monotonic() + duration

    async def abandon(self, channel: str, reply: str, terminal: Broadcast, *, ttl: float) -> bool:
        """See :meth:`BroadcastBackend.abandon`."""
        found = self._channel(channel)
        if found is None or found.reply.id != reply or found.reply.ended:
            return False
        if found.reply.lease_until > time.monotonic():
            return False
        self._end(channel, found, terminal, ttl)
        return True

    async def resolve(self, channel: str, last_event_id: str | None) -> Cursor | None:
        """See :meth:`BroadcastBackend.resolve`."""
        found = self._channel(channel)
        if found is None:
            raise ChannelNotFound(f"no reply on channel {channel!r} (none yet, or expired)")
        reply = found.reply
        if last_event_id is None:
            return Cursor(reply.id)
        if not (
            0 < len(last_event_id) <= _MAX_ID_DIGITS
            and last_event_id.isascii()
            and last_event_id.isdigit()
        ):
            raise ResumeError(f"{shown_id(last_event_id)} is not an id of this broadcaster")
        number = int(last_event_id)
        numbers = reply.numbers
        if not numbers or number < numbers[0]:
            return Cursor(reply.id)  # an earlier reply's id: replay this one from its start
        if reply.ended and number >= numbers[-1]:
            return None
        position = bisect_right(numbers, number) - 1
        if numbers[position] != number:
            raise ResumeError(
                f"{shown_id(last_event_id)} is not an id in the log of channel {channel!r}"
            )
        return Cursor(reply.id, str(number))

    async def read(
        self, channel: str, cursor: Cursor, *, count: int, block: float
    ) -> Sequence[Broadcast]:
        """See :meth:`BroadcastBackend.read`."""
        reply = self._current(channel, cursor)
        start = 0 if cursor.after is None else bisect_right(reply.numbers, int(cursor.after))
        if start < len(reply.entries) or reply.ended or block <= 0:
            return reply.entries[start : start + count]
        # Woken early (another reader's shorter wait, a cancelled reader's leftover tick) is
        # allowed: "up to block seconds". A cancelled reader's future is simply dropped at
        # the next wake.
        await reply.wait(asyncio.get_running_loop(), block)
        reply = self._current(channel, cursor)
        return reply.entries[start : start + count]

    def _current(self, channel: str, cursor: Cursor) -> _Reply:
        found = self._channel(channel)
        if found is None:
            raise ChannelNotFound(f"channel {channel!r} expired")
        if found.reply.id == cursor.reply:
            return found.reply
        if found.previous is not None and found.previous.id == cursor.reply:
            return found.previous
        raise ResumeError(f"channel {channel!r} moved on to another reply")

    def follow_live(
        self, channel: str, cursor: Cursor, reader: LiveReader, *, block: float
    ) -> bool:
        """Hand ``reader`` the entries appended after ``cursor`` as they are appended, when
        ``cursor`` is the live end of the channel's current reply; whether it was registered.

        The reader is told to look again (``push(None)``) at the end of the reply, when the
        channel is forgotten, and within ``block`` seconds (so it can see a stale publisher).
        """
        found = self._channel(channel)
        if found is None:
            return False
        reply = found.reply
        if reply.id != cursor.reply or reply.ended:
            return False
        numbers = reply.numbers
        at_end = (
            not numbers
            if cursor.after is None
            else bool(numbers) and cursor.after == str(numbers[-1])
        )
        if not at_end:
            return False
        reply.pushed.add(reader)
        reply.arm(asyncio.get_running_loop(), block)
        return True

    async def aclose(self) -> None:
        """Nothing to release."""


class MemoryBroadcaster(Broadcaster):
    """The in-process broadcaster: publisher and subscribers in one process (one event loop).

    Behaves as every :class:`~anthropic_rx.sinks.Broadcaster` (see there for ``ttl``,
    ``stale_after``, ``buffer`` and ``slow``). Ids are ``"1"``, ``"2"``, … (decimal strings,
    compared numerically), never reused within the broadcaster. A ``publish`` whose task is
    cancelled ends its subscribers at once with :class:`~anthropic_rx.IncompleteStreamError`;
    one whose coroutine stops being run ends them within ``stale_after`` seconds. A reply's
    history is kept ``ttl`` seconds after its end, whole (memory grows with the reply).

    Example:
        >>> hub = sinks.MemoryBroadcaster()
        >>> job = asyncio.create_task(hub.publish("conversation.1", client.stream(...)))
        >>> async for item in arx.to_async_iterator(hub.subscribe("conversation.1")): ...
    """

    def __init__(
        self,
        *,
        ttl: float = 3600,
        stale_after: float = 10,
        buffer: int = 1024,
        slow: SlowPolicy = "coalesce",
    ) -> None:
        super().__init__(
            MemoryBackend(), ttl=ttl, stale_after=stale_after, buffer=buffer, slow=slow
        )
