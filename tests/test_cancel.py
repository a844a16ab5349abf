"""CancelToken and cancel flags."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import anthropic_rx as arx
from anthropic_rx import cancel
from anthropic_rx.cancel import CancelFlags, MemoryCancelFlags
from tests.operators._streams import Recorder, collect, settle

# --- CancelToken -----------------------------------------------------------------------------


def test_cancel_is_idempotent_and_keeps_the_first_reason() -> None:
    token = arx.CancelToken()
    assert not token.cancelled
    assert token.reason is None
    token.cancel("first")
    token.cancel("second")
    assert token.cancelled
    assert token.reason == "first"
    assert "cancelled" in repr(token)


def test_callbacks_outside_a_loop_run_once_in_the_cancelling_call() -> None:
    token = arx.CancelToken()
    calls: list[str] = []
    token.add_callback(lambda: calls.append("a"))
    removed = token.add_callback(lambda: calls.append("removed"))
    removed.dispose()
    token.cancel()
    token.cancel()
    assert calls == ["a"]


def test_callback_added_after_cancel_runs_at_once() -> None:
    token = arx.CancelToken()
    token.cancel()
    calls: list[int] = []
    token.add_callback(lambda: calls.append(1)).dispose()
    assert calls == [1]


def test_a_failing_callback_does_not_stop_the_others() -> None:
    token = arx.CancelToken()
    calls: list[int] = []

    def broken() -> None:
        raise RuntimeError("callback broke")

    token.add_callback(broken)
    token.add_callback(lambda: calls.append(1))
    with pytest.raises(RuntimeError, match="callback broke"):
        token.cancel()
    assert calls == [1]
    assert token.cancelled


async def test_callbacks_from_a_loop_run_on_that_loop_soon() -> None:
    token = arx.CancelToken()
    ran_on: list[int] = []
    token.add_callback(lambda: ran_on.append(threading.get_ident()))
    token.cancel()
    assert ran_on == []  # queued on the loop, not run inside cancel()
    await asyncio.sleep(0)
    assert ran_on == [threading.get_ident()]


async def test_cancel_from_another_thread_runs_the_callback_on_the_loop() -> None:
    token = arx.CancelToken()
    loop_thread = threading.get_ident()
    ran_on: list[int] = []
    token.add_callback(lambda: ran_on.append(threading.get_ident()))
    await asyncio.to_thread(token.cancel, "from a worker")
    assert await settle(lambda: bool(ran_on))
    assert ran_on == [loop_thread]
    assert token.reason == "from a worker"


async def test_a_queued_callback_removed_before_it_runs_does_not_run() -> None:
    token = arx.CancelToken()
    calls: list[int] = []
    remover = token.add_callback(lambda: calls.append(1))
    token.cancel()
    remover.dispose()
    await asyncio.sleep(0)
    assert calls == []


def test_concurrent_cancels_run_each_callback_once() -> None:
    token = arx.CancelToken()
    calls: list[int] = []
    lock = threading.Lock()

    def record() -> None:
        with lock:
            calls.append(1)

    for _ in range(20):
        token.add_callback(record)
    threads = [threading.Thread(target=token.cancel, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 20
    assert token.reason in {f"t{i}" for i in range(8)}


async def test_wait_returns_the_reason() -> None:
    token = arx.CancelToken()
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    token.cancel("done")
    assert await waiter == "done"
    assert await token.wait() == "done"  # already cancelled: at once


async def test_cancelling_wait_removes_its_callback() -> None:
    flags = MemoryCancelFlags()
    token = flags.watch("w")
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # nobody listens any more: the stop is kept for the next watcher, not given to this token
    await flags.request_stop("w")
    assert not token.cancelled
    assert flags.watch("w").cancelled


def test_as_observable_emits_the_reason_then_completes() -> None:
    token = arx.CancelToken()
    seen = collect(token.as_observable())
    assert seen.items == []
    token.cancel("why")
    assert seen.items == ["why"]
    assert seen.completed
    late = collect(token.as_observable())
    assert late.items == ["why"]
    assert late.completed


def test_as_observable_dispose_removes_the_callback() -> None:
    token = arx.CancelToken()
    seen: Recorder[str | None] = Recorder()
    seen.subscribe(token.as_observable()).dispose()
    token.cancel()
    assert seen.items == []
    assert not seen.completed


# --- MemoryCancelFlags -----------------------------------------------------------------------


def test_memory_flags_satisfy_the_protocol() -> None:
    assert isinstance(MemoryCancelFlags(), CancelFlags)
    assert cancel.CancelToken is arx.CancelToken


async def test_stop_before_watch_is_consumed_once() -> None:
    flags = MemoryCancelFlags()
    await flags.request_stop("stop-stream-1")
    first = flags.watch("stop-stream-1")
    second = flags.watch("stop-stream-1")
    assert first.cancelled
    assert first.reason == "stop requested"
    assert not second.cancelled


async def test_stop_reaches_every_listening_token_of_its_name_only() -> None:
    flags = MemoryCancelFlags()
    one, two, other = flags.watch("a"), flags.watch("a"), flags.watch("b")
    calls: list[str] = []
    one.add_callback(lambda: calls.append("one"))
    two.add_callback(lambda: calls.append("two"))
    other.add_callback(lambda: calls.append("other"))
    await flags.request_stop("a")
    assert await settle(lambda: len(calls) == 2)
    assert sorted(calls) == ["one", "two"]
    assert one.cancelled
    assert two.cancelled
    assert not other.cancelled
    # delivered, so consumed: the next watcher of "a" is not stopped
    assert not flags.watch("a").cancelled


async def test_a_finished_watcher_does_not_swallow_the_next_stop() -> None:
    flags = MemoryCancelFlags()
    token = flags.watch("s")
    token.add_callback(lambda: None).dispose()  # a stream watched it, then finished
    await flags.request_stop("s")
    assert not token.cancelled
    assert flags.watch("s").cancelled


def test_a_pending_stop_expires_after_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = MemoryCancelFlags(ttl=5.0)
    asyncio.run(flags.request_stop("late"))
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 6.0)
    assert not flags.watch("late").cancelled


def test_by_default_a_pending_stop_is_kept_thirty_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    # As RedisCancelFlags: a stop pressed after its reply ended must not wait long for another.
    flags = MemoryCancelFlags()
    asyncio.run(flags.request_stop("kept"))
    asyncio.run(flags.request_stop("gone"))
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 29.0)
    assert flags.watch("kept").cancelled
    monkeypatch.setattr(time, "monotonic", lambda: real() + 31.0)
    assert not flags.watch("gone").cancelled


async def test_without_ttl_a_pending_stop_waits() -> None:
    flags = MemoryCancelFlags(ttl=None)
    await flags.request_stop("x")
    assert flags.watch("x").cancelled


def test_expired_stops_are_dropped_on_the_next_request(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = MemoryCancelFlags(ttl=1.0)

    async def request(*names: str) -> None:
        for name in names:
            await flags.request_stop(name)

    asyncio.run(request(*(f"old-{i}" for i in range(50))))
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 2.0)
    asyncio.run(request("new"))
    assert flags.watch("new").cancelled
    assert len(flags._pending) == 0  # the expired ones are gone, not merely ignored
    assert not any(flags.watch(f"old-{i}").cancelled for i in range(50))


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl"):
        MemoryCancelFlags(ttl=0)


async def test_request_stop_from_another_thread_reaches_the_loop() -> None:
    flags = MemoryCancelFlags()
    token = flags.watch("t")
    waiter = asyncio.create_task(token.wait())
    await asyncio.sleep(0)
    await asyncio.to_thread(asyncio.run, flags.request_stop("t"))
    assert await asyncio.wait_for(waiter, timeout=5) == "stop requested"


def test_a_callback_bound_to_a_closed_loop_is_dropped() -> None:
    token = arx.CancelToken()
    calls: list[int] = []

    async def register() -> None:
        token.add_callback(lambda: calls.append(1))

    asyncio.run(register())
    token.cancel()  # its loop is gone: nothing to run there, and no error here
    assert calls == []
    assert token.cancelled


@pytest.mark.parametrize("bad", ["", "stop me", "{s}", "s\r\n", "s*", "x" * 201])
async def test_memory_flags_refuse_the_names_redis_flags_refuse(bad: str) -> None:
    flags = MemoryCancelFlags()
    with pytest.raises(ValueError, match="must match"):
        await flags.request_stop(bad)
    with pytest.raises(ValueError, match="must match"):
        flags.watch(bad)
    await flags.request_stop("stop-stream-1.a:b_c")  # the names a reply's flag takes
    assert flags.watch("stop-stream-1.a:b_c").cancelled
