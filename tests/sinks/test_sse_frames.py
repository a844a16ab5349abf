"""The pure frame writers of the SSE sink: events, broadcast entries and endings → frames."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx.sinks._broadcast import Broadcast, ResumeError, SlowSubscriberError
from anthropic_rx.sinks._errors import public_error
from anthropic_rx.sinks._frames import (
    PING_FRAME,
    EventFrames,
    FrameWriter,
    TextFrames,
    frame,
    json_data,
    retry_frame,
    writer_for,
)

from ._server import Frame, data_frames, parse_sse

KEY = "sk-ant-api03-MARKERmarker_0123456789"
HOSTILE = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\n\ndata: x", "</script>", "\x00"]


def events_of(reply: testing.Reply, *, ping_every: int | None = None) -> list[Any]:
    received: list[Any] = []
    arx.from_sse_bytes(reply.to_sse(ping_every=ping_every)).subscribe(received.append)
    return received


def run(writer: FrameWriter, items: list[Any], end: BaseException | None = None) -> list[Frame]:
    out = b"".join(writer.item(item) for item in items)
    out += writer.completed() if end is None else writer.failed(end)
    return parse_sse(out)


def test_retry_frame_is_in_milliseconds() -> None:
    assert retry_frame(1.0) == b"retry: 1000\n\n"
    assert retry_frame(0.25) == b"retry: 250\n\n"


def test_ping_is_a_comment() -> None:
    assert parse_sse(PING_FRAME) == [Frame(comment="ping", raw=b": ping")]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_on_one_data_line(text: str) -> None:
    data = json_data({"text": text})
    assert b"\n" not in data and b"\r" not in data
    assert "\u2028".encode() not in data and "\u2029".encode() not in data
    assert "\x85".encode() not in data
    assert json.loads(data) == {"text": text}


def test_ids_and_event_names_lose_line_ends() -> None:
    assert frame(b"{}", id="1\n\ndata: x", event="a\rb") == b"event: ab\nid: 1data: x\ndata: {}\n\n"


def test_text_frames_ids_are_positions_and_done_takes_the_next() -> None:
    reply = testing.Reply(input_tokens=7).text("Hel", "lo").stop(output_tokens=3)
    frames = run(TextFrames(), events_of(reply))
    # message_start 0, block start 1, deltas 2 and 3, block stop 4, delta 5, stop 6.
    assert [(f.id, f.event, f.data) for f in frames] == [
        ("2", None, '{"text":"Hel"}'),
        ("3", None, '{"text":"lo"}'),
        ("7", "done", '{"stop_reason":"end_turn","usage":{"input_tokens":7,"output_tokens":3}}'),
    ]


def test_pings_count_as_positions() -> None:
    reply = testing.text_reply("a", "b", "c")
    events = events_of(reply, ping_every=2)
    frames = run(TextFrames(), events)
    ids = [int(f.id or -1) for f in data_frames(frames)]
    texts = [getattr(e.delta, "text", None) if hasattr(e, "delta") else None for e in events]
    assert [texts[i] for i in ids[:-1]] == ["a", "b", "c"]
    assert ids[-1] == len(events)


def test_cancelled_estimates_usage_as_accumulate_does() -> None:
    reply = testing.Reply(input_tokens=5).text("x" * 10, "y" * 7)
    events = events_of(reply)[:4]  # start, block start, two deltas: stopped before the end
    frames = run(TextFrames(), events)
    assert frames[-1].event == "cancelled"
    payload = json.loads(frames[-1].data or "")
    assert payload == {
        "usage": {"input_tokens": 5, "output_tokens": math.ceil(17 / 4)},
        "usage_estimated": True,
    }
    assert frames[-1].id == "4"


def test_cancelled_after_message_delta_keeps_the_reported_usage() -> None:
    events = events_of(testing.text_reply("hi").stop(output_tokens=9))[:-1]  # no message_stop
    payload = json.loads(run(TextFrames(), events)[-1].data or "")
    assert payload == {"usage": {"input_tokens": 10, "output_tokens": 9}, "usage_estimated": False}


def test_cancelled_before_any_event() -> None:
    frames = run(TextFrames(), [])
    assert [(f.id, f.event, f.data) for f in frames] == [
        ("0", "cancelled", '{"usage":null,"usage_estimated":false}')
    ]


def test_an_error_event_is_the_only_terminal() -> None:
    events = events_of(testing.text_reply("a").error("overloaded_error", "Overloaded"))
    writer = TextFrames()
    out = b"".join(writer.item(e) for e in events) + writer.completed()
    out += writer.failed(RuntimeError("after the end"))
    frames = parse_sse(out)
    assert [f.event for f in frames] == [None, "error"]
    assert frames[-1].id == str(len(events) - 1)
    assert json.loads(frames[-1].data or "") == {
        "type": "overloaded_error",
        "message": "Overloaded",
    }


def test_public_error_rules() -> None:
    api = arx.OverloadedError(f"Overloaded {KEY}", error_type="overloaded_error", status_code=529)
    assert public_error(api) == ("overloaded_error", "Overloaded [redacted]")
    assert public_error(arx.IncompleteStreamError("cut")) == ("IncompleteStreamError", "cut")
    untyped = arx.APIError("proxy said no", status_code=502)
    assert public_error(untyped)[0] == "APIError"
    assert public_error(ResumeError("gone"))[0] == "resume_error"
    assert public_error(RuntimeError(f"secret {KEY}")) == (
        "internal_error",
        "internal server error",
    )
    assert len(public_error(arx.ProtocolError("x" * 5000))[1]) < 1100


def test_events_frames_are_the_wire_events() -> None:
    reply = testing.Reply().thinking("hm", signature="sig").text("a\u2028b").tool_use("f", {"x": 1})
    events = events_of(reply, ping_every=3)
    writer = EventFrames()
    out = b"".join(writer.item(e) for e in events) + writer.completed()
    frames = parse_sse(out)
    assert all(f.comment == "ping" for f in frames if f.data is None)
    wire = [f for f in frames if f.data is not None]
    assert [f.event for f in wire] == [e.type for e in events if e.type != "ping"]
    assert all(json.loads(f.data or "")["type"] == f.event for f in wire)
    received: list[Any] = []
    arx.from_sse_bytes(out).subscribe(received.append)
    assert received == [e for e in events if e.type != "ping"]


def test_events_cancelled_frame_parses_as_an_unknown_event() -> None:
    events = events_of(testing.text_reply("a", "b"))[:3]
    writer = EventFrames()
    out = b"".join(writer.item(e) for e in events) + writer.completed()
    last = parse_sse(out)[-1]
    assert (last.event, last.id) == ("cancelled", "3")
    assert json.loads(last.data or "")["type"] == "cancelled"


def test_events_error_is_the_wire_error_frame() -> None:
    frames = run(EventFrames(), [], arx.APIConnectionError("could not reach the API"))
    assert frames[-1].event == "error"
    assert json.loads(frames[-1].data or "") == {
        "type": "error",
        "error": {"type": "APIConnectionError", "message": "could not reach the API"},
    }


def entries(reply: testing.Reply) -> list[Broadcast]:
    return [Broadcast(id=str(n), event=e) for n, e in enumerate(events_of(reply), start=1)]


def test_broadcast_ids_and_done_from_the_terminal_entry() -> None:
    items = entries(testing.text_reply("a", "b"))
    usage = arx.Usage(input_tokens=1, output_tokens=2)
    items.append(Broadcast(id="99", end="done", stop_reason="end_turn", usage=usage))
    frames = run(TextFrames(broadcast=True), items)
    assert [(f.id, f.event) for f in frames] == [("3", None), ("4", None), ("99", "done")]
    assert json.loads(frames[-1].data or "") == {
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }


def test_broadcast_error_terminal_then_error_gives_one_terminal() -> None:
    items = entries(testing.text_reply("a").error("overloaded_error", "Overloaded"))
    items.append(
        Broadcast(id="50", end="error", error_type="overloaded_error", error_message="Overloaded")
    )
    error = arx.OverloadedError("Overloaded", error_type="overloaded_error")
    frames = run(TextFrames(broadcast=True), items, error)
    terminals = [f for f in frames if f.event is not None]
    assert [(f.id, f.event) for f in terminals] == [("50", "error")]


def test_broadcast_cancelled_and_resume_mid_reply() -> None:
    items = entries(testing.text_reply("a", "b", "c"))[3:5]  # resumed mid-reply: deltas only
    usage = arx.Usage(input_tokens=1, output_tokens=3, estimated=True)
    items.append(Broadcast(id="9", end="cancelled", usage=usage))
    frames = run(TextFrames(broadcast=True), items)
    assert [f.data for f in frames][:2] == ['{"text":"b"}', '{"text":"c"}']
    assert json.loads(frames[-1].data or "") == {
        "usage": {"input_tokens": 1, "output_tokens": 3},
        "usage_estimated": True,
    }


def test_broadcast_without_terminal_entry_writes_no_terminal() -> None:
    frames = run(TextFrames(broadcast=True), entries(testing.text_reply("a"))[:3])
    assert [f.event for f in frames] == [None]


def test_broadcast_error_before_any_entry_keeps_the_resumed_id() -> None:
    frames = run(TextFrames(broadcast=True, initial_id="7"), [], ResumeError("7 is gone"))
    assert (frames[0].id, frames[0].event) == ("7", "error")
    assert json.loads(frames[0].data or "")["type"] == "resume_error"


def test_broadcast_events_terminal_carries_the_terminal_id() -> None:
    items = entries(testing.text_reply("a"))
    items.append(Broadcast(id="20", end="done", stop_reason="end_turn"))
    writer = EventFrames(broadcast=True)
    out = b"".join(writer.item(i) for i in items) + writer.completed()
    frames = parse_sse(out)
    assert (frames[-1].event, frames[-1].id) == ("message_stop", "20")
    assert [f.event for f in frames].count("message_stop") == 1
    assert arx.from_sse_bytes(out) is not None


def test_unknown_format_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="format"):
        writer_for("xml")  # type: ignore[arg-type]


def test_internal_errors_are_not_logged_by_the_pure_writer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG):
        run(TextFrames(), [], RuntimeError("boom"))
    assert caplog.records == []


HOSTILE_TEXT = st.one_of(
    st.text(),
    st.lists(st.sampled_from([*HOSTILE, "a", "é", "😀", '"', "\\"])).map("".join),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(HOSTILE_TEXT, max_size=8))
def test_every_delta_is_exactly_one_frame(parts: list[str]) -> None:
    reply = testing.text_reply(*parts)
    writer = TextFrames()
    out = b"".join(writer.item(e) for e in events_of(reply)) + writer.completed()
    frames = parse_sse(out)
    assert [json.loads(f.data or "")["text"] for f in frames[:-1]] == parts
    assert frames[-1].event == "done"


def test_a_publisher_internal_error_entry_is_hidden() -> None:
    entry = Broadcast(
        id="5", end="error", error_type="RuntimeError", error_message="pw", error_class="KeyError"
    )
    frames = run(TextFrames(broadcast=True), [entry])
    assert json.loads(frames[0].data or "") == {
        "type": "internal_error",
        "message": "internal server error",
    }


def test_a_slow_broadcast_subscriber_ends_without_a_terminal() -> None:
    items = entries(testing.text_reply("a"))[:3]
    frames = run(TextFrames(broadcast=True), items, SlowSubscriberError("slow", last_event_id="3"))
    assert [f.event for f in frames] == [None]


def test_ai_sdk_frames_carry_event_ids_and_end_with_done() -> None:
    from anthropic_rx.sinks._ai_sdk import AiSdkEncoder

    reply = testing.text_reply("a", "b")
    events = events_of(reply)
    encoder = AiSdkEncoder()
    expected = [(str(n), c) for n, e in enumerate(events) for c in encoder.event(e)]
    expected += [(str(len(events)), c) for c in encoder.done(reply.message())]
    frames = run(writer_for("ai-sdk"), events)
    assert [(f.id, json.loads(f.data or "")) for f in frames[:-1]] == expected
    assert (frames[-1].id, frames[-1].data) == (str(len(events)), "[DONE]")


def test_ai_sdk_frames_of_a_broadcast_end_at_its_terminal_entry() -> None:
    items = entries(testing.text_reply("a"))
    items.append(Broadcast(id="30", end="cancelled", usage=arx.Usage(output_tokens=1)))
    frames = run(writer_for("ai-sdk", broadcast=True), items)
    chunks = [json.loads(f.data or "") for f in frames[:-1]]
    assert chunks[-1]["type"] == "abort"
    assert (frames[-1].id, frames[-1].data) == ("30", "[DONE]")
    assert {f.id for f in frames} <= {item.id for item in items}
    assert frames[-2].id == "30"  # the terminal chunks take the terminal entry's id


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.sampled_from(["a", "é", "😀", *HOSTILE, "w00 "]), min_size=0, max_size=8),
    ping_every=st.sampled_from([None, 1, 3]),
    thinking=st.booleans(),
)
def test_the_text_fast_path_writes_what_the_generic_path_writes(
    parts: list[str], ping_every: int | None, thinking: bool
) -> None:
    reply = testing.Reply()
    if thinking:
        reply = reply.thinking("hmm", "\n\n")
    items = events_of(reply.text(*parts), ping_every=ping_every)
    fast, generic = TextFrames(), TextFrames()
    fast_out = b"".join(fast.item(item) for item in items) + fast.completed()
    generic_out = b"".join(FrameWriter.item(generic, item) for item in items)
    assert fast_out == generic_out + generic.completed()
    assert fast.message() == generic.message()


def test_a_broadcast_entry_is_encoded_once_for_every_subscriber() -> None:
    items = entries(testing.text_reply("a", "b"))
    items.append(Broadcast(id="99", end="done", stop_reason="end_turn"))
    first, second = TextFrames(broadcast=True), TextFrames(broadcast=True)
    first_frames = [first.item(item) for item in items]
    second_frames = [second.item(item) for item in items]
    assert second_frames == first_frames
    deltas = [i for i, item in enumerate(items) if type(item.event) is arx.ContentBlockDeltaEvent]
    assert deltas and all(second_frames[i] is first_frames[i] for i in deltas)
    assert parse_sse(b"".join(second_frames))[-1].id == "99"


def test_a_writer_that_follows_the_message_is_not_handed_cached_frames() -> None:
    items = entries(testing.text_reply("a", "b"))
    subscriber = TextFrames(broadcast=True)
    for item in items:
        subscriber.item(item)  # caches the deltas' frames
    follower = TextFrames()  # not told it reads a broadcast: it builds the message
    out = b"".join(follower.item(item) for item in items)
    assert [f.data for f in parse_sse(out)] == ['{"text":"a"}', '{"text":"b"}']
    message = follower.message()
    assert message is not None
    assert [block.text for block in message.content] == ["ab"]  # type: ignore[union-attr]
