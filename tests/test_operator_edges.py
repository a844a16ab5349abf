"""Operators and bridges under odd use: empty and failing streams, early stops, sharing, reuse.

Every operator is run over the same odd sources; the bridges are left at every position. The
fake API (``testing.FakeAnthropic``) counts the responses left open after each test.
"""

from __future__ import annotations

import asyncio
import gc
import math
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
import reactivex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from reactivex import ConnectableObservable, abc
from reactivex import operators as rx_ops
from reactivex.notification import OnCompleted, OnNext
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.subject import BehaviorSubject, Subject
from reactivex.testing import ReactiveTest, TestScheduler

import anthropic_rx as arx
from anthropic_rx import cancel, testing
from anthropic_rx import operators as ops

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}

Events = reactivex.Observable[arx.MessageStreamEvent]
Pipeline = Callable[[Events], reactivex.Observable[Any]]

# A reply that exercises every selecting operator: thinking, tools interleaved with text.
MIXED = (
    testing.Reply()
    .thinking("Think ", "hard.", signature="sig-1")
    .text("Let me ", "check. ")
    .tool_use("get_weather", {"city": "Paris"}, id="toolu_a", fragment_size=4)
    .text("And ", "the time: ")
    .tool_use("get_time", {"zone": "CET", "fmt": "24h"}, id="toolu_b", fragment_size=3)
    .text("done.")
)
MIXED_TEXT = "Let me check. And the time: done."
MIXED_THINKING = "Think hard."
WORDS = [f"w{i} " for i in range(40)]

