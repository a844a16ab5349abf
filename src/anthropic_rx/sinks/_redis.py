"""The Redis broadcaster: channel logs in Redis Streams, for publishers and subscribers anywhere.

Keys of a channel (all share the hash tag ``{channel}``, so a Redis Cluster keeps a channel on
one shard; channel names are ``[A-Za-z0-9._:-]{1,200}``, so no name reaches another key)::

    {prefix}:{channel}:log    stream of the channel's replies: one entry per event (field
                              ``e``: the wire JSON), one terminal entry per reply (field ``t``);
                              XADD MAXLEN ~ max_entries; the entry ids are the broadcast ids
    {prefix}:{channel}:meta   hash: reply (its id), token (the fencing token), base (the last
                              stream id before the reply), first (its first entry), end (its
                              terminal entry), batch (the last append's nonce), live (the
                              live expiry, ms), finisher, prev / prev_base / prev_first (the
                              reply before it, kept for those still reading it)
    {prefix}:{channel}:lease  string: the live publisher's token, PX the lease (its heartbeat)
    {prefix}:{channel}:wake   pub/sub channel (not a key): a message after each write

Every write is one Lua script that checks the fencing token first: a publisher whose lease
lapsed and whose channel was taken can never write into the new reply. Each append carries a
nonce, so a script retried after its reply was lost never logs an event twice. While a reply
is live its keys expire ``ttl + lease`` after the last append or heartbeat (a dead publisher's
keys do not live forever); after the terminal entry, ``ttl``. A new reply trims the stream to
the reply before it (``XTRIM MINID``).

Subscribers read with one script (a bounded ``XRANGE`` after their cursor, with the check that
nothing after the cursor was trimmed) and wait for more on the backend's one pub/sub
connection instead of a blocking ``XREAD`` each: all the subscribers of a process share it and
a small pool (``max_connections``), whatever their number; the readers at one cursor after one
wake-up share one script call. A wake-up that is missed (a pub/sub reconnect) costs latency,
never an entry: a waiting read looks again at its ``block`` timeout.

Followers at the live end of a channel whose consumers keep up do not read at all
(``follow_live``): one read per channel and wake-up serves them, and hands its entries to each
of them in its own call (with a hundred subscribers, a task waking and reading per subscriber
per entry costs more than the entries). It goes on from the last entry it handed out, so a
reconnect, a retried read or a burst loses and repeats nothing; a follower that falls behind,
the reply's end, an error of that read or ``block`` seconds without an entry send each
follower back to reading by its own cursor.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

from .._events import MessageStreamEvent
from .._redis_flags import (
    PubSubListener,
    call,
    check_name,
    command_timeout,
    redis_client,
    redis_errors,
)
from ._broadcast import (
    Broadcast,
    BroadcastError,
    BroadcastSubscription,
    ChannelBusyError,
    ChannelNotFound,
    ResumeError,
    SlowPolicy,
    shown_id,
)
from ._hub import (
    Broadcaster,
    Cursor,
    Lease,
    LiveReader,
    decode_event,
    decode_terminal,
    encode_event,
)
from ._hub import encode_terminal as _encode_terminal

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisBackend", "RedisBroadcaster"]

_log = logging.getLogger("anthropic_rx.sinks")

_ID = re.compile(r"(\d{1,20})-(\d{1,20})")
_MAX_ID_PART = 2**64 - 1
# An idle channel's wake-up subscription is kept this long for the next read (no churn).
_LINGER = 2.0
# Entries one shared live read takes at most (a burst beyond it is read on at once).
_LIVE_BATCH = 1024
# Channels whose key names are kept made (checked once, not at every read).
_KEYS_KEPT = 4096

_LUA_COMMON = """
local function cmpnum(a, b)
  if #a ~= #b then if #a < #b then return -1 else return 1 end end
  if a == b then return 0 end
  if a < b then return -1 else return 1 end
