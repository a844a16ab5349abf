"""Where timed operators run their timers."""

from __future__ import annotations

import asyncio

from reactivex.scheduler import CurrentThreadScheduler, ImmediateScheduler, TimeoutScheduler
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.testing import TestScheduler

from anthropic_rx import operators as ops
from anthropic_rx.operators._schedulers import timer_scheduler

from ._streams import Body, Recorder, settle, sse, text_reply


def test_the_operators_own_scheduler_wins() -> None:
    own, subscribed = TestScheduler(), TestScheduler()
    assert timer_scheduler(own, subscribed) is own
    assert timer_scheduler(None, subscribed) is subscribed


def test_outside_a_loop_a_blocking_scheduler_is_never_used_for_timers() -> None:
    for blocking in (CurrentThreadScheduler.singleton(), ImmediateScheduler(), None):
        assert isinstance(timer_scheduler(None, blocking), TimeoutScheduler)


async def test_inside_a_loop_timers_run_on_it() -> None:
    chosen = timer_scheduler(None, CurrentThreadScheduler.singleton())
    assert isinstance(chosen, AsyncIOScheduler)
    assert chosen._loop is asyncio.get_running_loop()


async def test_subscribed_without_a_scheduler_on_the_loop() -> None:
    body = Body(sse(text_reply("a", "b")))
    seen: Recorder[str] = Recorder()
    seen.subscribe(body.events().pipe(ops.text_deltas(), ops.coalesce(max_delay=0)))
    assert await settle(lambda: seen.done)
    assert "".join(seen.items) == "ab"
    assert seen.completed
