"""The backend-independent half of a broadcaster: publishing one reply, following a channel.

A :class:`Broadcaster` keeps no log of its own: it drives a :class:`BroadcastBackend` (the
memory one, or Redis Streams), which stores each channel's current reply and hands its entries
out by id. What lives here is everything both backends must agree on: which events are logged,
the terminal entry, the publisher's heartbeat, resuming, the slow-subscriber policies and the
typed errors subscribers raise.

```
publish(channel, events)                          subscribe(channel, last_event_id)
  │ backend.try_open ─► Lease (or ChannelBusyError)  │ backend.resolve ─► Cursor (or errors)
  │ events.subscribe: on_next queues, no await       │ task: backend.read(cursor, count=buffer)
  │ the publish coroutine itself:                    │   ─► up to `buffer` entries held
  │   backend.append(batch)   (pipelined)            │   ─► observer.on_next, paced by the
  │   backend.heartbeat       every stale_after/3    │      subscriber's Demand
  │ backend.finish(terminal)                         │ idle: backend.abandon (publisher stale?)
  │                                                  │ at the live end and keeping up:
  │   append ─► follower.push(entries) ─────────────►│   observer.on_next in append's call
  │             (Redis: one shared read per channel) │
```

A follower at the live end of a channel whose consumer keeps up is handed each new entry
without a task of its own waking (a backend's ``follow_live``): the memory backend in the
publisher's append, Redis from one shared read per channel and process. With a thousand
subscribers, waking a task per subscriber per entry costs more than the entries. Anything
else — the terminal entry, a consumer that fell behind, the subscriber's own error, a tick
every ``stale_after / 6`` — wakes the follower's task, which goes on by reading from its
cursor, so the order, the slow policies and the errors are the same either way.

The heartbeat is written by the ``publish`` coroutine itself, never by a side task: a publisher
whose coroutine stops running (task cancelled, process killed, never resumed) stops renewing
its lease, and the subscribers waiting on its channel end its reply with
:class:`IncompleteStreamError` within ``stale_after`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast, get_args

import pydantic_core
import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .._event_loop import event_loop_of
from .._events import (
    ContentBlockDeltaEvent,
    InputJSONDelta,
    Message,
    MessageDeltaEvent,
    MessageStreamEvent,
    PingEvent,
    TextDelta,
    ThinkingDelta,
    Usage,
    parse_event,
)
from .._exceptions import (
    AnthropicRxError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    GatewayTimeoutError,
    IncompleteStreamError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    RequestTooLargeError,
    StreamError,
    api_error_class,
)
from .._names import check_name
from .._pacing import Demand, current_demand, demand_scope
from .._snapshot import MessageBuilder
from ..operators._accumulate import cancelled_snapshot
from ..operators._partial import PartialTracker
from ._broadcast import (
    Broadcast,
    BroadcastError,
    BroadcastSubscription,
    SlowPolicy,
    SlowSubscriberError,
)
from ._errors import INTERNAL_ERROR, public_error, public_text
from ._feed import feed_or_error

__all__ = [
    "BroadcastBackend",
    "Broadcaster",
    "Cursor",
    "Lease",
    "decode_event",
    "decode_terminal",
    "encode_event",
    "encode_terminal",
    "merge_deltas",
    "rebuild_error",
]

_log = logging.getLogger("anthropic_rx.sinks")

# The publisher stops reading its source while this many events wait for the backend (a slow
# Redis): no unbounded queue between the network and the log.
_PUBLISH_HIGH_WATER = 1024
# Reading a whole reply back to build an error's partial message: entries per read.
_REBUILD_BATCH = 4096


@dataclass(frozen=True, slots=True)
class Lease:
    """A publisher's hold on a channel, from :meth:`BroadcastBackend.try_open`.

    Attributes:
        token: the fencing token: every write of the publisher names it, and a backend refuses
            a write whose token is no longer the channel's (its lease lapsed, another reply
            began).
        reply: the id of the reply this publisher writes (opaque, unique per backend).
    """

    token: str
    reply: str


@dataclass(frozen=True, slots=True)
class Cursor:
    """A place in one reply's log.

    Attributes:
        reply: the reply being read; reading once the channel carries another reply is a
            :class:`~anthropic_rx.sinks.ResumeError` (never a jump into the next reply).
        after: the id of the last entry taken; ``None`` before the first.
    """

    reply: str
    after: str | None = None


class LiveReader(Protocol):
    """A subscription waiting at the live end of a reply, for a backend that hands it each
    append in the publisher's own call (the memory backend's ``follow_live``)."""

    def push(self, entries: Sequence[Broadcast] | None) -> bool:
        """Take ``entries``, appended after the reader's cursor (``None``: look again by
        reading). Returns whether it stays registered; must not raise."""
        ...


class BroadcastBackend(Protocol):
    """Where a broadcaster keeps its channels' logs. Implemented by memory and Redis.

    A channel holds one reply at a time: its entries (one :class:`Broadcast` per logged event,
    then one terminal entry) with strictly increasing ids, greater than every id the channel
    had before. Entries cross the interface as :class:`Broadcast` values; a backend that stores
    bytes encodes the event as its wire JSON (``event.model_dump(mode="json",
    exclude_none=True)``) and the terminal's fields as JSON, and decodes with
    :func:`anthropic_rx.parse_event`. The memory backend stores the values themselves.

    The writes of a publisher name its :class:`Lease`; a write with a lease that is no longer
    the channel's raises :class:`~anthropic_rx.sinks.BroadcastError`.
    """

    async def try_open(
        self, channel: str, *, lease: float, stale_terminal: Broadcast, ttl: float
    ) -> Lease:
        """Start a new reply on ``channel`` for a publisher holding it ``lease`` seconds.

        A reply whose publisher's lease has lapsed is ended first with ``stale_terminal``.

        Raises:
            ChannelBusyError: a reply on the channel has a live publisher.
        """
        ...

    async def append(
        self, channel: str, lease: Lease, events: Sequence[MessageStreamEvent]
    ) -> None:
        """Append one entry per event, in order, and wake the readers waiting for them."""
        ...

    async def finish(self, channel: str, lease: Lease, terminal: Broadcast, *, ttl: float) -> None:
        """Append the terminal entry (``terminal.id`` is ignored), release the channel, and
        forget it ``ttl`` seconds later unless another reply begins."""
        ...

    async def heartbeat(self, channel: str, lease: Lease, *, duration: float) -> None:
        """Renew the publisher's lease: it lapses ``duration`` seconds from now."""
        ...

    async def abandon(self, channel: str, reply: str, terminal: Broadcast, *, ttl: float) -> bool:
        """End ``reply`` with ``terminal`` if it is still live and its publisher's lease has
        lapsed (atomically). Returns whether it did."""
        ...

    async def resolve(self, channel: str, last_event_id: str | None) -> Cursor | None:
        """Where a subscription with ``last_event_id`` starts in the current reply.

        Returns:
            ``Cursor(reply, None)`` for ``None`` or an id of an earlier reply (replay from the
            start); ``Cursor(reply, last_event_id)`` for an id of the current reply before its
            terminal; ``None`` for the terminal's id or later in an ended reply (nothing left).

        Raises:
            ChannelNotFound: the channel has no reply, or its history expired.
            ResumeError: ``last_event_id`` is malformed or not an id the log holds.
        """
        ...

    async def read(
        self, channel: str, cursor: Cursor, *, count: int, block: float
    ) -> Sequence[Broadcast]:
        """Up to ``count`` entries after ``cursor``, oldest first.

        Waits up to ``block`` seconds when there are none yet (``0``: not at all); returns an
        empty sequence when none came.

        Raises:
            ChannelNotFound: the channel's history expired.
            ResumeError: ``cursor.reply`` can no longer be read: the channel moved on (an
                ended reply may stay readable for those reading it when the next one begins).
        """
        ...

    async def aclose(self) -> None:
        """Release connections; the broadcaster is not used after it."""
        ...


