"""Pipelines as applications write them: stop button, fan-out, final snapshot."""

from __future__ import annotations

import asyncio

import reactivex
from reactivex import operators as rx_ops
from reactivex.scheduler.eventloop import AsyncIOScheduler

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx.cancel import MemoryCancelFlags

from ._streams import Body, Recorder, fixture_chunks, settle, sse, text_reply


async def test_show_text_until_the_user_presses_stop() -> None:
    body = Body(sse(text_reply("The ", "answer ", "is ", "42")), stall_after=4)
    stop = arx.CancelToken()
    text = body.events().pipe(ops.raise_on_error(), ops.take_until_cancel(stop), ops.text_deltas())
    shown: list[str] = []
    async for chunk in arx.to_async_iterator(text):
        shown.append(chunk)
        if chunk == "answer ":
            stop.cancel("user pressed stop")
    assert "".join(shown) == "The answer "
    assert await settle(lambda: body.closed)
    assert body.sent < len(body.chunks)


async def test_stop_pressed_on_another_request_by_conversation_id() -> None:
    flags = MemoryCancelFlags()
    conversation_id = 17
    body = Body(sse(text_reply("a", "b", "c")), stall_after=4)
    text = body.events().pipe(
        ops.raise_on_error(),
        ops.take_until_cancel(flags.watch(f"stop-stream-{conversation_id}")),
        ops.text_deltas(),
    )

    async def stop_button() -> None:
        await flags.request_stop(f"stop-stream-{conversation_id}")

    shown: list[str] = []
    async for chunk in arx.to_async_iterator(text):
        shown.append(chunk)
        if len(shown) == 2:
            await asyncio.create_task(stop_button())
    assert shown == ["a", "b"]
    assert await settle(lambda: body.closed)


async def test_one_request_fanned_out_to_two_consumers() -> None:
    body = Body(fixture_chunks("docs_tool_use"))
    events = body.events().pipe(ops.raise_on_error(), rx_ops.share())
    loop = AsyncIOScheduler(asyncio.get_running_loop())
    text: Recorder[str] = Recorder()
    final: Recorder[arx.Message] = Recorder()
    final.subscribe(events.pipe(ops.accumulate(), rx_ops.last()), loop)
    text.subscribe(events.pipe(ops.text_deltas()), loop)
    assert await settle(lambda: text.done and final.done)
    assert final.completed
    assert text.completed
    message = final.items[0]
    assert "".join(text.items) == "".join(
        b.text for b in message.content if isinstance(b, arx.TextBlock)
    )
    assert message.stop_reason == "tool_use"
    assert body.closed


async def test_final_snapshot_with_accumulate_and_last() -> None:
    events = arx.from_sse_bytes(sse(text_reply("Hello", ", world")))
    last = await _first(events.pipe(ops.accumulate(), rx_ops.last()))
    assert last == await arx.final_message(arx.from_sse_bytes(sse(text_reply("Hello", ", world"))))


async def test_cancel_mid_stream_leaves_a_cancelled_snapshot_with_estimated_usage() -> None:
    body = Body(sse(text_reply("x" * 10, "y" * 10, "z")), stall_after=4)
    stop = arx.CancelToken()
    snapshots = body.events().pipe(ops.take_until_cancel(stop), ops.accumulate())
    seen: list[arx.Message] = []
    async for snapshot in arx.to_async_iterator(snapshots):
        seen.append(snapshot)
        if len(seen) == 4:  # start, block, two deltas
            stop.cancel()
    last = seen[-1]
    assert last.cancelled
    assert last.usage is not None
    assert last.usage.estimated
    assert last.usage.output_tokens == 5  # 20 characters / 4
    assert last.model_dump(mode="json", exclude_none=True)["usage"] == {
        "input_tokens": 10,
        "output_tokens": 5,
    }
    assert await settle(lambda: body.closed)


async def _first(source: reactivex.Observable[arx.Message]) -> arx.Message:
    async for item in arx.to_async_iterator(source):
        return item
    raise AssertionError("no item")
