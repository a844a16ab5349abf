"""Hypothesis strategies for valid Messages API streams, as JSON-able event dicts and SSE bytes.

A generated stream is what the API could send: ``message_start`` (usage sometimes absent),
content blocks one after another (text with and without citations, thinking with its signature,
redacted thinking, client and server tool calls whose input is streamed as ``input_json_delta``
fragments cut anywhere, web search results arriving whole, block types from a newer API),
``message_delta`` with cumulative usage, then ``message_stop``; pings and unknown events between
any two events, unknown deltas inside any block.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "LINE_ENDS",
    "chunked",
    "event_sequences",
    "json_values",
    "sse_streams",
    "texts",
    "to_sse",
    "tool_inputs",
]

Event = dict[str, Any]

LINE_ENDS = ("\n", "\r\n", "\r")

# Characters that break naive decoders: line separators that are not SSE line ends, quotes and
# backslashes that JSON escapes, multi-byte and astral characters, controls.
_TRICKY = (
    "\u2028",
    "\u2029",
    "\x85",
    '"',
    "\\",
    "\\d",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\x00",
    "é",
    "中文",
    "😀",
    "\U0001f9d1\u200d\U0001f4bb",
    "{",
    "}",
    "data: ",
    "event: x",
    ":",
)


def texts(*, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Text mixing arbitrary unicode with the tricky characters above."""
    piece = st.one_of(
        st.sampled_from(_TRICKY),
        st.text(min_size=1, max_size=3),
        st.text(alphabet="abc xyz", min_size=1, max_size=6),
    )
    return st.lists(piece, min_size=min_size, max_size=max_size).map("".join)


def json_values(*, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value (finite floats, object keys from :func:`texts`)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53), max_value=2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        texts(),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(texts(max_size=4), children, max_size=3),
        ),
        max_leaves=max_leaves,
    )


def tool_inputs() -> st.SearchStrategy[dict[str, Any]]:
    """A tool's input: always a JSON object."""
    return st.dictionaries(texts(max_size=4), json_values(), max_size=4)


@st.composite
def _cut(draw: st.DrawFn, text: str, max_pieces: int = 8) -> list[str]:
    """``text`` cut at random points (empty pieces included)."""
    cuts = draw(st.lists(st.integers(min_value=0, max_value=len(text)), max_size=max_pieces - 1))
    points = [0, *sorted(cuts), len(text)]
    return [text[a:b] for a, b in pairwise(points)]


_IDS = st.text(alphabet="0123456789abcdefABCDEF", min_size=4, max_size=12)


def _delta(index: int, delta: dict[str, Any]) -> Event:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _unknown_delta() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda n, value: {"type": f"future_delta_{n}", "value": value},
        st.integers(0, 3),
        json_values(max_leaves=3),
    )


def _citation() -> st.SearchStrategy[dict[str, Any]]:
    char_location = st.builds(
        lambda cited, index, title, start, length: {
            "type": "char_location",
            "cited_text": cited,
            "document_index": index,
            "document_title": title,
            "start_char_index": start,
            "end_char_index": start + length,
        },
        texts(),
        st.integers(0, 5),
        st.none() | texts(),
        st.integers(0, 1000),
        st.integers(0, 1000),
    )
    page_location = st.builds(
        lambda cited, title, start: {
            "type": "page_location",
            "cited_text": cited,
            "document_index": 0,
            "document_title": title,
            "start_page_number": start,
            "end_page_number": start + 1,
        },
        texts(),
        st.none() | texts(),
        st.integers(1, 100),
    )
    web = st.builds(
        lambda cited, title, key: {
            "type": "web_search_result_location",
            "cited_text": cited,
            "url": f"https://example.com/{key}",
            "title": title,
            "encrypted_index": f"Eo{key}",
        },
        texts(),
        st.none() | texts(),
        _IDS,
    )
    return st.one_of(char_location, page_location, web)


