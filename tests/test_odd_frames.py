"""Frames the API does not send in this shape, but proxies and gateways do: how each one ends."""

from __future__ import annotations

import json
from typing import Any

import pytest

import anthropic_rx as arx
from anthropic_rx import testing
from tests.conftest import subscribed


def reply() -> bytes:
    return testing.text_reply("Hello", " world").to_sse()


def with_frame_after_start(frame: bytes) -> bytes:
    data = reply()
    cut = data.index(b"\n\n") + 2  # after message_start
    return data[:cut] + frame + data[cut:]


@pytest.mark.parametrize(
    "data",
    [b"", b"{}", b"keep-alive", b'{"type": "content_block_stop", "index": 7}', b"[]"],
    ids=["empty", "empty-object", "text", "another-type", "array"],
)
async def test_a_frame_named_ping_is_a_ping_whatever_its_data(data: bytes) -> None:
    stream = with_frame_after_start(b"event: ping\ndata: " + data + b"\n\n")
    events, error, completed = subscribed(stream)
    assert error is None
    assert completed
    pings_before = sum(isinstance(e, arx.PingEvent) for e in subscribed(reply())[0])
    # An empty frame carries nothing and is skipped, as the SDKs skip it.
    assert sum(isinstance(e, arx.PingEvent) for e in events) == pings_before + (data != b"")
    message = await arx.final_message(arx.from_sse_bytes(stream))
    assert message.content == (arx.TextBlock(text="Hello world"),)


@pytest.mark.parametrize(
    ("data", "cls", "error_type", "message"),
    [
        (
            {"type": "overloaded_error", "message": "Overloaded"},
            arx.OverloadedError,
            "overloaded_error",
            "Overloaded",
        ),
        (
            {"error": {"type": "rate_limit_error", "message": "slow down"}},
            arx.RateLimitError,
            "rate_limit_error",
            "slow down",
        ),
        (
            {"type": "error", "error": {"message": "no type"}},
            arx.InternalServerError,
            "api_error",
            "no type",
        ),
        ("upstream connect error", arx.InternalServerError, "api_error", None),
    ],
    ids=["flat", "no-event-type", "no-error-type", "not-json"],
)
async def test_an_error_frame_in_any_shape_is_a_typed_error(
    data: Any, cls: type[arx.APIError], error_type: str, message: str | None
) -> None:
    raw = data if isinstance(data, str) else json.dumps(data)
    stream = with_frame_after_start(b"event: error\ndata: " + raw.encode() + b"\n\n")
    events, error, completed = subscribed(stream)
    assert error is None  # the source emits it as data, then completes
    assert completed
    assert isinstance(events[-1], arx.ErrorEvent)
    with pytest.raises(cls) as caught:
        await arx.final_message(arx.from_sse_bytes(stream))
    assert caught.value.error_type == error_type
    assert caught.value.message == (message if message is not None else raw)
    assert caught.value.partial_message is not None  # message_start came before it
