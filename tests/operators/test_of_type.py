"""ops.of_type(*classes): only events of the given classes, typed."""

from __future__ import annotations

from typing import Any

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import operators as ops

from ._streams import Body, collect, events_of, fixture_events, settle, sse, text_reply


def test_one_class_keeps_its_instances_and_narrows_the_type() -> None:
    starts: reactivex.Observable[arx.ContentBlockStartEvent] = fixture_events("docs_tool_use").pipe(
        ops.of_type(arx.ContentBlockStartEvent)
    )
    seen = collect(starts)
    assert [type(s.content_block) for s in seen.items] == [arx.TextBlock, arx.ToolUseBlock]
    assert seen.completed


def test_several_classes_keep_order() -> None:
    both: reactivex.Observable[arx.MessageStartEvent | arx.MessageStopEvent] = events_of(
        text_reply("a")
    ).pipe(ops.of_type(arx.MessageStartEvent, arx.MessageStopEvent))
    assert [e.type for e in collect(both).items] == ["message_start", "message_stop"]


def test_three_classes() -> None:
    kinds = (arx.MessageStartEvent, arx.MessageDeltaEvent, arx.MessageStopEvent)
    seen = collect(events_of(text_reply("a")).pipe(ops.of_type(*kinds)))
    assert [e.type for e in seen.items] == ["message_start", "message_delta", "message_stop"]


def test_subclasses_match() -> None:
    class Base:
        pass

    class Child(Base):
        pass

    items: list[object] = [Base(), Child(), 1]
    seen = collect(reactivex.from_iterable(items).pipe(ops.of_type(Base)))
    assert seen.items == items[:2]


def test_ping_and_error_events_can_be_selected() -> None:
    pings = collect(fixture_events("docs_basic_text").pipe(ops.of_type(arx.PingEvent)))
    errors = collect(fixture_events("docs_error_only").pipe(ops.of_type(arx.ErrorEvent)))
    assert len(pings.items) == 1
    assert errors.items[0].error.type == "overloaded_error"


@pytest.mark.parametrize("bad", [(), ("ping",), (arx.PingEvent, None)])
def test_call_time_type_errors(bad: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError):
        ops.of_type(*bad)


def test_upstream_error_passes_through_unchanged() -> None:
    boom = RuntimeError("boom")
    seen = collect(reactivex.throw(boom).pipe(ops.of_type(arx.PingEvent)))
    assert seen.error is boom


async def test_dispose_closes_the_body() -> None:
    body = Body(sse(text_reply("x", "y")), stall_after=3)
    iterator = arx.to_async_iterator(body.events().pipe(ops.of_type(arx.ContentBlockDeltaEvent)))
    first = await iterator.__anext__()
    assert isinstance(first.delta, arx.TextDelta)
    await iterator.aclose()
    assert await settle(lambda: body.closed)
