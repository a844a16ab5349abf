"""Stopping a real HTTP stream: the fake server must see the connection close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from reactivex import operators as rx_ops

import anthropic_rx as arx
from anthropic_rx import cancel, testing
from anthropic_rx import operators as ops

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}
WORDS = [f"w{i} " for i in range(400)]


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*WORDS), tokens_per_second=400)
    return fake


async def stop_after(
    fake: testing.FakeAnthropic, signal: object, fire: object, count: int
) -> tuple[list[str], list[str]]:
    """Read text until ``count`` deltas arrived, fire the signal, and keep reading."""
    before: list[str] = []
    after: list[str] = []
    async with fake.serve() as base_url, arx.Client(base_url=base_url) as client:
        text = client.stream(**PARAMS).pipe(
            ops.raise_on_error(),
            ops.take_until_cancel(signal),  # type: ignore[arg-type]
            ops.text_deltas(),
        )
        async for chunk in arx.to_async_iterator(text):
            (after if len(before) >= count else before).append(chunk)
            if len(before) == count and not after:
                result = fire() if callable(fire) else None
                if asyncio.iscoroutine(result):
                    await result
        await fake.wait_closed()
    return before, after


async def test_a_cancel_token_closes_the_connection_within_one_event(
    fake: testing.FakeAnthropic,
) -> None:
    token = arx.CancelToken()
    before, after = await stop_after(fake, token, token.cancel, 5)
    assert before == WORDS[:5]
    assert after == []  # nothing arrives once the signal fired
    assert fake.disconnects == 1
    assert fake.open_streams == 0


async def test_a_named_flag_stops_the_stream(fake: testing.FakeAnthropic) -> None:
    flags = cancel.MemoryCancelFlags()
    watched = flags.watch("stop-stream-42")
    before, after = await stop_after(fake, watched, lambda: flags.request_stop("stop-stream-42"), 3)
    assert before == WORDS[:3]
    assert after == []
    assert fake.disconnects == 1


async def test_an_asyncio_event_stops_the_stream(fake: testing.FakeAnthropic) -> None:
    stop = asyncio.Event()
    before, after = await stop_after(fake, stop, stop.set, 4)
    assert before == WORDS[:4]
    # An Event is watched by a task, so at most the events already in hand may follow.
    assert len(after) <= 1
    assert fake.disconnects == 1


async def test_the_cancelled_snapshot_keeps_what_was_said(fake: testing.FakeAnthropic) -> None:
    token = arx.CancelToken()
    async with fake.serve() as base_url, arx.Client(base_url=base_url) as client:
        snapshots = client.stream(**PARAMS).pipe(
            ops.take_until_cancel(token), ops.accumulate(), rx_ops.share()
        )
        seen = 0
        last: arx.Message | None = None
        async for snapshot in arx.to_async_iterator(snapshots):
            last = snapshot
            seen += 1
            if seen == 10:
                token.cancel("user pressed stop")
        await fake.wait_closed()
    assert last is not None
    assert last.cancelled
    assert last.usage is not None
    assert last.usage.estimated
    text = last.content[0].model_dump()["text"]
    assert WORDS[0] in text
    assert len(text) < len("".join(WORDS))
    assert fake.disconnects == 1
