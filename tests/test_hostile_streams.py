"""Hand-made odd and hostile streams: what each one ends in, checked against the official SDK.

Five tables:

- ``PARITY``: valid streams (however oddly framed) on which the SDK gives a message; ours must
  dump equal to it.
- ``SDK_CRASHES``: streams the SDK crashes on (a BOM, frames without ``event:``, ``\\d`` in tool
  input, missing usage...); ours is the SDK's message for an equivalent stream it can read.
- ``BETA_PARITY``: beta content, compared with the SDK's beta stream helper.
- ``ERRORS``: truncated, malformed or impossible streams and in-stream errors: the typed error.
- ``BY_DESIGN``: where we knowingly differ from the SDK (it silently drops or mangles data).

At the end, the cases this suite found the library wrong on, each asserting the fixed behaviour.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx._sse import DEFAULT_MAX_LINE_BYTES
from tests.conftest import subscribed
from tests.test_sdk_parity import SDK_AVAILABLE, sdk_outcome

Event = dict[str, Any]

needs_sdk = pytest.mark.skipif(not SDK_AVAILABLE, reason="the anthropic SDK is not installed")

# --- building streams ------------------------------------------------------------------------

USAGE = {"input_tokens": 3, "output_tokens": 1}
START: Event = {
    "type": "message_start",
    "message": {
        "id": "msg_hostile",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-rx-test",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": USAGE,
    },
}
STOP: Event = {"type": "message_stop"}
PING: Event = {"type": "ping"}


def start(*, drop: tuple[str, ...] = (), **message: Any) -> Event:
    """message_start with ``message`` fields set (``None`` included) and ``drop`` removed."""
    event = copy.deepcopy(START)
    event["message"].update(message)
    for key in drop:
        del event["message"][key]
    return event


def usage(**extra: Any) -> dict[str, Any]:
    return {**USAGE, **extra}


def message_delta(
    stop_reason: str = "end_turn", *, usage: Any = None, top: Any = None, **delta: Any
) -> Event:
    event: Event = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None, **delta},
        "usage": {"output_tokens": 5} if usage is None else usage,
    }
    if usage == "absent":
        del event["usage"]
    if top:
        event.update(top)
    return event


def block_start(index: int, block: dict[str, Any]) -> Event:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(index: int, body: dict[str, Any]) -> Event:
    return {"type": "content_block_delta", "index": index, "delta": body}


def text_delta(index: int, text: str) -> Event:
    return delta(index, {"type": "text_delta", "text": text})


def json_delta(index: int, fragment: str) -> Event:
    return delta(index, {"type": "input_json_delta", "partial_json": fragment})


def block_stop(index: int) -> Event:
    return {"type": "content_block_stop", "index": index}


def text_block(index: int, *parts: str, **block: Any) -> list[Event]:
    return [
        block_start(index, {"type": "text", "text": "", **block}),
        *(text_delta(index, part) for part in parts),
        block_stop(index),
    ]


def tool_block(
    index: int, fragments: list[str], kind: str = "tool_use", **block: Any
) -> list[Event]:
    fields = {"type": kind, "id": f"toolu_{index}", "name": "f", "input": {}, **block}
    return [
        block_start(index, fields),
        *(json_delta(index, fragment) for fragment in fragments),
        block_stop(index),
    ]


def whole_block(index: int, block: dict[str, Any]) -> list[Event]:
    return [block_start(index, block), block_stop(index)]


def reply(*blocks: list[Event], first: Event | None = None, end: Event | None = None) -> bytes:
    """message_start, the blocks, message_delta, message_stop."""
    events = [first or START]
    for block in blocks:
        events.extend(block)
    events.extend([end or message_delta(), STOP])
    return testing.sse_bytes(events)


def named(name: str | None, data: object) -> bytes:
    """One frame: ``event: {name}`` (none when ``name`` is None) and ``data`` as compact JSON."""
    head = b"" if name is None else f"event: {name}\n".encode()
    return head + b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def frames(data: bytes) -> list[bytes]:
    return [frame for frame in data.split(b"\n\n") if frame]


def rename(data: bytes, old: str, new: str) -> bytes:
    """``data`` with the ``event:`` line of the first frame named ``old`` renamed ``new``."""
    marker = f"event: {old}\n".encode()
    assert marker in data
    return data.replace(marker, f"event: {new}\n".encode(), 1)


def split_data_lines(data: bytes) -> bytes:
    """Each frame's ``data:`` line cut after its first comma into two ``data:`` lines."""
    out: list[bytes] = []
    for frame in frames(data):
        lines: list[bytes] = []
        for line in frame.split(b"\n"):
            comma = line.find(b",")
            if line.startswith(b"data: ") and comma > 0:
                lines += [line[: comma + 1], b"data:" + line[comma + 1 :]]
            else:
                lines.append(line)
        out.append(b"\n".join(lines))
    return b"\n\n".join(out) + b"\n\n"


