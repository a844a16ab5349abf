"""ops.take_until_cancel(signal): complete cleanly on a stop; upstream disposed at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import reactivex
from reactivex import abc
from reactivex import operators as rx_ops
from reactivex.disposable import Disposable
from reactivex.subject import BehaviorSubject, Subject
from reactivex.testing import ReactiveTest, TestScheduler
from reactivex.testing.subscription import Subscription

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx.cancel import MemoryCancelFlags

from ._streams import Body, Recorder, collect, events_of, settle, sse, text_reply

on_next, on_completed, on_error = (
    ReactiveTest.on_next,
    ReactiveTest.on_completed,
    ReactiveTest.on_error,
)


def _never_subscribed() -> tuple[reactivex.Observable[int], list[int]]:
    subscriptions: list[int] = []

    def subscribe(
        observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        subscriptions.append(1)
        return Disposable()

    return reactivex.create(subscribe), subscriptions


# --- marbles (virtual time) ------------------------------------------------------------------


def test_signal_completes_and_disposes_the_upstream_at_that_instant() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(
        on_next(210, "a"), on_next(220, "b"), on_next(240, "c"), on_completed(250)
    )
    signal = scheduler.create_hot_observable(on_next(230, "stop"))
    results = scheduler.start(lambda: xs.pipe(ops.take_until_cancel(signal)))
    assert results.messages == [on_next(210, "a"), on_next(220, "b"), on_completed(230)]
    assert xs.subscriptions == [Subscription(200, 230)]
    assert signal.subscriptions == [Subscription(200, 230)]


def test_signal_completion_fires_too() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(240, "b"))
    signal = scheduler.create_hot_observable(on_completed(225))
    results = scheduler.start(lambda: xs.pipe(ops.take_until_cancel(signal)))
    assert results.messages == [on_next(210, "a"), on_completed(225)]


def test_signal_error_is_passed_on() -> None:
    scheduler = TestScheduler()
    boom = RuntimeError("signal broke")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_next(240, "b"))
    signal = scheduler.create_hot_observable(on_error(220, boom))
    results = scheduler.start(lambda: xs.pipe(ops.take_until_cancel(signal)))
    assert results.messages == [on_next(210, "a"), on_error(220, boom)]
    assert xs.subscriptions == [Subscription(200, 220)]


def test_upstream_end_stops_watching_the_signal() -> None:
    scheduler = TestScheduler()
    boom = ValueError("upstream")
    xs = scheduler.create_hot_observable(on_next(210, "a"), on_error(220, boom))
    signal = scheduler.create_hot_observable(on_next(300, "stop"))
    results = scheduler.start(lambda: xs.pipe(ops.take_until_cancel(signal)))
    assert results.messages == [on_next(210, "a"), on_error(220, boom)]
    assert signal.subscriptions == [Subscription(200, 220)]
    fresh = TestScheduler()
    ys = fresh.create_hot_observable(on_completed(400))
    later = fresh.create_hot_observable(on_next(900, "stop"))
    done = fresh.start(lambda: ys.pipe(ops.take_until_cancel(later)))
    assert done.messages == [on_completed(400)]
    assert later.subscriptions == [Subscription(200, 400)]


def test_dispose_stops_both() -> None:
    scheduler = TestScheduler()
    xs = scheduler.create_hot_observable(on_next(210, "a"))
    signal = scheduler.create_hot_observable(on_next(900, "stop"))
    scheduler.start(lambda: xs.pipe(ops.take_until_cancel(signal)), disposed=500)
    assert xs.subscriptions == [Subscription(200, 500)]
    assert signal.subscriptions == [Subscription(200, 500)]


# --- fired before subscribe ------------------------------------------------------------------


def test_already_cancelled_token_completes_without_subscribing_upstream() -> None:
    source, subscriptions = _never_subscribed()
    token = arx.CancelToken()
    token.cancel("early")
    seen = collect(source.pipe(ops.take_until_cancel(token)))
    assert seen.completed
    assert subscriptions == []


def test_observable_that_fires_at_subscribe_completes_without_subscribing_upstream() -> None:
    source, subscriptions = _never_subscribed()
    stopped = BehaviorSubject("stop")  # holds a value: emits while being subscribed
    seen = collect(source.pipe(ops.take_until_cancel(stopped)))
    assert seen.completed
    assert subscriptions == []
    done: Subject[None] = Subject()
    done.on_completed()
    assert collect(source.pipe(ops.take_until_cancel(done))).completed
    assert subscriptions == []


def test_observable_on_the_trampoline_fires_before_any_item() -> None:
    seen = collect(events_of(text_reply("a")).pipe(ops.take_until_cancel(reactivex.of("now"))))
    assert seen.completed
    assert seen.items == []


async def test_set_event_completes_without_subscribing_upstream() -> None:
    source, subscriptions = _never_subscribed()
    event = asyncio.Event()
    event.set()
    seen = collect(source.pipe(ops.take_until_cancel(event)))
    assert seen.completed
    assert subscriptions == []


async def test_pending_flag_completes_without_subscribing_upstream() -> None:
    source, subscriptions = _never_subscribed()
    flags = MemoryCancelFlags()
    await flags.request_stop("stop-stream-1")
    seen = collect(source.pipe(ops.take_until_cancel(flags.watch("stop-stream-1"))))
    assert seen.completed
    assert subscriptions == []


async def test_flag_set_between_watch_and_subscribe_completes_at_subscribe() -> None:
    source, subscriptions = _never_subscribed()
    flags = MemoryCancelFlags()
    token = flags.watch("stop-stream-2")
    await flags.request_stop("stop-stream-2")  # nobody listens yet: kept for the token
    seen = collect(source.pipe(ops.take_until_cancel(token)))
    assert seen.completed
    assert subscriptions == []


# --- live streams ------------------------------------------------------------------------------


async def test_token_cancel_between_events_completes_and_closes_the_body() -> None:
    body = Body(sse(text_reply("a", "b", "c")), stall_after=4)
    token = arx.CancelToken()
    seen: Recorder[str] = Recorder()
    seen.subscribe(
        body.events().pipe(ops.take_until_cancel(token), ops.text_deltas()),
        reactivex.scheduler.eventloop.AsyncIOScheduler(asyncio.get_running_loop()),
    )
    assert await settle(lambda: seen.items == ["a", "b"])
    assert not body.closed  # stalled, waiting for the next chunk
    token.cancel("user pressed stop")
    assert await settle(lambda: seen.completed)
    assert seen.error is None
    assert await settle(lambda: body.closed)
    assert body.sent == 4


async def test_token_cancelled_by_the_consumer_stops_within_one_item() -> None:
    # In memory the source emits its whole body in one go, while the token's callback waits
    # for its turn on the loop: the next item must not pass even so.
    token = arx.CancelToken()
    seen: list[str] = []
    completed: list[bool] = []

    def on_text(text: str) -> None:
        seen.append(text)
        token.cancel("the consumer has seen enough")

    events = arx.from_sse_bytes(sse(text_reply("One, ", "two, ", "three.")))
    events.pipe(ops.take_until_cancel(token), ops.text_deltas()).subscribe(
        on_text, on_completed=lambda: completed.append(True)
    )
    await asyncio.sleep(0)
    assert seen == ["One, "]
    assert completed == [True]


async def test_asyncio_event_set_by_the_consumer_stops_within_one_item() -> None:
    stop = asyncio.Event()
    seen: list[str] = []
    events = arx.from_sse_bytes(sse(text_reply("One, ", "two, ", "three.")))

    def on_text(text: str) -> None:
        seen.append(text)
        stop.set()

    events.pipe(ops.take_until_cancel(stop), ops.text_deltas()).subscribe(on_text)
    await asyncio.sleep(0)
    assert seen == ["One, "]


async def test_cancel_from_another_thread_reaches_the_loop() -> None:
    body = Body(sse(text_reply("a", "b")), stall_after=3)
    token = arx.CancelToken()
    loop_thread = threading.get_ident()
    completed_on: list[int] = []
    body.events().pipe(ops.take_until_cancel(token)).subscribe(
        on_completed=lambda: completed_on.append(threading.get_ident())
    )
    assert await settle(lambda: body.sent == 3)
    worker = threading.Thread(target=token.cancel)
    worker.start()
    await asyncio.to_thread(worker.join)
    assert await settle(lambda: completed_on == [loop_thread])
    assert await settle(lambda: body.closed)


async def test_asyncio_event_set_mid_stream() -> None:
    body = Body(sse(text_reply("a", "b")), stall_after=3)
    stop = asyncio.Event()
    seen: Recorder[arx.MessageStreamEvent] = Recorder()
    seen.subscribe(body.events().pipe(ops.take_until_cancel(stop)))
    assert await settle(lambda: len(seen.items) == 3)
    stop.set()
    assert await settle(lambda: seen.completed)
    assert await settle(lambda: body.closed)


async def test_asyncio_event_watcher_task_is_cancelled_on_dispose() -> None:
    before = asyncio.all_tasks()
    stop = asyncio.Event()
    subscription = reactivex.never().pipe(ops.take_until_cancel(stop)).subscribe()
    await asyncio.sleep(0)
    watchers = asyncio.all_tasks() - before
    assert len(watchers) == 1
    subscription.dispose()
    assert await settle(lambda: all(task.done() for task in watchers))
    assert all(task.cancelled() for task in watchers)


async def test_asyncio_event_of_another_loop_is_an_error() -> None:
    stop = asyncio.Event()

    async def bind() -> None:
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.sleep(0)
        waiter.cancel()

    await asyncio.to_thread(asyncio.run, bind())
    seen: Recorder[Any] = Recorder()
    seen.subscribe(reactivex.never().pipe(ops.take_until_cancel(stop)))
    assert await settle(lambda: seen.done)
    assert isinstance(seen.error, RuntimeError)


def test_asyncio_event_outside_a_loop_is_an_error_at_subscribe() -> None:
    seen = collect(reactivex.never().pipe(ops.take_until_cancel(asyncio.Event())))
    assert isinstance(seen.error, RuntimeError)
    assert "event loop" in str(seen.error)


def test_subject_signal() -> None:
    stop: Subject[None] = Subject()
    source: Subject[int] = Subject()
    seen = collect(source.pipe(ops.take_until_cancel(stop)))
    source.on_next(1)
    stop.on_next(None)
    source.on_next(2)
    assert seen.items == [1]
    assert seen.completed


async def test_flag_stop_requested_mid_stream() -> None:
    flags = MemoryCancelFlags()
    body = Body(sse(text_reply("a", "b")), stall_after=3)
    seen: Recorder[str] = Recorder()
    seen.subscribe(
        body.events().pipe(ops.take_until_cancel(flags.watch("stop-stream-7")), ops.text_deltas())
    )
    assert await settle(lambda: seen.items == ["a"])
    await flags.request_stop("stop-stream-7")
    assert await settle(lambda: seen.completed)
    assert await settle(lambda: body.closed)
    # consumed: a new stream of the same conversation is not stopped
    again = collect(
        events_of(text_reply("c")).pipe(
            ops.take_until_cancel(flags.watch("stop-stream-7")), ops.text_deltas()
        )
    )
    assert again.items == ["c"]


async def test_recipe_stop_button() -> None:
    body = Body(sse(text_reply("Hello", " there", " friend")), stall_after=4)
    token = arx.CancelToken()
    text = body.events().pipe(ops.raise_on_error(), ops.take_until_cancel(token), ops.text_deltas())
    received: list[str] = []
    async for chunk in arx.to_async_iterator(text):
        received.append(chunk)
        if len(received) == 2:
            token.cancel()
    assert received == ["Hello", " there"]
    assert await settle(lambda: body.closed)
    assert body.sent == 4


def test_plain_upstream_completion_and_items_pass() -> None:
    seen = collect(events_of(text_reply("a")).pipe(ops.take_until_cancel(arx.CancelToken())))
    assert seen.completed
    assert [e.type for e in seen.items][-1] == "message_stop"


def test_works_on_any_stream_with_share() -> None:
    token = arx.CancelToken()
    source: Subject[int] = Subject()
    shared = source.pipe(ops.take_until_cancel(token), rx_ops.share())
    one, two = collect(shared), collect(shared)
    source.on_next(1)
    token.cancel()
    source.on_next(2)
    assert one.items == two.items == [1]
    assert one.completed
    assert two.completed


@pytest.mark.parametrize("bad", [None, "stop", 1, threading.Event()])
def test_call_time_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="take_until_cancel"):
        ops.take_until_cancel(bad)  # type: ignore[arg-type]
