"""The frame queue between an SSE response's source and its body: pacing, ends, detach."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx.sinks._frame_queue import HIGH_WATER, FrameQueue
from anthropic_rx.sinks._frames import PING_FRAME, TextFrames

from ._server import data_frames, parse_sse


def reply_events(n: int) -> list[arx.MessageStreamEvent]:
    received: list[arx.MessageStreamEvent] = []
    reply = testing.text_reply(*(f"w{i} " for i in range(n)))
    arx.from_sse_bytes(reply.to_sse()).subscribe(received.append)
    return received


class Counted:
    """An async source of events that records how far it was read."""

    def __init__(self, events: list[arx.MessageStreamEvent]) -> None:
        self.events = events
        self.read = 0
        self.closed = False
        self.ended = asyncio.Event()

    async def items(self) -> AsyncIterator[arx.MessageStreamEvent]:
        try:
            for event in self.events:
                self.read += 1
                yield event
                await asyncio.sleep(0)
        finally:
            self.closed = True
            self.ended.set()


async def turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def drain(queue: FrameQueue) -> bytes:
    out = b""
    async with asyncio.timeout(5):
        while not queue.drained:
            await queue.ready()
            out += queue.take(1 << 20)
    return out


async def test_a_synchronous_source_is_queued_whole_with_its_terminal_frame() -> None:
    events = reply_events(3)
    queue = FrameQueue(reactivex.from_iterable(events), TextFrames())
    queue.start()
    out = await drain(queue)
    assert queue.finished and queue.first.is_set() and queue.items == len(events)
    frames = parse_sse(out)
    assert [f.data for f in data_frames(frames)][:3] == [
        '{"text":"w0 "}',
        '{"text":"w1 "}',
        '{"text":"w2 "}',
    ]
    assert frames[-1].event == "done"


async def test_a_reader_that_falls_behind_pauses_the_source_at_the_high_water_mark() -> None:
    source = Counted(reply_events(HIGH_WATER * 4))
    queue = FrameQueue(arx.from_async_iterable(source.items()), TextFrames())
    queue.start()
    await turns(HIGH_WATER * 8)
    # Paused at HIGH_WATER frames (the start events make no frame); nothing is taken.
    held = source.read
    assert HIGH_WATER <= held <= HIGH_WATER + 4
    await turns()
    assert source.read == held
    # Taking everything resumes it; a reader that keeps up gets the whole reply.
    out = await drain(queue)
    assert len(data_frames(parse_sse(out))) == HIGH_WATER * 4 + 1  # and the done frame
    assert source.read == len(source.events)


async def test_take_joins_what_waits_up_to_about_its_limit() -> None:
    queue = FrameQueue(reactivex.from_iterable(reply_events(10)), TextFrames())
    queue.start()
    await queue.ready()
    first = queue.take(1)  # one frame even past the limit
    assert len(parse_sse(first)) == 1
    rest = queue.take(1 << 20)
    assert len(parse_sse(rest)) == 10  # nine deltas and the terminal frame
    assert queue.take(1 << 20) == b"" and queue.drained


async def test_close_disposes_the_source_and_drops_its_frames() -> None:
    source = Counted(reply_events(HIGH_WATER * 4))
    queue = FrameQueue(arx.from_async_iterable(source.items()), TextFrames())
    queue.start()
    await turns()
    queue.close(detach=False)
    await turns()
    assert source.closed and source.read < len(source.events)
    assert queue.finished and queue.take(1 << 20) == b""


async def test_detached_the_source_is_read_to_its_end_with_no_frames_kept() -> None:
    source = Counted(reply_events(HIGH_WATER * 4))
    queue = FrameQueue(arx.from_async_iterable(source.items()), TextFrames())
    queue.start()
    await turns()
    queue.close(detach=True)  # paused at the high-water mark: detaching resumes it
    async with asyncio.timeout(5):
        await source.ended.wait()
    await turns(3)
    assert queue.finished and source.read == len(source.events) and source.closed
    assert queue.take(1 << 20) == b""


async def test_a_source_error_is_the_terminal_error_frame() -> None:
    error = arx.OverloadedError("Overloaded", error_type="overloaded_error")
    queue = FrameQueue(reactivex.throw(error), TextFrames())
    queue.start()
    frames = parse_sse(await drain(queue))
    assert queue.error is error
    assert [(f.event, f.data) for f in frames] == [
        ("error", '{"type":"overloaded_error","message":"Overloaded"}')
    ]


async def test_a_writer_that_raises_ends_the_response_and_disposes_the_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(TextFrames):
        def item(self, item: Any) -> bytes:
            raise RuntimeError("a bug")

    source = Counted(reply_events(10))
    queue = FrameQueue(arx.from_async_iterable(source.items()), Broken())
    with caplog.at_level(logging.ERROR, logger="anthropic_rx.sinks"):
        queue.start()
        frames = parse_sse(await drain(queue))
        await turns()
    assert isinstance(queue.error, RuntimeError)
    assert frames[-1].event == "error" and "a bug" not in (frames[-1].data or "")
    assert source.closed and source.read < len(source.events)
    assert "the source of an SSE response failed" in caplog.text


async def test_a_ping_is_queued_only_when_nothing_waits() -> None:
    never: reactivex.Observable[Any] = reactivex.never()
    queue = FrameQueue(never, TextFrames())
    queue.start()
    assert queue.ping() and not queue.ping()  # one already waits
    assert queue.take(1 << 20) == PING_FRAME
    queue.close(detach=False)
    assert not queue.ping()  # ended: nothing more to send


async def test_ready_returns_once_a_frame_arrives() -> None:
    subject: reactivex.subject.Subject[Any] = reactivex.subject.Subject()
    queue = FrameQueue(subject, TextFrames())
    queue.start()
    waiting = asyncio.ensure_future(queue.ready())
    await turns(3)
    assert not waiting.done() and not queue.first.is_set()
    for event in reply_events(1)[:4]:  # message_start, block start, one delta
        subject.on_next(event)
    async with asyncio.timeout(1):
        await waiting
    assert queue.first.is_set() and b"w0" in queue.take(1 << 20)
    queue.close(detach=False)