class Broadcaster:
    """One reply per channel, to any number of subscribers, resumable by entry id.

    ``publish`` logs a reply's events under strictly increasing ids and ends the log with one
    terminal entry; ``subscribe`` replays the log after an id, then follows it live. The base of
    :class:`~anthropic_rx.sinks.MemoryBroadcaster` (and the Redis broadcaster): the behaviour is
    the same over every :class:`BroadcastBackend`.

    Args:
        backend: where the logs live.
        ttl: seconds a reply's log is kept after its terminal entry; then the channel is
            forgotten (:class:`~anthropic_rx.sinks.ChannelNotFound`).
        stale_after: seconds after which the subscribers of a publisher that stopped (its task
            cancelled or never resumed, its process killed) end with
            :class:`~anthropic_rx.IncompleteStreamError` at the latest.
        buffer: entries the broadcaster holds for a subscriber at most (it reads the log at
            its consumer's pace, this many at a time). A subscriber that had caught up with the
            live end and falls ``buffer`` entries behind it again is slow; replaying the log,
            at the start or after a resume, is not slowness. A slow subscriber never slows the
            publisher or the others.
        slow: what happens to a slow subscriber. ``"coalesce"``: the entries it catches up on
            have their adjacent text, thinking and tool-input deltas of one block merged into one
            ``content_block_delta`` entry carrying the id of the last one merged (lossless, and
            a resume from any id it received is exact); when nothing in a full buffer can be
            merged, as ``"disconnect"``. ``"disconnect"``: its subscription completes at once,
            without the terminal entry (an SSE client reconnects with ``Last-Event-ID`` and
            resumes exactly). ``"error"``: its subscription fails with
            :class:`~anthropic_rx.sinks.SlowSubscriberError`, whose ``last_event_id`` resumes.

    Raises:
        ValueError: an option is out of range.
    """

    def __init__(
        self,
        backend: BroadcastBackend,
        *,
        ttl: float = 3600,
        stale_after: float = 10,
        buffer: int = 1024,
        slow: SlowPolicy = "coalesce",
    ) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if stale_after <= 0:
            raise ValueError("stale_after must be positive")
        if buffer < 2:
            raise ValueError("buffer must be at least 2")
        if slow not in get_args(SlowPolicy):
            raise ValueError(f"slow must be one of {get_args(SlowPolicy)}, not {slow!r}")
        self._backend = backend
        self.ttl = ttl
        self.stale_after = stale_after
        self.buffer = buffer
        self.slow: SlowPolicy = slow
        self._followers: dict[str, set[_Follower]] = {}
        self._started: set[asyncio.Task[Message | None]] = set()

    # --- publishing ----------------------------------------------------------------------

    async def publish(
        self, channel: str, events: reactivex.Observable[MessageStreamEvent]
    ) -> Message | None:
        """Log one reply on ``channel``: every event but pings, then one terminal entry.

        Subscribes to ``events`` once, after the channel was opened. Pings are not logged
        (they only keep a connection alive; the SSE sink sends its own). An ``ErrorEvent``
        ends the reply as its typed error (``ops.raise_on_error()``). The terminal entry is
        ``end="done"`` (``stop_reason``, ``usage``) after ``message_stop``; ``"cancelled"``
        (``usage``, estimated as ``ops.accumulate`` does when no ``message_delta`` came) when
        the events completed without it (``ops.take_until_cancel`` fired); ``"error"``
        (``error_type``, ``error_message``, ``error_class``) when they failed.

        Returns:
            The final message; the cancelled snapshot (``cancelled=True``) when the events
            completed without ``message_stop``; ``None`` when they did before ``message_start``.

        Raises:
            ValueError: ``channel`` does not match ``[A-Za-z0-9._:-]{1,200}`` (every backend
                takes the names Redis keys can hold, so an app moves between them unchanged).
            ChannelBusyError: the channel has a live publisher (nothing was subscribed).
            Exception: the stream's error (typed, with ``.partial_message``), after the
                terminal entry recorded it; a backend's own failure.

        Cancellation (of the awaiting task): the events are disposed (the HTTP response is
        closed), the reply ends with an ``"error"`` entry of class ``IncompleteStreamError``,
        and ``CancelledError`` propagates.
        """
        lease = await self._open(channel)
        return await self._publish(channel, lease, events)

    async def start(
        self, channel: str, events: reactivex.Observable[MessageStreamEvent]
    ) -> asyncio.Task[Message | None]:
        """Open ``channel`` now and :meth:`publish` ``events`` on it in a task.

        What a web request that starts a reply awaits: once it returns, the channel exists, so
        a browser that subscribes right after the answer finds the reply (a ``subscribe``
        before the channel's first ``publish`` is ``ChannelNotFound``, which the SSE sink
        answers with 204).

        Returns:
            The publishing task (the broadcaster keeps a reference until it ends); its result
            is :meth:`publish`'s. An error of the reply is recorded in the channel and is the
            task's exception; the broadcaster retrieves it and logs it at INFO on
            ``anthropic_rx.sinks``, so a task nobody awaits raises no "never retrieved"
            warning. Cancelling the task ends the reply as :meth:`publish` does.

        Raises:
            ValueError: ``channel`` is not a valid channel name (see :meth:`publish`).
            ChannelBusyError: the channel has a live publisher (nothing was subscribed).
        """
        lease = await self._open(channel)
        task = asyncio.get_running_loop().create_task(self._publish(channel, lease, events))
        self._started.add(task)
        task.add_done_callback(partial(self._publish_ended, channel))
        return task

    def _publish_ended(self, channel: str, task: asyncio.Task[Message | None]) -> None:
        self._started.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            _log.info("the reply on channel %r ended with %s", channel, type(error).__name__)

    async def _open(self, channel: str) -> Lease:
        check_name(channel, "channel")
        return await self._backend.try_open(
            channel, lease=self._lease, stale_terminal=self._stale_terminal(), ttl=self.ttl
        )

    async def _publish(
        self, channel: str, lease: Lease, events: reactivex.Observable[MessageStreamEvent]
    ) -> Message | None:
        backend = self._backend
        loop = asyncio.get_running_loop()
        publication = _Publication(loop, self.stale_after / 3)
        written = False
        try:
            publication.start(events)
            await publication.drain_into(backend, channel, lease, self._lease)
            terminal, result = publication.outcome()
            written = True  # a cancel from here on must not write a second terminal
            await backend.finish(channel, lease, terminal, ttl=self.ttl)
        except asyncio.CancelledError:
            publication.stop()
            if not written:
                written = True
                terminal = _error_terminal(
                    IncompleteStreamError("the publisher was cancelled before the reply ended")
                )
                try:
                    await backend.finish(channel, lease, terminal, ttl=self.ttl)
                except Exception:  # the cancel wins; the heartbeat ends the subscribers then
                    _log.exception("could not end channel %r after a cancel", channel)
            raise
        finally:
            publication.stop()
        if isinstance(result, BaseException):
            raise result
        return result

    @property
    def _lease(self) -> float:
        # Renewed every stale_after/3: a live publisher misses one beat before it looks dead;
        # subscribers look every stale_after/6, so a dead one is noticed within stale_after.
        return self.stale_after * 2 / 3

    def _stale_terminal(self) -> Broadcast:
        return _error_terminal(
            IncompleteStreamError(
                f"the publisher of this reply stopped (no heartbeat for {self.stale_after:g} s)"
            )
        )

    # --- subscribing ---------------------------------------------------------------------

    def subscribe(self, channel: str, last_event_id: str | None = None) -> BroadcastSubscription:
        """The cold Observable of ``channel``'s current reply, after ``last_event_id``.

        Each subscription replays the log after ``last_event_id`` (from the start when
        ``None``, or when it is an id of an earlier reply), follows it live, delivers the
        terminal entry and completes; at an ``"error"`` terminal it delivers the entry, then
        fails with the publisher's error class (rebuilt by :func:`rebuild_error`, with
        ``.partial_message`` built from the whole log). Items are delivered from a task on the
        event loop, paced by the subscriber's demand (``arx.to_async_iterator``, the SSE sink),
        never from inside ``publish``.

        A subscription made before the channel's first ``publish`` fails with
        ``ChannelNotFound``: start the job, then subscribe (the POST that starts a reply comes
        before the browser's ``EventSource``).

        Returns:
            A :class:`~anthropic_rx.sinks.BroadcastSubscription`; it completes at once, with no
            item, when ``last_event_id`` is the terminal's id or later in an ended reply.
            Disposal stops it and affects no one else.

        Raises:
            ChannelNotFound: (as ``on_error``) the channel has no reply or its history expired.
            ResumeError: (as ``on_error``) ``last_event_id`` is malformed or not in the log, or
                the channel moved on to another reply while this one was being read.
            SlowSubscriberError: (as ``on_error``) with ``slow="error"``, it fell behind.
            Exception: (as ``on_error``) whatever its own ``on_next`` raised; it alone stops.
            ValueError: (at the call) ``channel`` is not a valid channel name (see
                :meth:`publish`).
        """
        check_name(channel, "channel")
        return _ChannelSubscription(self, channel, last_event_id)

    def buffered(self, channel: str) -> list[int]:
        """How many entries each subscription of ``channel`` in this process holds now.

        What its consumer has queued already (an ``async for`` bridge's own buffer) is not
        counted: that is the consumer's, bounded by its own ``max_buffer``.

        Returns:
            One count per live subscription (each at most ``buffer``), in no order.
        """
        return [len(follower.pending) for follower in self._followers.get(channel, ())]

    async def aclose(self) -> None:
        """Release the backend's connections."""
        await self._backend.aclose()


