"""One reply to a broadcaster and a database at once, from one request: what a queued job runs.

```
relay(events, hub=, channel=, writer=, message_id=)
  │ hub.start(channel, shared)      opens the channel first: ChannelBusyError before any request
  │ writer.save(shared, ...)        in a task
  │ shared: subscribes to `events` once, when both sinks have subscribed, and hands each
  │         event to each sink in turn; one sink's failure (or its raising observer) ends that
  │         sink alone
  │ await both ─► the final message, or the stream's error, or a sink's failure
```

The shared subscription is paced by the broadcaster (its backend falling behind pauses the
reading of the network); the writer takes every event synchronously and never slows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

import reactivex
from reactivex import abc
from reactivex.disposable import Disposable
from reactivex.scheduler.eventloop import AsyncIOScheduler

from .._events import Message, MessageStreamEvent
from .._exceptions import AnthropicRxError
from .._pacing import Demand, current_demand, demand_scope
from .._snapshot import MessageBuilder
from ._feed import feed_or_error
from ._hub import Broadcaster

if TYPE_CHECKING:
    from ._database import DatabaseWriter

__all__ = ["relay", "start_relay"]

_log = logging.getLogger("anthropic_rx.sinks")


async def relay(
    events: reactivex.Observable[MessageStreamEvent],
    *,
    hub: Broadcaster | None = None,
    channel: str | None = None,
    writer: DatabaseWriter | None = None,
    message_id: str | None = None,
    conversation_id: str | None = None,
) -> Message | None:
    """Publish one reply on ``hub``'s ``channel`` and save it with ``writer``, from one
    subscription to ``events`` (one request to the model).

    The channel is opened first, so a busy one refuses before anything is subscribed. The
    events are subscribed to once both sinks have subscribed; each event goes to both. A sink
    that fails stops alone: a writer whose database is gone does not stop the broadcast (its
    subscribers get the whole reply), and a broadcaster whose backend fails does not stop the
    row from being written.

    Args:
        events: the reply (``client.stream(...)``, usually piped through
            ``ops.take_until_cancel``).
        hub: the broadcaster; given with ``channel``.
        channel: the channel to publish on.
        writer: the database writer; given with ``message_id``.
        message_id: the row's id.
        conversation_id: stored in the row.

    Returns:
        The final message; the cancelled snapshot (``cancelled=True``) when the events
        completed without ``message_stop``; ``None`` when they did before ``message_start``.

    Raises:
        ValueError: ``hub`` without ``channel`` (or the reverse), ``writer`` without a
            non-empty ``message_id`` (or the reverse), ``conversation_id`` without ``writer``,
            or neither sink (nothing was subscribed).
        ChannelBusyError: the channel has a live publisher (nothing was subscribed, nothing
            written).
        Exception: the stream's error (typed, with ``.partial_message``), once both sinks
            recorded it (a sink's own failure is then logged and added to its notes); else a
            sink's failure (``DatabaseWriteError``, a broadcaster's error), once the other sink
            ended.

    Cancellation (of the awaiting task): both sinks are cancelled (the events disposed, the
    channel ended with ``IncompleteStreamError``, the row ``incomplete``), and
    ``CancelledError`` propagates.
    """
    shared, tasks = await _begin(events, hub, channel, writer, message_id, conversation_id)
    return await _finish(shared, tasks)


async def start_relay(
    events: reactivex.Observable[MessageStreamEvent],
    *,
    hub: Broadcaster | None = None,
    channel: str | None = None,
    writer: DatabaseWriter | None = None,
    message_id: str | None = None,
    conversation_id: str | None = None,
) -> asyncio.Task[Message | None]:
    """:func:`relay`, started: returns its task once the channel is open.

    What a web request that starts a reply as an in-process job awaits: a busy channel raises
    :class:`~anthropic_rx.sinks.ChannelBusyError` here (answer 409), and once this returns a
    browser that subscribes finds the channel (a subscription before it exists is
    ``ChannelNotFound``, which the SSE sink answers with 204 and an EventSource does not retry).

    Returns:
        The task running the rest of :func:`relay`, whose result or exception is relay's. The
        task is referenced until it ends; an exception nobody retrieves is logged at INFO on
        ``anthropic_rx.sinks`` instead of warning "never retrieved". Cancelling it cancels
        the relay as :func:`relay` describes.

    Raises:
        ValueError: as :func:`relay`.
        ChannelBusyError: the channel has a live publisher (nothing was subscribed).
    """
    shared, tasks = await _begin(events, hub, channel, writer, message_id, conversation_id)
    task = asyncio.get_running_loop().create_task(_finish(shared, tasks))
    _started.add(task)
    task.add_done_callback(_relay_ended)
    return task


# Relays started by start_relay run with nothing else holding them: a task needs a reference.
_started: set[asyncio.Task[Message | None]] = set()


def _relay_ended(task: asyncio.Task[Message | None]) -> None:
    _started.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        _log.info("a relayed reply ended with %s", type(error).__name__)


async def _begin(
    events: reactivex.Observable[MessageStreamEvent],
    hub: Broadcaster | None,
    channel: str | None,
    writer: DatabaseWriter | None,
    message_id: str | None,
    conversation_id: str | None,
) -> tuple[_Shared, list[asyncio.Task[Message | None]]]:
    """Check the arguments, open the channel and start each sink on the shared events."""
    if (hub is None) != (channel is None):
        raise ValueError("hub and channel go together")
    if (writer is None) != (message_id is None):
        raise ValueError("writer and message_id go together")
    if message_id is not None and (not isinstance(message_id, str) or not message_id):
        raise ValueError("message_id must be a non-empty string")
    if conversation_id is not None and writer is None:
        raise ValueError("conversation_id is stored by a writer: give writer and message_id")
    if hub is None and writer is None:
        raise ValueError("relay needs a hub and channel, a writer and message_id, or both")
    shared = _Shared(events, sinks=(hub is not None) + (writer is not None))
    tasks: list[asyncio.Task[Message | None]] = []
    if hub is not None:
        tasks.append(await hub.start(cast(str, channel), shared))
    if writer is not None:
        save = writer.save(
            shared, message_id=cast(str, message_id), conversation_id=conversation_id
        )
        tasks.append(asyncio.get_running_loop().create_task(save))
    for task in tasks:
        task.add_done_callback(shared.sink_ended)
    return shared, tasks


async def _finish(shared: _Shared, tasks: list[asyncio.Task[Message | None]]) -> Message | None:
    """Wait for both sinks; relay's result or error."""
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return _outcome(shared, tasks)