OVERLOADED_FIRST = testing.sse_bytes(
    [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
)


def pipelines() -> dict[str, Callable[[], Pipeline]]:
    """A fresh operator (or short pipeline) for each name; each call builds new state."""
    flags = cancel.MemoryCancelFlags()
    return {
        "text_deltas": ops.text_deltas,
        "thinking_deltas": ops.thinking_deltas,
        "of_type": lambda: ops.of_type(object),
        "accumulate": ops.accumulate,
        "raise_on_error": ops.raise_on_error,
        "take_until_cancel-token": lambda: ops.take_until_cancel(arx.CancelToken()),
        "take_until_cancel-event": lambda: ops.take_until_cancel(asyncio.Event()),
        "take_until_cancel-observable": lambda: ops.take_until_cancel(reactivex.never()),
        "take_until_cancel-flag": lambda: ops.take_until_cancel(flags.watch("stop-1")),
        "tool_inputs": ops.tool_inputs,
        "coalesce": lambda: (
            lambda events: events.pipe(
                ops.text_deltas(), ops.coalesce(max_delay=0.001, max_chars=5)
            )
        ),
        "smooth": lambda: lambda events: events.pipe(ops.text_deltas(), ops.smooth(interval=0.0)),
        "idle_timeout": lambda: ops.idle_timeout(5.0),
    }


NAMES = list(pipelines())
# Operators that turn events into something else raise an in-stream error event themselves.
RAISING = {
    "text_deltas",
    "thinking_deltas",
    "accumulate",
    "raise_on_error",
    "tool_inputs",
    "coalesce",
    "smooth",
}
PASSING = [n for n in NAMES if n not in RAISING]


def pipeline(name: str) -> Pipeline:
    return pipelines()[name]()


async def collect(source: reactivex.Observable[Any]) -> tuple[list[Any], BaseException | None]:
    items: list[Any] = []
    try:
        async for item in arx.to_async_iterator(source):
            items.append(item)
    except Exception as exc:
        return items, exc
    return items, None


def events_of(data: bytes) -> list[arx.MessageStreamEvent]:
    out: list[arx.MessageStreamEvent] = []
    arx.from_sse_bytes(data).subscribe(out.append, lambda e: None)
    return out


class Recorder:
    """What one raw subscription saw, with a way to dispose it from inside ``on_next``."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.errors: list[Exception] = []
        self.completions = 0
        self.done = asyncio.Event()
        self.subscription: abc.DisposableBase | None = None

    def on_next(self, item: Any) -> None:
        self.items.append(item)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)
        self.done.set()

    def on_completed(self) -> None:
        self.completions += 1
        self.done.set()

    def subscribe(
        self,
        source: reactivex.Observable[Any],
        on_next: Callable[[Any], None] | None = None,
    ) -> abc.DisposableBase:
        """Subscribe on the running loop; ``on_next`` replaces :meth:`on_next` when given."""
        loop = asyncio.get_running_loop()
        self.subscription = source.subscribe(
            on_next or self.on_next,
            self.on_error,
            self.on_completed,
            scheduler=AsyncIOScheduler(loop),
        )
        return self.subscription


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def closed(fake: testing.FakeAnthropic) -> None:
    """Every response the fake sent is closed."""
    await fake.wait_closed(1.0)
    assert fake.open_streams == 0


def norm(items: list[Any]) -> list[Any]:
    """Items compared by value: models by their JSON dump (response meta left out)."""
    return [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in items]


def joined(items: list[Any]) -> str:
    assert all(isinstance(item, str) for item in items)
    return "".join(items)


def text_of(message: arx.Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))


# --- every operator over odd sources ---------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_an_empty_stream_completes_with_nothing(name: str) -> None:
    items, error = await collect(reactivex.empty().pipe(pipeline(name)))
    assert (items, error) == ([], None)


@pytest.mark.parametrize("name", NAMES)
async def test_an_error_before_any_event_passes_through_as_the_same_object(name: str) -> None:
    boom = RuntimeError("no bytes at all")

    async def failing() -> AsyncIterator[bytes]:
        raise boom
        yield b""  # pragma: no cover

    items, error = await collect(arx.from_sse_bytes(failing()).pipe(pipeline(name)))
    assert items == []
    assert error is boom


@pytest.mark.parametrize("name", NAMES)
async def test_an_empty_body_is_incomplete_for_every_operator(name: str) -> None:
    items, error = await collect(arx.from_sse_bytes(b"").pipe(pipeline(name)))
    assert items == []
    assert isinstance(error, arx.IncompleteStreamError)


@pytest.mark.parametrize("name", NAMES)
async def test_an_error_event_first(name: str) -> None:
    items, error = await collect(arx.from_sse_bytes(OVERLOADED_FIRST).pipe(pipeline(name)))
    if name in RAISING:
        assert items == []
        assert isinstance(error, arx.OverloadedError)
        assert error.status_code == 200
        assert error.partial_message is None
    else:
        assert error is None
        assert [type(i) for i in items] == [arx.ErrorEvent]


@pytest.mark.parametrize("name", NAMES)
async def test_an_http_error_before_the_stream_passes_through(name: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_error(404)
    async with fake.client(max_retries=0) as client:
        items, error = await collect(client.stream(**PARAMS).pipe(pipeline(name)))
    assert items == []
    assert isinstance(error, arx.NotFoundError)
    await closed(fake)


UNKNOWN = (
    testing.Reply()
    .text("Hel")
    .event({"type": "brand_new_event", "payload": {"k": [1, 2]}})
    .text("lo")
    .event({"type": "ping"})
)


@pytest.mark.parametrize("name", NAMES)
async def test_an_unknown_event_type_is_kept_or_ignored(name: str) -> None:
    items, error = await collect(arx.from_sse_bytes(UNKNOWN.to_sse()).pipe(pipeline(name)))
    assert error is None
    if name in {"text_deltas", "coalesce", "smooth"}:
        assert joined(items) == "Hello"
    elif name in {"thinking_deltas", "tool_inputs"}:
        assert items == []
    elif name == "accumulate":
        assert items[-1] == UNKNOWN.message()
        assert not items[-1].cancelled
    else:
        unknown = [i for i in items if isinstance(i, arx.UnknownEvent)]
        assert len(unknown) == 1
        assert unknown[0].model_dump()["payload"] == {"k": [1, 2]}
        assert items == events_of(UNKNOWN.to_sse())


@pytest.mark.parametrize("name", NAMES)
async def test_tools_interleaved_with_text(name: str) -> None:
    items, error = await collect(arx.from_sse_bytes(MIXED.to_sse()).pipe(pipeline(name)))
    assert error is None
    if name in {"text_deltas", "coalesce", "smooth"}:
        assert joined(items) == MIXED_TEXT
    elif name == "thinking_deltas":
        assert joined(items) == MIXED_THINKING
    elif name == "accumulate":
        assert items[-1] == MIXED.message()
    elif name == "tool_inputs":
        finals = [(t.index, t.id, t.name, t.input) for t in items if t.complete]
        assert finals == [
            (2, "toolu_a", "get_weather", {"city": "Paris"}),
            (4, "toolu_b", "get_time", {"zone": "CET", "fmt": "24h"}),
        ]
        # Each call's values belong to its own block: none leaks into the other.
        assert {t.id for t in items if t.index == 2} == {"toolu_a"}
        assert {t.id for t in items if t.index == 4} == {"toolu_b"}
    else:
        assert items == events_of(MIXED.to_sse())


# --- a subscriber that fails, dispose twice, dispose from inside on_next ----------------------


def live_reply() -> testing.Reply:
    """A reply whose every kind of item comes early, then a long text."""
    return (
        testing.Reply()
        .thinking("Hmm ", "ok.")
        .tool_use("get_weather", {"city": "Paris"}, id="toolu_a", fragment_size=4)
        .text(*WORDS)
    )


@pytest.mark.parametrize("name", NAMES)
async def test_a_failing_on_next_gets_its_error_and_the_response_closes(name: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(live_reply(), tokens_per_second=200)
    boom = ValueError("the subscriber failed")
    recorder = Recorder()

    def on_next(item: Any) -> None:
        recorder.items.append(item)
        raise boom

    async with fake.client() as client:
        source = client.stream(**PARAMS).pipe(pipeline(name))
        recorder.subscribe(source, on_next)
        await asyncio.wait_for(recorder.done.wait(), 2.0)
        await turns()
        await closed(fake)
    assert len(recorder.items) == 1  # nothing after the failure
    assert recorder.errors == [boom]
    assert recorder.completions == 0
    assert fake.disconnects == 1


@pytest.mark.parametrize("name", NAMES)
async def test_dispose_from_inside_on_next_twice_stops_everything(name: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(live_reply(), tokens_per_second=200)
    recorder = Recorder()
    stopped = asyncio.Event()

    def on_next(item: Any) -> None:
        recorder.items.append(item)
        assert recorder.subscription is not None
        recorder.subscription.dispose()
        recorder.subscription.dispose()
        stopped.set()

    async with fake.client() as client:
        source = client.stream(**PARAMS).pipe(pipeline(name))
        recorder.subscribe(source, on_next)
        await asyncio.wait_for(stopped.wait(), 2.0)
        await asyncio.sleep(0.05)  # time for more deltas, were the stream still read
        await closed(fake)
    assert len(recorder.items) == 1
    assert (recorder.errors, recorder.completions) == ([], 0)
    assert fake.disconnects == 1


@pytest.mark.parametrize("name", NAMES)
async def test_dispose_twice_from_outside(name: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(live_reply(), tokens_per_second=200)
    recorder = Recorder()
    async with fake.client() as client:
        subscription = recorder.subscribe(client.stream(**PARAMS).pipe(pipeline(name)))
        for _ in range(200):
            if recorder.items:
                break
            await asyncio.sleep(0.005)
        subscription.dispose()
        subscription.dispose()
        seen = len(recorder.items)
        await asyncio.sleep(0.05)
        await closed(fake)
    assert seen >= 1
    assert len(recorder.items) == seen
    assert (recorder.errors, recorder.completions) == ([], 0)
    assert fake.disconnects == 1


@pytest.mark.parametrize("name", NAMES)
async def test_the_same_operator_instance_serves_two_subscriptions(name: str) -> None:
    operator = pipeline(name)
    source = arx.from_sse_bytes(MIXED.to_sse()).pipe(operator)
    first = await collect(source)
    second = await collect(source)
    assert first[1] is None
    assert first == second
    assert first[0]


# --- sharing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_share_one_subscriber_leaves_early_the_other_gets_everything(name: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(MIXED, tokens_per_second=500)
    early = Recorder()
    late = Recorder()
    async with fake.client() as client:
        shared = client.stream(**PARAMS).pipe(pipeline(name), rx_ops.share())

        def leave(item: Any) -> None:
            early.items.append(item)
            assert early.subscription is not None
            early.subscription.dispose()

        loop = asyncio.get_running_loop()
        early.subscription = shared.subscribe(
            leave, early.on_error, early.on_completed, scheduler=AsyncIOScheduler(loop)
        )
        late.subscribe(shared)
        await asyncio.wait_for(late.done.wait(), 2.0)
        await closed(fake)
    alone, error = await collect(arx.from_sse_bytes(MIXED.to_sse()).pipe(pipeline(name)))
    assert error is None
    assert len(early.items) == 1
    assert (late.errors, late.completions) == ([], 1)
    if name in {"coalesce", "smooth"}:  # cut by time: only the text is the same
        assert joined(late.items) == joined(alone)
    else:
        assert norm(late.items) == norm(alone)
    assert len(fake.requests) == 1


async def test_share_first_paced_subscriber_closes_while_behind() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), chunk_size=400)  # several events per chunk
    async with fake.client() as client:
        shared = client.stream(**PARAMS).pipe(rx_ops.share())
        first = arx.to_async_iterator(shared, max_buffer=1)
        second = arx.to_async_iterator(shared)

        async def drain() -> list[str]:
            return [event.type async for event in second]

        other = asyncio.create_task(drain())  # subscribes before the first event arrives
        assert (await anext(first)).type == "message_start"
        await first.aclose()  # behind: more of the first chunk's events were waiting
        try:
            types = await asyncio.wait_for(other, 1.0)
        finally:
            other.cancel()
    await closed(fake)
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"


async def test_share_both_subscribers_leave_closes_the_response() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    async with fake.client() as client:
        shared = client.stream(**PARAMS).pipe(ops.text_deltas(), rx_ops.share())
        one, two = Recorder(), Recorder()
        first = one.subscribe(shared)
        second = two.subscribe(shared)
        for _ in range(200):
            if len(two.items) >= 2:
                break
            await asyncio.sleep(0.005)
        first.dispose()
        await asyncio.sleep(0.02)
        assert fake.open_streams == 1  # one subscriber left: still streaming
        second.dispose()
        await closed(fake)
    assert fake.disconnects == 1
    assert one.items == two.items[: len(one.items)]


# --- take_until_cancel: each kind of signal --------------------------------------------------


SignalFactory = Callable[[], tuple[object, Callable[[], Any]]]


def _token() -> tuple[object, Callable[[], Any]]:
    token = arx.CancelToken()
    return token, token.cancel


def _event() -> tuple[object, Callable[[], Any]]:
    event = asyncio.Event()
    return event, event.set


def _subject() -> tuple[object, Callable[[], Any]]:
    subject: Subject[int] = Subject()
    return subject, lambda: subject.on_next(1)


def _flag() -> tuple[object, Callable[[], Any]]:
    flags = cancel.MemoryCancelFlags()
    return flags.watch("stop-stream-1"), lambda: flags.request_stop("stop-stream-1")


SIGNALS: dict[str, SignalFactory] = {
    "token": _token,
    "event": _event,
    "observable": _subject,
    "flag": _flag,
}


async def fire(trigger: Callable[[], Any]) -> None:
    result = trigger()
    if asyncio.iscoroutine(result):
        await result


def _fired_token() -> object:
    token = arx.CancelToken()
    token.cancel("early")
    return token


def _fired_event() -> object:
    event = asyncio.Event()
    event.set()
    return event


def _fired_behavior() -> object:
    return BehaviorSubject(0)


def _fired_empty() -> object:
    return reactivex.empty()


FIRED: dict[str, Callable[[], object]] = {
    "token": _fired_token,
    "event": _fired_event,
    "behavior-subject": _fired_behavior,
    "empty-observable": _fired_empty,
}


@pytest.mark.parametrize("kind", list(FIRED))
async def test_a_signal_fired_before_subscribe_sends_no_request(kind: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("never", " sent"))
    async with fake.client() as client:
        signal: Any = FIRED[kind]()
        items, error = await collect(
            client.stream(**PARAMS).pipe(ops.take_until_cancel(signal), ops.accumulate())
        )
        await turns()
    assert (items, error) == ([], None)
    assert fake.requests == []
    await closed(fake)


@pytest.mark.parametrize("when", ["before-watch", "between-watch-and-subscribe"])
async def test_a_flag_stopped_before_subscribe_sends_no_request(when: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("never", " sent"))
    flags = cancel.MemoryCancelFlags()
    if when == "before-watch":
        await flags.request_stop("s")
    token = flags.watch("s")
    if when != "before-watch":
        await flags.request_stop("s")
    async with fake.client() as client:
        items, error = await collect(client.stream(**PARAMS).pipe(ops.take_until_cancel(token)))
    assert (items, error) == ([], None)
    assert fake.requests == []


@pytest.mark.parametrize("kind", list(SIGNALS))
async def test_a_signal_fired_mid_stream_closes_the_response(kind: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=400)
    signal, trigger = SIGNALS[kind]()
    before: list[str] = []
    after: list[str] = []
    async with fake.client() as client:
        text = client.stream(**PARAMS).pipe(
            ops.take_until_cancel(signal),  # type: ignore[arg-type]
            ops.text_deltas(),
        )
        async for chunk in arx.to_async_iterator(text):
            (after if len(before) >= 3 else before).append(chunk)
            if len(before) == 3 and not after:
                await fire(trigger)
        await closed(fake)
    assert before == WORDS[:3]
    assert len(after) <= (1 if kind == "event" else 0)
    assert fake.disconnects == 1


@pytest.mark.parametrize("kind", list(SIGNALS))
async def test_a_signal_fired_during_the_last_event_completes_once(kind: str) -> None:
    signal, trigger = SIGNALS[kind]()
    data = testing.text_reply("a", "b").to_sse()
    recorder = Recorder()
    pending: list[asyncio.Future[Any]] = []

    def on_next(event: arx.MessageStreamEvent) -> None:
        recorder.items.append(event)
        if isinstance(event, arx.MessageStopEvent):
            result = trigger()
            if asyncio.iscoroutine(result):
                pending.append(asyncio.ensure_future(result))

    source = arx.from_sse_bytes(data).pipe(ops.take_until_cancel(signal))  # type: ignore[arg-type]
    recorder.subscribe(source, on_next)
    await asyncio.wait_for(recorder.done.wait(), 1.0)
    await turns()
    assert recorder.items == events_of(data)
    assert (recorder.errors, recorder.completions) == ([], 1)


@pytest.mark.parametrize("kind", list(SIGNALS))
async def test_one_signal_two_subscriptions_then_fired(kind: str) -> None:
    signal, trigger = SIGNALS[kind]()
    operator = ops.take_until_cancel(signal)  # type: ignore[arg-type]
    data = testing.text_reply("a", "b").to_sse()
    source = arx.from_sse_bytes(data).pipe(operator)
    assert await collect(source) == (events_of(data), None)
    assert await collect(source) == (events_of(data), None)
    hung = Subject[arx.MessageStreamEvent]()
    recorder = Recorder()
    recorder.subscribe(hung.pipe(operator))
    hung.on_next(events_of(data)[0])
    await fire(trigger)
    await turns()
    hung.on_next(events_of(data)[1])
    assert len(recorder.items) == 1
    assert (recorder.errors, recorder.completions) == ([], 1)


def test_a_pending_flag_is_consumed_by_one_subscription_only() -> None:
    flags = cancel.MemoryCancelFlags()

    async def main() -> tuple[list[Any], list[Any]]:
        await flags.request_stop("s")
        data = testing.text_reply("a").to_sse()
        first = await collect(
            arx.from_sse_bytes(data).pipe(ops.take_until_cancel(flags.watch("s")))
        )
        second = await collect(
            arx.from_sse_bytes(data).pipe(ops.take_until_cancel(flags.watch("s")))
        )
        return first[0], second[0]

    first, second = asyncio.run(main())
    assert first == []
    assert [type(e) for e in second][-1] is arx.MessageStopEvent


# --- accumulate: snapshots are values --------------------------------------------------------


async def test_snapshots_are_independent_values() -> None:
    dumps: list[dict[str, Any]] = []
    snapshots: list[arx.Message] = []

    def keep(message: arx.Message) -> None:
        snapshots.append(message)
        dumps.append(message.model_dump(mode="json"))

    events = arx.from_sse_bytes(MIXED.to_sse())
    shared = events.pipe(ops.accumulate(), rx_ops.publish())
    other: list[arx.Message] = []
    shared.subscribe(other.append)
    shared.subscribe(keep)
    shared.connect()
    assert snapshots == other and snapshots
    assert [s.model_dump(mode="json") for s in snapshots] == dumps  # earlier ones unchanged
    assert len({id(s) for s in snapshots}) == len(snapshots)
    with pytest.raises((TypeError, ValueError)):
        snapshots[0].cancelled = True  # type: ignore[misc]
    assert snapshots[-1] == MIXED.message()


@pytest.mark.parametrize("stop_after", [2, 4, 9], ids=["after-block-start", "mid-text", "mid-tool"])
async def test_the_cancelled_snapshot(stop_after: int) -> None:
    token = arx.CancelToken()
    data = MIXED.to_sse()
    seen: list[arx.Message] = []
    dumps: list[dict[str, Any]] = []

    def on_next(message: arx.Message) -> None:
        seen.append(message)
        dumps.append(message.model_dump(mode="json"))
        if len(seen) == stop_after:
            token.cancel("stop")

    done = asyncio.Event()
    arx.from_sse_bytes(data).pipe(ops.take_until_cancel(token), ops.accumulate()).subscribe(
        on_next, lambda e: done.set(), done.set
    )
    await asyncio.wait_for(done.wait(), 1.0)
    last = seen[-1]
    assert last.cancelled
    assert not any(s.cancelled for s in seen[:-1])
    assert [s.model_dump(mode="json") for s in seen] == dumps
    # The cancelled snapshot is the one before it, marked: same content.
    assert last.content == seen[-2].content
    assert last.usage is not None and last.usage.estimated
    chars = sum(len(text) for text in _texts(last))
    assert last.usage.output_tokens >= math.ceil(chars / 4)
    assert seen[-2].usage is not None and not seen[-2].usage.estimated


def _texts(message: arx.Message) -> Iterator[str]:
    for block in message.content:
        if isinstance(block, arx.TextBlock):
            yield block.text
        elif isinstance(block, arx.ThinkingBlock):
            yield block.thinking
        elif isinstance(block, arx.ToolUseBlock):
            yield block.input_json or ""


async def test_cancelled_after_message_delta_keeps_reported_usage() -> None:
    data = testing.text_reply("a", "b").to_sse()
    cut = [e for e in events_of(data) if not isinstance(e, arx.MessageStopEvent)]
    snapshots = [
        s async for s in arx.to_async_iterator(reactivex.from_iterable(cut).pipe(ops.accumulate()))
    ]
    last = snapshots[-1]
    assert last.cancelled
    assert last.usage is not None
    assert not last.usage.estimated
    assert last.usage.output_tokens == 2


# --- coalesce and smooth: lossless -----------------------------------------------------------


def hot_parts(scheduler: TestScheduler, parts: list[str], gaps: list[int]) -> Any:
    """A hot observable of ``parts``, each ``gap`` ticks after the one before, then completion."""
    time = 300
    messages = []
    for part, gap in zip(parts, gaps, strict=False):
        time += gap
        messages.append(ReactiveTest.on_next(time, part))
    messages.append(ReactiveTest.on_completed(time + 1))
    return scheduler.create_hot_observable(*messages)


def lossless_chunks(messages: list[Any], parts: list[str]) -> list[str]:
    """The chunks emitted, checked: together the parts, none empty, then completion."""
    chunks = [r.value.value for r in messages if isinstance(r.value, OnNext)]
    assert "".join(chunks) == "".join(parts)
    assert all(chunks)
    assert isinstance(messages[-1].value, OnCompleted)
    return chunks


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.text(max_size=6), max_size=25),
    gaps=st.lists(st.integers(0, 30), min_size=25, max_size=25),
    max_chars=st.one_of(st.none(), st.integers(1, 12)),
    max_delay=st.one_of(st.none(), st.integers(0, 20)),
)
def test_coalesce_is_lossless(
    parts: list[str], gaps: list[int], max_chars: int | None, max_delay: int | None
) -> None:
    if max_chars is None and max_delay is None:
        max_chars = 3
    scheduler = TestScheduler()
    source = hot_parts(scheduler, parts, gaps)
    results = scheduler.start(
        lambda: source.pipe(
            ops.coalesce(
                max_delay=None if max_delay is None else max_delay / 10,
                max_chars=max_chars,
                scheduler=scheduler,
            )
        ),
        disposed=10_000,
    )
    chunks = lossless_chunks(results.messages, parts)
    assert len(chunks) <= len([p for p in parts if p])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    parts=st.lists(st.text(alphabet="ab \n\t.é", max_size=8), max_size=25),
    gaps=st.lists(st.integers(0, 30), min_size=25, max_size=25),
    unit=st.sampled_from(["word", "line"]),
    interval=st.integers(0, 20),
    max_backlog=st.one_of(st.none(), st.integers(1, 10)),
)
def test_smooth_is_lossless(
    parts: list[str], gaps: list[int], unit: str, interval: int, max_backlog: int | None
) -> None:
    scheduler = TestScheduler()
    source = hot_parts(scheduler, parts, gaps)
    results = scheduler.start(
        lambda: source.pipe(
            ops.smooth(
                unit,  # type: ignore[arg-type]
                interval=interval / 10,
                scheduler=scheduler,
                max_backlog=max_backlog,
            )
        ),
        disposed=100_000,
    )
    lossless_chunks(results.messages, parts)


async def test_smooth_keeps_the_text_of_a_mixed_reply_and_the_events_order() -> None:
    publish: Callable[[Events], ConnectableObservable[arx.MessageStreamEvent]] = rx_ops.publish()
    events = publish(arx.from_sse_bytes(MIXED.to_sse(ping_every=2)))
    kinds: list[str] = []
    words: list[str] = []
    done = asyncio.Event()
    loop = AsyncIOScheduler(asyncio.get_running_loop())
    events.subscribe(lambda event: kinds.append(event.type), scheduler=loop)
    events.pipe(ops.text_deltas(), ops.smooth("word", interval=0.001)).subscribe(
        words.append, lambda e: done.set(), done.set, scheduler=loop
    )
    events.connect(scheduler=loop)
    await asyncio.wait_for(done.wait(), 1.0)
    assert "".join(words) == MIXED_TEXT
    assert kinds == [e.type for e in events_of(MIXED.to_sse(ping_every=2))]


# --- to_async_iterator -----------------------------------------------------------------------


REPLY = testing.text_reply("a", "b", "c")
REPLY_EVENTS = events_of(REPLY.to_sse())
POSITIONS = range(len(REPLY_EVENTS))


async def test_max_buffer_one_gives_every_event_over_the_client() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(MIXED, chunk_size=97)
    async with fake.client() as client:
        items = [e async for e in arx.to_async_iterator(client.stream(**PARAMS), max_buffer=1)]
    await closed(fake)
    assert [e.model_dump() for e in items] == [e.model_dump() for e in events_of(MIXED.to_sse())]


@pytest.mark.parametrize("position", POSITIONS, ids=[f"break-at-{i}" for i in POSITIONS])
async def test_break_at_every_position_closes_the_response(position: int) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(REPLY)
    seen: list[str] = []
    async with fake.client() as client:
        async for event in arx.to_async_iterator(client.stream(**PARAMS), max_buffer=1):
            seen.append(event.type)
            if len(seen) == position + 1:
                break
        await closed(fake)
    assert seen == [e.type for e in REPLY_EVENTS[: position + 1]]
    assert len(fake.requests) == 1


async def test_aclose_twice_then_next_stops() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=200)
    async with fake.client() as client:
        iterator = arx.to_async_iterator(client.stream(**PARAMS))
        assert (await anext(iterator)).type == "message_start"
        await iterator.aclose()
        await iterator.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)
        await closed(fake)
    assert fake.disconnects == 1


async def test_aclose_before_the_first_next_sends_nothing() -> None:
    fake = testing.FakeAnthropic()
    async with fake.client() as client:
        iterator = arx.to_async_iterator(client.stream(**PARAMS))
        await iterator.aclose()
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)
    assert fake.requests == []


@pytest.mark.parametrize("where", ["in-body", "in-anext"])
@pytest.mark.parametrize("position", POSITIONS[:-1], ids=[f"cancel-at-{i}" for i in POSITIONS[:-1]])
async def test_cancelling_the_consumer_at_every_position(position: int, where: str) -> None:
    fake = testing.FakeAnthropic()
    stall = len(testing.sse_bytes(REPLY.events()[: position + 1]))
    fake.add_stream(REPLY, stall_after=stall)
    reached = asyncio.Event()
    seen: list[str] = []
    async with fake.client() as client:

        async def consume() -> None:
            async for event in arx.to_async_iterator(client.stream(**PARAMS), max_buffer=1):
                seen.append(event.type)
                if len(seen) == position + 1:
                    reached.set()
                    if where == "in-body":
                        await asyncio.sleep(10)

        task = asyncio.create_task(consume())
        await asyncio.wait_for(reached.wait(), 1.0)
        await turns()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await closed(fake)
    assert seen == [e.type for e in REPLY_EVENTS[: position + 1]]
    assert fake.disconnects == 1


# --- to_iterator -----------------------------------------------------------------------------


class ClosingBody:
    """An async body that records how far it was read and whether it was closed."""

    def __init__(self, data: bytes) -> None:
        self.frames = [f + b"\n\n" for f in data.split(b"\n\n") if f]
        self.sent = 0
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            for frame in self.frames:
                await asyncio.sleep(0)
                self.sent += 1
                yield frame
        finally:
            self.closed = True


async def test_to_iterator_in_a_thread_while_this_thread_runs_a_loop() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(MIXED, chunk_size=50)

    def worker() -> tuple[str, str]:
        client = fake.client()
        with arx.to_iterator(client.stream(**PARAMS).pipe(ops.text_deltas())) as texts:
            live = "".join(texts)
        replayed = "".join(
            arx.to_iterator(arx.from_sse_bytes(MIXED.to_sse()).pipe(ops.text_deltas()))
        )
        return live, replayed

    assert await asyncio.to_thread(worker) == (MIXED_TEXT, MIXED_TEXT)
    assert fake.open_streams == 0


@pytest.mark.parametrize("how", ["close", "close-twice", "with-exit", "del-and-gc"])
def test_to_iterator_left_early_closes_the_body(how: str) -> None:
    body = ClosingBody(testing.text_reply(*WORDS).to_sse())
    iterator = arx.to_iterator(arx.from_sse_bytes(body.chunks()), max_buffer=2)
    assert next(iterator).type == "message_start"
    if how.startswith("close"):
        iterator.close()
        if how == "close-twice":
            iterator.close()
        with pytest.raises(StopIteration):
            next(iterator)
    elif how == "with-exit":
        with iterator:
            next(iterator)
    else:
        del iterator
        gc.collect()
    assert body.closed
    assert body.sent < len(body.frames)


def test_to_iterator_closed_early_over_the_client_closes_the_response() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=500)
    client = fake.client()
    iterator = arx.to_iterator(client.stream(**PARAMS).pipe(ops.text_deltas()))
    assert next(iterator) == WORDS[0]
    iterator.close()
    assert fake.open_streams == 0
    assert fake.disconnects == 1


def run_python(script: str, timeout: float) -> tuple[int | None, str, str]:
    """Run ``script`` in a fresh interpreter; ``None`` as the code when it timed out."""
    prelude = textwrap.dedent(
        """
        import gc, sys
        problems = []
        sys.unraisablehook = lambda u: problems.append(repr(u.exc_value))
        """
    )
    epilogue = "\ngc.collect()\nif problems:\n    sys.exit('\\n'.join(problems))\n"
    try:
        result = subprocess.run(
            [sys.executable, "-c", prelude + textwrap.dedent(script) + epilogue],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "", "timed out"
    return result.returncode, result.stdout, result.stderr


GC_IN_A_LOOP_THREAD = """
    import asyncio
    import anthropic_rx as arx
    from anthropic_rx import testing

    frames = [f + b"\\n\\n" for f in testing.text_reply(*"abcdefgh").to_sse().split(b"\\n\\n") if f]
    state = {"closed": False}

    async def body():
        try:
            for frame in frames:
                await asyncio.sleep(0)
                yield frame
        finally:
            state["closed"] = True

    def start():
        iterator = arx.to_iterator(arx.from_sse_bytes(body()), max_buffer=2)
        next(iterator)
        return iterator

    async def main():
        iterator = await asyncio.to_thread(start)
        del iterator  # collected on the thread that runs this event loop
        await asyncio.sleep(0.05)
        print("closed" if state["closed"] else "left open")  # checked while still running

    asyncio.run(main())
"""


def test_to_iterator_collected_on_a_thread_running_a_loop_closes_the_body() -> None:
    code, out, err = run_python(GC_IN_A_LOOP_THREAD, timeout=10)
    assert out == "closed\n"
    assert (code, err) == (0, "")


CLIENT_ACROSS_ITERATORS = """
    import asyncio, threading
    import anthropic_rx as arx
    from anthropic_rx import operators as ops, testing

    PARAMS = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}

    def worker(url, out):
        client = arx.Client(base_url=url, max_retries=0, idle_timeout=0.5, timeout=1.0)
        for _ in range(3):
            try:
                out.append("".join(arx.to_iterator(client.stream(**PARAMS).pipe(ops.text_deltas()))))
            except Exception as exc:
                out.append(type(exc).__name__)

    async def main():
        fake = testing.FakeAnthropic()
        for i in range(3):
            fake.add_stream(testing.text_reply(f"r{i}"))
        async with fake.serve() as url:
            out = []
            thread = threading.Thread(target=worker, args=(url, out), daemon=True)
            thread.start()
            await asyncio.to_thread(thread.join, 1.2)
            print(out if not thread.is_alive() else "hung")

    asyncio.run(main())
