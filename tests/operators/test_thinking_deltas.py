"""ops.thinking_deltas(): the str of each thinking_delta."""

from __future__ import annotations

import reactivex

import anthropic_rx as arx
from anthropic_rx import operators as ops

from ._streams import (
    MESSAGE_STOP,
    Body,
    block_start,
    block_stop,
    collect,
    events_of,
    fixture_events,
    message_start,
    settle,
    sse,
    text_delta,
    text_start,
    thinking_delta,
)

THINKING_REPLY = [
    message_start(),
    block_start(0, {"type": "thinking", "thinking": "", "signature": ""}),
    thinking_delta(0, "Let me"),
    thinking_delta(0, " think."),
    block_stop(0),
    text_start(1),
    text_delta(1, "Answer"),
    block_stop(1),
    MESSAGE_STOP,
]


def test_emits_each_thinking_delta_and_nothing_else() -> None:
    seen = collect(events_of(THINKING_REPLY).pipe(ops.thinking_deltas()))
    assert seen.items == ["Let me", " think."]
    assert seen.completed


async def test_joined_thinking_equals_the_final_messages_thinking() -> None:
    seen = collect(fixture_events("docs_thinking").pipe(ops.thinking_deltas()))
    message = await arx.final_message(fixture_events("docs_thinking"))
    thinking = "".join(b.thinking for b in message.content if isinstance(b, arx.ThinkingBlock))
    assert thinking
    assert "".join(seen.items) == thinking


def test_upstream_error_passes_through_unchanged() -> None:
    boom = ValueError("boom")
    seen = collect(
        reactivex.concat(events_of(THINKING_REPLY[:3]), reactivex.throw(boom)).pipe(
            ops.thinking_deltas()
        )
    )
    assert seen.items == ["Let me"]
    assert seen.error is boom


async def test_dispose_closes_the_body() -> None:
    body = Body(sse(THINKING_REPLY), stall_after=3)
    iterator = arx.to_async_iterator(body.events().pipe(ops.thinking_deltas()))
    assert await iterator.__anext__() == "Let me"
    await iterator.aclose()
    assert await settle(lambda: body.closed)


def test_an_error_event_is_raised_typed() -> None:
    seen = collect(fixture_events("docs_error_overloaded_midstream").pipe(ops.thinking_deltas()))
    assert isinstance(seen.error, arx.OverloadedError)
    assert seen.error.partial_message is not None