BASIC = testing.text_reply("Hello", " wörld ", "😀", "\u2028\x85").to_sse()
ONE_TEXT = text_block(0, "hi")
JSON_1CHAR = '{"q": "caf\\u00e9 \\ud83d\\ude00 \\"x\\"", "n": [1, 2.5, null, true], "o": {}}'
BAD_ESCAPES = '{"re": "\\d+\\.\\w", "path": "C:\\q", "ok": "\\n"}'
BAD_ESCAPES_READ = {"re": "\\d+\\.\\w", "path": "C:\\q", "ok": "\n"}
CITATIONS: list[dict[str, Any]] = [
    {
        "type": "char_location",
        "cited_text": "a",
        "document_index": 0,
        "document_title": "T",
        "start_char_index": 0,
        "end_char_index": 1,
    },
    {
        "type": "page_location",
        "cited_text": "b",
        "document_index": 0,
        "document_title": None,
        "start_page_number": 1,
        "end_page_number": 2,
    },
    {
        "type": "content_block_location",
        "cited_text": "c",
        "document_index": 1,
        "document_title": "D",
        "start_block_index": 0,
        "end_block_index": 1,
    },
    {
        "type": "web_search_result_location",
        "cited_text": "d",
        "url": "https://example.com",
        "title": "Example",
        "encrypted_index": "enc",
    },
    {
        "type": "search_result_location",
        "cited_text": "e",
        "source": "kb",
        "title": None,
        "search_result_index": 0,
        "start_block_index": 0,
        "end_block_index": 1,
    },
    # A citation type from a newer API (no nulls nested in it: see BY_DESIGN).
    {"type": "future_location", "cited_text": "f", "where": {"a": [1, {"b": "c"}], "d": True}},
]
MCP_RESULT = {
    "type": "mcp_tool_result",
    "tool_use_id": "toolu_0",
    "is_error": False,
    "content": [{"type": "text", "text": "1"}],
}
SERVER_TOOLS: list[list[Event]] = [
    tool_block(0, ['{"query": "x', 'yz"}'], kind="server_tool_use", name="web_search"),
    whole_block(
        1,
        {
            "type": "web_search_tool_result",
            "tool_use_id": "toolu_0",
            "content": [
                {
                    "type": "web_search_result",
                    "url": "https://a.example",
                    "title": "A",
                    "encrypted_content": "enc",
                    "page_age": None,
                }
            ],
        },
    ),
    whole_block(
        2,
        {
            "type": "web_search_tool_result",
            "tool_use_id": "toolu_0",
            "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"},
        },
    ),
    tool_block(3, ['{"url":', '"https://a.example"}'], kind="server_tool_use", name="web_fetch"),
    whole_block(
        4,
        {
            "type": "web_fetch_tool_result",
            "tool_use_id": "toolu_3",
            "content": {
                "type": "web_fetch_result",
                "url": "https://a.example",
                "retrieved_at": "2025-01-01T00:00:00Z",
                "content": {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "hi"},
                    "title": "A",
                    "citations": {"enabled": True},
                },
            },
        },
    ),
    tool_block(5, ['{"code": "print(1)"}'], kind="server_tool_use", name="code_execution"),
    whole_block(
        6,
        {
            "type": "code_execution_tool_result",
            "tool_use_id": "toolu_5",
            "content": {
                "type": "code_execution_result",
                "stdout": "1\n",
                "stderr": "",
                "return_code": 0,
                "content": [],
            },
        },
    ),
    whole_block(
        7,
        {
            "type": "bash_code_execution_tool_result",
            "tool_use_id": "toolu_5",
            "content": {
                "type": "bash_code_execution_result",
                "stdout": "",
                "stderr": "oops",
                "return_code": 1,
                "content": [{"type": "bash_code_execution_output", "file_id": "file_1"}],
            },
        },
    ),
    whole_block(
        8,
        {
            "type": "text_editor_code_execution_tool_result",
            "tool_use_id": "toolu_5",
            "content": {
                "type": "text_editor_code_execution_view_result",
                "file_type": "text",
                "content": "x",
                "num_lines": 1,
                "start_line": 1,
                "total_lines": 1,
            },
        },
    ),
    whole_block(9, MCP_RESULT),
    whole_block(
        10,
        {
            "type": "tool_search_tool_result",
            "tool_use_id": "toolu_x",
            "content": {
                "type": "tool_search_tool_search_result",
                "tool_references": [{"type": "tool_reference", "tool_name": "x"}],
            },
        },
    ),
    whole_block(11, {"type": "container_upload", "file_id": "file_2"}),
    text_block(12, "Found it."),
]
START_EXTRAS = start(
    usage=usage(
        service_tier="standard",
        cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2},
        cache_creation_input_tokens=2,
        cache_read_input_tokens=7,
        inference_geo="us",
    ),
    container={"id": "container_1", "expires_at": "2025-01-01T00:00:00Z"},
    context_management={"applied_edits": []},
)
DELTA_EXTRAS = message_delta(
    "pause_turn",
    usage={
        "output_tokens": 9,
        "input_tokens": 4,
        "cache_read_input_tokens": None,
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1},
        "output_tokens_details": {"thinking_tokens": 3},
    },
    container={"id": "container_2", "expires_at": "2025-02-01T00:00:00Z"},
    stop_details={"type": "refusal", "category": "cyber", "explanation": "no"},
)
THINKING = [
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    delta(0, {"type": "thinking_delta", "thinking": "Let me "}),
    delta(0, {"type": "thinking_delta", "thinking": "think."}),
    delta(0, {"type": "signature_delta", "signature": "sig-1"}),
    delta(0, {"type": "signature_delta", "signature": "sig-2"}),
    block_stop(0),
]