"""


def test_one_client_across_to_iterator_calls_never_hangs() -> None:
    code, out, _ = run_python(CLIENT_ACROSS_ITERATORS, timeout=8)
    assert code == 0
    assert out.strip() != "hung"


# --- final_message ---------------------------------------------------------------------------


PIPED: dict[str, Callable[[], Pipeline]] = {
    "raise_on_error": ops.raise_on_error,
    "of_type": lambda: ops.of_type(object),
    "take_until_cancel": lambda: ops.take_until_cancel(arx.CancelToken()),
    "idle_timeout": lambda: ops.idle_timeout(5.0),
    "share": rx_ops.share,
}


@pytest.mark.parametrize("name", list(PIPED))
async def test_final_message_of_a_piped_stream(name: str) -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(MIXED, chunk_size=64)
    async with fake.client() as client:
        message = await arx.final_message(client.stream(**PARAMS).pipe(PIPED[name]()))
        await closed(fake)
    assert message == MIXED.message()
    replayed = await arx.final_message(arx.from_sse_bytes(MIXED.to_sse()).pipe(PIPED[name]()))
    assert replayed == message


@pytest.mark.parametrize("source", ["empty", "stopped-before-subscribe", "never-started"])
async def test_final_message_of_a_stream_without_events_is_incomplete(source: str) -> None:
    if source == "empty":
        events: Events = reactivex.empty()
    elif source == "stopped-before-subscribe":
        token = arx.CancelToken()
        token.cancel()
        events = arx.from_sse_bytes(REPLY.to_sse()).pipe(ops.take_until_cancel(token))
    else:
        events = reactivex.from_iterable([arx.PingEvent()])
    with pytest.raises(arx.IncompleteStreamError) as caught:
        await asyncio.wait_for(arx.final_message(events), 1.0)
    assert caught.value.partial_message is None


async def test_final_message_of_a_piped_error_event_first() -> None:
    events = cast(Events, arx.from_sse_bytes(OVERLOADED_FIRST).pipe(ops.of_type(object)))
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(events)
    assert caught.value.partial_message is None


# --- to_stream (aiostream) -------------------------------------------------------------------


@pytest.mark.parametrize("take", [1, 3])
async def test_to_stream_left_early_closes_the_response(take: int) -> None:
    from aiostream import pipe

    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=300)
    async with fake.client() as client:
        stream = arx.to_stream(client.stream(**PARAMS).pipe(ops.text_deltas())) | pipe.take(take)
        async with stream.stream() as chunks:
            got = [chunk async for chunk in chunks]
        await closed(fake)
    assert got == WORDS[:take]
    assert fake.disconnects == 1


async def test_to_stream_break_inside_the_block_closes_the_response() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=300)
    async with fake.client() as client:
        stream = arx.to_stream(client.stream(**PARAMS).pipe(ops.text_deltas()))
        async with stream.stream() as chunks:
            async for chunk in chunks:
                assert chunk == WORDS[0]
                break
        await closed(fake)
    assert fake.disconnects == 1


# --- cancelling from synchronous code --------------------------------------------------------


def test_a_token_cancelled_in_on_next_stops_a_synchronous_source_reading() -> None:
    frames = [f + b"\n\n" for f in testing.text_reply(*WORDS).to_sse().split(b"\n\n") if f]
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        for number, frame in enumerate(frames):
            read.append(number)
            yield frame

    token = arx.CancelToken()
    texts: list[str] = []
    completions: list[bool] = []

    def on_next(text: str) -> None:
        texts.append(text)
        if len(texts) == 2:
            token.cancel()

    arx.from_sse_bytes(chunks()).pipe(ops.take_until_cancel(token), ops.text_deltas()).subscribe(
        on_next, lambda e: None, lambda: completions.append(True)
    )
    assert texts == WORDS[:2]
    assert completions == [True]
    assert len(read) <= 2 + 2 + 1  # message_start, block start, two deltas: at most one more


def test_a_token_cancelled_from_another_thread_stops_to_iterator() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=400)
    client = fake.client()
    token = arx.CancelToken()
    with arx.to_iterator(
        client.stream(**PARAMS).pipe(ops.take_until_cancel(token), ops.text_deltas())
    ) as texts:
        assert next(texts) == WORDS[0]
        canceller = threading.Thread(target=token.cancel)
        canceller.start()
        canceller.join()
        rest = list(texts)
    assert len(rest) <= 1
    assert fake.open_streams == 0
    assert fake.disconnects == 1
