"""ops.smooth(...): whole words or lines, paced; lossless."""

from __future__ import annotations

import asyncio
import itertools
import re

import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.subscription import Subscription

import anthropic_rx as arx
from anthropic_rx import operators as ops

from ._streams import (
    Body,
    Recorder,
    collect,
    collect_async,
    fixture_events,
    kinds,
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


def test_words_are_paced_and_the_remainder_comes_last() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "Hel"), on_next(211, "lo wor"), on_next(212, "ld. Bye"), on_completed(213)
    )
    results = scheduler.start(lambda: xs.pipe(ops.smooth("word", interval=3)))
    assert results.messages == [
        on_next(211, "Hello "),
        on_next(214, "world. "),
        on_next(217, "Bye"),
        on_completed(217),
    ]


def test_a_slow_source_is_not_delayed() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "one "), on_next(300, "two "), on_next(400, "three"), on_completed(500)
    )
    results = scheduler.start(lambda: xs.pipe(ops.smooth("word", interval=5)))
    assert results.messages == [
        on_next(210, "one "),
        on_next(300, "two "),
        on_next(500, "three"),
        on_completed(500),
    ]


def test_completion_waits_for_paced_chunks() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a b c "), on_completed(211))
    results = scheduler.start(lambda: xs.pipe(ops.smooth("word", interval=10)))
    assert results.messages == [
        on_next(210, "a "),
        on_next(220, "b "),
        on_next(230, "c "),
        on_completed(230),
    ]


def test_lines() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "# Title\n\nFirst "), on_next(211, "line\nlast"), on_completed(212)
    )
    results = scheduler.start(lambda: xs.pipe(ops.smooth("line", interval=2)))
    assert results.messages == [
        on_next(210, "# Title\n\n"),
        on_next(212, "First line\n"),
        on_next(214, "last"),
        on_completed(214),
    ]


def test_custom_pattern_cuts_after_sentences() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "Hi. How are you? Fine"), on_completed(220))
    results = scheduler.start(lambda: xs.pipe(ops.smooth(re.compile(r"[.?!]\s+"), interval=1)))
    assert results.messages == [
        on_next(210, "Hi. "),
        on_next(211, "How are you? "),
        on_next(220, "Fine"),
        on_completed(220),
    ]


def test_a_large_backlog_catches_up() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "a "), on_next(211, "b c d e f g h i "), on_completed(300)
    )
    results = scheduler.start(lambda: xs.pipe(ops.smooth("word", interval=10, max_backlog=8)))
    # more than 8 characters wait at 220: that chunk takes every whole word
    assert results.messages == [
        on_next(210, "a "),
        on_next(220, "b c d e f g h i "),
        on_completed(300),
    ]
    paced = TestScheduler()
    ys = paced.create_hot_observable(on_next(210, "a "), on_next(211, "b c "), on_completed(300))
    results = paced.start(lambda: ys.pipe(ops.smooth("word", interval=10, max_backlog=8)))
    assert results.messages == [
        on_next(210, "a "),
        on_next(220, "b "),
        on_next(230, "c "),
        on_completed(300),
    ]


def test_error_flushes_everything_then_errors() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("boom")
    xs = scheduler.create_hot_observable(on_next(210, "a b c"), on_error(212, boom))
    results = scheduler.start(lambda: xs.pipe(ops.smooth("word", interval=10)))
    assert results.messages == [on_next(210, "a "), on_next(212, "b c"), on_error(212, boom)]


def test_dispose_stops_the_pace_and_the_upstream() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a b c d "), on_completed(400))
    results = scheduler.start(lambda: xs.pipe(ops.smooth("word", interval=10)), disposed=225)
    assert results.messages == [on_next(210, "a "), on_next(220, "b ")]
    assert xs.subscriptions == [Subscription(200, 225)]


def test_a_failing_subscriber_on_a_paced_chunk_gets_the_error() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a b "), on_completed(400))
    failure = RuntimeError("sink broke")
    received: list[str] = []
    errors: list[Exception] = []

    def sink(chunk: str) -> None:
        received.append(chunk)
        if len(received) == 2:
            raise failure

    xs.pipe(ops.smooth("word", interval=10, scheduler=scheduler)).subscribe(sink, errors.append)
    scheduler.advance_to(500)
    assert received == ["a ", "b "]
    assert errors == [failure]
    assert xs.subscriptions[0].unsubscribe == 220


