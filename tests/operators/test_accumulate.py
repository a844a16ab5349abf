"""ops.accumulate(): frozen Message snapshots, and a cancelled last one."""

from __future__ import annotations

import math
from collections.abc import Callable

import pydantic
import pytest
import reactivex
from reactivex import operators as rx_ops

import anthropic_rx as arx
from anthropic_rx import operators as ops
from tests.conftest import FIXTURE_FILES

from ._streams import (
    MESSAGE_STOP,
    PING,
    Body,
    block_start,
    block_stop,
    collect,
    events_of,
    fixture_events,
    json_delta,
    message_delta,
    message_start,
    parsed,
    settle,
    sse,
    text_delta,
    text_reply,
    text_start,
    thinking_delta,
    tool_start,
)

COMPLETE = [p.stem for p in FIXTURE_FILES if "error" not in p.stem]


def _fold(events: list[arx.MessageStreamEvent]) -> list[arx.Message]:
    snapshots: list[arx.Message] = []
    current: arx.Message | None = None
    for event in events:
        after = arx.apply_event(current, event)
        if after is not None and after is not current:
            snapshots.append(after)
        current = after
    return snapshots


def test_one_snapshot_per_changing_event() -> None:
    wire = [PING, *text_reply("Hel", "lo")]
    seen = collect(events_of(wire).pipe(ops.accumulate()))
    # message_start, block start, two deltas, message_delta; not ping/stop/message_stop
    assert [_text(m) for m in seen.items] == ["", "", "Hel", "Hello", "Hello"]
    assert seen.items == _fold(parsed(wire))
    assert seen.items[-1].stop_reason == "end_turn"
    assert seen.completed


@pytest.mark.parametrize("name", COMPLETE)
async def test_last_snapshot_equals_final_message(name: str) -> None:
    last = collect(fixture_events(name).pipe(ops.accumulate(), rx_ops.last()))
    message = await arx.final_message(fixture_events(name))
    assert last.items == [message]
    assert not last.items[0].cancelled


def test_snapshots_are_frozen_independent_values() -> None:
    seen = collect(events_of(text_reply("a", "b")).pipe(ops.accumulate()))
    first_text = seen.items[2]
    assert _text(first_text) == "a"
    assert _text(seen.items[3]) == "ab"
    with pytest.raises(pydantic.ValidationError):
        first_text.id = "changed"  # type: ignore[misc]


def test_shared_stream_subscribers_see_equal_snapshots() -> None:
    one: list[arx.Message] = []
    two: list[arx.Message] = []
    subject = reactivex.subject.Subject[arx.MessageStreamEvent]()
    shared = subject.pipe(ops.accumulate(), rx_ops.share())
    shared.subscribe(one.append)
    shared.subscribe(two.append)
    for event in parsed(text_reply("x", "y")):
        subject.on_next(event)
    assert one == two
    assert all(a is b for a, b in zip(one, two, strict=True))
    assert _text(one[-1]) == "xy"


def test_cancelled_before_message_delta_estimates_usage() -> None:
    wire = [message_start(output_tokens=1), text_start(0), text_delta(0, "x" * 41)]
    seen = collect(events_of(wire).pipe(ops.accumulate()))
    last = seen.items[-1]
    assert seen.completed
    assert last.cancelled
    assert last.usage is not None
    assert last.usage.estimated
    assert last.usage.output_tokens == math.ceil(41 / 4)
    assert last.usage.input_tokens == 10
    assert _text(last) == "x" * 41
    # the snapshot before it is unchanged
    assert not seen.items[-2].cancelled
    assert seen.items[-2].usage == arx.Usage(input_tokens=10, output_tokens=1)