PARITY: dict[str, bytes] = {
    "plain-unicode": BASIC,
    "crlf": BASIC.replace(b"\n", b"\r\n"),
    "lone-cr": BASIC.replace(b"\n", b"\r"),
    "mixed-line-ends": BASIC.replace(b"\n\n", b"\r\n\r", 3).replace(b"\ndata", b"\rdata"),
    "data-and-event-without-space": BASIC.replace(b"data: ", b"data:").replace(
        b"event: ", b"event:"
    ),
    "multi-line-data-splits-json": split_data_lines(BASIC),
    "comments-retry-id-between-frames": b"".join(
        frame + b"\n\n: keep-alive\nretry: 3000\nid: 42\n\n" for frame in frames(BASIC)
    ),
    "comment-and-id-inside-frames": b"".join(
        b": c\nid: 7\n" + frame + b"\n: tail\n\n" for frame in frames(BASIC)
    ),
    "unknown-sse-fields": BASIC.replace(b"data: ", b"x-proxy: 1\ndata: "),
    "pings-everywhere": testing.text_reply("a", "b", "c").to_sse(ping_every=1),
    "no-blank-line-after-message-stop": BASIC[:-1],
    "no-newline-at-all-after-message-stop": BASIC[:-1].rstrip(b"\n"),
    "no-blank-line-after-message-stop-crlf": BASIC.replace(b"\n", b"\r\n")[:-4],
    "no-blank-line-after-message-stop-cr": BASIC.replace(b"\n", b"\r")[:-2],
    "unknown-event-types": testing.sse_bytes(
        [
            START,
            {"type": "future_event", "x": {"y": [1, None, {"z": "w"}]}},
            *ONE_TEXT,
            {"type": "another_future_event"},
            message_delta(),
            STOP,
        ]
    ),
    "unknown-delta-in-text-block": reply(
        [*ONE_TEXT[:1], delta(0, {"type": "future_delta", "x": {"y": 1}}), *ONE_TEXT[1:]]
    ),
    "ping-name-with-trailing-space-is-not-a-ping": rename(
        reply(ONE_TEXT), "content_block_delta", "ping "
    ),
    "message-start-named-content-block-delta": rename(
        reply(ONE_TEXT), "message_start", "content_block_delta"
    ),
    "delta-named-message-start": rename(reply(ONE_TEXT), "content_block_delta", "message_start"),
    "delta-named-ping-with-space": rename(reply(ONE_TEXT), "content_block_delta", "ping\t"),
    "message-delta-named-message-stop": rename(reply(ONE_TEXT), "message_delta", "message_stop"),
    "block-stop-named-message-delta": rename(
        reply(ONE_TEXT), "content_block_stop", "message_delta"
    ),
    "message-stop-named-content-block-stop": rename(
        reply(ONE_TEXT), "message_stop", "content_block_stop"
    ),
    "message-stop-named-message-delta": rename(reply(ONE_TEXT), "message_stop", "message_delta"),
    "message-stop-named-message-start": rename(reply(ONE_TEXT), "message_stop", "message_start"),
    "message-stop-named-unknown": rename(reply(ONE_TEXT), "message_stop", "whatever"),
    "message-stop-named-message": rename(reply(ONE_TEXT), "message_stop", "message"),
    "server-tools-and-tool-results": reply(*SERVER_TOOLS),
    "citations-of-every-kind": reply(
        [
            block_start(0, {"type": "text", "text": "", "citations": None}),
            *(delta(0, {"type": "citations_delta", "citation": c}) for c in CITATIONS),
            text_delta(0, "cited"),
            block_stop(0),
        ]
    ),
    "citations-onto-a-started-list": reply(
        [
            block_start(0, {"type": "text", "text": "", "citations": [CITATIONS[1]]}),
            delta(0, {"type": "citations_delta", "citation": CITATIONS[0]}),
            block_stop(0),
        ]
    ),
    "citations-onto-an-empty-list": reply(
        [
            block_start(0, {"type": "text", "text": "", "citations": []}),
            delta(0, {"type": "citations_delta", "citation": CITATIONS[3]}),
            block_stop(0),
        ]
    ),
    "message-start-extra-fields": reply(ONE_TEXT, first=START_EXTRAS),
    "message-delta-extra-fields": reply(ONE_TEXT, first=START_EXTRAS, end=DELTA_EXTRAS),
    "message-delta-extra-fields-plain-start": reply(ONE_TEXT, end=DELTA_EXTRAS),
    "message-delta-nulls-keep-start-usage": reply(
        ONE_TEXT,
        first=start(
            usage=usage(cache_read_input_tokens=9, server_tool_use={"web_search_requests": 1})
        ),
        end=message_delta(
            usage={
                "output_tokens": 5,
                "input_tokens": None,
                "cache_read_input_tokens": None,
                "server_tool_use": None,
            },
            container=None,
        ),
    ),
    "two-message-deltas-overwrite": testing.sse_bytes(
        [
            START,
            *ONE_TEXT,
            message_delta("stop_sequence", stop_sequence="END", usage={"output_tokens": 3}),
            message_delta("max_tokens", usage={"output_tokens": 11}),
            STOP,
        ]
    ),
    "message-start-with-content": testing.sse_bytes(
        [
            start(content=[{"type": "text", "text": "pre"}]),
            text_delta(0, "+more"),
            *text_block(1, "next"),
            message_delta(),
            STOP,
        ]
    ),
    "tool-input-1-char-fragments-unicode-escapes": reply(
        tool_block(0, ["", *JSON_1CHAR, ""], input={})
    ),
    "tool-input-empty-fragments-only": reply(tool_block(0, ["", "", ""])),
    "tool-input-no-deltas": reply(tool_block(0, [])),
    "tool-input-whole-in-block-start": reply(tool_block(0, [], input={"a": 1})),
    "tool-input-escape-split-across-fragments": reply(
        tool_block(0, ['{"a": "\\', "u00", "e9\\ud83d", "\\ude", '00"}'])
    ),
    "tool-input-unfinished-at-block-stop": reply(tool_block(0, ['{"a": "b", "c": "unfin'])),
    "tool-input-array-and-huge-numbers": reply(
        tool_block(0, ["[123456789012345678901234567890, 1e400, ", '{"k": -0.0}]'])
    ),
    "thinking-signature-redacted-text": reply(
        THINKING,
        whole_block(1, {"type": "redacted_thinking", "data": "EmwKAhgB..."}),
        text_block(2, "Answer"),
    ),
    "escaped-surrogate-pair-in-text": reply(text_block(0, "a\U0001f600b")).replace(
        "\U0001f600".encode(), b"\\ud83d\\ude00"
    ),
    "line-separators-and-nul-in-text": reply(text_block(0, "a\u2028b\u2029c\x85d\r\ne\x00f")),
    "bom-inside-text": reply(text_block(0, "\ufeffx")),
}


