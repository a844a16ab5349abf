"""ops.idle_timeout(...): APITimeoutError(kind="idle") when no event but ping arrives."""

from __future__ import annotations

import asyncio

import pytest
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.subscription import Subscription

import anthropic_rx as arx
from anthropic_rx import operators as ops

from ._streams import PING, Body, Recorder, error_of, kinds, parsed, settle, sse, text_reply

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)

START, BLOCK, HELLO, STOP_BLOCK, DELTA, STOP = parsed(text_reply("Hello"))
PING_EVENT = parsed([PING])[0]


def test_pings_do_not_keep_a_stalled_stream_alive() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, START),
        on_next(215, BLOCK),
        on_next(220, HELLO),
        on_next(230, PING_EVENT),
        on_next(235, PING_EVENT),
        on_next(245, PING_EVENT),
        on_next(400, STOP),
    )
    results = scheduler.start(lambda: xs.pipe(ops.idle_timeout(20)))
    assert kinds(results.messages) == [(t, "N") for t in (210, 215, 220, 230, 235)] + [(240, "E")]
    error = error_of(results.messages)
    assert isinstance(error, arx.APITimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.kind == "idle"
    assert "20" in str(error)
    assert error.partial_message is not None
    assert error.partial_message.content[0] == arx.TextBlock(text="Hello")
    assert xs.subscriptions == [Subscription(200, 240)]


def test_each_event_resets_the_clock() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, START),
        on_next(225, BLOCK),
        on_next(240, HELLO),
        on_next(255, STOP_BLOCK),
        on_completed(270),
    )
    results = scheduler.start(lambda: xs.pipe(ops.idle_timeout(20)))
    assert kinds(results.messages) == [(210, "N"), (225, "N"), (240, "N"), (255, "N"), (270, "C")]


def test_first_event_timeout() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(250, START), on_next(265, BLOCK))
    slow_start = scheduler.start(lambda: xs.pipe(ops.idle_timeout(10, first_event_timeout=60)))
    assert kinds(slow_start.messages) == [(250, "N"), (260, "E")]
    never = TestScheduler()
    ys = never.create_hot_observable(on_next(210, PING_EVENT), on_next(500, START))
    results = never.start(lambda: ys.pipe(ops.idle_timeout(10, first_event_timeout=30)))
    assert kinds(results.messages) == [(210, "N"), (230, "E")]
    error = error_of(results.messages)
    assert isinstance(error, arx.APITimeoutError)
    assert error.kind == "idle"
    assert "first event" in str(error)
    assert error.partial_message is None


def test_default_first_timeout_is_seconds() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(500, START))
    results = scheduler.start(lambda: xs.pipe(ops.idle_timeout(10)))
    assert kinds(results.messages) == [(210, "E")]


def test_completion_and_errors_pass_and_stop_the_timer() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("boom")
    xs = scheduler.create_hot_observable(on_next(210, START), on_error(215, boom))
    results = scheduler.start(lambda: xs.pipe(ops.idle_timeout(10)))
    assert results.messages == [on_next(210, START), on_error(215, boom)]


def test_dispose_stops_the_timer_and_the_upstream() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, START))
    results = scheduler.start(lambda: xs.pipe(ops.idle_timeout(50)), disposed=220)
    assert results.messages == [on_next(210, START)]
    assert xs.subscriptions == [Subscription(200, 220)]
    scheduler.advance_to(400)
    assert results.messages == [on_next(210, START)]


def test_call_time_value_errors() -> None:
    with pytest.raises(ValueError, match="seconds"):
        ops.idle_timeout(0)
    with pytest.raises(ValueError, match="first_event_timeout"):
        ops.idle_timeout(1, first_event_timeout=-1)


async def test_timeout_closes_the_body() -> None:
    body = Body(sse(text_reply("Hi", "there")), stall_after=3)
    virtual = TestScheduler()
    seen: Recorder[arx.MessageStreamEvent] = Recorder()
    seen.subscribe(
        body.events().pipe(ops.idle_timeout(30, virtual)),
        AsyncIOScheduler(asyncio.get_running_loop()),
    )
    assert await settle(lambda: body.sent == 3)
    assert len(seen.items) == 3
    virtual.advance_by(29)
    assert seen.error is None
    virtual.advance_by(2)
    assert isinstance(seen.error, arx.APITimeoutError)
    assert await settle(lambda: body.closed)


async def test_on_the_event_loop_a_healthy_stream_completes() -> None:
    body = Body(sse(text_reply("a", "b")))
    seen: Recorder[arx.MessageStreamEvent] = Recorder()
    seen.subscribe(
        body.events().pipe(ops.idle_timeout(60), ops.raise_on_error()),
        AsyncIOScheduler(asyncio.get_running_loop()),
    )
    assert await settle(lambda: seen.done)
    assert seen.completed
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