@st.composite
def _text_block(draw: st.DrawFn, index: int, unknown: bool) -> list[Event]:
    start: dict[str, Any] = {"type": "text", "text": ""}
    citations = draw(st.sampled_from(["absent", "empty", "absent"]))
    if citations == "empty":
        start["citations"] = []
    events: list[Event] = [{"type": "content_block_start", "index": index, "content_block": start}]
    kinds = ["text", "text", "text", "citation"] + (["unknown"] if unknown else [])
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=10)):
        if kind == "text":
            events.append(_delta(index, {"type": "text_delta", "text": draw(texts())}))
        elif kind == "citation":
            citation = draw(_citation())
            events.append(_delta(index, {"type": "citations_delta", "citation": citation}))
        else:
            events.append(_delta(index, draw(_unknown_delta())))
    return events


@st.composite
def _thinking_block(draw: st.DrawFn, index: int, unknown: bool) -> list[Event]:
    start = {"type": "thinking", "thinking": "", "signature": ""}
    events: list[Event] = [{"type": "content_block_start", "index": index, "content_block": start}]
    for piece in draw(st.lists(texts(), max_size=6)):
        events.append(_delta(index, {"type": "thinking_delta", "thinking": piece}))
    if unknown and draw(st.booleans()):
        events.append(_delta(index, draw(_unknown_delta())))
    for signature in draw(st.lists(_IDS, min_size=1, max_size=2)):
        events.append(_delta(index, {"type": "signature_delta", "signature": signature}))
    return events


@st.composite
def _tool_block(draw: st.DrawFn, index: int, unknown: bool) -> list[Event]:
    kind = draw(st.sampled_from(["tool_use", "server_tool_use"]))
    start = {
        "type": kind,
        "id": ("toolu_" if kind == "tool_use" else "srvtoolu_") + draw(_IDS),
        "name": draw(
            st.sampled_from(
                ["get_weather", "ü_tool"] if kind == "tool_use" else ["web_search", "web_fetch"]
            )
        ),
        "input": {},
    }
    events: list[Event] = [{"type": "content_block_start", "index": index, "content_block": start}]
    # ensure_ascii=True streams \uXXXX escapes (and surrogate pairs) that a cut can split;
    # ensure_ascii=False streams raw multi-byte characters.
    raw = json.dumps(draw(tool_inputs()), ensure_ascii=draw(st.booleans()))
    for fragment in draw(_cut(raw)):
        events.append(_delta(index, {"type": "input_json_delta", "partial_json": fragment}))
    if unknown and draw(st.booleans()):
        events.append(_delta(index, draw(_unknown_delta())))
    return events


@st.composite
def _whole_block(draw: st.DrawFn, index: int, unknown: bool) -> list[Event]:
    block: dict[str, Any]
    kind = draw(st.sampled_from(["redacted", "search", "search_error"]))
    if kind == "redacted":
        block = {"type": "redacted_thinking", "data": "EmwK" + draw(_IDS)}
    elif kind == "search":
        results = draw(
            st.lists(
                st.builds(
                    lambda title, key, age: {
                        "type": "web_search_result",
                        "title": title,
                        "url": f"https://example.com/{key}",
                        "encrypted_content": f"Ev0D{key}",
                        "page_age": age,
                    },
                    texts(),
                    _IDS,
                    st.none() | st.just("April 30, 2025"),
                ),
                max_size=3,
            )
        )
        block = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": results}
    else:
        block = {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": {"type": "web_search_tool_result_error", "error_code": "max_uses_exceeded"},
        }
    events: list[Event] = [{"type": "content_block_start", "index": index, "content_block": block}]
    if unknown and draw(st.booleans()):
        events.append(_delta(index, draw(_unknown_delta())))
    return events


@st.composite
def _unknown_block(draw: st.DrawFn, index: int, unknown: bool) -> list[Event]:
    block = {"type": "future_block", "payload": draw(json_values(max_leaves=4))}
    events: list[Event] = [{"type": "content_block_start", "index": index, "content_block": block}]
    for delta in draw(st.lists(_unknown_delta(), max_size=2)):
        events.append(_delta(index, delta))
    return events


