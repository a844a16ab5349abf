"""ops.raise_on_error(): an ErrorEvent becomes the typed exception."""

from __future__ import annotations

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx._meta import ResponseMeta

from ._streams import (
    Body,
    collect,
    collect_async,
    error_event,
    events_of,
    fixture_events,
    message_start,
    parsed,
    settle,
    sse,
    text_delta,
    text_reply,
)


def test_events_pass_through_unchanged() -> None:
    events = parsed(text_reply("a", "b"))
    seen = collect(reactivex.from_iterable(events).pipe(ops.raise_on_error()))
    assert len(seen.items) == len(events)
    assert all(a is b for a, b in zip(seen.items, events, strict=True))
    assert seen.completed


def test_midstream_error_is_typed_with_the_partial_message() -> None:
    seen = collect(fixture_events("docs_error_overloaded_midstream").pipe(ops.raise_on_error()))
    error = seen.error
    assert isinstance(error, arx.OverloadedError)
    assert error.error_type == "overloaded_error"
    assert error.message == "Overloaded"
    assert error.status_code == 200
    assert error.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert error.partial_message is not None
    block = error.partial_message.content[0]
    assert isinstance(block, arx.TextBlock)
    assert block.text == "Hello"
    assert [e.type for e in seen.items][-1] == "content_block_delta"
    assert not seen.completed


def test_error_before_message_start_has_no_partial_message() -> None:
    seen = collect(fixture_events("docs_error_only").pipe(ops.raise_on_error()))
    assert isinstance(seen.error, arx.OverloadedError)
    assert seen.error.partial_message is None
    assert seen.items == []


def test_unknown_error_type_is_a_plain_api_error() -> None:
    seen = collect(events_of([error_event("brand_new_error", "")]).pipe(ops.raise_on_error()))
    assert type(seen.error) is arx.APIError
    assert seen.error.error_type == "brand_new_error"
    assert seen.error.message == "the API sent an error event"


def test_meta_comes_from_the_error_event_else_from_message_start() -> None:
    start_meta = ResponseMeta(status_code=200, request_id="req_start")
    error_meta = ResponseMeta(status_code=200, request_id="req_error")
    start, error = parsed([message_start(), error_event()])
    assert isinstance(start, arx.MessageStartEvent)
    assert isinstance(error, arx.ErrorEvent)
    start = start.model_copy(update={"response_meta": start_meta})
    from_start = collect(reactivex.from_iterable(_events(start, error)).pipe(ops.raise_on_error()))
    assert isinstance(from_start.error, arx.APIError)
    assert from_start.error.request_id == "req_start"
    own = error.model_copy(update={"response_meta": error_meta})
    from_error = collect(reactivex.from_iterable(_events(start, own)).pipe(ops.raise_on_error()))
    assert isinstance(from_error.error, arx.APIError)
    assert from_error.error.meta is error_meta


def test_a_stream_resumed_mid_message_is_not_a_protocol_error() -> None:
    seen = collect(events_of([text_delta(0, "late"), error_event()]).pipe(ops.raise_on_error()))
    assert len(seen.items) == 1
    assert isinstance(seen.error, arx.OverloadedError)
    assert seen.error.partial_message is None


def test_upstream_error_passes_through_unchanged() -> None:
    boom = RuntimeError("boom")
    seen = collect(reactivex.throw(boom).pipe(ops.raise_on_error()))
    assert seen.error is boom


async def test_recipe_final_text_or_typed_error() -> None:
    texts: list[str] = []

    async def show() -> None:
        text = fixture_events("docs_error_overloaded_midstream").pipe(
            ops.raise_on_error(), ops.text_deltas()
        )
        async for chunk in arx.to_async_iterator(text):
            texts.append(chunk)

    with pytest.raises(arx.OverloadedError) as raised:
        await show()
    assert raised.value.partial_message is not None
    assert texts == ["Hello"]


async def test_error_event_disposes_and_dispose_closes_the_body() -> None:
    body = Body(sse([*text_reply("a", finished=False), error_event()]))
    seen = await collect_async(body.events().pipe(ops.raise_on_error()))
    assert isinstance(seen.error, arx.OverloadedError)
    assert seen.items
    assert await settle(lambda: body.closed)
    stalled = Body(sse(text_reply("a", "b")), stall_after=3)
    iterator = arx.to_async_iterator(stalled.events().pipe(ops.raise_on_error()))
    await iterator.__anext__()
    await iterator.aclose()
    assert await settle(lambda: stalled.closed)


def _events(*events: arx.MessageStreamEvent) -> list[arx.MessageStreamEvent]:
    return list(events)