def _outcome(shared: _Shared, tasks: list[asyncio.Task[Message | None]]) -> Message | None:
    """What ``relay`` returns or raises, from the stream's own outcome and each sink's."""
    stream_error = shared.stream_error
    failures: list[BaseException] = []
    results: list[Message | None] = []
    for task in tasks:
        error = task.exception()
        if error is None:
            results.append(task.result())
        elif stream_error is None or not _same_failure(error, stream_error):
            failures.append(error)
    if stream_error is not None:
        for failure in failures:
            _log.error("a sink of the relayed reply failed", exc_info=failure)
            stream_error.add_note(f"a sink failed too: {type(failure).__name__}: {failure}")
        raise stream_error
    if failures:
        first, *others = failures
        for other in others:
            _log.error("another sink of the relayed reply failed", exc_info=other)
            first.add_note(f"another sink failed too: {type(other).__name__}: {other}")
        raise first
    return results[0] if results else None


def _same_failure(error: BaseException, stream_error: BaseException) -> bool:
    """Whether a sink raised the stream's own error (the same one, or its own copy of it)."""
    # A sink's own failure (a DatabaseWriteError, a broadcaster's error) is another class.
    return error is stream_error or type(error) is type(stream_error)


class _Shared(reactivex.Observable[MessageStreamEvent]):
    """``events``, subscribed to once when every sink has subscribed, to each sink in turn.

    Also follows the reply itself (a builder of its own), so the relay knows the stream's own
    error apart from a sink's failure.
    """

    def __init__(self, events: reactivex.Observable[MessageStreamEvent], *, sinks: int) -> None:
        super().__init__(self._subscribe_sink)
        self._events = events
        self._pending = sinks  # sinks yet to subscribe (or to end without subscribing)
        self._observers: list[abc.ObserverBase[MessageStreamEvent]] = []
        self._subscribed_by: set[asyncio.Task[object] | None] = set()
        self._demand: Demand | None = None
        self._upstream: abc.DisposableBase | None = None
        self._connected = False
        self._ended = False
        self._builder = MessageBuilder()
        self.stream_error: Exception | None = None

    def _subscribe_sink(
        self,
        observer: abc.ObserverBase[MessageStreamEvent],
        scheduler: abc.SchedulerBase | None = None,
    ) -> abc.DisposableBase:
        if self._connected:
            raise RuntimeError("a relayed reply is subscribed to once by each sink")
        self._observers.append(observer)
        self._pending -= 1
        with contextlib.suppress(RuntimeError):
            self._subscribed_by.add(asyncio.current_task())
        if self._demand is None:  # the broadcaster's: its backend paces the network
            self._demand = current_demand()
        self._connect_when_all_in()

        def dispose() -> None:
            with contextlib.suppress(ValueError):
                self._observers.remove(observer)
            if not self._observers:
                self._disconnect()

        return Disposable(dispose)

    def sink_ended(self, task: asyncio.Task[Message | None]) -> None:
        """A sink's task ended: one that never subscribed is no longer waited for."""
        if task not in self._subscribed_by and not self._connected:
            self._pending -= 1
            self._connect_when_all_in()

    def _connect_when_all_in(self) -> None:
        if self._connected or self._pending > 0 or not self._observers:
            return
        self._connected = True
        loop = asyncio.get_running_loop()
        pacing = (
            demand_scope(self._demand) if self._demand is not None else contextlib.nullcontext()
        )
        try:
            with pacing:
                upstream = self._events.subscribe(
                    self._on_next,
                    self._on_error,
                    self._on_completed,
                    scheduler=AsyncIOScheduler(loop),
                )
        except Exception as error:  # a source that fails to subscribe ends the reply
            self._on_error(error)
            return
        if self._ended or not self._observers:
            upstream.dispose()
        else:
            self._upstream = upstream

    def _disconnect(self) -> None:
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.dispose()

    def _on_next(self, event: MessageStreamEvent) -> None:
        if self._ended:
            return
        self._follow(event)
        for observer in tuple(self._observers):
            if observer not in self._observers:
                continue  # a sink that ended on an earlier sink's delivery
            try:
                observer.on_next(event)
            except Exception as error:  # that sink's own fault: it alone stops
                _log.exception("a sink of the relayed reply raised")
                with contextlib.suppress(ValueError):
                    self._observers.remove(observer)
                with contextlib.suppress(Exception):
                    observer.on_error(error)
        if not self._observers:
            self._disconnect()

    def _follow(self, event: MessageStreamEvent) -> None:
        if self.stream_error is not None:
            return
        self.stream_error = feed_or_error(self._builder, event)

    def _on_error(self, error: Exception) -> None:
        if self._ended:
            return
        self._ended = True
        if self.stream_error is None:
            if isinstance(error, AnthropicRxError) and error.partial_message is None:
                error.partial_message = self._builder.message()
            self.stream_error = error
        for observer in tuple(self._observers):
            try:
                observer.on_error(error)
            except Exception:
                _log.exception("a sink of the relayed reply raised at the error")
        self._observers.clear()

    def _on_completed(self) -> None:
        if self._ended:
            return
        self._ended = True
        for observer in tuple(self._observers):
            try:
                observer.on_completed()
            except Exception:
                _log.exception("a sink of the relayed reply raised at the end")
        self._observers.clear()
