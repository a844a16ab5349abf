"""The relay's shared subscription at its edges: a sink that raises, a sink subscribing twice,
a source that breaks the observable grammar or fails to subscribe."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex.disposable import Disposable

import anthropic_rx as arx
from anthropic_rx import sinks
from anthropic_rx.sinks._relay import _Shared
from tests.sinks.test_broadcast import reply_events, words

WAIT = 5.0


class Sink:
    """What a sink's observer saw; ``raise_at`` makes a callback raise after recording."""

    def __init__(self, raise_at: str | None = None) -> None:
        self.items: list[arx.MessageStreamEvent] = []
        self.error: Exception | None = None
        self.completed = False
        self.raise_at = raise_at
        self.done = asyncio.Event()

    def on_next(self, event: arx.MessageStreamEvent) -> None:
        self.items.append(event)
        if self.raise_at == "next":
            raise ValueError("sink broke on an event")

    def on_error(self, error: Exception) -> None:
        self.error = error
        self.done.set()
        if self.raise_at == "error":
            raise ValueError("sink broke on the error")

    def on_completed(self) -> None:
        self.completed = True
        self.done.set()
        if self.raise_at == "completed":
            raise ValueError("sink broke on the end")

    def subscribe_to(self, shared: _Shared) -> abc.DisposableBase:
        return shared.subscribe(self.on_next, self.on_error, self.on_completed)


class Unruly(reactivex.Observable[arx.MessageStreamEvent]):
    """A hand-made source calling its observer directly, as a buggy one may: ``script`` is a
    list of ``("next", event)``, ``("error", exc)`` and ``("completed", None)``, run in order
    (grammar not enforced). ``fail`` makes its ``subscribe`` itself raise."""

    def __init__(self, script: list[tuple[str, Any]], fail: Exception | None = None) -> None:
        super().__init__()
        self.script = script
        self.fail = fail
        self.disposed = False

    def subscribe(
        self, on_next: Any = None, on_error: Any = None, on_completed: Any = None, **_: Any
    ) -> abc.DisposableBase:
        if self.fail is not None:
            raise self.fail
        for kind, value in self.script:
            if kind == "next":
                on_next(value)
            elif kind == "error":
                on_error(value)
            else:
                on_completed()

        def dispose() -> None:
            self.disposed = True

        return Disposable(dispose)


async def test_a_sink_subscribing_again_once_connected_is_refused_the_others_go_on() -> None:
    source: reactivex.subject.Subject[arx.MessageStreamEvent] = reactivex.subject.Subject()
    shared = _Shared(source, sinks=1)
    first = Sink()
    first.subscribe_to(shared)
    late = Sink()
    late.subscribe_to(shared)
    assert isinstance(late.error, RuntimeError) and "once by each sink" in str(late.error)
    events = reply_events(words(2))
    for event in events:
        source.on_next(event)
    source.on_completed()
    assert first.items == events and first.completed and late.items == []


async def test_a_sink_raising_on_an_event_ends_alone_the_other_gets_the_whole_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source: reactivex.subject.Subject[arx.MessageStreamEvent] = reactivex.subject.Subject()
    shared = _Shared(source, sinks=2)
    broken, healthy = Sink(raise_at="next"), Sink()
    broken.subscribe_to(shared)
    healthy.subscribe_to(shared)
    events = reply_events(words(3))
    with caplog.at_level(logging.ERROR, "anthropic_rx.sinks"):
        for event in events:
            source.on_next(event)
        source.on_completed()
    assert broken.items == events[:1]
    assert isinstance(broken.error, ValueError) and not broken.completed
    assert healthy.items == events and healthy.completed
    assert "a sink of the relayed reply raised" in caplog.text
    assert shared.stream_error is None  # a sink's fault is not the stream's


async def test_every_sink_raising_on_an_event_disposes_the_source() -> None:
    source: reactivex.subject.Subject[arx.MessageStreamEvent] = reactivex.subject.Subject()
    shared = _Shared(source, sinks=1)
    Sink(raise_at="next").subscribe_to(shared)
    assert source.observers
    source.on_next(reply_events(words(1))[0])
    assert not source.observers  # nobody left to deliver to: the request is let go


