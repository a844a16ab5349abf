"""ops.text_deltas(): the str of each text_delta and nothing else."""

from __future__ import annotations

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import operators as ops
from tests.conftest import FIXTURE_FILES

from ._streams import (
    Body,
    collect,
    collect_async,
    events_of,
    fixture_events,
    settle,
    sse,
    text_reply,
    thinking_delta,
)


def _text_of(message: arx.Message) -> str:
    return "".join(b.text for b in message.content if isinstance(b, arx.TextBlock))


def test_emits_each_text_delta_in_order() -> None:
    seen = collect(events_of(text_reply("Hel", "lo", " world")).pipe(ops.text_deltas()))
    assert seen.items == ["Hel", "lo", " world"]
    assert seen.completed
    assert seen.error is None


@pytest.mark.parametrize("name", [p.stem for p in FIXTURE_FILES if "error" not in p.stem])
async def test_joined_text_equals_the_final_messages_text(name: str) -> None:
    seen = collect(fixture_events(name).pipe(ops.text_deltas()))
    message = await arx.final_message(fixture_events(name))
    assert seen.completed
    assert "".join(seen.items) == _text_of(message)
    assert all(isinstance(text, str) and text for text in seen.items)


def test_thinking_and_tool_input_are_not_text() -> None:
    seen = collect(fixture_events("docs_thinking").pipe(ops.text_deltas()))
    thinking = collect(fixture_events("docs_thinking").pipe(ops.thinking_deltas()))
    assert thinking.items
    assert not set(seen.items) & set(thinking.items)


def test_an_error_event_is_raised_typed_with_the_text_so_far() -> None:
    seen = collect(fixture_events("docs_error_overloaded_midstream").pipe(ops.text_deltas()))
    assert seen.items == ["Hello"]
    assert not seen.completed
    assert isinstance(seen.error, arx.OverloadedError)
    assert seen.error.status_code == 200
    partial = seen.error.partial_message
    assert partial is not None
    assert _text_of(partial) == "Hello"


def test_an_error_event_raised_earlier_by_raise_on_error_is_the_same_error() -> None:
    direct = collect(fixture_events("docs_error_overloaded_midstream").pipe(ops.text_deltas()))
    raised = collect(
        fixture_events("docs_error_overloaded_midstream").pipe(
            ops.raise_on_error(), ops.text_deltas()
        )
    )
    assert type(raised.error) is type(direct.error)
    assert str(raised.error) == str(direct.error)
    assert raised.items == direct.items


def test_an_error_event_from_a_source_without_partial_still_raises() -> None:
    error = arx.ErrorEvent(error=arx.ErrorDetail(type="rate_limit_error", message="slow down"))
    seen = collect(reactivex.of(error).pipe(ops.text_deltas()))
    assert isinstance(seen.error, arx.RateLimitError)
    assert seen.error.partial_message is None


def test_upstream_error_passes_through_unchanged() -> None:
    boom = RuntimeError("boom")
    source = events_of(text_reply("a", finished=False)).pipe(
        lambda events: reactivex.concat(events, reactivex.throw(boom))
    )
    seen = collect(source.pipe(ops.text_deltas()))
    assert seen.items == ["a"]
    assert seen.error is boom


def test_a_truncated_body_errors_after_its_text() -> None:
    chunks = sse(text_reply("a", "b", finished=False))
    seen = collect(arx.from_sse_bytes(chunks).pipe(ops.text_deltas()))
    assert seen.items == ["a", "b"]
    assert isinstance(seen.error, arx.IncompleteStreamError)


def test_only_text_delta_events_count() -> None:
    seen = collect(events_of([thinking_delta(0, "hmm")]).pipe(ops.text_deltas()))
    assert seen.items == []
    assert seen.completed


async def test_async_source_text_arrives() -> None:
    body = Body(sse(text_reply("x", "y")))
    seen = await collect_async(body.events().pipe(ops.text_deltas()))
    assert seen.items == ["x", "y"]
    assert seen.completed
    assert await settle(lambda: body.closed)


async def test_dispose_closes_the_body() -> None:
    body = Body(sse(text_reply("x", "y", "z")), stall_after=4)
    iterator = arx.to_async_iterator(body.events().pipe(ops.text_deltas()))
    assert await iterator.__anext__() == "x"
    await iterator.aclose()
    assert await settle(lambda: body.closed)
    assert body.sent < len(body.chunks)