def test_estimate_counts_thinking_and_tool_input_and_keeps_a_larger_count() -> None:
    wire = [
        message_start(output_tokens=1),
        block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
        thinking_delta(0, "t" * 8),
        block_stop(0),
        tool_start(1),
        json_delta(1, '{"a": 1}'),
    ]
    last = collect(events_of(wire).pipe(ops.accumulate())).items[-1]
    assert last.usage is not None
    assert last.usage.output_tokens == math.ceil((8 + len('{"a": 1}')) / 4)
    big = collect(events_of([message_start(output_tokens=500), *wire[1:]]).pipe(ops.accumulate()))
    assert big.items[-1].usage is not None
    assert big.items[-1].usage.output_tokens == 500
    assert big.items[-1].usage.estimated


def test_cancelled_after_message_delta_keeps_reported_usage() -> None:
    wire = [*text_reply("a", finished=False), block_stop(0), message_delta(output_tokens=7)]
    last = collect(events_of(wire).pipe(ops.accumulate())).items[-1]
    assert last.cancelled
    assert last.usage is not None
    assert last.usage.output_tokens == 7
    assert not last.usage.estimated


def test_completion_before_message_start_emits_nothing() -> None:
    seen = collect(events_of([PING]).pipe(ops.accumulate()))
    assert seen.items == []
    assert seen.completed


def test_an_error_event_is_raised_typed_with_the_last_snapshot() -> None:
    seen = collect(fixture_events("docs_error_overloaded_midstream").pipe(ops.accumulate()))
    assert not seen.completed
    assert isinstance(seen.error, arx.OverloadedError)
    assert not any(m.cancelled for m in seen.items)  # cut by the API, not stopped on purpose
    assert _text(seen.items[-1]) == "Hello"
    assert seen.error.partial_message is seen.items[-1]


def test_upstream_error_passes_through_unchanged() -> None:
    seen = collect(arx.from_sse_bytes(sse(text_reply("a", finished=False))).pipe(ops.accumulate()))
    assert isinstance(seen.error, arx.IncompleteStreamError)
    assert not any(m.cancelled for m in seen.items)
    assert _text(seen.items[-1]) == "a"


def test_impossible_order_is_a_protocol_error() -> None:
    seen = collect(events_of([message_start(), text_delta(0, "x")]).pipe(ops.accumulate()))
    assert isinstance(seen.error, arx.ProtocolError)
    assert len(seen.items) == 1


def test_cancel_mid_stream_gives_a_cancelled_last_snapshot() -> None:
    token = arx.CancelToken()
    events = events_of(text_reply("one ", "two ", "three")).pipe(
        # cancelled as "three" arrives: it is not passed on
        rx_ops.do_action(_cancel_on(token, "three")),
        ops.take_until_cancel(token),
        ops.accumulate(),
    )
    seen = collect(events)
    last = seen.items[-1]
    assert seen.completed
    assert last.cancelled
    assert _text(last) == "one two "
    assert last.usage is not None
    assert last.usage.estimated


async def test_dispose_closes_the_body() -> None:
    body = Body(sse(text_reply("x", "y")), stall_after=3)
    iterator = arx.to_async_iterator(body.events().pipe(ops.accumulate()))
    assert (await iterator.__anext__()).id == "msg_test"
    await iterator.aclose()
    assert await settle(lambda: body.closed)


def _text(message: arx.Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))


def _is_text(event: arx.MessageStreamEvent, text: str) -> bool:
    return (
        isinstance(event, arx.ContentBlockDeltaEvent)
        and isinstance(event.delta, arx.TextDelta)
        and event.delta.text == text
    )


def test_message_stop_means_not_cancelled() -> None:
    seen = collect(
        events_of([*text_reply("a", finished=False), MESSAGE_STOP]).pipe(ops.accumulate())
    )
    assert not seen.items[-1].cancelled


def _cancel_on(token: arx.CancelToken, text: str) -> Callable[[arx.MessageStreamEvent], None]:
    def check(event: arx.MessageStreamEvent) -> None:
        if _is_text(event, text):
            token.cancel()

    return check