def _usage_counts(*, start: bool) -> st.SearchStrategy[dict[str, Any]]:
    optional: dict[str, st.SearchStrategy[Any]] = {
        "cache_creation_input_tokens": st.none() | st.integers(0, 10_000),
        "cache_read_input_tokens": st.none() | st.integers(0, 10_000),
    }
    if start:
        optional["service_tier"] = st.just("standard")
        return st.fixed_dictionaries(
            {"input_tokens": st.integers(0, 10_000), "output_tokens": st.integers(0, 10)},
            optional=optional,
        )
    optional["input_tokens"] = st.none() | st.integers(0, 10_000)
    optional["server_tool_use"] = st.builds(lambda n: {"web_search_requests": n}, st.integers(0, 5))
    return st.fixed_dictionaries({"output_tokens": st.integers(0, 100_000)}, optional=optional)


@st.composite
def _message_start(draw: st.DrawFn, usage: bool | None) -> Event:
    message: dict[str, Any] = {
        "id": "msg_" + draw(_IDS),
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": draw(st.sampled_from(["claude-sonnet-4-5", "claude-opus-4-1"])),
        "stop_reason": None,
        "stop_sequence": None,
    }
    with_usage = usage if usage is not None else draw(st.integers(0, 3)) > 0
    if with_usage:
        message["usage"] = draw(_usage_counts(start=True))
    return {"type": "message_start", "message": message}


@st.composite
def _message_delta(draw: st.DrawFn) -> Event:
    stop_reason = draw(
        st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn"])
    )
    delta: dict[str, Any] = {
        "stop_reason": stop_reason,
        "stop_sequence": draw(texts(min_size=1)) if stop_reason == "stop_sequence" else None,
    }
    return {"type": "message_delta", "delta": delta, "usage": draw(_usage_counts(start=False))}


_BLOCKS = (_text_block, _thinking_block, _tool_block, _whole_block)


@st.composite
def event_sequences(
    draw: st.DrawFn,
    *,
    unknown: bool = True,
    usage: bool | None = None,
    max_blocks: int = 5,
) -> list[Event]:
    """A valid stream as a list of event dicts, ``message_start`` to ``message_stop``.

    Args:
        unknown: include event, block and delta types this library does not know.
        usage: ``True``/``False`` to force usage on ``message_start`` present/absent; ``None``
            for either.
        max_blocks: the most content blocks.
    """
    events: list[Event] = [draw(_message_start(usage))]
    kinds = [*_BLOCKS, _unknown_block] if unknown else list(_BLOCKS)
    for index, kind in enumerate(draw(st.lists(st.sampled_from(kinds), max_size=max_blocks))):
        events.extend(draw(kind(index, unknown)))
        events.append({"type": "content_block_stop", "index": index})
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 0]))):
        events.append(draw(_message_delta()))
    # Pings anywhere (even first); unknown events anywhere after message_start.
    for _ in range(draw(st.integers(0, 3))):
        events.insert(draw(st.integers(0, len(events))), {"type": "ping"})
    if unknown:
        for _ in range(draw(st.integers(0, 2))):
            position = draw(st.integers(1, len(events)))
            payload = draw(json_values(max_leaves=3))
            events.insert(position, {"type": "future_event", "payload": payload})
    events.append({"type": "message_stop"})
    return events


def to_sse(events: Sequence[Event], *, line_end: str = "\n", ensure_ascii: bool = False) -> bytes:
    """``event: <type>`` / ``data: <json>`` frames, each closed by a blank line."""
    frames = []
    for event in events:
        data = json.dumps(event, ensure_ascii=ensure_ascii)
        frames.append(f"event: {event['type']}{line_end}data: {data}{line_end}{line_end}")
    return "".join(frames).encode("utf-8")


@st.composite
def sse_streams(
    draw: st.DrawFn,
    *,
    unknown: bool = True,
    usage: bool | None = None,
) -> tuple[list[Event], bytes]:
    """A valid stream and its SSE bytes (any line end, raw or escaped non-ASCII)."""
    events = draw(event_sequences(unknown=unknown, usage=usage))
    line_end = draw(st.sampled_from(LINE_ENDS))
    return events, to_sse(events, line_end=line_end, ensure_ascii=draw(st.booleans()))


@st.composite
def chunked(draw: st.DrawFn, data: bytes, max_chunks: int = 12) -> list[bytes]:
    """``data`` cut into chunks at random byte offsets (inside characters and line ends too)."""
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=max_chunks - 1))
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in pairwise(points)]