@needs_sdk
@pytest.mark.parametrize("data", PARITY.values(), ids=PARITY.keys())
async def test_same_message_as_the_sdk(data: bytes) -> None:
    outcome = sdk_outcome(data)
    assert "message" in outcome, outcome  # the table holds only streams the SDK reads
    assert await ours(data) == outcome["message"]


# --- the SDK crashes; we finish the message --------------------------------------------------

WITH_BOM = b"\xef\xbb\xbf" + BASIC
UNNAMED = reply(ONE_TEXT).replace(b"event: ", b"x-event: ")

SDK_CRASHES: dict[str, tuple[bytes, bytes]] = {
    # The SDK reads "\ufeffevent" as an unknown field and drops message_start: AssertionError.
    "bom": (WITH_BOM, BASIC),
    "bom-crlf": (WITH_BOM.replace(b"\n", b"\r\n"), BASIC),
    # The SDK skips every frame without an ``event:`` line.
    "no-event-lines": (UNNAMED, reply(ONE_TEXT)),
    # jiter refuses \d: ValueError. We read it as a literal backslash.
    "tool-input-bad-escapes-1-char": (
        reply(tool_block(0, list(BAD_ESCAPES))),
        reply(tool_block(0, [json.dumps(BAD_ESCAPES_READ)])),
    ),
    "tool-input-whitespace-only": (reply(tool_block(0, ["  ", "\n"])), reply(tool_block(0, []))),
    # message_start without usage: the SDK writes into None on message_delta.
    "message-start-without-usage": (
        reply(ONE_TEXT, first=start(drop=("usage",))),
        reply(ONE_TEXT, first=start(usage={"input_tokens": 0, "output_tokens": 0})),
    ),
    "message-delta-without-usage": (
        reply(ONE_TEXT, end=message_delta(usage="absent")),
        reply(ONE_TEXT, end=message_delta(usage={"output_tokens": 1})),
    ),
    "message-start-without-content": (
        reply(ONE_TEXT, first=start(drop=("content",))),
        reply(ONE_TEXT),
    ),
}