# --- the publisher ---------------------------------------------------------------------------


class _Publication:
    """One ``publish``: the observer of the events, and the queue between it and the log.

    ``on_next`` runs inside the source's reading and must not await: it feeds the builder and
    queues the event; the ``publish`` coroutine drains the queue into the backend.
    """

    __slots__ = (
        "_beat_due",
        "_beat_interval",
        "_loop",
        "_timer",
        "_upstream",
        "_waiter",
        "builder",
        "demand",
        "error",
        "finished",
        "queue",
        "usage_reported",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, beat_interval: float) -> None:
        self._loop = loop
        self._beat_interval = beat_interval
        self._beat_due = False
        self._timer: asyncio.TimerHandle | None = None
        self._upstream: abc.DisposableBase | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.queue: list[MessageStreamEvent] = []
        self.builder = MessageBuilder()
        self.demand = Demand()
        self.error: BaseException | None = None
        self.finished = False
        self.usage_reported = False

    def start(self, events: reactivex.Observable[MessageStreamEvent]) -> None:
        self._timer = self._loop.call_later(self._beat_interval, self._beat)
        try:
            with demand_scope(self.demand):
                self._upstream = events.subscribe(
                    self.on_next,
                    self.on_error,
                    self.on_completed,
                    scheduler=AsyncIOScheduler(self._loop),
                )
        except Exception as exc:  # a source that fails to subscribe ends the reply as well
            self.on_error(exc)
        if self.finished and self._upstream is not None:
            self._upstream.dispose()

    def _beat(self) -> None:
        # Only flags the beat: the publish coroutine writes it, so a coroutine that no longer
        # runs writes none.
        self._beat_due = True
        self._wake()
        self._timer = self._loop.call_later(self._beat_interval, self._beat)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_next(self, event: MessageStreamEvent) -> None:
        if self.finished:
            return
        kind = type(event)
        if kind is PingEvent:
            return
        ended = feed_or_error(self.builder, event)
        if ended is not None:
            self.fail(ended)
            return
        if kind is MessageDeltaEvent:
            self.usage_reported = True
        queue = self.queue
        queue.append(event)
        if len(queue) >= _PUBLISH_HIGH_WATER:
            self.demand.pause()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_error(self, error: Exception) -> None:
        self.fail(error)

    def on_completed(self) -> None:
        self.finished = True
        self._wake()

    def fail(self, error: Exception) -> None:
        if self.finished:
            return
        self.finished = True
        if isinstance(error, AnthropicRxError) and error.partial_message is None:
            error.partial_message = self.builder.message()
        self.error = error
        if self._upstream is not None:
            self._upstream.dispose()
        self._wake()

    async def drain_into(
        self, backend: BroadcastBackend, channel: str, lease: Lease, duration: float
    ) -> None:
        """Append what the events queue until they end; renew the lease on each beat."""
        loop = self._loop
        while True:
            if self.queue:
                batch, self.queue = self.queue, []
                await backend.append(channel, lease, batch)
                self.demand.resume()
            # Checked after every append too: a publisher kept busy by a fast source must
            # still renew its lease.
            if self._beat_due:
                self._beat_due = False
                await backend.heartbeat(channel, lease, duration=duration)
            if self.queue:
                continue
            if self.finished:
                return
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def outcome(self) -> tuple[Broadcast, Message | BaseException | None]:
        """The terminal entry, and what ``publish`` returns or raises."""
        message = self.builder.message()
        if self.error is not None:
            return _error_terminal(self.error), self.error
        if self.builder.message_stopped and message is not None:
            done = Broadcast("", end="done", stop_reason=message.stop_reason, usage=message.usage)
            return done, message
        cancelled = (
            cancelled_snapshot(message, estimate=not self.usage_reported)
            if message is not None
            else None
        )
        usage = cancelled.usage if cancelled is not None else None
        return Broadcast("", end="cancelled", usage=usage), cancelled

    def stop(self) -> None:
        """Dispose the events (closing the response) and the beat timer."""
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.dispose()


