"""The Vercel AI SDK UI message stream encoder, and the real ``ai`` package reading its output."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx._events import parse_event_object
from anthropic_rx.sinks._ai_sdk import AI_SDK_HEADERS, AiSdkEncoder

from ._node import read_ui_stream, run_reader

# --- helpers ---------------------------------------------------------------------------------

Chunks = list[dict[str, object]]


def events_of(reply: testing.Reply | Iterable[dict[str, Any]]) -> list[arx.MessageStreamEvent]:
    """The typed events of a reply (or of raw wire events)."""
    raw = reply.events() if isinstance(reply, testing.Reply) else reply
    return [parse_event_object(event) for event in raw]


def message_of(events: Sequence[arx.MessageStreamEvent]) -> arx.Message | None:
    builder = arx.MessageBuilder()
    for event in events:
        builder.feed(event)
    return builder.message()


def encode(
    reply: testing.Reply | Iterable[dict[str, Any]],
    *,
    end: str = "done",
    encoder: AiSdkEncoder | None = None,
) -> Chunks:
    """The chunks for every event of ``reply``, then those of ``done`` / ``cancelled`` (with
    the message so far) or none (``end="none"``)."""
    encoder = encoder or AiSdkEncoder()
    events = events_of(reply)
    chunks = [chunk for event in events for chunk in encoder.event(event)]
    message = message_of([e for e in events if not isinstance(e, arx.ErrorEvent)])
    if end == "done":
        chunks += encoder.done(message)
    elif end == "cancelled":
        chunks += encoder.cancelled(message)
    return chunks


def sse(chunks: Iterable[dict[str, object]]) -> bytes:
    """The SSE body of a UI message stream: one ``data:`` frame per chunk, then ``[DONE]``."""
    frames = []
    for chunk in chunks:
        data = json.dumps(chunk, ensure_ascii=False)
        # JSON allows these raw, but a JavaScript source (or a <script> block) does not.
        data = data.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        frames.append(f"data: {data}\n\n".encode())
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


def types(chunks: Chunks) -> list[object]:
    return [chunk["type"] for chunk in chunks]


def cut_after(reply: testing.Reply, count: int) -> list[dict[str, Any]]:
    """The first ``count`` wire events of ``reply``."""
    return reply.events()[:count]


ERROR_EVENT = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

# The keys ai 6.0.326's uiMessageChunkSchema declares for each chunk type this encoder sends
# (node_modules/ai/dist/index.mjs). Its objects are loose, but a key it does not declare would
# be refused by a strict release and means nothing to the front end.
DECLARED_KEYS: dict[str, set[str]] = {
    "start": {"type", "messageId", "messageMetadata"},
    "start-step": {"type"},
    "text-start": {"type", "id", "providerMetadata"},
    "text-delta": {"type", "id", "delta", "providerMetadata"},
    "text-end": {"type", "id", "providerMetadata"},
    "reasoning-start": {"type", "id", "providerMetadata"},
    "reasoning-delta": {"type", "id", "delta", "providerMetadata"},
    "reasoning-end": {"type", "id", "providerMetadata"},
    "tool-input-start": {"type", "toolCallId", "toolName", "providerExecuted", "dynamic"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {
        "type",
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
    },
    "tool-input-error": {
        "type",
        "toolCallId",
        "toolName",
        "input",
        "providerExecuted",
        "providerMetadata",
        "dynamic",
        "errorText",
    },
    "tool-output-available": {"type", "toolCallId", "output", "providerExecuted", "dynamic"},
    "source-url": {"type", "sourceId", "url", "title", "providerMetadata"},
    "message-metadata": {"type", "messageMetadata"},
    "error": {"type", "errorText"},
    "finish-step": {"type"},
    "finish": {"type", "finishReason", "messageMetadata"},
    "abort": {"type"},
}
FINISH_REASONS = {"stop", "length", "content-filter", "tool-calls", "error", "other"}


def web_search_reply(tool_id: str = "srvtoolu_1") -> testing.Reply:
    return (
        testing.Reply()
        .block(
            {"type": "server_tool_use", "id": tool_id, "name": "web_search", "input": {}},
            {"type": "input_json_delta", "partial_json": '{"query": '},
            {"type": "input_json_delta", "partial_json": '"rx python"}'},
        )
        .block(
            {
                "type": "web_search_tool_result",
                "tool_use_id": tool_id,
                "content": [
                    {"type": "web_search_result", "url": "https://a.example", "title": "A"}
                ],
            }
        )
        .text("Found it.")
        .stop("end_turn")
    )


# --- unit tests of the encoder ---------------------------------------------------------------


def test_headers_name_the_v1_protocol() -> None:
    assert dict(AI_SDK_HEADERS) == {"x-vercel-ai-ui-message-stream": "v1"}


def test_plain_text_maps_to_start_text_parts_and_finish() -> None:
    reply = testing.Reply(id="msg_1", input_tokens=3).text("Hel", "lo").stop(output_tokens=7)
    assert encode(reply) == [
        {"type": "start", "messageId": "msg_1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-0"},
        {"type": "text-delta", "id": "text-0", "delta": "Hel"},
        {"type": "text-delta", "id": "text-0", "delta": "lo"},
        {"type": "text-end", "id": "text-0"},
        {"type": "finish-step"},
        {
            "type": "finish",
            "finishReason": "stop",
            "messageMetadata": {"usage": {"input_tokens": 3, "output_tokens": 7}},
        },
    ]


def test_message_id_given_replaces_the_api_id() -> None:
    chunks = encode(testing.Reply(id="msg_1").text("a"), encoder=AiSdkEncoder(message_id="m-9"))
    assert chunks[0] == {"type": "start", "messageId": "m-9"}


def test_thinking_maps_to_reasoning_with_the_signature_on_its_end() -> None:
    chunks = encode(testing.Reply().thinking("Let me ", "think", signature="sig-1").text("ok"))
    assert chunks[2:6] == [
        {"type": "reasoning-start", "id": "reasoning-0"},
        {"type": "reasoning-delta", "id": "reasoning-0", "delta": "Let me "},
        {"type": "reasoning-delta", "id": "reasoning-0", "delta": "think"},
        {
            "type": "reasoning-end",
            "id": "reasoning-0",
            "providerMetadata": {"anthropic": {"signature": "sig-1"}},
        },
    ]
    assert chunks[6] == {"type": "text-start", "id": "text-1"}


def test_thinking_without_signature_has_no_provider_metadata() -> None:
    chunks = encode(testing.Reply().thinking("hm"))
    assert {"type": "reasoning-end", "id": "reasoning-0"} in chunks


def test_redacted_thinking_is_an_empty_reasoning_part_with_its_data() -> None:
    chunks = encode(testing.Reply().redacted_thinking("opaque").text("x"))
    assert chunks[2:4] == [
        {
            "type": "reasoning-start",
            "id": "reasoning-0",
            "providerMetadata": {"anthropic": {"redactedData": "opaque"}},
        },
        {"type": "reasoning-end", "id": "reasoning-0"},
    ]


def test_tool_use_streams_each_fragment_and_the_parsed_input_at_block_stop() -> None:
    tool_input = {"city": "Paris", "days": [1, 2], "note": 'a "quoted" \\d'}
    reply = testing.Reply().tool_use("get_weather", tool_input, id="toolu_1", fragment_size=4)
    chunks = encode(reply)
    raw = json.dumps(tool_input, ensure_ascii=False)
    deltas = [c for c in chunks if c["type"] == "tool-input-delta"]
    assert [c["inputTextDelta"] for c in deltas] == [raw[i : i + 4] for i in range(0, len(raw), 4)]
    assert all(c["toolCallId"] == "toolu_1" for c in deltas)
    assert chunks[2] == {
        "type": "tool-input-start",
        "toolCallId": "toolu_1",
        "toolName": "get_weather",
    }
    assert chunks[-3] == {
        "type": "tool-input-available",
        "toolCallId": "toolu_1",
        "toolName": "get_weather",
        "input": tool_input,
    }
    assert chunks[-1]["finishReason"] == "tool-calls"


def test_tool_use_without_fragments_has_the_start_input() -> None:
    reply = testing.Reply().block({"type": "tool_use", "id": "t1", "name": "now", "input": {}})
    available = [c for c in encode(reply) if c["type"] == "tool-input-available"]
    assert available == [
        {"type": "tool-input-available", "toolCallId": "t1", "toolName": "now", "input": {}}
    ]


def test_server_tool_use_is_provider_executed_and_its_result_is_the_output() -> None:
    chunks = encode(web_search_reply())
    start, *_ = (c for c in chunks if c["type"] == "tool-input-start")
    assert start == {
        "type": "tool-input-start",
        "toolCallId": "srvtoolu_1",
        "toolName": "web_search",
        "providerExecuted": True,
    }
    available = next(c for c in chunks if c["type"] == "tool-input-available")
    assert available["input"] == {"query": "rx python"}
    assert available["providerExecuted"] is True
    output = next(c for c in chunks if c["type"] == "tool-output-available")
    assert output == {
        "type": "tool-output-available",
        "toolCallId": "srvtoolu_1",
        "output": [{"type": "web_search_result", "url": "https://a.example", "title": "A"}],
        "providerExecuted": True,
    }


def test_tool_result_for_a_call_never_seen_gives_nothing() -> None:
    reply = testing.Reply().block(
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_other", "content": []}
    )
    assert "tool-output-available" not in types(encode(reply))


def test_mcp_tool_use_is_dynamic_and_provider_executed() -> None:
    reply = testing.Reply().block(
        {
            "type": "mcp_tool_use",
            "id": "mcptoolu_1",
            "name": "lookup",
            "server_name": "s",
            "input": {},
        },
        {"type": "input_json_delta", "partial_json": '{"q": 1}'},
    )
    available = next(c for c in encode(reply) if c["type"] == "tool-input-available")
    assert available["dynamic"] is True
    assert available["providerExecuted"] is True
    assert available["input"] == {"q": 1}


def test_part_ids_follow_the_block_index() -> None:
    reply = (
        testing.Reply()
        .thinking("t")
        .text("a")
        .tool_use("f", {"x": 1}, id="toolu_2")
        .text("b")
        .stop("end_turn")
    )
    starts = [
        c for c in encode(reply) if str(c["type"]).endswith("-start") and c["type"] != "start-step"
    ]
    assert [c.get("id", c.get("toolCallId")) for c in starts] == [
        "reasoning-0",
        "text-1",
        "toolu_2",
        "text-3",
    ]


def test_interleaved_blocks_keep_their_own_parts() -> None:
    start = testing.Reply(id="msg_i").events()[0]
    raw = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_stop", "index": 0},
    ]
    encoder = AiSdkEncoder()
    chunks = [c for event in events_of(raw) for c in encoder.event(event)]
    assert chunks[2:] == [
        {"type": "text-start", "id": "text-0"},
        {"type": "tool-input-start", "toolCallId": "t", "toolName": "f"},
        {"type": "tool-input-delta", "toolCallId": "t", "inputTextDelta": "{}"},
        {"type": "text-delta", "id": "text-0", "delta": "hi"},
        {"type": "tool-input-available", "toolCallId": "t", "toolName": "f", "input": {}},
        {"type": "text-end", "id": "text-0"},
    ]


def test_text_in_the_start_block_is_sent_as_a_delta() -> None:
    reply = testing.Reply().block(
        {"type": "text", "text": "pre"}, {"type": "text_delta", "text": "fix"}
    )
    assert [c.get("delta") for c in encode(reply) if c["type"] == "text-delta"] == ["pre", "fix"]


def test_empty_deltas_and_events_out_of_place_give_nothing() -> None:
    text = {"type": "text", "text": ""}
    encoder = AiSdkEncoder()
    early = {"type": "content_block_start", "index": 0, "content_block": text}
    assert encoder.event(events_of([early])[0]) == []  # before message_start
    reply = (
        testing.Reply(id="msg_x")
        .text("")
        .thinking("")
        .block(
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
            {"type": "input_json_delta", "partial_json": ""},
        )
    )
    raw = reply.events()
    chunks = [c for e in events_of([*raw[:1], *raw]) for c in encoder.event(e)]
    assert types(chunks) == [
        "start",
        "start-step",
        "text-start",
        "text-end",
        "reasoning-start",
        "reasoning-end",
        "tool-input-start",
        "tool-input-available",
    ]


def test_thinking_in_the_start_block_is_sent_as_a_delta() -> None:
    reply = testing.Reply().block({"type": "thinking", "thinking": "so", "signature": "s0"})
    chunks = encode(reply)
    assert {"type": "reasoning-delta", "id": "reasoning-0", "delta": "so"} in chunks
    assert {
        "type": "reasoning-end",
        "id": "reasoning-0",
        "providerMetadata": {"anthropic": {"signature": "s0"}},
    } in chunks


def test_empty_reply_is_start_and_finish() -> None:
    assert types(encode(testing.Reply().stop("end_turn"))) == [
        "start",
        "start-step",
        "finish-step",
        "finish",
    ]


def test_done_without_any_event_still_starts_and_finishes() -> None:
    assert AiSdkEncoder().done(None) == [
        {"type": "start"},
        {"type": "finish", "finishReason": "other"},
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool-calls"),
        ("refusal", "content-filter"),
        ("pause_turn", "other"),
        ("a_reason_from_the_future", "other"),
    ],
)
def test_finish_reason_is_mapped_from_the_stop_reason(stop_reason: str, finish_reason: str) -> None:
    chunks = encode(testing.Reply().text("x").stop(stop_reason))
    assert chunks[-1]["finishReason"] == finish_reason


def test_finish_reason_comes_from_message_delta_when_no_message_is_given() -> None:
    encoder = AiSdkEncoder()
    for event in events_of(testing.Reply().text("x").stop("max_tokens")):
        encoder.event(event)
    assert encoder.done(None)[-1] == {"type": "finish", "finishReason": "length"}


def test_cancelled_mid_text_ends_the_part_then_aborts() -> None:
    reply = testing.Reply(id="msg_c").text("Hello", " wor", "ld")
    partial = cut_after(reply, 4)  # message_start, block start, two deltas
    encoder = AiSdkEncoder()
    events = events_of(partial)
    chunks = [c for e in events for c in encoder.event(e)]
    message = message_of(events)
    assert message is not None and message.usage is not None
    estimated = message.model_copy(
        update={"usage": message.usage.model_copy(update={"estimated": True, "output_tokens": 2})}
    )
    chunks += encoder.cancelled(estimated)
    assert chunks[-3:] == [
        {"type": "text-end", "id": "text-0"},
        {
            "type": "message-metadata",
            "messageMetadata": {
                "usage": {"input_tokens": 10, "output_tokens": 2},
                "usage_estimated": True,
            },
        },
        {"type": "abort"},
    ]
    assert "finish" not in types(chunks)


def test_cancelled_mid_tool_reports_the_cut_tool_call_and_never_its_input_as_available() -> None:
    reply = testing.Reply().tool_use("f", {"city": "Paris"}, id="toolu_c", fragment_size=5)
    chunks = encode(cut_after(reply, 4), end="cancelled")
    assert "tool-input-available" not in types(chunks)
    error = next(c for c in chunks if c["type"] == "tool-input-error")
    assert error["toolCallId"] == "toolu_c"
    assert error["input"] == {}  # '{"cit' has no complete key yet
    assert chunks[-1] == {"type": "abort"}


def test_error_event_mid_tool_ends_the_call_and_reports_the_error() -> None:
    reply = (
        testing.Reply().text("a").tool_use("f", {"city": "Paris"}, id="toolu_e", fragment_size=5)
    )
    raw = [*cut_after(reply, 7), ERROR_EVENT]  # the tool block is open, two fragments in
    encoder = AiSdkEncoder()
    chunks = [c for e in events_of(raw) for c in encoder.event(e)]
    assert chunks[-2:] == [
        {
            "type": "tool-input-error",
            "toolCallId": "toolu_e",
            "toolName": "f",
            "input": {},
            "errorText": "the tool call was cut off before its input was complete",
        },
        {"type": "error", "errorText": "overloaded_error: Overloaded"},
    ]
    more = events_of([{"type": "content_block_stop", "index": 1}, {"type": "message_stop"}])
    assert [encoder.event(e) for e in more] == [[], []]
    assert encoder.error("overloaded_error", "again") == []
    assert encoder.done(None) == [
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "error"},
    ]


def test_error_after_errored_then_cancelled_aborts() -> None:
    encoder = AiSdkEncoder()
    assert encoder.error("api_error", "") == [
        {"type": "start"},
        {"type": "error", "errorText": "api_error"},
    ]
    assert encoder.cancelled(None) == [{"type": "abort"}]


def test_error_text_never_carries_an_api_key_and_is_bounded() -> None:
    key = "sk-ant-api03-" + "x" * 90
    (_, chunk) = AiSdkEncoder().error("authentication_error", f"bad key {key} " + "y" * 5000)
    text = str(chunk["errorText"])
    assert key not in text and "sk-ant-" not in text
    assert text.startswith("authentication_error: bad key [redacted] ")
    assert len(text) == 1000 + len("...")  # cut, and marked as cut


def test_unknown_events_blocks_and_deltas_and_pings_give_nothing() -> None:
    reply = (
        testing.Reply()
        .event({"type": "ping"})
        .event({"type": "sparkle", "value": 1})
        .block({"type": "hologram", "data": "secret-ish"}, {"type": "shimmer_delta", "x": 1})
        .block(
            {"type": "text", "text": ""},
            {"type": "sparkle_delta", "x": 2},
            {"type": "text_delta", "text": "y"},
        )
        .stop("end_turn")
    )
    chunks = encode(reply)
    assert types(chunks) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "finish",
    ]
    assert "hologram" not in json.dumps(chunks) and "sparkle" not in json.dumps(chunks)


def test_citations_with_a_url_become_one_source_each() -> None:
    def citation(url: str) -> dict[str, Any]:
        return {
            "type": "citations_delta",
            "citation": {
                "type": "web_search_result_location",
                "cited_text": "c",
                "url": url,
                "title": "T",
                "encrypted_index": "e",
            },
        }

    page = {"type": "citations_delta", "citation": {"type": "page_location", "cited_text": "p"}}
    reply = testing.Reply().block(
        {"type": "text", "text": ""},
        citation("https://a.example"),
        citation("https://a.example"),
        citation("https://b.example"),
        page,
    )
    sources = [c for c in encode(reply) if c["type"] == "source-url"]
    assert sources == [
        {"type": "source-url", "sourceId": "source-1", "url": "https://a.example", "title": "T"},
        {"type": "source-url", "sourceId": "source-2", "url": "https://b.example", "title": "T"},
    ]


def test_an_ended_encoder_gives_nothing_more() -> None:
    encoder = AiSdkEncoder()
    encode(testing.Reply().text("a"), encoder=encoder)
    late = events_of(testing.Reply().text("b").events())
    assert [encoder.event(e) for e in late] == [[] for _ in late]
    assert encoder.done(None) == encoder.cancelled(None) == encoder.error("api_error", "x") == []


def test_every_chunk_uses_only_keys_the_schema_declares() -> None:
    replies = [
        encode(testing.Reply().thinking("t", signature="s").redacted_thinking("r").text("a")),
        encode(web_search_reply()),
        encode(
            cut_after(testing.Reply().tool_use("f", {"a": 1}, fragment_size=2), 4), end="cancelled"
        ),
        encode([*cut_after(testing.Reply().text("a", "b"), 3), ERROR_EVENT]),
    ]
    for chunks in replies:
        for chunk in chunks:
            kind = str(chunk["type"])
            assert set(chunk) <= DECLARED_KEYS[kind], chunk
            if kind == "finish":
                assert chunk["finishReason"] in FINISH_REASONS


# --- the real `ai` package reads the stream --------------------------------------------------

needs_node = pytest.mark.services

# One Node process per example (about 0.3 s): few examples, fifty times more in a soak run.
SOAK = 50 if os.environ.get("ANTHROPIC_RX_SOAK") == "1" else 1

# Any Unicode text the API can send: every code point but surrogates (which JSON text from the
# API never decodes to), control characters and line separators included.
TEXT_PIECES = st.lists(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    min_size=1,
    max_size=8,
)

HOSTILE = "a\n\ndata: x\r\nb\u2028c\u2029d 😀 </script><script>alert(1)</script> data: [DONE]\n\n"


def text_of(message: arx.Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))


@needs_node
@pytest.mark.parametrize(
    "parts",
    [
        ("Hello", ", world"),
        (HOSTILE[:7], HOSTILE[7:20], HOSTILE[20:]),
        ("\u00e9\u4e2d", "\U0001f600"),
    ],
    ids=["plain", "hostile", "unicode"],
)
def test_node_reads_text_exactly(parts: tuple[str, ...]) -> None:
    reply = testing.Reply(id="msg_text").text(*parts).stop("end_turn")
    read = read_ui_stream(sse(encode(reply)))
    assert read.done
    assert read.message["id"] == "msg_text"
    (text,) = read.parts("text")
    assert text == {"type": "text", "text": text_of(reply.message()), "state": "done"}
    assert read.message["metadata"]["usage"]["input_tokens"] == 10
    assert read.chunks[-1]["finishReason"] == "stop"


@needs_node
def test_node_reads_thinking_and_text() -> None:
    reply = testing.Reply().thinking("Let me ", "think", signature="sig-1").text("Answer").stop()
    read = read_ui_stream(sse(encode(reply)))
    (reasoning,) = read.parts("reasoning")
    assert reasoning["text"] == "Let me think"
    assert reasoning["state"] == "done"
    assert reasoning["providerMetadata"] == {"anthropic": {"signature": "sig-1"}}
    assert [p["text"] for p in read.parts("text")] == ["Answer"]
    assert [p["type"] for p in read.message["parts"]] == ["step-start", "reasoning", "text"]


@needs_node
def test_node_reads_redacted_thinking() -> None:
    read = read_ui_stream(sse(encode(testing.Reply().redacted_thinking("opaque").text("x"))))
    (reasoning,) = read.parts("reasoning")
    assert reasoning["text"] == ""
    assert reasoning["providerMetadata"] == {"anthropic": {"redactedData": "opaque"}}


@needs_node
def test_node_reads_a_tool_call_from_fragmented_json() -> None:
    tool_input = {"city": "Zürich", "when": ["today", "tomorrow"], "note": "x\n\ndata: y \u2028"}
    reply = (
        testing.Reply()
        .text("Checking.")
        .tool_use("get_weather", tool_input, id="toolu_n", fragment_size=3)
        .stop()
    )
    read = read_ui_stream(sse(encode(reply)))
    (tool,) = read.parts("tool")
    assert tool["type"] == "tool-get_weather"
    assert tool["toolCallId"] == "toolu_n"
    assert tool["state"] == "input-available"
    assert tool["input"] == tool_input
    assert read.chunks[-1]["finishReason"] == "tool-calls"


@needs_node
def test_node_reads_a_server_tool_call_and_its_result() -> None:
    read = read_ui_stream(sse(encode(web_search_reply("srvtoolu_n"))))
    (tool,) = read.parts("tool")
    assert tool["type"] == "tool-web_search"
    assert tool["state"] == "output-available"
    assert tool["providerExecuted"] is True
    assert tool["input"] == {"query": "rx python"}
    assert tool["output"][0]["url"] == "https://a.example"
    assert [p["text"] for p in read.parts("text")] == ["Found it."]


@needs_node
def test_node_reads_an_mcp_tool_call_as_dynamic() -> None:
    reply = testing.Reply().block(
        {"type": "mcp_tool_use", "id": "mcptoolu_n", "name": "lookup", "input": {}},
        {"type": "input_json_delta", "partial_json": '{"q": "a"}'},
    )
    (tool,) = read_ui_stream(sse(encode(reply))).parts("dynamic-tool")
    assert tool["toolName"] == "lookup"
    assert tool["state"] == "input-available"
    assert tool["input"] == {"q": "a"}


@needs_node
def test_node_reports_a_mid_stream_error() -> None:
    reply = (
        testing.Reply()
        .text("Hello", " there")
        .tool_use("f", {"a": "bcdef"}, id="t", fragment_size=4)
    )
    read = read_ui_stream(sse(encode([*cut_after(reply, 8), ERROR_EVENT])))
    assert read.errors == ["overloaded_error: Overloaded"]
    assert read.parts("text") == [{"type": "text", "text": "Hello there", "state": "done"}]
    (tool,) = read.parts("tool")
    assert tool["state"] == "output-error"
    assert tool["errorText"].startswith("the tool call was cut off")


@needs_node
def test_node_reads_a_cancelled_reply() -> None:
    reply = testing.Reply().text("Hello", " wor", "ld")
    read = read_ui_stream(sse(encode(cut_after(reply, 4), end="cancelled")))
    assert read.chunks[-1] == {"type": "abort"}
    assert read.parts("text") == [{"type": "text", "text": "Hello wor", "state": "done"}]
    assert read.errors == []


@needs_node
def test_node_reads_an_empty_reply() -> None:
    read = read_ui_stream(sse(encode(testing.Reply(id="msg_e").stop("end_turn"))))
    assert read.message["id"] == "msg_e"
    assert read.message["parts"] == [{"type": "step-start"}]


@needs_node
@pytest.mark.parametrize(
    "bad",
    [
        [{"type": "start"}, {"type": "finish", "finishReason": "done"}],
        [{"type": "start"}, {"type": "text-delta", "id": "text-0", "delta": "x"}],
        [{"type": "start"}, {"type": "text-start"}],
    ],
    ids=["finish-reason", "delta-before-start", "missing-id"],
)
def test_node_reader_refuses_a_stream_the_ai_package_refuses(bad: Chunks) -> None:
    done = run_reader(sse(bad))
    assert done.returncode == 1
    assert done.stderr.startswith(b"read_ui_stream: ")


@needs_node
async def test_node_reads_the_stream_from_a_loopback_server() -> None:
    body = sse(encode(testing.Reply().text("over", " http").stop()))
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        head = [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream",
            *(f"{name}: {value}" for name, value in AI_SDK_HEADERS.items()),
            f"content-length: {len(body)}",
            "connection: close",
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, asyncio.timeout(30):
        read = await asyncio.to_thread(read_ui_stream, b"", f"http://127.0.0.1:{port}/chat", "{}")
    assert requests[0].startswith(b"POST /chat ")
    assert read.headers is not None
    assert read.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert [p["text"] for p in read.parts("text")] == ["over http"]


@needs_node
@settings(
    max_examples=4 * SOAK,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(blocks=st.lists(TEXT_PIECES, min_size=1, max_size=6))
def test_node_reads_any_text_exactly(blocks: list[list[str]]) -> None:
    reply = testing.Reply()
    for pieces in blocks:
        reply = reply.text(*pieces)
    read = read_ui_stream(sse(encode(reply.stop("end_turn"))))
    assert [p["text"] for p in read.parts("text")] == ["".join(pieces) for pieces in blocks]