@needs_sdk
@pytest.mark.parametrize(("data", "reference"), SDK_CRASHES.values(), ids=SDK_CRASHES.keys())
async def test_a_complete_message_where_the_sdk_crashes(data: bytes, reference: bytes) -> None:
    expected = sdk_outcome(reference)
    assert "message" in expected, expected
    assert await ours(data) == expected["message"]


async def test_no_usage_anywhere_is_a_message_without_usage() -> None:
    message = await final(
        reply(ONE_TEXT, first=start(drop=("usage",)), end=message_delta(usage="absent"))
    )
    assert message.usage is None
    assert message.content == (arx.TextBlock(text="hi"),)
    assert message.stop_reason == "end_turn"


async def test_bad_escapes_in_tool_input_are_literal_backslashes() -> None:
    message = await final(reply(tool_block(0, list(BAD_ESCAPES))))
    block = message.content[0]
    assert isinstance(block, arx.ToolUseBlock)
    assert block.input == BAD_ESCAPES_READ
    assert block.input_json == BAD_ESCAPES


# --- beta content, against the SDK's beta helper ---------------------------------------------


BETA_PARITY: dict[str, bytes] = {
    "mcp-tool-use-and-result": reply(
        tool_block(0, ['{"a"', ": 1}"], kind="mcp_tool_use", server_name="srv"),
        whole_block(1, MCP_RESULT),
    ),
    "context-management-on-message-delta": reply(
        ONE_TEXT,
        end=message_delta(
            top={
                "context_management": {
                    "applied_edits": [
                        {
                            "type": "clear_tool_uses_20250919",
                            "cleared_tool_uses": 1,
                            "cleared_input_tokens": 10,
                        }
                    ]
                }
            }
        ),
    ),
    "compaction-delta-replaces": reply(
        [
            block_start(0, {"type": "compaction", "content": "old", "encrypted_content": "x"}),
            delta(0, {"type": "compaction_delta", "content": "summary"}),
            block_stop(0),
        ],
        text_block(1, "after"),
    ),
    "fallback-switches-model": reply(
        whole_block(
            0,
            {
                "type": "fallback",
                "from": {"model": "claude-rx-test"},
                "to": {"model": "claude-rx-other"},
            },
        ),
        text_block(1, "hi"),
    ),
}


@needs_sdk
@pytest.mark.parametrize("data", BETA_PARITY.values(), ids=BETA_PARITY.keys())
async def test_same_message_as_the_sdk_beta_helper(data: bytes) -> None:
    outcome = sdk_outcome(data, beta=True)
    assert "message" in outcome, outcome
    assert await ours(data) == outcome["message"]


# --- typed errors ----------------------------------------------------------------------------

OVERLOADED = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
UNTIL_TEXT = testing.sse_bytes([START, *ONE_TEXT])
TEXT_STARTED = testing.sse_bytes([START, ONE_TEXT[0]])
LONG = reply(text_block(0, "x" * 5000))