def _error_terminal(error: BaseException) -> Broadcast:
    name = type(error).__name__
    if isinstance(error, APIError):
        error_type, message = error.error_type or name, public_text(error.message)
    elif isinstance(error, AnthropicRxError):
        error_type, message = public_error(error)
    else:  # its text may hold anything: the publisher's log has it, subscribers do not
        error_type, message = INTERNAL_ERROR
    return Broadcast(
        "", end="error", error_type=error_type, error_message=message, error_class=name
    )


# --- entries as bytes, for backends that store bytes ----------------------------------------


def encode_event(event: MessageStreamEvent) -> bytes:
    """An event's wire JSON (``model_dump(mode="json", exclude_none=True)``), as stored."""
    return event.model_dump_json(exclude_none=True).encode()


def decode_event(entry_id: str, data: bytes | str) -> Broadcast:
    """The entry :func:`encode_event` stored under ``entry_id``.

    Raises:
        ProtocolError: ``data`` is not an event's JSON.
    """
    return Broadcast(entry_id, parse_event(data))


def encode_terminal(terminal: Broadcast) -> bytes:
    """A terminal entry's fields as JSON (``usage.estimated`` kept as ``usage_estimated``)."""
    fields: dict[str, object] = {"end": terminal.end}
    for name in ("stop_reason", "error_type", "error_message", "error_class"):
        value = getattr(terminal, name)
        if value is not None:
            fields[name] = value
    if terminal.usage is not None:
        fields["usage"] = terminal.usage.model_dump(mode="json", exclude_none=True)
        fields["usage_estimated"] = terminal.usage.estimated
    return pydantic_core.to_json(fields)


