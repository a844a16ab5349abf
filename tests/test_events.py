"""The typed event models and ``parse_event``."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from anthropic.types import RawMessageStreamEvent
from hypothesis import given
from hypothesis import strategies as st

from anthropic_rx import (
    Citation,
    CitationsDelta,
    CompactionBlock,
    CompactionDelta,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    ErrorDetail,
    ErrorEvent,
    InputJSONDelta,
    JSONObject,
    MCPToolUseBlock,
    Message,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    MessageStreamEvent,
    PingEvent,
    ProtocolError,
    RedactedThinkingBlock,
    ResponseMeta,
    ServerToolUseBlock,
    SignatureDelta,
    SSEDecoder,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
    UnknownBlock,
    UnknownDelta,
    UnknownEvent,
    Usage,
    WebSearchToolResultBlock,
    parse_event,
)
from tests.conftest import FIXTURE_FILES

Event = dict[str, Any]

MESSAGE: Event = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "content": [],
    "model": "claude-sonnet-4-5",
    "stop_reason": None,
    "stop_sequence": None,
    "usage": {"input_tokens": 25, "output_tokens": 1},
}


def start(block: Event, index: int = 0) -> Event:
    return {"type": "content_block_start", "index": index, "content_block": block}


def delta(body: Event, index: int = 0) -> Event:
    return {"type": "content_block_delta", "index": index, "delta": body}


def parse(event: Event, hint: str | None = None) -> MessageStreamEvent:
    return parse_event(json.dumps(event), hint)


EVENTS: list[tuple[Event, type[pydantic.BaseModel]]] = [
    ({"type": "message_start", "message": MESSAGE}, MessageStartEvent),
    ({"type": "content_block_stop", "index": 3}, ContentBlockStopEvent),
    (
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
        MessageDeltaEvent,
    ),
    ({"type": "message_stop"}, MessageStopEvent),
    ({"type": "ping"}, PingEvent),
    (
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ErrorEvent,
    ),
    (start({"type": "text", "text": ""}), ContentBlockStartEvent),
    (delta({"type": "text_delta", "text": "Hi"}), ContentBlockDeltaEvent),
]

BLOCKS: list[tuple[Event, type[pydantic.BaseModel]]] = [
    ({"type": "text", "text": ""}, TextBlock),
    ({"type": "text", "text": "", "citations": []}, TextBlock),
    ({"type": "thinking", "thinking": "", "signature": ""}, ThinkingBlock),
    ({"type": "redacted_thinking", "data": "EmwKAhgB"}, RedactedThinkingBlock),
    ({"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}, ToolUseBlock),
    (
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
        ServerToolUseBlock,
    ),
    (
        {
            "type": "mcp_tool_use",
            "id": "mcptoolu_1",
            "name": "echo",
            "server_name": "s",
            "input": {},
        },
        MCPToolUseBlock,
    ),
    (
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": [
                {
                    "type": "web_search_result",
                    "title": "Weather",
                    "url": "https://example.com",
                    "encrypted_content": "Ev0D",
                    "page_age": None,
                }
            ],
        },
        WebSearchToolResultBlock,
    ),
    ({"type": "compaction", "content": "summary"}, CompactionBlock),
]

DELTAS: list[tuple[Event, type[pydantic.BaseModel]]] = [
    ({"type": "text_delta", "text": "Hello"}, TextDelta),
    ({"type": "input_json_delta", "partial_json": '{"loc'}, InputJSONDelta),
    ({"type": "thinking_delta", "thinking": "Let me"}, ThinkingDelta),
    ({"type": "signature_delta", "signature": "EqQB"}, SignatureDelta),
    (
        {
            "type": "citations_delta",
            "citation": {
                "type": "char_location",
                "cited_text": "grass is green",
                "document_index": 0,
                "document_title": None,
                "start_char_index": 0,
                "end_char_index": 14,
            },
        },
        CitationsDelta,
    ),
    ({"type": "compaction_delta", "content": "summary"}, CompactionDelta),
]


# --- known types -----------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "cls"), EVENTS, ids=[e["type"] for e, _ in EVENTS])
def test_known_event_types_parse_into_their_class(
    data: Event, cls: type[pydantic.BaseModel]
) -> None:
    event = parse(data)
    assert type(event) is cls
    assert event.type == data["type"]
    assert type(parse(data, data["type"])) is cls


@pytest.mark.parametrize(("block", "cls"), BLOCKS, ids=[b["type"] for b, _ in BLOCKS])
def test_known_block_types_parse_into_their_class(
    block: Event, cls: type[pydantic.BaseModel]
) -> None:
    for hint in (None, "content_block_start"):
        event = parse(start(block, 2), hint)
        assert isinstance(event, ContentBlockStartEvent)
        assert event.index == 2
        assert type(event.content_block) is cls
        assert event.content_block.type == block["type"]


@pytest.mark.parametrize(("body", "cls"), DELTAS, ids=[d["type"] for d, _ in DELTAS])
def test_known_delta_types_parse_into_their_class(
    body: Event, cls: type[pydantic.BaseModel]
) -> None:
    for hint in (None, "content_block_delta"):
        event = parse(delta(body, 1), hint)
        assert isinstance(event, ContentBlockDeltaEvent)
        assert event.index == 1
        assert type(event.delta) is cls
        assert event.delta.type == body["type"]


def test_message_start_fields() -> None:
    event = parse({"type": "message_start", "message": MESSAGE})
    assert isinstance(event, MessageStartEvent)
    message = event.message
    assert isinstance(message, Message)
    assert (message.id, message.model, message.role, message.content) == (
        "msg_1",
        "claude-sonnet-4-5",
        "assistant",
        (),
    )
    assert message.usage == Usage(input_tokens=25, output_tokens=1)
    assert event.response_meta is None


def test_message_start_content_blocks_known_and_unknown() -> None:
    message = {**MESSAGE, "content": [{"type": "text", "text": "a"}, {"type": "future", "x": 1}]}
    event = parse({"type": "message_start", "message": message})
    assert isinstance(event, MessageStartEvent)
    text, future = event.message.content
    assert text == TextBlock(text="a")
    assert isinstance(future, UnknownBlock)
    assert future.type == "future"
    assert future.model_extra == {"x": 1}


def test_message_start_without_usage() -> None:
    message = {k: v for k, v in MESSAGE.items() if k != "usage"}
    event = parse({"type": "message_start", "message": message})
    assert isinstance(event, MessageStartEvent)
    assert event.message.usage is None


def test_message_delta_fields() -> None:
    event = parse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "stop_sequence", "stop_sequence": "END"},
            "usage": {"output_tokens": 15, "input_tokens": None},
        }
    )
    assert isinstance(event, MessageDeltaEvent)
    assert event.delta == MessageDelta(stop_reason="stop_sequence", stop_sequence="END")
    assert event.usage == MessageDeltaUsage(output_tokens=15)


def test_message_delta_without_usage() -> None:
    event = parse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})
    assert isinstance(event, MessageDeltaEvent)
    assert event.usage is None


def test_error_event_fields() -> None:
    event = parse({"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}})
    assert isinstance(event, ErrorEvent)
    assert event.error == ErrorDetail(type="overloaded_error", message="Busy")


def test_citation_location_fields_are_kept() -> None:
    event = parse(delta(DELTAS[4][0]))
    assert isinstance(event, ContentBlockDeltaEvent)
    assert isinstance(event.delta, CitationsDelta)
    citation = event.delta.citation
    assert isinstance(citation, Citation)
    assert citation.cited_text == "grass is green"
    assert citation.model_extra == {
        "document_index": 0,
        "document_title": None,
        "start_char_index": 0,
        "end_char_index": 14,
    }


def test_data_may_be_bytes() -> None:
    data = json.dumps(delta({"type": "text_delta", "text": "é\u2028"})).encode()
    event = parse_event(data, "content_block_delta")
    assert event == parse_event(data)
    assert isinstance(event, ContentBlockDeltaEvent)
    assert event.delta == TextDelta(text="é\u2028")


# --- unknown types ---------------------------------------------------------------------------


@pytest.mark.parametrize("hint", [None, "future_event", "ping", "message"])
def test_unknown_event_type_keeps_its_data(hint: str | None) -> None:
    event = parse({"type": "future_event", "payload": {"a": [1, {"b": None}]}, "n": 2}, hint)
    assert isinstance(event, UnknownEvent)
    assert event.type == "future_event"
    assert event.model_extra is not None
    assert event.model_extra["n"] == 2
    payload = event.model_extra["payload"]
    assert isinstance(payload, JSONObject)
    assert payload.model_dump() == {"a": [1, {"b": None}]}


def test_unknown_block_type_keeps_its_data() -> None:
    event = parse(start({"type": "future_block", "payload": {"x": 1}, "n": [1, 2]}, 4))
    assert isinstance(event, ContentBlockStartEvent)
    block = event.content_block
    assert isinstance(block, UnknownBlock)
    assert block.type == "future_block"
    assert block.model_dump() == {"type": "future_block", "payload": {"x": 1}, "n": [1, 2]}


def test_unknown_delta_type_keeps_its_data() -> None:
    event = parse(delta({"type": "future_delta", "value": "v"}), "content_block_delta")
    assert isinstance(event, ContentBlockDeltaEvent)
    assert isinstance(event.delta, UnknownDelta)
    assert event.delta.model_dump() == {"type": "future_delta", "value": "v"}


# --- invalid data ----------------------------------------------------------------------------

INVALID_KNOWN: list[Event] = [
    delta({"type": "text_delta"}),
    delta({"type": "text_delta", "text": 5}),
    delta({"type": "input_json_delta"}),
    delta({"type": "thinking_delta", "thinking": None}),
    delta({"type": "signature_delta"}),
    delta({"type": "citations_delta"}),
    delta({"type": "citations_delta", "citation": {"cited_text": "x"}}),
    start({"type": "text"}),
    start({"type": "thinking", "thinking": ""}),
    start({"type": "redacted_thinking"}),
    start({"type": "tool_use", "id": "toolu_1", "input": {}}),
    start({"type": "server_tool_use", "name": "web_search", "input": {}}),
    start({"type": "web_search_tool_result", "content": []}),
    {"type": "content_block_start", "index": 0},
    {"type": "content_block_start", "index": "first", "content_block": {"type": "text"}},
    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "x"}},
    {"type": "content_block_stop"},
    {"type": "content_block_stop", "index": None},
    {"type": "message_start"},
    {"type": "message_start", "message": {**MESSAGE, "id": None}},
    {"type": "message_start", "message": {k: v for k, v in MESSAGE.items() if k != "model"}},
    {"type": "message_start", "message": {**MESSAGE, "content": [{"type": "text"}]}},
    {"type": "message_start", "message": {**MESSAGE, "usage": {"input_tokens": "many"}}},
    {"type": "message_delta"},
    {"type": "message_delta", "delta": {"stop_reason": 1}},
    {"type": "error"},
    {"type": "error", "error": "overloaded"},
]


@pytest.mark.parametrize("data", INVALID_KNOWN, ids=[json.dumps(d) for d in INVALID_KNOWN])
@pytest.mark.parametrize("with_hint", [False, True])
def test_known_type_with_invalid_fields_raises_protocol_error(data: Event, with_hint: bool) -> None:
    with pytest.raises(ProtocolError, match=f"invalid {data['type']} event") as info:
        parse(data, data["type"] if with_hint else None)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)


@pytest.mark.parametrize(
    "data", ["", "not json", "{", "{'type': 'ping'}", '{"type": "ping"} x', b"\xff", b"\xc3"]
)
@pytest.mark.parametrize("hint", [None, "ping"])
def test_non_json_raises_protocol_error(data: str | bytes, hint: str | None) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_event(data, hint)


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (r"\ud83d", "\ufffd"),  # a lone high surrogate
        (r"a\ude00b", "a\ufffdb"),  # a lone low surrogate
        (r"\ud83d\ude00", "\U0001f600"),  # an escaped pair is its character
        (r"\uD83D", "\ufffd"),
    ],
)
@pytest.mark.parametrize("hint", [None, "content_block_delta"])
def test_escaped_lone_surrogates_become_replacement_characters(
    escaped: str, text: str, hint: str | None
) -> None:
    data = (
        '{"type": "content_block_delta", "index": 0, '
        f'"delta": {{"type": "text_delta", "text": "{escaped}"}}}}'
    )
    event = parse_event(data, hint)
    assert isinstance(event, ContentBlockDeltaEvent)
    assert isinstance(event.delta, TextDelta)
    assert event.delta.text == text
    assert text in json.loads(event.model_dump_json())["delta"]["text"]  # still encodable


@pytest.mark.parametrize("data", [r'{"type": "ping", "x": "\ud83d"', r'{"type": "ping"} \ud83d'])
def test_surrogate_escapes_do_not_excuse_broken_json(data: str) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_event(data)


@pytest.mark.parametrize(
    "data",
    [
        "[]",
        '[{"type": "ping"}]',
        "1",
        '"ping"',
        "null",
        "NaN",
        "{}",
        '{"index": 0}',
        '{"type": 1}',
        '{"type": null}',
        '{"type": ["ping"]}',
        '{"type": {"type": "ping"}}',
    ],
)
@pytest.mark.parametrize("hint", [None, "message", "future"])
def test_non_object_or_missing_type_raises_protocol_error(data: str, hint: str | None) -> None:
    with pytest.raises(ProtocolError, match="string type"):
        parse_event(data, hint)


@pytest.mark.parametrize(
    ("data", "hint"),
    [("[]", "ping"), ("null", "message_stop"), ('{"type": 1}', "ping"), ('{"type": null}', "ping")],
)
def test_non_object_or_bad_type_with_a_known_hint_raises_protocol_error(
    data: str, hint: str
) -> None:
    with pytest.raises(ProtocolError):
        parse_event(data, hint)


@pytest.mark.parametrize(
    ("data", "hint"),
    [("{}", "ping"), ("{}", "message_stop"), ('{"index": 0}', "content_block_stop")],
)
def test_missing_type_with_a_known_hint_raises_protocol_error(data: str, hint: str) -> None:
    with pytest.raises(ProtocolError):
        parse_event(data, hint)


# --- hints -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "hint", "cls"),
    [
        ({"type": "ping"}, "message_stop", PingEvent),
        ({"type": "message_stop"}, "ping", MessageStopEvent),
        (delta({"type": "text_delta", "text": "x"}), "content_block_start", ContentBlockDeltaEvent),
        (start({"type": "text", "text": ""}), "content_block_delta", ContentBlockStartEvent),
        ({"type": "content_block_stop", "index": 0}, "error", ContentBlockStopEvent),
        ({"type": "error", "error": {"type": "api_error", "message": "x"}}, "ping", ErrorEvent),
        ({"type": "future", "x": 1}, "ping", UnknownEvent),
        ({"type": "ping"}, "future", PingEvent),
        ({"type": "ping"}, "message", PingEvent),
        ({"type": "ping"}, "", PingEvent),
    ],
)
def test_wrong_event_name_hint_parses_by_the_data_type(
    data: Event, hint: str, cls: type[pydantic.BaseModel]
) -> None:
    event = parse(data, hint)
    assert type(event) is cls
    assert event == parse(data)


def test_wrong_hint_does_not_hide_invalid_fields() -> None:
    with pytest.raises(ProtocolError, match="invalid content_block_delta event"):
        parse(delta({"type": "text_delta"}), "ping")


# --- values ----------------------------------------------------------------------------------


def test_models_are_frozen() -> None:
    event = parse(delta({"type": "text_delta", "text": "x", "extra": {"a": 1}}))
    assert isinstance(event, ContentBlockDeltaEvent)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(event, "index", 1)  # noqa: B010
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(event.delta, "text", "y")  # noqa: B010
    extra = event.delta.model_extra
    assert extra is not None
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(extra["extra"], "a", 2)  # noqa: B010
    assert event == parse(delta({"type": "text_delta", "text": "x", "extra": {"a": 1}}))


def test_message_and_blocks_are_frozen() -> None:
    event = parse({"type": "message_start", "message": MESSAGE})
    assert isinstance(event, MessageStartEvent)
    assert isinstance(event.message.content, tuple)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(event.message, "id", "other")  # noqa: B010
    assert event.message.usage is not None
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        setattr(event.message.usage, "output_tokens", 9)  # noqa: B010


def test_extra_fields_are_kept_with_attribute_access() -> None:
    event = parse(
        start(
            {
                "type": "text",
                "text": "",
                "future": {"nested": {"deep": [{"k": "v"}, 1, None]}, "flag": True},
                "count": 3,
            }
        )
    )
    assert isinstance(event, ContentBlockStartEvent)
    block = event.content_block
    assert isinstance(block, TextBlock)
    extra = block.model_extra
    assert extra is not None
    assert extra["count"] == 3
    future = extra["future"]
    assert isinstance(future, JSONObject)
    loose: Any = future
    assert loose.flag is True
    assert isinstance(loose.nested, JSONObject)
    inner: Any = loose.nested
    deep: Any = inner.deep
    assert isinstance(deep[0], JSONObject)
    first: Any = deep[0]
    assert first.k == "v"
    assert deep[1:] == [1, None]


def test_extra_fields_on_events_and_messages() -> None:
    event = parse(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "container": {"id": "c1", "expires_at": None}},
            "usage": {"output_tokens": 1, "server_tool_use": {"web_search_requests": 2}},
            "context_management": {"applied_edits": []},
        }
    )
    assert isinstance(event, MessageDeltaEvent)
    dumped: Any = event
    assert dumped.context_management.applied_edits == []
    assert dumped.delta.container.id == "c1"
    assert dumped.usage.server_tool_use.web_search_requests == 2


def test_exclude_none_drops_nested_nulls_inside_json_objects() -> None:
    event = parse(
        {
            "type": "future",
            "a": {"b": None, "c": {"d": None, "e": 1}},
            "list": [{"x": None, "y": 2}, None, 3],
            "none": None,
        }
    )
    assert event.model_dump(mode="json", exclude_none=True) == {
        "type": "future",
        "a": {"c": {"e": 1}},
        "list": [{"y": 2}, None, 3],
    }
    assert event.model_dump(mode="json")["a"] == {"b": None, "c": {"d": None, "e": 1}}


@pytest.mark.parametrize("kind", ["tool_use", "server_tool_use", "mcp_tool_use"])
def test_tool_input_keeps_nulls_under_exclude_none(kind: str) -> None:
    tool_input = {"a": None, "b": {"c": None, "d": [None, {"e": None}]}}
    event = parse(start({"type": kind, "id": "t1", "name": "n", "input": tool_input}))
    dumped = event.model_dump(mode="json", exclude_none=True)
    assert dumped["content_block"]["input"] == tool_input


def test_web_search_result_nulls_are_dropped_under_exclude_none() -> None:
    event = parse(start(BLOCKS[7][0]))
    dumped = event.model_dump(mode="json", exclude_none=True)
    assert "page_age" not in dumped["content_block"]["content"][0]
    assert event.model_dump(mode="json")["content_block"]["content"][0]["page_age"] is None


def test_local_fields_never_appear_in_dumps() -> None:
    meta = ResponseMeta.from_headers(200, {"request-id": "req_1"})
    items: list[tuple[pydantic.BaseModel, str]] = [
        (ToolUseBlock(id="t", name="n", input={}, input_json='{"a": '), "input_json"),
        (ServerToolUseBlock(id="t", name="n", input={}, input_json="{"), "input_json"),
        (MCPToolUseBlock(id="t", name="n", input={}, input_json="{"), "input_json"),
        (UnknownBlock(type="future", input_json="{"), "input_json"),
        (Message(id="m", model="x", cancelled=True), "cancelled"),
        (Usage(input_tokens=1, output_tokens=2, estimated=True), "estimated"),
        (
            MessageStartEvent(message=Message(id="m", model="x"), response_meta=meta),
            "response_meta",
        ),
        (ErrorEvent(error=ErrorDetail(), response_meta=meta), "response_meta"),
    ]
    for model, field in items:
        assert getattr(model, field) not in (None, False)
        for mode in ("json", "python"):
            for exclude_none in (False, True):
                dumped = model.model_dump(mode=mode, exclude_none=exclude_none)
                assert field not in dumped, (model, field)
        assert field not in json.loads(model.model_dump_json())


def test_local_fields_inside_a_message_never_appear_in_dumps() -> None:
    message = Message(
        id="m",
        model="x",
        content=(ToolUseBlock(id="t", name="n", input={"a": 1}, input_json='{"a": 1}'),),
        usage=Usage(input_tokens=1, output_tokens=2, estimated=True),
        cancelled=True,
    )
    assert message.model_dump(mode="json", exclude_none=True) == {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"a": 1}}],
        "model": "x",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }


# --- round trips and the SDK -------------------------------------------------------------------


def _fixture_events() -> list[tuple[str, str, str]]:
    frames = []
    for path in FIXTURE_FILES:
        decoder = SSEDecoder()
        for frame in decoder.feed(path.read_bytes()) + decoder.flush():
            frames.append((path.name, frame.event, frame.data))
    return frames


FIXTURE_EVENTS = _fixture_events()

ROUND_TRIP: list[Event] = [
    *(e for e, _ in EVENTS),
    *(start(b) for b, _ in BLOCKS),
    *(delta(d) for d, _ in DELTAS),
    {"type": "message_start", "message": {**MESSAGE, "content": [b for b, _ in BLOCKS]}},
    {"type": "future_event", "a": {"b": [1, 2.5, True, None, "s", {"c": {}}]}},
    start({"type": "future_block", "input": {"a": None}, "x": [{}]}),
    delta({"type": "future_delta", "value": {"k": "v"}}),
    delta({"type": "text_delta", "text": "x", "extra": {"n": None}}),
    start({"type": "tool_use", "id": "t", "name": "n", "input": {"a": [None, {"b": None}]}}),
]


@pytest.mark.parametrize("data", ROUND_TRIP, ids=[str(i) for i in range(len(ROUND_TRIP))])
def test_round_trip_through_json(data: Event) -> None:
    event = parse(data)
    again = parse_event(json.dumps(event.model_dump(mode="json")))
    assert again == event
    assert type(again) is type(event)
    assert parse_event(event.model_dump_json()) == event


def test_fixture_events_round_trip_through_json() -> None:
    assert len(FIXTURE_EVENTS) > 50
    for name, hint, data in FIXTURE_EVENTS:
        event = parse_event(data, hint)
        assert event == parse_event(data), name
        assert parse_event(json.dumps(event.model_dump(mode="json"))) == event, name


def test_dumps_equal_the_sdk_models_for_fixture_events() -> None:
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(RawMessageStreamEvent)
    compared = 0
    for name, hint, data in FIXTURE_EVENTS:
        obj = json.loads(data)
        if obj["type"] in ("ping", "error"):
            continue  # no SDK model for these in the event union
        try:
            sdk = adapter.validate_python(obj)
        except pydantic.ValidationError:
            continue  # a field this SDK version types more strictly
        ours = parse_event(data, hint)
        assert ours.model_dump(mode="json", exclude_none=True) == sdk.model_dump(
            mode="json", exclude_none=True
        ), name
        compared += 1
    assert compared > 50


_KEYS = st.text(max_size=6).filter(lambda key: key not in ("type", "text"))
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(_KEYS, _JSON, max_size=4))
def test_any_extra_fields_round_trip(extra: Event) -> None:
    for data in (
        {"type": "future", **extra},
        delta({"type": "text_delta", "text": "x", **extra}),
        start({"type": "future_block", **extra}),
    ):
        event = parse(data)
        assert event.model_dump(mode="json") == data
        assert parse_event(json.dumps(event.model_dump(mode="json"))) == event