@settings(max_examples=200, deadline=None)
@given(
    parts=st.lists(st.text(alphabet=st.sampled_from("ab \n"), max_size=8), max_size=20),
    unit=st.sampled_from(["word", "line"]),
    interval=st.integers(min_value=0, max_value=5),
    gap=st.integers(min_value=0, max_value=6),
)
def test_lossless_whole_units(parts: list[str], unit: str, interval: int, gap: int) -> None:
    scheduler = TestScheduler()
    messages = [on_next(201 + i * gap, p) for i, p in enumerate(parts)]
    end = 202 + len(parts) * gap
    xs = scheduler.create_hot_observable(*messages, on_completed(end))
    results = scheduler.start(
        lambda: xs.pipe(ops.smooth(unit, interval=interval)),  # type: ignore[arg-type]
        disposed=100_000,
    )
    emitted = values(results.messages)
    chunks = [chunk for _, chunk in emitted]
    assert "".join(chunks) == "".join(parts)
    assert kinds(results.messages)[-1][1] == "C"
    ending = r"\s" if unit == "word" else "\n"
    for chunk in chunks[:-1]:
        assert chunk
        assert re.search(ending + "$", chunk)
    times = [time for time, _ in emitted]
    assert all(b - a >= interval for a, b in itertools.pairwise(times))


def test_call_time_value_errors() -> None:
    with pytest.raises(ValueError, match="unit"):
        ops.smooth("sentence")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        ops.smooth(interval=-1)
    with pytest.raises(ValueError, match="max_backlog"):
        ops.smooth(max_backlog=0)


async def test_on_the_event_loop_after_text_deltas() -> None:
    body = Body(sse(text_reply("Hello wo", "rld, how ", "are you")))
    seen = await collect_async(
        body.events().pipe(ops.text_deltas(), ops.smooth("word", interval=0))
    )
    assert seen.items == ["Hello ", "world, ", "how ", "are ", "you"]
    assert seen.completed
    assert body.closed


async def test_dispose_on_the_event_loop_closes_the_body_and_stops_the_pace() -> None:
    body = Body(sse(text_reply("one two three four ", "five")), stall_after=3)
    seen: Recorder[str] = Recorder()
    loop = asyncio.get_running_loop()
    subscription = seen.subscribe(
        body.events().pipe(ops.text_deltas(), ops.smooth("word", interval=3600)),
        reactivex.scheduler.eventloop.AsyncIOScheduler(loop),
    )
    assert await settle(lambda: seen.items == ["one "])  # the rest waits for its pace
    subscription.dispose()
    assert await settle(lambda: body.closed)
    await asyncio.sleep(0.05)
    assert seen.items == ["one "]
    assert not seen.done


def test_recipe_on_a_recorded_reply() -> None:
    scheduler = TestScheduler()
    words = collect(
        fixture_events("docs_basic_text").pipe(
            ops.text_deltas(), ops.smooth(interval=1, scheduler=scheduler)
        )
    )
    scheduler.start()
    text = "".join(collect(fixture_events("docs_basic_text").pipe(ops.text_deltas())).items)
    assert "".join(words.items) == text
    assert words.completed


def test_a_subscriber_failing_on_a_chunk_is_not_fed_the_rest() -> None:
    scheduler = TestScheduler()
    failure = RuntimeError("sink broke")
    received: list[str] = []
    errors: list[Exception] = []

    def sink(chunk: str) -> None:
        received.append(chunk)
        raise failure

    # the source hands a subscriber's exception back as on_error, as from_sse_bytes does
    fixture = arx.from_sse_bytes(sse(text_reply("a b c")))
    fixture.pipe(ops.text_deltas(), ops.smooth(interval=10, scheduler=scheduler)).subscribe(
        sink, errors.append
    )
    scheduler.advance_to(100)
    assert received == ["a "]
    assert errors == [failure]
