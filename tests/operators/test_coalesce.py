"""ops.coalesce(...): fewer, longer text chunks for a slow sink; lossless."""

from __future__ import annotations

import asyncio

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.subscription import Subscription

from anthropic_rx import operators as ops

from ._streams import (
    Body,
    Recorder,
    collect,
    collect_async,
    fixture_events,
    settle,
    sse,
    text_reply,
    values,
)

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


def test_merges_what_arrives_within_max_delay() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "a"),
        on_next(212, "b"),
        on_next(213, "c"),
        on_next(230, "d"),
        on_completed(250),
    )
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=5)))
    assert results.messages == [on_next(215, "abc"), on_next(235, "d"), on_completed(250)]


def test_max_chars_flushes_at_once() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "ab"), on_next(211, "cd"), on_next(212, "e"), on_next(213, "fghij")
    )
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=10, max_chars=4)))
    # a single longer input is not split; the timer restarts with the next buffer
    assert results.messages == [on_next(211, "abcd"), on_next(213, "efghij")]


def test_max_chars_alone_flushes_on_count_and_completion() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "ab"),
        on_next(300, "c"),
        on_next(400, "de"),
        on_next(500, "f"),
        on_completed(600),
    )
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=None, max_chars=3)))
    assert results.messages == [on_next(300, "abc"), on_next(500, "def"), on_completed(600)]


def test_completion_flushes_the_buffer_first() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(211, "b"), on_completed(212))
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=50)))
    assert results.messages == [on_next(212, "ab"), on_completed(212)]


def test_error_flushes_the_buffer_then_errors() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("boom")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(211, "b"), on_error(212, boom))
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=50)))
    assert results.messages == [on_next(212, "ab"), on_error(212, boom)]


def test_empty_strings_are_dropped() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, ""), on_next(220, ""), on_completed(230))
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=1)))
    assert results.messages == [on_completed(230)]


def test_dispose_drops_the_buffer_and_the_timer() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(300, "b"))
    results = scheduler.start(lambda: xs.pipe(ops.coalesce(max_delay=20)), disposed=220)
    assert results.messages == []
    assert xs.subscriptions == [Subscription(200, 220)]


def test_a_failing_subscriber_on_a_timed_flush_gets_the_error_and_upstream_stops() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(300, "b"))
    failure = RuntimeError("sink broke")
    errors: list[Exception] = []

    def sink(_: str) -> None:
        raise failure

    xs.pipe(ops.coalesce(max_delay=5, scheduler=scheduler)).subscribe(sink, errors.append)
    scheduler.advance_to(400)
    assert errors == [failure]
    assert xs.subscriptions[0].unsubscribe == 215


@settings(max_examples=200, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(min_value=0, max_value=20), st.text(max_size=6)), max_size=30
    ),
    max_delay=st.one_of(st.none(), st.integers(min_value=0, max_value=15)),
    max_chars=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
)
def test_lossless_and_never_late(
    arrivals: list[tuple[int, str]], max_delay: int | None, max_chars: int | None
) -> None:
    if max_delay is None and max_chars is None:
        max_chars = 5
    scheduler = TestScheduler()
    time, messages = 201, []
    for gap, text in arrivals:
        time += gap
        messages.append(on_next(time, text))
    end = time + 1
    xs = scheduler.create_hot_observable(*messages, on_completed(end))
    results = scheduler.start(
        lambda: xs.pipe(ops.coalesce(max_delay=max_delay, max_chars=max_chars))
    )
    chunks = values(results.messages)
    inputs = [(time, text) for time, text in values(messages) if text]
    assert "".join(text for _, text in chunks) == "".join(text for _, text in inputs)
    assert results.messages[-1] == on_completed(end)
    # inputs are never split: each chunk is a run of whole inputs, emitted within max_delay
    # of the first one's arrival (or at once on reaching max_chars)
    position = 0
    for at, chunk in chunks:
        first_arrival, joined = inputs[position][0], ""
        while len(joined) < len(chunk):
            joined += inputs[position][1]
            position += 1
        assert joined == chunk
        if max_delay is not None:
            assert at <= first_arrival + max_delay
        if max_chars is not None and at < end:
            assert len(chunk) >= max_chars or at == first_arrival + (max_delay or 0)


def test_call_time_value_errors() -> None:
    with pytest.raises(ValueError, match="max_delay or max_chars"):
        ops.coalesce(max_delay=None)
    with pytest.raises(ValueError, match="negative"):
        ops.coalesce(max_delay=-1)
    with pytest.raises(ValueError, match="at least 1"):
        ops.coalesce(max_chars=0)


async def test_zero_delay_merges_one_network_read_on_the_event_loop() -> None:
    wire = text_reply("a", "b", "c", "d")
    frames = sse(wire)
    # the three first deltas arrive in one read; "d" in the next
    chunks = [b"".join(frames[:2]), b"".join(frames[2:5]), b"".join(frames[5:])]
    body = Body(chunks)
    seen = await collect_async(body.events().pipe(ops.text_deltas(), ops.coalesce(max_delay=0)))
    assert seen.items == ["abc", "d"]
    assert seen.completed


async def test_dispose_on_the_event_loop_closes_the_body_and_cancels_the_timer() -> None:
    body = Body(sse(text_reply("a", "b")), stall_after=3)
    seen: Recorder[str] = Recorder()
    loop = asyncio.get_running_loop()
    subscription = seen.subscribe(
        body.events().pipe(ops.text_deltas(), ops.coalesce(max_delay=3600)),
        reactivex.scheduler.eventloop.AsyncIOScheduler(loop),
    )
    assert await settle(lambda: body.sent == 3)
    subscription.dispose()
    assert await settle(lambda: body.closed)
    assert seen.items == []
    assert not seen.done


def test_recipe_text_for_a_slow_sink() -> None:
    scheduler = TestScheduler()
    seen = collect(
        fixture_events("docs_tool_use").pipe(
            ops.text_deltas(), ops.coalesce(max_delay=1, max_chars=20, scheduler=scheduler)
        )
    )
    text = "".join(collect(fixture_events("docs_tool_use").pipe(ops.text_deltas())).items)
    assert "".join(seen.items) == text
    assert all(len(chunk) >= 20 for chunk in seen.items[:-1])
    assert len(seen.items) < 13
    assert seen.completed