async def test_a_sink_ended_by_an_earlier_sinks_delivery_gets_nothing_more() -> None:
    source: reactivex.subject.Subject[arx.MessageStreamEvent] = reactivex.subject.Subject()
    shared = _Shared(source, sinks=2)
    second = Sink()
    subscriptions: list[abc.DisposableBase] = []

    def first_on_next(event: arx.MessageStreamEvent) -> None:
        subscriptions[1].dispose()  # the first sink's handling ends the second's subscription

    subscriptions.append(shared.subscribe(first_on_next))
    subscriptions.append(second.subscribe_to(shared))
    events = reply_events(words(2))
    source.on_next(events[0])
    source.on_next(events[1])
    assert second.items == []
    assert source.observers  # the first sink still reads


async def test_sinks_raising_at_the_error_or_the_end_do_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for kind in ("error", "completed"):
        source: reactivex.subject.Subject[arx.MessageStreamEvent] = reactivex.subject.Subject()
        shared = _Shared(source, sinks=2)
        broken, healthy = Sink(raise_at=kind), Sink()
        broken.subscribe_to(shared)
        healthy.subscribe_to(shared)
        with caplog.at_level(logging.ERROR, "anthropic_rx.sinks"):
            if kind == "error":
                source.on_error(arx.APIConnectionError("the network went"))
            else:
                source.on_completed()
        assert broken.done.is_set() and healthy.done.is_set()
        if kind == "error":
            assert isinstance(healthy.error, arx.APIConnectionError)
            assert shared.stream_error is healthy.error
            assert "raised at the error" in caplog.text
        else:
            assert healthy.completed and "raised at the end" in caplog.text


async def test_a_source_breaking_the_grammar_is_held_to_its_first_end() -> None:
    events = reply_events(words(2))
    script: list[tuple[str, Any]] = [
        ("next", events[0]),
        ("completed", None),
        ("next", events[1]),  # after the end: dropped
        ("error", arx.APIConnectionError("late")),  # after the end: dropped
        ("completed", None),  # a second end: dropped
    ]
    source = Unruly(script)
    shared = _Shared(source, sinks=1)
    sink = Sink()
    sink.subscribe_to(shared)
    assert sink.items == events[:1] and sink.completed and sink.error is None
    assert shared.stream_error is None
    assert source.disposed  # it ended while subscribing: its subscription is let go at once


async def test_an_error_after_an_error_is_dropped() -> None:
    first = arx.APIConnectionError("first")
    source = Unruly([("error", first), ("error", arx.APIConnectionError("second"))])
    shared = _Shared(source, sinks=1)
    sink = Sink()
    sink.subscribe_to(shared)
    assert sink.error is first and shared.stream_error is first


async def test_a_source_failing_to_subscribe_ends_every_sink_with_its_error() -> None:
    shared = _Shared(Unruly([], fail=LookupError("no such reply")), sinks=2)
    a, b = Sink(), Sink()
    a.subscribe_to(shared)
    b.subscribe_to(shared)
    assert isinstance(a.error, LookupError) and b.error is a.error
    assert shared.stream_error is a.error


async def test_relay_raises_the_error_of_a_source_that_fails_to_subscribe() -> None:
    hub = sinks.MemoryBroadcaster()
    async with asyncio.timeout(WAIT):
        with pytest.raises(LookupError, match="no such reply"):
            await sinks.relay(Unruly([], fail=LookupError("no such reply")), hub=hub, channel="c.1")
    await hub.aclose()


async def test_events_after_a_protocol_fault_still_reach_the_sinks_the_fault_is_kept() -> None:
    events = reply_events(words(2))
    source: reactivex.subject.Subject[arx.MessageStreamEvent] = reactivex.subject.Subject()
    shared = _Shared(source, sinks=1)
    sink = Sink()
    sink.subscribe_to(shared)
    out_of_order = events[2:]  # no message_start: the reply's builder refuses the first
    for event in out_of_order:
        source.on_next(event)
    source.on_completed()
    assert isinstance(shared.stream_error, arx.ProtocolError)
    first_fault = shared.stream_error
    assert sink.items == out_of_order and sink.completed
    assert shared.stream_error is first_fault  # later events do not replace the first fault
