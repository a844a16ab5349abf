"""Reply builders: exact wire events, SSE bytes, and the message they accumulate into."""

from __future__ import annotations

import json
from typing import Any

import pytest

import anthropic_rx as arx
from anthropic_rx import testing


def _without_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for event in events:
        if event["type"] == "message_start":
            event["message"]["id"] = "ID"
        block = event.get("content_block")
        if isinstance(block, dict) and "id" in block:
            block["id"] = "ID"
    return events


def test_text_reply_gives_exactly_the_api_events() -> None:
    events = _without_ids(testing.text_reply("Hello", " world").events())

    assert events == [
        {
            "type": "message_start",
            "message": {
                "id": "ID",
                "type": "message",
                "role": "assistant",
                "model": testing.DEFAULT_MODEL,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " world"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2},
        },
        {"type": "message_stop"},
    ]


def test_tool_use_fragments_concatenate_to_the_json_of_the_input() -> None:
    tool_input = {"city": "Paris", "units": "celsius", "days": [1, 2, 3]}
    reply = testing.Reply().tool_use("get_weather", tool_input, id="toolu_1", fragment_size=7)
    events = reply.events()

    start = events[1]
    assert start == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
    }
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    fragments = [d["partial_json"] for d in deltas]
    assert all(d["type"] == "input_json_delta" for d in deltas)
    assert "".join(fragments) == json.dumps(tool_input)
    assert all(len(f) == 7 for f in fragments[:-1])
    assert 1 <= len(fragments[-1]) <= 7
    # The last block is a tool use: the reply stops for it unless told otherwise.
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_tool_use_default_is_one_fragment() -> None:
    deltas = [
        e for e in testing.Reply().tool_use("f", {"a": 1}).events() if "delta" in e and "index" in e
    ]
    assert [d["delta"]["partial_json"] for d in deltas] == ['{"a": 1}']


def test_thinking_streams_each_part_then_the_signature() -> None:
    events = testing.Reply().thinking("Let me think", " about it", signature="sig").events()

    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [e["delta"] for e in events[2:5]] == [
        {"type": "thinking_delta", "thinking": "Let me think"},
        {"type": "thinking_delta", "thinking": " about it"},
        {"type": "signature_delta", "signature": "sig"},
    ]
    assert events[5] == {"type": "content_block_stop", "index": 0}


async def test_bytes_parse_into_the_expected_message() -> None:
    reply = (
        testing.Reply(model="claude-opus-4-1", input_tokens=12, id="msg_1")
        .thinking("Let me think", " about it", signature="sig")
        .text("Hello", ", world")
        .tool_use("get_weather", {"city": "Paris"}, id="toolu_1", fragment_size=5)
        .stop("end_turn", output_tokens=42)
    )

    message = await arx.final_message(arx.from_sse_bytes(reply.to_sse()))

    assert message.model_dump(mode="json", exclude_none=True) == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-opus-4-1",
        "content": [
            {"type": "thinking", "thinking": "Let me think about it", "signature": "sig"},
            {"type": "text", "text": "Hello, world"},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 12, "output_tokens": 42},
    }
    assert message == reply.message()


def test_sse_bytes_format() -> None:
    data = testing.sse_bytes([{"type": "ping"}, {"type": "x", "text": "é\u2028"}, {"no": "type"}])
    assert data == (
        b'event: ping\ndata: {"type":"ping"}\n\n'
        + 'event: x\ndata: {"type":"x","text":"é\u2028"}\n\n'.encode()
        + b'data: {"no":"type"}\n\n'
    )


def test_to_sse_is_sse_bytes_of_the_events_and_pings_go_between_events() -> None:
    reply = testing.text_reply("a", "b", "c")
    assert reply.to_sse() == testing.sse_bytes(reply.events())

    paced = reply.to_sse(ping_every=2)
    frames = [f for f in paced.split(b"\n\n") if f]
    kinds = [f.split(b"\n")[0].removeprefix(b"event: ").decode() for f in frames]
    assert kinds == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "ping",
        "message_delta",
        "message_stop",
    ]
    with pytest.raises(ValueError, match="ping_every"):
        reply.to_sse(ping_every=0)


async def test_error_ends_the_reply_with_an_error_event() -> None:
    reply = testing.Reply().text("Hel").error("overloaded_error", "Overloaded")
    events = reply.events()

    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert all(e["type"] not in {"message_delta", "message_stop"} for e in events)
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(arx.from_sse_bytes(reply.to_sse()))
    assert caught.value.partial_message is not None
    with pytest.raises(ValueError, match="error event"):
        reply.message()


def test_builders_return_new_replies_and_an_ended_reply_takes_nothing_more() -> None:
    base = testing.Reply(id="msg_1").text("common")
    first = base.text("one")
    second = base.redacted_thinking("opaque")

    assert len(base.events()) == 6
    assert first.events()[4]["content_block"] == {"type": "text", "text": ""}
    assert second.events()[4]["content_block"] == {"type": "redacted_thinking", "data": "opaque"}
    assert base.id == first.id == "msg_1"

    ended = base.stop("max_tokens")
    assert ended.events()[-2]["delta"]["stop_reason"] == "max_tokens"
    with pytest.raises(ValueError, match="already ended"):
        ended.text("more")
    with pytest.raises(ValueError, match="already ended"):
        ended.stop()
    with pytest.raises(ValueError, match="already ended"):
        base.error().error()


def test_generic_block_and_raw_event() -> None:
    reply = (
        testing.Reply(container={"id": "c1"})
        .event({"type": "ping"})
        .block({"type": "future_block", "x": 1}, {"type": "future_delta", "y": 2})
        .event({"type": "brand_new_event", "z": 3})
    )
    events = reply.events()

    assert events[0]["message"]["container"] == {"id": "c1"}
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "brand_new_event",
        "message_delta",
        "message_stop",
    ]
    assert events[3]["delta"] == {"type": "future_delta", "y": 2}
    # events() gives new dicts: changing them does not change the reply.
    events[1]["type"] = "changed"
    assert reply.events()[1] == {"type": "ping"}


def test_ids_are_generated_per_reply_and_usage_options_are_sent() -> None:
    one, two = testing.Reply(), testing.Reply()
    assert one.id.startswith("msg_fake_")
    assert one.id != two.id
    start = testing.Reply(cache_read_input_tokens=5, cache_creation_input_tokens=3).events()[0]
    assert start["message"]["usage"] == {
        "input_tokens": 10,
        "output_tokens": 1,
        "cache_creation_input_tokens": 3,
        "cache_read_input_tokens": 5,
    }
    tool = testing.Reply().tool_use("f", {}).events()[1]["content_block"]
    assert tool["id"].startswith("toolu_fake_")
    assert "tool_use" in repr(testing.Reply().tool_use("f", {}).stop())


def test_tool_use_rejects_a_bad_fragment_size() -> None:
    with pytest.raises(ValueError, match="fragment_size"):
        testing.Reply().tool_use("f", {"a": 1}, fragment_size=0)