def decode_terminal(entry_id: str, data: bytes | str) -> Broadcast:
    """The terminal entry :func:`encode_terminal` stored under ``entry_id``.

    Raises:
        ProtocolError: ``data`` is not a terminal entry's JSON.
    """
    try:
        fields = pydantic_core.from_json(data)
        end = fields["end"]
        if end not in ("done", "cancelled", "error"):
            raise ValueError(f"unknown end {end!r}")
        usage = None
        if fields.get("usage") is not None:
            usage = Usage.model_validate(
                {**fields["usage"], "estimated": bool(fields.get("usage_estimated"))}
            )
        return Broadcast(
            entry_id,
            end=end,
            stop_reason=fields.get("stop_reason"),
            usage=usage,
            error_type=fields.get("error_type"),
            error_message=fields.get("error_message"),
            error_class=fields.get("error_class"),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ProtocolError(f"not a broadcast terminal entry: {exc}") from exc


# --- the subscribers -------------------------------------------------------------------------

_API_CLASSES: dict[str, type[APIError]] = {
    cls.__name__: cls
    for cls in (
        APIError,
        AuthenticationError,
        BadRequestError,
        BillingError,
        GatewayTimeoutError,
        InternalServerError,
        NotFoundError,
        OverloadedError,
        PermissionDeniedError,
        RateLimitError,
        RequestTooLargeError,
    )
}
_STREAM_CLASSES: dict[str, type[AnthropicRxError]] = {
    cls.__name__: cls
    for cls in (
        APIConnectionError,
        APITimeoutError,
        IncompleteStreamError,
        ProtocolError,
        StreamError,
    )
}


def rebuild_error(terminal: Broadcast, partial_message: Message | None) -> AnthropicRxError:
    """The exception an ``"error"`` terminal entry stands for, in any process.

    The class named by ``error_class`` when it is one of the library's API or stream errors
    (an ``APIError`` of unknown name is chosen by ``error_type`` through
    :func:`~anthropic_rx.api_error_class`), else :class:`~anthropic_rx.AnthropicRxError`.

    Returns:
        The error, with ``partial_message`` set.
    """
    name = terminal.error_class or "AnthropicRxError"
    error_type = terminal.error_type
    text = terminal.error_message or name
    api_class = _API_CLASSES.get(name)
    if api_class is None and name not in _STREAM_CLASSES and error_type is not None:
        by_type = api_error_class(error_type, None)
        api_class = by_type if by_type is not APIError else None
    if api_class is not None:
        return api_class(
            text,
            error_type=None if error_type == name else error_type,
            partial_message=partial_message,
        )
    stream_class = _STREAM_CLASSES.get(name)
    if stream_class is not None:
        return stream_class(text, partial_message=partial_message)
    foreign = f"{name}: {text}" if name != "AnthropicRxError" else text
    return AnthropicRxError(foreign, partial_message=partial_message)


_MERGEABLE: dict[type[Any], str] = {
    TextDelta: "text",
    ThinkingDelta: "thinking",
    InputJSONDelta: "partial_json",
}


def merge_deltas(entries: Sequence[Broadcast]) -> list[Broadcast]:
    """``entries`` with each run of adjacent text, thinking or tool-input deltas of one block
    merged into one ``content_block_delta`` entry, which takes the id of the run's last entry.

    Lossless: the events accumulate to the same message.
    """
    merged: list[Broadcast] = []
    run: list[Broadcast] = []

    def flush() -> None:
        if len(run) == 1:
            merged.append(run[0])
        elif run:
            first = cast(ContentBlockDeltaEvent, run[0].event)
            kind = type(first.delta)
            field = _MERGEABLE[kind]
            joined = "".join(
                getattr(cast(ContentBlockDeltaEvent, e.event).delta, field) for e in run
            )
            delta = kind.model_validate({"type": first.delta.type, field: joined})
            event = ContentBlockDeltaEvent(index=first.index, delta=delta)
            merged.append(Broadcast(run[-1].id, event))
        run.clear()

    for entry in entries:
        event = entry.event
        if type(event) is ContentBlockDeltaEvent and type(event.delta) in _MERGEABLE:
            if run:
                head = cast(ContentBlockDeltaEvent, run[0].event)
                if head.index != event.index or type(head.delta) is not type(event.delta):
                    flush()
            run.append(entry)
            continue
        flush()
        merged.append(entry)
    flush()
    return merged


class _ChannelSubscription(BroadcastSubscription):
    """``hub.subscribe(channel, last_event_id)``: each subscription is one :class:`_Follower`."""

    def __init__(self, hub: Broadcaster, channel: str, last_event_id: str | None) -> None:
        super().__init__(self._subscribe_follower)
        self.channel = channel
        self.last_event_id = last_event_id
        self._hub = hub

    def _subscribe_follower(
        self, observer: abc.ObserverBase[Broadcast], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = event_loop_of(scheduler)
        follower = _Follower(self._hub, self.channel, observer, current_demand())
        followers = self._hub._followers.setdefault(self.channel, set())
        followers.add(follower)
        task = loop.create_task(follower.run(self.last_event_id))

        def dispose() -> None:
            follower.stopped = True
            follower.pending.clear()
            task.cancel()
            follower.leave()

        return Disposable(dispose)


class _Follower:
    """One subscription: reads the log by cursor, holds at most ``buffer`` entries, delivers
    them at its consumer's pace. A failure here (its own ``on_next`` included) is its own."""

    __slots__ = (
        "_demand",
        "_hub",
        "_observer",
        "_pushed_after",
        "_pushed_error",
        "_woken",
        "channel",
        "pending",
        "stopped",
    )

    def __init__(
        self,
        hub: Broadcaster,
        channel: str,
        observer: abc.ObserverBase[Broadcast],
        demand: Demand | None,
    ) -> None:
        self._hub = hub
        self._observer = observer
        self._demand = demand
        self.channel = channel
        self.pending: deque[Broadcast] = deque()
        self.stopped = False
        self._woken: asyncio.Future[None] | None = None
        self._pushed_after: str | None = None  # the id of the last entry pushed
        self._pushed_error: Exception | None = None

    def push(self, entries: Sequence[Broadcast] | None) -> bool:
        """Deliver entries appended at the live end while the consumer keeps up (see
        :class:`LiveReader`); anything else — the terminal entry, a consumer that fell behind,
        its own error, "look again" — wakes the follower's task to go on by reading."""
        demand = self._demand
        if self.stopped or entries is None or self.pending or (demand and not demand.ready):
            self._wake()
            return False
        observer = self._observer
        for entry in entries:
            if entry.end is not None or (demand is not None and not demand.ready):
                self._wake()  # the task reads it (and what follows) after the cursor
                return False
            try:
                observer.on_next(entry)
            except Exception as exc:
                self._pushed_error = exc
                self._pushed_after = entry.id
                self._wake()
                return False
            self._pushed_after = entry.id
            if self.stopped:  # disposed from inside on_next
                self._wake()
                return False
        return True

    def _wake(self) -> None:
        woken = self._woken
        if woken is not None and not woken.done():
            woken.set_result(None)

    def leave(self) -> None:
        followers = self._hub._followers.get(self.channel)
        if followers is not None:
            followers.discard(self)
            if not followers:
                del self._hub._followers[self.channel]

    async def run(self, last_event_id: str | None) -> None:
        observer = self._observer
        try:
            await self._follow(last_event_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.stopped:  # raised by its own on_completed / on_error: nothing left to tell
                _log.error("a broadcast subscriber raised at its end", exc_info=exc)
                return
            self.stopped = True
            try:
                observer.on_error(exc)
            except Exception:
                _log.exception("a broadcast subscriber's on_error raised")
        finally:
            self.pending.clear()
            self.leave()

    async def _follow(self, last_event_id: str | None) -> None:
        hub = self._hub
        backend = hub._backend
        channel = self.channel
        buffer = hub.buffer
        poll = hub.stale_after / 6
        observer = self._observer
        demand = self._demand
        pending = self.pending
        cursor = await backend.resolve(channel, last_event_id)
        if cursor is None:
            self.stopped = True
            observer.on_completed()
            return
        reply = cursor.reply
        live = False  # caught up with the live end once: falling behind now is slowness
        # Its consumer held it back since the last read. A full read is slowness only then: a
        # publisher appending a burst while a read is on the wire (a backend over a network)
        # also fills a read, and a subscriber that keeps up must not be merged or dropped.
        waited = False
        follow_live = getattr(backend, "follow_live", None)
        block = poll
        while True:
            entries = await backend.read(channel, cursor, count=buffer, block=block)
            block = poll
            if not entries:
                await backend.abandon(channel, reply, hub._stale_terminal(), ttl=hub.ttl)
            else:
                if len(entries) < buffer:
                    live = True
                elif live and waited:
                    slow = self._too_slow(entries, cursor.after)
                    if slow is None:
                        return
                    entries = slow
                waited = False
                pending.extend(entries)
                while pending:
                    if demand is not None and not demand.ready:
                        waited = True
                        await demand.wait()
                    entry = pending.popleft()
                    if entry.end is not None:
                        await self._end(entry, reply)
                        return
                    observer.on_next(entry)
                cursor = Cursor(reply, entries[-1].id)
            if follow_live is not None and live and (demand is None or demand.ready):
                # At the live end and keeping up: take the next entries in the publisher's
                # call instead of waking up for each (see MemoryBackend.follow_live).
                woken = self._woken = asyncio.get_running_loop().create_future()
                self._pushed_after = cursor.after
                if follow_live(channel, cursor, self, block=poll):
                    await woken
                    if self._pushed_after != cursor.after:
                        cursor = Cursor(reply, self._pushed_after)
                    error, self._pushed_error = self._pushed_error, None
                    if error is not None:
                        raise error
                    block = 0  # what woke it is in the log already, or was a tick
                self._woken = None

    def _too_slow(self, entries: Sequence[Broadcast], after: str | None) -> list[Broadcast] | None:
        """Apply the slow policy to a full read; ``None`` when the subscription ended."""
        policy = self._hub.slow
        if policy == "coalesce":
            merged = merge_deltas(entries)
            if len(merged) < len(entries):
                return merged
            policy = "disconnect"  # nothing to merge: the buffer cannot shrink
        self.stopped = True
        if policy == "disconnect":
            self._observer.on_completed()
        else:
            self._observer.on_error(
                SlowSubscriberError(
                    f"the subscriber fell {len(entries)} entries behind channel "
                    f"{self.channel!r}; resume after {after!r}",
                    last_event_id=after,
                )
            )
        return None

    async def _end(self, terminal: Broadcast, reply: str) -> None:
        observer = self._observer
        error: AnthropicRxError | None = None
        if terminal.end == "error":
            partial = await self._partial_message(reply)
            error = rebuild_error(terminal, partial)
        observer.on_next(terminal)
        self.stopped = True
        if error is None:
            observer.on_completed()
        else:
            observer.on_error(error)

    async def _partial_message(self, reply: str) -> Message | None:
        """The message the whole log of ``reply`` builds (read again from its start)."""
        backend = self._hub._backend
        tracker = PartialTracker()
        cursor = Cursor(reply)
        with contextlib.suppress(BroadcastError):  # expired meanwhile: no partial message
            while True:
                entries = await backend.read(self.channel, cursor, count=_REBUILD_BATCH, block=0)
                if not entries:
                    break
                for entry in entries:
                    if entry.event is not None:
                        tracker.feed(entry.event)
                if entries[-1].end is not None:
                    break
                cursor = Cursor(reply, entries[-1].id)
        return tracker.partial_message()