end
local function cmp(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  local c = cmpnum(am, bm)
  if c ~= 0 then return c end
  return cmpnum(as, bs)
end
local function terminate(meta, log, lease, terminal, ttl, maxlen, wake)
  local id = redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', 't', terminal)
  if not redis.call('HGET', meta, 'first') then redis.call('HSET', meta, 'first', id) end
  redis.call('HSET', meta, 'end', id)
  redis.call('DEL', lease)
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', log, ttl)
  redis.call('PUBLISH', wake, id)
  return id
end
"""

# KEYS meta log lease; ARGV token reply lease_ms stale_terminal ttl_ms live_ms maxlen wake
_TRY_OPEN = (
    _LUA_COMMON
    + """
local held = redis.call('GET', KEYS[3])
if held == ARGV[1] then return 'ok' end
if held then return 'busy' end
local m = redis.call('HMGET', KEYS[1], 'reply', 'end', 'base', 'first')
if m[1] and not m[2] then
  terminate(KEYS[1], KEYS[2], KEYS[3], ARGV[4], ARGV[5], ARGV[7], ARGV[8])
  m[4] = redis.call('HGET', KEYS[1], 'first')
end
local base = '0-0'
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if last[1] then base = last[1][1] end
if m[1] and m[4] then redis.call('XTRIM', KEYS[2], 'MINID', m[4]) end
redis.call('DEL', KEYS[1])
local fields = {'reply', ARGV[2], 'token', ARGV[1], 'base', base, 'live', ARGV[6]}
if m[1] and m[4] then
  table.insert(fields, 'prev'); table.insert(fields, m[1])
  table.insert(fields, 'prev_base'); table.insert(fields, m[3])
  table.insert(fields, 'prev_first'); table.insert(fields, m[4])
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return 'ok'
"""
)

# KEYS meta log; ARGV token nonce maxlen wake payload...
_APPEND = """
local m = redis.call('HMGET', KEYS[1], 'token', 'end', 'batch', 'first', 'live')
if m[1] ~= ARGV[1] or m[2] then return 0 end
if m[3] == ARGV[2] then return 1 end
local first = m[4]
for i = 5, #ARGV do
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[i])
  if not first then first = id; redis.call('HSET', KEYS[1], 'first', id) end
end
redis.call('HSET', KEYS[1], 'batch', ARGV[2])
redis.call('PEXPIRE', KEYS[1], m[5])
redis.call('PEXPIRE', KEYS[2], m[5])
redis.call('PUBLISH', ARGV[4], '1')
return 1
"""

# KEYS meta log lease; ARGV token terminal ttl_ms maxlen wake
_FINISH = (
    _LUA_COMMON
    + """
local m = redis.call('HMGET', KEYS[1], 'token', 'end', 'finisher')
if m[1] ~= ARGV[1] then return 0 end
if m[2] then if m[3] == ARGV[1] then return 1 else return 0 end end
terminate(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[1], 'finisher', ARGV[1])
return 1
"""
)

# KEYS meta log lease; ARGV token lease_ms
_HEARTBEAT = """
local m = redis.call('HMGET', KEYS[1], 'token', 'end', 'live')
if m[1] ~= ARGV[1] or m[2] then return 0 end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], m[3])
redis.call('PEXPIRE', KEYS[2], m[3])
return 1
"""

# KEYS meta log lease; ARGV reply terminal ttl_ms maxlen wake
_ABANDON = (
    _LUA_COMMON
    + """
