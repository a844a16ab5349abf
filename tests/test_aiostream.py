"""aiostream interop: ``to_stream`` and aiostream streams as sources."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from aiostream import pipe, stream

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx import testing
from tests.conftest import fixture_bytes

PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}


async def test_to_stream_is_cold_and_composes_with_aiostream_pipes() -> None:
    events = arx.from_sse_bytes(fixture_bytes("docs_tool_use"))
    text = arx.to_stream(events.pipe(ops.text_deltas())) | pipe.take(3)
    assert await stream.list(text) == ["Okay", ",", " let"]
    assert await stream.list(text) == ["Okay", ",", " let"]  # a new subscription each time


async def test_leaving_the_streamcontext_closes_the_http_response() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*(["tick "] * 300)), tokens_per_second=300)
    async with fake.serve() as base_url, arx.Client(base_url=base_url) as client:
        chunks = arx.to_stream(client.stream(**PARAMS).pipe(ops.text_deltas()))
        received = []
        async with chunks.stream() as streamer:
            async for chunk in streamer:
                received.append(chunk)
                if len(received) == 2:
                    break
        await fake.wait_closed()
    assert received == ["tick ", "tick "]
    assert fake.disconnects == 1


async def test_errors_are_raised_inside_the_block() -> None:
    events = arx.from_sse_bytes(fixture_bytes("docs_error_only")).pipe(ops.raise_on_error())
    everything = arx.to_stream(events)
    with pytest.raises(arx.OverloadedError) as caught:
        await stream.list(everything)  # type: ignore[arg-type]  # aiostream cannot infer T
    assert caught.value.status_code == 200


async def test_an_aiostream_stream_as_a_source_is_entered_without_warnings() -> None:
    def tenfold(x: int) -> int:
        return x * 10

    numbers = stream.range(5) | pipe.map(tenfold)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [n async for n in arx.to_async_iterator(arx.from_async_iterable(numbers))]
        again = [n async for n in arx.to_async_iterator(arx.from_async_iterable(numbers))]
    assert got == again == [0, 10, 20, 30, 40]
