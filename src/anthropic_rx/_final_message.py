"""Awaiting the whole message of a stream: ``await arx.final_message(events)``.

The message is built as the stream goes, by the reader's own builder when the stream is an
unchanged :class:`~anthropic_rx._source.EventStream` (:mod:`anthropic_rx._builder_sharing`),
and an ``error`` event or a stream that completes before ``message_stop`` raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import reactivex
from reactivex import abc
from reactivex.scheduler.eventloop import AsyncIOScheduler

from ._builder_sharing import sharing_builder
from ._error_event import error_of_event
from ._events import ErrorEvent, Message, MessageStartEvent, MessageStreamEvent
from ._exceptions import IncompleteStreamError
from ._meta import ResponseMeta
from ._pacing import Demand, demand_scope
from ._snapshot import MessageBuilder
from ._source import EventStream

__all__ = ["final_message"]


async def final_message(events: reactivex.Observable[MessageStreamEvent]) -> Message:
    """Await the complete message of a stream.

    Cancelling the awaiting task disposes the subscription and closes the response.

    Raises:
        APIError: the stream sent an ``error`` event (the typed subclass by ``error.type``,
            e.g. :class:`OverloadedError`), with ``.partial_message``.
        IncompleteStreamError: the stream completed without ``message_stop`` (e.g. a pipeline
            that cancelled it).
        Exception: any error of the stream itself (:class:`ProtocolError`,
            :class:`APIConnectionError`...).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Message] = loop.create_future()
    slot: list[MessageBuilder] = []
    own_builder = MessageBuilder()
    meta: ResponseMeta | None = None
    subscription: abc.DisposableBase | None = None

    def builder() -> MessageBuilder:
        return slot[0] if slot else own_builder

    def fail(error: BaseException) -> None:
        if not done.done():
            done.set_exception(error)
        if subscription is not None:
            subscription.dispose()

    def on_next(event: MessageStreamEvent) -> None:
        nonlocal meta
        if done.done():
            return
        kind = type(event)
        if kind is ErrorEvent:
            error_event = cast(ErrorEvent, event)
            fail(
                error_of_event(
                    error_event,
                    partial_message=builder().message(),
                    meta=error_event.response_meta or meta,
                )
            )
            return
        if kind is MessageStartEvent:
            meta = cast(MessageStartEvent, event).response_meta
        if not slot:
            own_builder.feed(event)

    def on_completed() -> None:
        if done.done():
            return
        current = builder()
        if not current.message_stopped:
            fail(
                IncompleteStreamError(
                    "the stream completed before message_stop",
                    partial_message=current.message(),
                    meta=meta,
                )
            )
            return
        message = current.message()
        # The builder refuses message_stop before message_start, so a stopped one has a message.
        assert message is not None
        done.set_result(message)

    # A stream no operator has changed is accumulated once, by its own reader, which then
    # need not hand this subscriber its deltas at all.
    sharing = (
        sharing_builder(slot, deltas=False)
        if isinstance(events, EventStream)
        else contextlib.nullcontext()
    )
    with demand_scope(Demand()), sharing:  # consumed at once: the demand never pauses
        subscription = events.subscribe(
            on_next, fail, on_completed, scheduler=AsyncIOScheduler(loop)
        )
    try:
        return await done
    finally:
        subscription.dispose()