# id: (bytes, error class (exact), whether a partial message exists)
ERRORS: dict[str, tuple[bytes, type[Exception], bool]] = {
    "empty-body": (b"", arx.IncompleteStreamError, False),
    "only-pings-and-comments": (
        b": hi\n\n" + testing.sse_bytes([PING]),
        arx.IncompleteStreamError,
        False,
    ),
    "cut-before-message-stop": (
        BASIC[: BASIC.rindex(b"event: message_stop")],
        arx.IncompleteStreamError,
        True,
    ),
    "cut-inside-last-json": (BASIC[: len(BASIC) // 2], arx.IncompleteStreamError, True),
    "cut-inside-message-stop-json": (BASIC[:-8], arx.IncompleteStreamError, True),
    # A frame named ping is a ping, whatever its data says.
    "message-stop-named-ping": (
        rename(reply(ONE_TEXT), "message_stop", "ping"),
        arx.IncompleteStreamError,
        True,
    ),
    "invalid-utf8-mid-stream": (
        TEXT_STARTED + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"\xff"}}\n\n' + testing.sse_bytes([STOP]),
        arx.ProtocolError,
        True,
    ),
    "json-with-trailing-garbage": (
        TEXT_STARTED + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"x"}}x\n\n' + testing.sse_bytes([STOP]),
        arx.ProtocolError,
        True,
    ),
    "multi-line-data-splits-a-json-string": (
        TEXT_STARTED + b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"ab\ndata: cd"}}\n\n' + testing.sse_bytes([STOP]),
        arx.ProtocolError,
        True,
    ),
    "json-null": (
        TEXT_STARTED + b"event: content_block_delta\ndata: null\n\n",
        arx.ProtocolError,
        True,
    ),
    "json-array": (
        TEXT_STARTED + b"event: content_block_delta\ndata: [1]\n\n",
        arx.ProtocolError,
        True,
    ),
    "openai-done-marker-before-stop": (
        testing.sse_bytes([START, *ONE_TEXT, message_delta()])
        + b"data: [DONE]\n\n"
        + testing.sse_bytes([STOP]),
        arx.ProtocolError,
        True,
    ),
    "event-without-type": (
        TEXT_STARTED
        + named("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "x"}}),
        arx.ProtocolError,
        True,
    ),
    "delta-without-type": (
        TEXT_STARTED + named("content_block_delta", {**text_delta(0, "x"), "delta": {"text": "x"}}),
        arx.ProtocolError,
        True,
    ),
    "text-delta-not-a-string": (
        TEXT_STARTED + named("content_block_delta", delta(0, {"type": "text_delta", "text": 5})),
        arx.ProtocolError,
        True,
    ),
    "model-null": (reply(ONE_TEXT, first=start(model=None)), arx.ProtocolError, False),
    "text-delta-into-tool-use": (
        reply([*tool_block(0, [])[:1], text_delta(0, "x"), block_stop(0)]),
        arx.ProtocolError,
        True,
    ),
    "json-delta-into-text": (
        reply([ONE_TEXT[0], json_delta(0, "{}"), block_stop(0)]),
        arx.ProtocolError,
        True,
    ),
    "delta-index-out-of-range": (
        reply([ONE_TEXT[0], text_delta(1, "x"), block_stop(0)]),
        arx.ProtocolError,
        True,
    ),
    "delta-index-negative": (
        reply([ONE_TEXT[0], text_delta(-1, "x"), block_stop(0)]),
        arx.ProtocolError,
        True,
    ),
    "delta-index-true": (
        TEXT_STARTED + named("content_block_delta", {**text_delta(0, "x"), "index": True}),
        arx.ProtocolError,
        True,
    ),
    "block-start-skips-an-index": (reply(text_block(1, "x")), arx.ProtocolError, True),
    "second-message-start": (
        testing.sse_bytes([START, START, *ONE_TEXT, message_delta(), STOP]),
        arx.ProtocolError,
        True,
    ),
    "block-before-message-start": (
        testing.sse_bytes([*ONE_TEXT, START, message_delta(), STOP]),
        arx.ProtocolError,
        False,
    ),
    "line-longer-than-the-cap": (LONG, arx.ProtocolError, True),
    # In-stream errors: typed by error.type.
    "error-event-mid-stream": (
        UNTIL_TEXT + b"event: error\ndata: " + OVERLOADED + b"\n\n",
        arx.OverloadedError,
        True,
    ),
    "error-event-before-message-start": (
        b"event: error\ndata: " + OVERLOADED + b"\n\n",
        arx.OverloadedError,
        False,
    ),
    "error-event-crlf-no-final-blank-line": (
        (UNTIL_TEXT + b"event: error\ndata: " + OVERLOADED).replace(b"\n", b"\r\n"),
        arx.OverloadedError,
        True,
    ),
    "error-event-empty-data": (
        UNTIL_TEXT + b"event: error\ndata:\n\n",
        arx.InternalServerError,
        True,
    ),
    "error-event-unknown-error-type": (
        UNTIL_TEXT
        + named("error", {"type": "error", "error": {"type": "teapot_error", "message": "short"}}),
        arx.APIError,
        True,
    ),
    "error-name-with-message-stop-data": (
        rename(reply(ONE_TEXT), "message_stop", "error"),
        arx.InternalServerError,
        True,
    ),
    "error-data-in-unnamed-frame": (
        UNTIL_TEXT + b"data: " + OVERLOADED + b"\n\n",
        arx.OverloadedError,
        True,
    ),
}


def cases(table: dict[str, Any]) -> list[Any]:
    return [pytest.param(*(v if isinstance(v, tuple) else (v,)), id=k) for k, v in table.items()]


@pytest.mark.parametrize(("data", "cls", "has_partial"), cases(ERRORS))
async def test_typed_error(data: bytes, cls: type[Exception], has_partial: bool) -> None:
    with pytest.raises(cls) as caught:
        await final(data, max_line_bytes=max_line(data))
    error = caught.value
    assert type(error) is cls
    assert isinstance(error, arx.AnthropicRxError)
    assert (error.partial_message is not None) == has_partial
    if isinstance(error, arx.APIError):
        assert error.status_code == 200


def max_line(data: bytes) -> int:
    return 4096 if data == LONG else DEFAULT_MAX_LINE_BYTES


async def test_the_error_partial_message_is_what_arrived() -> None:
    with pytest.raises(arx.OverloadedError) as caught:
        await final(UNTIL_TEXT + b"event: error\ndata: " + OVERLOADED + b"\n\n")
    partial = caught.value.partial_message
    assert partial is not None
    assert partial.content == (arx.TextBlock(text="hi"),)
    assert partial.stop_reason is None


# --- where we differ from the SDK on purpose -------------------------------------------------


def first_block(message: arx.Message) -> dict[str, Any]:
    dumped = message.model_dump(mode="json", exclude_none=True)
    block: dict[str, Any] = dumped["content"][0]
    return block