local m = redis.call('HMGET', KEYS[1], 'reply', 'end')
if m[1] ~= ARGV[1] or m[2] then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
terminate(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
return 1
"""
)

# KEYS meta log; ARGV id ('' for none)
_RESOLVE = (
    _LUA_COMMON
    + """
local m = redis.call('HMGET', KEYS[1], 'reply', 'base', 'first', 'end')
if not m[1] then return {'gone'} end
local id = ARGV[1]
if id == '' or cmp(id, m[2]) <= 0 or not m[3] or cmp(id, m[3]) < 0 then
  return {'start', m[1]}
end
if m[4] and cmp(id, m[4]) >= 0 then return {'over', m[1]} end
if #redis.call('XRANGE', KEYS[2], id, id) == 0 then return {'missing', m[1]} end
return {'at', m[1]}
"""
)

# KEYS meta log; ARGV reply after ('' for the start) count
_READ = (
    _LUA_COMMON
    + """
local m = redis.call('HMGET', KEYS[1], 'reply', 'base', 'first', 'end',
                     'prev', 'prev_base', 'prev_first')
if not m[1] then return {'gone'} end
local base, first, state
if m[1] == ARGV[1] then
  base, first = m[2], m[3]
  if m[4] then state = 'ended' else state = 'live' end
elseif m[5] == ARGV[1] then
  base, first, state = m[6], m[7], 'ended'
else
  return {'moved'}
end
local head = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local after = ARGV[2]
if after == '' then
  if first and (not head[1] or cmp(head[1][1], first) > 0) then return {'trimmed'} end
  after = base
elseif not head[1] or cmp(head[1][1], after) > 0 then
  return {'trimmed'}
end
return {state, redis.call('XRANGE', KEYS[2], '(' .. after, '+', 'COUNT', ARGV[3])}
"""
)


_ReadKey: TypeAlias = tuple[str, str, str, int, int]


class _Keys:
    __slots__ = ("lease", "log", "meta", "wake")

    def __init__(self, prefix: str, channel: str) -> None:
        check_name(channel, "channel")
        head = f"{prefix}:{{{channel}}}"
        self.meta = f"{head}:meta"
        self.log = f"{head}:log"
        self.lease = f"{head}:lease"
        self.wake = f"{head}:wake"


class _Wake:
    """Readers of one channel waiting for its next write (woken by a pub/sub message)."""

    __slots__ = ("end", "end_generation", "generation", "linger", "refs", "waiters")

    def __init__(self) -> None:
        self.refs = 0
        self.generation = 0  # bumped by every message and every (re)subscription
        self.waiters: list[asyncio.Future[None]] = []
        self.linger: asyncio.TimerHandle | None = None
        # The live end of the log as a read saw it, sent after wake-up ``end_generation``: a
        # reader at that end with no wake-up since has nothing to read yet (it waits at once).
        self.end: Cursor | None = None
        self.end_generation = -1

    def saw_end(self, end: Cursor, generation: int) -> None:
        if generation >= self.end_generation:
            self.end, self.end_generation = end, generation

    def at_end(self, cursor: Cursor) -> bool:
        return self.end_generation == self.generation and self.end == cursor

    def bump(self) -> None:
        self.generation += 1
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait([waiter], timeout=seconds)
        finally:
            if not waiter.done():
                waiter.cancel()
                if waiter in self.waiters:
                    self.waiters.remove(waiter)


class _Live:
    """The followers at the live end of one channel, and the one read that serves them all.

    ``at`` is where that read goes on from: every entry up to it was handed to the readers
    registered then. A reader registered ahead of it (its own read went further) holds the id
    it already has in ``readers`` and is handed only what follows.
    """

    __slots__ = ("at", "block", "readers", "task")

    def __init__(self, at: Cursor, block: float) -> None:
        self.at = at
        self.block = block
        self.readers: dict[LiveReader, tuple[int, int] | None] = {}
        self.task: asyncio.Task[None] | None = None

    def push(self, entries: Sequence[Broadcast]) -> None:
        """Hand ``entries`` to every reader; drop those that leave (a reader's failure is
        its own)."""
        for reader, has in list(self.readers.items()):
            batch = entries
            if has is not None:
                batch = [entry for entry in entries if _id_key(entry.id) > has]
                if not batch:
                    continue
                if reader in self.readers:
                    self.readers[reader] = None
            try:
                stays = reader.push(batch)
            except Exception:  # pragma: no cover - push catches its subscriber's errors
                _log.exception("a live broadcast reader failed")
                stays = False
            if not stays:
                self.readers.pop(reader, None)

    def release(self) -> None:
        """Every reader looks again by reading (an error, the reply's end, a tick, closing)."""
        readers = list(self.readers)
        self.readers.clear()
        for reader in readers:
            try:
                reader.push(None)
            except Exception:  # pragma: no cover - push catches its subscriber's errors
                _log.exception("a live broadcast reader failed")


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _order(cursor: Cursor, at: Cursor) -> int:
    """Where ``cursor`` is against ``at`` in one reply: -1 behind, 0 at, 1 ahead."""
    if cursor.after == at.after:
        return 0
    if cursor.after is None:
        return -1
    if at.after is None:
        return 1
    return 1 if _id_key(cursor.after) > _id_key(at.after) else -1


def _canonical_id(entry_id: str) -> str:
    match = _ID.fullmatch(entry_id)
    if match is None:
        raise ResumeError(f"{shown_id(entry_id)} is not an id of this broadcaster")
    ms, seq = int(match[1]), int(match[2])
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        raise ResumeError(f"{shown_id(entry_id)} is not an id of this broadcaster")
    return f"{ms}-{seq}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBackend:
    """A :class:`~anthropic_rx.sinks._hub.BroadcastBackend` over Redis Streams (module doc).

    Ids are the stream entry ids (``"1733130000000-0"``), ordered as ``(ms, seq)`` pairs and
    strictly increasing within a channel across replies. Every redis-py failure surfaces as
    :class:`~anthropic_rx.APIConnectionError` (``__cause__``: the redis-py error), after the
    client retried a lost connection for about ``retry_window`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "arx",
        max_entries: int = 100_000,
        max_connections: int = 10,
        retry_window: float = 1.0,
    ) -> None:
        if max_entries < 16:
            raise ValueError("max_entries must be at least 16")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.prefix = check_name(prefix, "prefix")
        self.max_entries = max_entries
        self._client = redis_client(url, max_connections=max_connections, retry_window=retry_window)
        self._limit = command_timeout(retry_window)
        register = self._client.register_script
        self._try_open = register(_TRY_OPEN)
        self._append = register(_APPEND)
        self._finish = register(_FINISH)
        self._heartbeat = register(_HEARTBEAT)
        self._abandon = register(_ABANDON)
        self._resolve = register(_RESOLVE)
        self._read = register(_READ)
        self._listener = PubSubListener(self._client, on_message=self._woken, on_ack=self._acked)
        self._wakes: dict[str, _Wake] = {}
        self._reads: dict[_ReadKey, asyncio.Task[tuple[list[Broadcast], bool]]] = {}
        self._unsent: dict[_ReadKey, asyncio.Task[tuple[list[Broadcast], bool]]] = {}
        self._lives: dict[str, _Live] = {}
        self._made: dict[str, _Keys] = {}

    def _keys(self, channel: str) -> _Keys:
        """The keys of ``channel``, its name checked once (then kept, up to a bound)."""
        keys = self._made.get(channel)
        if keys is None:
            keys = _Keys(self.prefix, channel)
            if len(self._made) >= _KEYS_KEPT:
                del self._made[next(iter(self._made))]  # the oldest made
            self._made[channel] = keys
        return keys

    def keys(self, channel: str) -> list[str]:
        """The Redis keys of ``channel`` (meta, log, lease).

        Raises:
            ValueError: the channel name holds characters outside ``[A-Za-z0-9._:-]``.
        """
        keys = self._keys(channel)
        return [keys.meta, keys.log, keys.lease]

    async def _run(self, script: AsyncScript, what: str, keys: list[str], args: list[Any]) -> Any:
        return await call(script(keys=keys, args=args), what, limit=self._limit)

    @staticmethod
    def _lost(channel: str) -> BroadcastError:
        return BroadcastError(
            f"the publisher lost channel {channel!r} (its lease lapsed or the reply ended)"
        )

    async def try_open(
        self, channel: str, *, lease: float, stale_terminal: Broadcast, ttl: float
    ) -> Lease:
        """See :meth:`BroadcastBackend.try_open`."""
        keys = self._keys(channel)
        token, reply = uuid.uuid4().hex, uuid.uuid4().hex
        lease_ms, ttl_ms = _ms(lease), _ms(ttl)
        result = await self._run(
            self._try_open,
            f"opening channel {channel!r}",
            [keys.meta, keys.log, keys.lease],
            [
                token,
                reply,
                lease_ms,
                _encode_terminal(stale_terminal),
                ttl_ms,
                ttl_ms + lease_ms,
                self.max_entries,
                keys.wake,
            ],
        )
        if _text(result) == "busy":
            raise ChannelBusyError(f"channel {channel!r} already has a live publisher")
        return Lease(token, reply)

    async def append(
        self, channel: str, lease: Lease, events: Sequence[MessageStreamEvent]
    ) -> None:
        """See :meth:`BroadcastBackend.append` (one script: one round trip per batch)."""
        if not events:
            return
        keys = self._keys(channel)
        applied = await self._run(
            self._append,
            f"appending to channel {channel!r}",
            [keys.meta, keys.log],
            [lease.token, uuid.uuid4().hex, self.max_entries, keys.wake]
            + [encode_event(event) for event in events],
        )
        if not applied:
            raise self._lost(channel)

    async def finish(self, channel: str, lease: Lease, terminal: Broadcast, *, ttl: float) -> None:
        """See :meth:`BroadcastBackend.finish`."""
        keys = self._keys(channel)
        done = await self._run(
            self._finish,
            f"ending the reply on channel {channel!r}",
            [keys.meta, keys.log, keys.lease],
            [lease.token, _encode_terminal(terminal), _ms(ttl), self.max_entries, keys.wake],
        )
        if not done:
            raise self._lost(channel)

    async def heartbeat(self, channel: str, lease: Lease, *, duration: float) -> None:
        """See :meth:`BroadcastBackend.heartbeat`."""
        keys = self._keys(channel)
        renewed = await self._run(
            self._heartbeat,
            f"renewing the lease of channel {channel!r}",
            [keys.meta, keys.log, keys.lease],
            [lease.token, _ms(duration)],
        )
        if not renewed:
            raise self._lost(channel)

    async def abandon(self, channel: str, reply: str, terminal: Broadcast, *, ttl: float) -> bool:
        """See :meth:`BroadcastBackend.abandon`."""
        keys = self._keys(channel)
        ended = await self._run(
            self._abandon,
            f"ending the stale reply on channel {channel!r}",
            [keys.meta, keys.log, keys.lease],
            [reply, _encode_terminal(terminal), _ms(ttl), self.max_entries, keys.wake],
        )
        return bool(ended)

    async def resolve(self, channel: str, last_event_id: str | None) -> Cursor | None:
        """See :meth:`BroadcastBackend.resolve`."""
        keys = self._keys(channel)
        wanted = "" if last_event_id is None else _canonical_id(last_event_id)
        result = await self._run(
            self._resolve, f"resuming channel {channel!r}", [keys.meta, keys.log], [wanted]
        )
        state = _text(result[0])
        if state == "gone":
            raise ChannelNotFound(f"no reply on channel {channel!r} (none yet, or expired)")
        reply = _text(result[1])
        if state == "start":
            return Cursor(reply)
        if state == "over":
            return None
        if state == "missing":
            raise ResumeError(f"{wanted!r} is not an id in the log of channel {channel!r}")
        return Cursor(reply, wanted)

    async def read(
        self, channel: str, cursor: Cursor, *, count: int, block: float
    ) -> Sequence[Broadcast]:
        """See :meth:`BroadcastBackend.read`.

        Raises:
            ResumeError: also when the entries after the cursor were trimmed (``max_entries``).
        """
        keys = self._keys(channel)
        if block <= 0:
            return (await self._read_now(channel, keys, cursor, count))[0]
        wake = self._acquire(keys.wake)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + block
            timed_out = False
            while True:
                generation = wake.generation
                # At the end a read saw, with no write announced since: waiting is all there
                # is to do (the read right after a short one would come back empty). After
                # the timeout it reads anyway: a lost wake-up costs latency, never an entry.
                if timed_out or not wake.at_end(cursor):
                    entries, live = await self._read_shared(
                        channel, keys, cursor, count, generation, wake
                    )
                    if entries or not live or timed_out:
                        return entries
                    if wake.generation != generation:
                        continue  # written (or subscribed) while this read ran: look again
                remaining = deadline - loop.time()
                if remaining <= 0:
                    timed_out = True
                    continue
                await wake.sleep(remaining)
        finally:
            self._release(keys.wake, wake)

    async def _read_shared(
        self, channel: str, keys: _Keys, cursor: Cursor, count: int, generation: int, wake: _Wake
    ) -> tuple[list[Broadcast], bool]:
        """One script for all the readers at one cursor after one wake-up (followers at the
        live end all ask the same thing at once: 1,000 of them cost one round trip).

        A read is shared only by readers that saw the same wake-up generation: it was sent
        after that wake-up, so it sees every write announced by then.
        """
        key = (channel, cursor.reply, cursor.after or "", count, generation)
        task = self._reads.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._read_once(channel, keys, cursor, count)
            )
            self._reads[key] = task
            task.add_done_callback(partial(self._read_done, key, cursor, count, wake))
        # Shielded: a reader that is cancelled does not cancel the others' read.
        return await asyncio.shield(task)

    def _read_done(
        self,
        key: _ReadKey,
        cursor: Cursor,
        count: int,
        wake: _Wake,
        task: asyncio.Task[tuple[list[Broadcast], bool]],
    ) -> None:
        if self._reads.get(key) is task:
            del self._reads[key]
        if task.cancelled():
            return
        if task.exception() is None:  # retrieved: the readers that are left re-raise it
            entries, live = task.result()
            if live and len(entries) < count:
                wake.saw_end(_after(cursor, entries), key[4])

    async def _read_now(
        self, channel: str, keys: _Keys, cursor: Cursor, count: int
    ) -> tuple[list[Broadcast], bool]:
        """One script for the readers at one cursor asking before it is sent (the live
        followers told to look again all at once cost one round trip, not one each).

        A read is shared only until it is sent, so it sees every write made before each of
        its readers asked.
        """
        key = (channel, cursor.reply, cursor.after or "", count, -1)
        task = self._unsent.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._send_read(key, channel, keys, cursor, count)
            )
            self._unsent[key] = task
            task.add_done_callback(partial(self._unsent_done, key))
        # Shielded: a reader that is cancelled does not cancel the others' read.
        return await asyncio.shield(task)

    async def _send_read(
        self, key: _ReadKey, channel: str, keys: _Keys, cursor: Cursor, count: int
    ) -> tuple[list[Broadcast], bool]:
        del self._unsent[key]  # sent from here on: a reader asking now reads anew
        return await self._read_once(channel, keys, cursor, count)

    def _unsent_done(self, key: _ReadKey, task: asyncio.Task[tuple[list[Broadcast], bool]]) -> None:
        if self._unsent.get(key) is task:  # cancelled before it was sent
            del self._unsent[key]
        if not task.cancelled():
            task.exception()  # retrieved: the readers that are left re-raise it

    # --- live followers ----------------------------------------------------------------------

    def follow_live(
        self, channel: str, cursor: Cursor, reader: LiveReader, *, block: float
    ) -> bool:
        """Hand ``reader`` the entries after ``cursor`` as one shared read of the channel
        gets them, instead of the reader's own read per wake-up; whether it was registered.

        Registered only when no entry after ``cursor`` can be missed: no shared read yet (one
        starts from ``cursor``), or ``cursor`` at or ahead of where the shared read goes on
        from (ahead: the reader is handed only what follows its cursor). Behind it, the reader
        reads on itself (``False``). The reader is told to look again (``push(None)``) at the
        reply's end, on any error of the shared read (the reader's own read meets it), when
        the shared read got nothing for ``block`` seconds (so a stale publisher is noticed)
        and when the backend closes. A lost pub/sub connection resubscribes and the shared
        read looks again from ``at``: nothing is skipped or handed twice.
        """
        live = self._lives.get(channel)
        if live is None or live.task is None or live.task.done():
            live = self._lives[channel] = _Live(cursor, block)
        has: tuple[int, int] | None = None
        if live.task is not None:  # a shared read runs: it goes on from ``at``, not from here
            if cursor.reply != live.at.reply:
                return False
            order = _order(cursor, live.at)
            if order < 0:
                return False
            if order > 0 and cursor.after is not None:
                has = _id_key(cursor.after)
            live.block = min(live.block, block)
        live.readers[reader] = has
        if live.task is None:
            keys = self._keys(channel)
            live.task = asyncio.get_running_loop().create_task(
                self._serve_live(channel, keys, live)
            )
        return True

    async def _serve_live(self, channel: str, keys: _Keys, live: _Live) -> None:
        """The shared read of a channel's live followers: one script per wake-up, its entries
        handed to every reader in this call; ends when no reader is left."""
        wake = self._acquire(keys.wake)
        loop = asyncio.get_running_loop()
        try:
            quiet_since = loop.time()
            while live.readers:
                generation = wake.generation
                if not wake.at_end(live.at):
                    at = live.at
                    entries, more = await self._read_once(channel, keys, at, _LIVE_BATCH)
                    if entries:
                        live.at = _after(at, entries)
                        quiet_since = loop.time()
                        live.push(entries)  # a terminal entry sends each reader to read it
                    if not more:
                        break  # the reply ended: each reader reads its end itself
                    if len(entries) < _LIVE_BATCH:
                        wake.saw_end(live.at, generation)
                    if entries or wake.generation != generation:
                        continue
                remaining = quiet_since + live.block - loop.time()
                if remaining <= 0:
                    break  # a tick: each reader reads (nothing) and checks for a stale publisher
                await wake.sleep(remaining)
        except Exception as exc:
            # Each reader reads again and meets the error itself (or not: a retried command).
            _log.debug("the live read of channel %r failed: %r", channel, exc)
        finally:
            if self._lives.get(channel) is live:
                del self._lives[channel]
            live.release()
            self._release(keys.wake, wake)

    async def _read_once(
        self, channel: str, keys: _Keys, cursor: Cursor, count: int
    ) -> tuple[list[Broadcast], bool]:
        result = await self._run(
            self._read,
            f"reading channel {channel!r}",
            [keys.meta, keys.log],
            [cursor.reply, cursor.after or "", count],
        )
        state = _text(result[0])
        if state == "gone":
            raise ChannelNotFound(f"channel {channel!r} expired")
        if state == "moved":
            raise ResumeError(f"channel {channel!r} moved on to another reply")
        if state == "trimmed":
            raise ResumeError(
                f"entries after {cursor.after!r} were trimmed off channel {channel!r}'s log "
                f"(it keeps {self.max_entries} entries)"
            )
        entries: list[Broadcast] = []
        for raw_id, fields in result[1]:
            entry_id = _text(raw_id)
            field, data = fields[0], fields[1]
            if _text(field) == "t":
                entries.append(decode_terminal(entry_id, data))
                break  # what follows a terminal belongs to the next reply
            entries.append(decode_event(entry_id, data))
        return entries, state == "live"

    # --- wake-ups ----------------------------------------------------------------------------

    def _acquire(self, wake_channel: str) -> _Wake:
        wake = self._wakes.get(wake_channel)
        if wake is None:
            wake = self._wakes[wake_channel] = _Wake()
            self._listener.want(wake_channel)
        if wake.linger is not None:
            wake.linger.cancel()
            wake.linger = None
        wake.refs += 1
        return wake

    def _release(self, wake_channel: str, wake: _Wake) -> None:
        wake.refs -= 1
        if wake.refs == 0 and wake.linger is None:
            loop = asyncio.get_running_loop()
            wake.linger = loop.call_later(_LINGER, self._forget_wake, wake_channel, wake)

    def _forget_wake(self, wake_channel: str, wake: _Wake) -> None:
        wake.linger = None
        if wake.refs == 0 and self._wakes.get(wake_channel) is wake:
            del self._wakes[wake_channel]
            self._listener.drop(wake_channel)

    def _woken(self, wake_channel: str, data: bytes) -> None:
        wake = self._wakes.get(wake_channel)
        if wake is not None:
            wake.bump()

    def _acked(self, wake_channel: str) -> None:
        self._woken(wake_channel, b"")

    async def aclose(self) -> None:
        """Close the pub/sub connection and the pool."""
        for wake in self._wakes.values():
            if wake.linger is not None:
                wake.linger.cancel()
            wake.bump()
        self._wakes.clear()
        for task in [*self._reads.values(), *self._unsent.values()]:
            task.cancel()
        serving = [live.task for live in self._lives.values() if live.task is not None]
        for serve in serving:
            serve.cancel()  # each tells its readers to look again (they meet the closed pool)
        await asyncio.gather(*serving, return_exceptions=True)
        await self._listener.aclose()
        try:
            await self._client.aclose()
            await self._client.connection_pool.disconnect()
        except redis_errors():
            pass


def _after(cursor: Cursor, entries: Sequence[Broadcast]) -> Cursor:
    """The cursor after ``entries`` were read from ``cursor``."""
    return Cursor(cursor.reply, entries[-1].id) if entries else cursor


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisBroadcaster(Broadcaster):
    """The broadcaster over Redis Streams: publisher and subscribers in any processes.

    Behaves as every :class:`~anthropic_rx.sinks.Broadcaster` (see there for ``ttl``,
    ``stale_after``, ``buffer`` and ``slow``). Ids are the stream entry ids
    (``"1733130000000-0"``, ordered as ``(ms, seq)``), the SSE ``id:`` and the browser's
    ``Last-Event-ID``. A channel keeps at most about ``max_entries`` entries (``XADD MAXLEN
    ~``): a subscriber resuming from an id trimmed off gets a
    :class:`~anthropic_rx.sinks.ResumeError`, never a gap. The subscribers of one process
    share one pub/sub connection and a pool of ``max_connections``.

    Redis failures: each command retries a lost connection for about ``retry_window`` seconds
    (a restarted Redis that kept its data is resumed exactly: appends are idempotent, readers
    read by cursor); after that the publisher and the subscribers end with
    :class:`~anthropic_rx.APIConnectionError` (``__cause__``: the redis-py error).

    Args:
        url: the Redis URL (``redis://127.0.0.1:6379/0``).
        prefix: the first part of every key (``[A-Za-z0-9._:-]``).
        max_entries: the cap of a channel's stream.
        max_connections: the pool's size (the pub/sub connection is one more).
        retry_window: seconds a command retries a lost connection.

    Raises:
        ValueError: an option is out of range; (from ``publish`` and ``subscribe``) a channel
            name with characters outside ``[A-Za-z0-9._:-]{1,200}``.
        ImportError: redis-py is not installed.

    Example:
        >>> hub = sinks.RedisBroadcaster("redis://127.0.0.1:6379")
        >>> await hub.publish("conversation.1", client.stream(...))
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = 3600,
        stale_after: float = 10,
        prefix: str = "arx",
        buffer: int = 1024,
        slow: SlowPolicy = "coalesce",
        max_entries: int = 100_000,
        max_connections: int = 10,
        retry_window: float = 1.0,
    ) -> None:
        backend = RedisBackend(
            url,
            prefix=prefix,
            max_entries=max_entries,
            max_connections=max_connections,
            retry_window=retry_window,
        )
        super().__init__(backend, ttl=ttl, stale_after=stale_after, buffer=buffer, slow=slow)
        self.prefix = backend.prefix

    def subscribe(self, channel: str, last_event_id: str | None = None) -> BroadcastSubscription:
        """See :meth:`Broadcaster.subscribe`.

        Raises:
            ValueError: ``channel`` holds characters outside ``[A-Za-z0-9._:-]{1,200}``.
        """
        check_name(channel, "channel")
        return super().subscribe(channel, last_event_id)