BY_DESIGN: dict[str, tuple[bytes, Callable[[arx.Message], object], object]] = {
    # The SDK keeps reading after message_stop and applies what follows; we stop at it.
    "text-after-message-stop-is-not-read": (
        reply(ONE_TEXT) + testing.sse_bytes([text_delta(0, "X"), STOP]),
        lambda m: first_block(m)["text"],
        "hi",
    ),
    "garbage-after-message-stop-is-not-read": (
        reply(ONE_TEXT) + b"data: {not json\n\n\xff\xfe",
        lambda m: first_block(m)["text"],
        "hi",
    ),
    # The SDK drops a frame without an ``event:`` line; we read it by its data's type.
    "unnamed-frame-is-read": (
        testing.sse_bytes([START, ONE_TEXT[0]])
        + named(None, text_delta(0, "X"))
        + testing.sse_bytes([*ONE_TEXT[1:], message_delta(), STOP]),
        lambda m: first_block(m)["text"],
        "Xhi",
    ),
    # The SDK keeps a lone surrogate, which no UTF-8 encoder takes; we make it U+FFFD.
    "lone-surrogate-in-text-is-replaced": (
        reply(text_block(0, "aQb")).replace(b"aQb", b"a\\ud83db"),
        lambda m: first_block(m)["text"],
        "a\ufffdb",
    ),
    # The SDK leaves an unknown block's input as it started; we parse input_json_delta into it.
    "unknown-block-with-input-takes-json": (
        reply(tool_block(0, ['{"z": ', "1}"], kind="future_tool_use", nested={"a": [1, {"b": 2}]})),
        first_block,
        {
            "type": "future_tool_use",
            "id": "toolu_0",
            "name": "f",
            "input": {"z": 1},
            "nested": {"a": [1, {"b": 2}]},
        },
    ),
    # ... and a text_delta into an unknown block's string ``text`` field (the SDK drops it).
    "unknown-block-with-text-takes-text-delta": (
        reply(
            [
                block_start(0, {"type": "future_text", "text": "", "meta": {"x": [1]}}),
                text_delta(0, "t"),
                block_stop(0),
            ]
        ),
        first_block,
        {"type": "future_text", "text": "t", "meta": {"x": [1]}},
    ),
    # Unknown fields of message_delta's delta and usage reach the message; one beside them stays
    # on the event (as in the SDK).
    "unknown-delta-and-usage-fields-reach-the-message": (
        reply(
            ONE_TEXT,
            end=message_delta(
                usage={"output_tokens": 5, "future_count": 2},
                future_flag=True,
                top={"future_top": {"b": 2}},
            ),
        ),
        lambda m: {
            k: v
            for k, v in m.model_dump(mode="json", exclude_none=True).items()
            if k.startswith("future") or k == "usage"
        },
        {
            "future_flag": True,
            "usage": {"input_tokens": 3, "output_tokens": 5, "future_count": 2},
        },
    ),
    # An unknown citation's nested nulls: the SDK keeps them (plain dicts), we drop them.
    "unknown-citation-nested-nulls-dropped": (
        reply(
            [
                ONE_TEXT[0],
                delta(
                    0,
                    {
                        "type": "citations_delta",
                        "citation": {
                            "type": "future_location",
                            "cited_text": "f",
                            "w": {"a": None, "b": [{"c": None}]},
                        },
                    },
                ),
                block_stop(0),
            ]
        ),
        lambda m: first_block(m)["citations"],
        [{"type": "future_location", "cited_text": "f", "w": {"b": [{}]}}],
    ),
    # ``"usage": {}`` on message_delta (output_tokens is required): we keep the count we had;
    # the SDK sets it to None and dumps a usage without output_tokens.
    "message-delta-empty-usage-keeps-counts": (
        reply(ONE_TEXT, end=message_delta(usage={})),
        lambda m: m.model_dump(mode="json", exclude_none=True)["usage"],
        {"input_tokens": 3, "output_tokens": 1},
    ),
    "mcp-tool-use-input-is-parsed": (
        reply(tool_block(0, ['{"a": 1}'], kind="mcp_tool_use", server_name="srv")),
        first_block,
        {
            "type": "mcp_tool_use",
            "id": "toolu_0",
            "name": "f",
            "server_name": "srv",
            "input": {"a": 1},
        },
    ),
}


@pytest.mark.parametrize(("data", "pick", "expected"), BY_DESIGN.values(), ids=BY_DESIGN.keys())
async def test_deliberate_difference_from_the_sdk(
    data: bytes, pick: Callable[[arx.Message], object], expected: object
) -> None:
    assert pick(await final(data)) == expected


# --- every way of cutting the bytes gives the same outcome -----------------------------------

ALL_CASES: dict[str, bytes] = {
    **PARITY,
    **{name: data for name, (data, _) in SDK_CRASHES.items()},
    **BETA_PARITY,
    **{name: data for name, (data, _, _) in ERRORS.items()},
    **{name: data for name, (data, _, _) in BY_DESIGN.items()},
}


@pytest.mark.parametrize("data", cases(ALL_CASES))
async def test_same_outcome_bytewise_and_async(data: bytes) -> None:
    cap = max_line(data)
    whole = await outcome_of([data], cap)
    assert await outcome_of([data[i : i + 1] for i in range(len(data))], cap) == whole

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 7):
            await asyncio.sleep(0)
            yield data[i : i + 7]

    assert await outcome_of(chunks(), cap) == whole


# --- what this suite found wrong, now fixed -------------------------------------------------

DELTA_NAMED_STOP = testing.sse_bytes([START, *ONE_TEXT, message_delta()]) + (
    b'event: content_block_delta\ndata: {"type":"message_stop"}\n\n'
)


async def test_message_stop_in_a_frame_named_content_block_delta() -> None:
    assert await final(DELTA_NAMED_STOP) == await final(
        testing.sse_bytes([START, *ONE_TEXT, message_delta(), STOP])
    )


async def test_nothing_is_read_after_that_message_stop() -> None:
    data = DELTA_NAMED_STOP + testing.sse_bytes([text_delta(0, "AFTER"), STOP])
    events, error, completed = subscribed(data)
    assert error is None
    assert completed
    assert events[-1].type == "message_stop"
    assert first_block(await final(data))["text"] == "hi"


def test_error_in_a_frame_named_content_block_delta_ends_the_stream() -> None:
    data = UNTIL_TEXT + b"event: content_block_delta\ndata: " + OVERLOADED + b"\n\n"
    data += testing.sse_bytes([text_delta(0, "AFTER"), message_delta(), STOP])
    events, error, completed = subscribed(data)
    assert error is None
    assert completed
    last = events[-1]
    assert isinstance(last, arx.ErrorEvent)
    assert last.partial_message is not None


async def test_cut_inside_a_multibyte_character_is_incomplete() -> None:
    cut = BASIC[: BASIC.index("😀".encode()) + 2]
    with pytest.raises(arx.IncompleteStreamError):
        await final(cut)


async def test_error_frame_without_data_line_raises() -> None:
    data = UNTIL_TEXT + b"event: error\n\n" + testing.sse_bytes([message_delta(), STOP])
    with pytest.raises(arx.APIError):
        await final(data)


STOP_DETAILS = {"type": "refusal", "category": "cyber"}


@needs_sdk
@pytest.mark.parametrize(
    "data",
    [
        testing.sse_bytes(
            [
                START,
                *ONE_TEXT,
                message_delta("refusal", stop_details=STOP_DETAILS),
                message_delta(),
                STOP,
            ]
        ),
        testing.sse_bytes(
            [
                START,
                *ONE_TEXT,
                message_delta("refusal", stop_details=STOP_DETAILS),
                message_delta(stop_details=None),
                STOP,
            ]
        ),
        reply(ONE_TEXT, first=start(stop_details=STOP_DETAILS)),
    ],
    ids=["later-delta-omits-it", "later-delta-nulls-it", "set-in-message-start"],
)
async def test_stop_details_replaced_by_each_message_delta(data: bytes) -> None:
    outcome = sdk_outcome(data)
    assert "message" in outcome
    assert await ours(data) == outcome["message"]


async def test_lone_surrogate_in_tool_input_keeps_the_rest() -> None:
    message = await final(reply(tool_block(0, ['{"a": "\\ud83d", "b": 2}'])))
    assert first_block(message)["input"] == {"a": "\ufffd", "b": 2}


async def test_message_stop_before_message_start_is_a_protocol_error() -> None:
    with pytest.raises(arx.ProtocolError):
        await final(testing.sse_bytes([STOP]))


# --- helpers ---------------------------------------------------------------------------------


async def final(data: bytes, *, max_line_bytes: int | None = None) -> arx.Message:
    if max_line_bytes is None:
        return await arx.final_message(arx.from_sse_bytes(data))
    return await arx.final_message(arx.from_sse_bytes(data, max_line_bytes=max_line_bytes))


async def ours(data: bytes) -> dict[str, Any]:
    dumped: dict[str, Any] = (await final(data)).model_dump(mode="json", exclude_none=True)
    return dumped


async def outcome_of(
    source: list[bytes] | AsyncIterator[bytes], max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> tuple[str, str]:
    """The message's JSON, or the error's class and its partial message's JSON."""
    try:
        message = await arx.final_message(arx.from_sse_bytes(source, max_line_bytes=max_line_bytes))
    except arx.AnthropicRxError as exc:
        partial = exc.partial_message
        return type(exc).__name__, "" if partial is None else partial.model_dump_json()
    return "message", message.model_dump_json()


def test_the_tables_hold_what_they_say() -> None:
    # Guards against a typo making two cases the same stream.
    for table in (PARITY, BETA_PARITY):
        assert len(set(table.values())) == len(table)
    assert json.loads(frames(BASIC)[0].split(b"data: ", 1)[1])["type"] == "message_start"
