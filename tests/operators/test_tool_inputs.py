"""ops.tool_inputs(): tool call input as it streams, a strict final value, never a crash."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import reactivex

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx.operators import ToolInput

from ._streams import (
    MESSAGE_STOP,
    Body,
    block_start,
    block_stop,
    collect,
    events_of,
    fixture_events,
    json_delta,
    message_start,
    settle,
    sse,
    text_delta,
    text_start,
    tool_start,
)


def _tool_reply(
    *fragments: str, stop: bool = True, kind: str = "tool_use"
) -> list[dict[str, object]]:
    wire: list[dict[str, object]] = [
        dict(message_start()),
        dict(text_start(0)),
        dict(text_delta(0, "Checking.")),
        dict(block_stop(0)),
        dict(tool_start(1, kind=kind)),
        *(dict(json_delta(1, f)) for f in fragments),
    ]
    if stop:
        wire += [dict(block_stop(1)), dict(MESSAGE_STOP)]
    return wire


async def test_fixture_tool_input_grows_then_completes() -> None:
    seen = collect(fixture_events("docs_tool_use").pipe(ops.tool_inputs()))
    message = await arx.final_message(fixture_events("docs_tool_use"))
    block = message.content[1]
    assert isinstance(block, arx.ToolUseBlock)
    assert seen.completed
    values = seen.items
    assert values[0] == ToolInput(1, block.id, block.name, {}, False, "")
    # one value at the start, one per non-empty fragment, one final
    assert len(values) == 1 + 5 + 1
    assert [v.complete for v in values] == [False] * 6 + [True]
    final = values[-1]
    assert final.input == block.input == {"location": "San Francisco, CA"}
    assert final.input_json == block.input_json
    assert final.error is None
    assert values[-2].input_json == final.input_json
    # an unfinished string is left out until it closes
    assert [v.input for v in values[:5]] == [{}] * 5
    assert all(v.input_json.startswith(p.input_json) for p, v in itertools.pairwise(values))


async def test_server_tool_use_is_included() -> None:
    seen = collect(fixture_events("docs_web_search").pipe(ops.tool_inputs()))
    final = seen.items[-1]
    assert final.complete
    assert final.name == "web_search"
    assert final.input == {"query": "weather NYC today"}
    assert {v.index for v in seen.items} == {1}


def test_partial_values_are_parsed_leniently() -> None:
    seen = collect(
        events_of(_tool_reply('{"city": "Par', 'is", "days": [1,', " 2]}")).pipe(ops.tool_inputs())
    )
    assert [v.input for v in seen.items] == [
        {},
        {},
        {"city": "Paris", "days": [1]},
        {"city": "Paris", "days": [1, 2]},
        {"city": "Paris", "days": [1, 2]},
    ]
    assert seen.items[-1].complete


def test_invalid_escape_never_raises_and_final_reports_the_error() -> None:
    seen = collect(events_of(_tool_reply('{"pattern": "\\d+', '"}')).pipe(ops.tool_inputs()))
    assert seen.error is None
    assert seen.completed
    final = seen.items[-1]
    assert final.complete
    assert final.input == {"pattern": "\\d+"}
    assert final.error is not None
    assert final.input_json == '{"pattern": "\\d+"}'


def test_invalid_final_json_keeps_the_best_effort_value() -> None:
    final = collect(events_of(_tool_reply('{"a": 1, "b": ')).pipe(ops.tool_inputs())).items[-1]
    assert final.complete
    assert final.input == {"a": 1}
    assert final.error


def test_a_block_without_fragments_completes_with_its_start_input() -> None:
    wire = [
        message_start(),
        block_start(
            0, {"type": "tool_use", "id": "toolu_x", "name": "now", "input": {"tz": "UTC"}}
        ),
        block_stop(0),
        MESSAGE_STOP,
    ]
    seen = collect(events_of(wire).pipe(ops.tool_inputs()))
    assert [(v.input, v.complete, v.error) for v in seen.items] == [
        ({"tz": "UTC"}, False, None),
        ({"tz": "UTC"}, True, None),
    ]


def test_mcp_tool_use_and_several_calls() -> None:
    wire = [
        message_start(),
        tool_start(0, "a", kind="mcp_tool_use"),
        json_delta(0, "{}"),
        block_stop(0),
        tool_start(1, "b"),
        json_delta(1, '{"x": true}'),
        block_stop(1),
        MESSAGE_STOP,
    ]
    finals = [v for v in collect(events_of(wire).pipe(ops.tool_inputs())).items if v.complete]
    assert [(v.index, v.name, v.input) for v in finals] == [(0, "a", {}), (1, "b", {"x": True})]


def test_text_only_reply_emits_nothing() -> None:
    seen = collect(fixture_events("docs_basic_text").pipe(ops.tool_inputs()))
    assert seen.items == []
    assert seen.completed


def test_cut_off_call_gets_no_final_value() -> None:
    seen = collect(events_of(_tool_reply('{"a": ', stop=False)).pipe(ops.tool_inputs()))
    assert seen.completed
    assert not any(v.complete for v in seen.items)


def test_tool_input_is_frozen() -> None:
    value = ToolInput(0, "id", "name", {}, False, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        value.complete = True  # type: ignore[misc]


def test_upstream_error_passes_through_unchanged() -> None:
    boom = RuntimeError("boom")
    seen = collect(
        reactivex.concat(events_of(_tool_reply("{", stop=False)), reactivex.throw(boom)).pipe(
            ops.tool_inputs()
        )
    )
    assert seen.error is boom
    assert seen.items


async def test_dispose_closes_the_body() -> None:
    body = Body(sse(_tool_reply('{"a":', " 1}")), stall_after=6)
    iterator = arx.to_async_iterator(body.events().pipe(ops.tool_inputs()))
    assert (await iterator.__anext__()).input == {}
    await iterator.aclose()
    assert await settle(lambda: body.closed)


def test_an_error_event_is_raised_typed_after_the_values_before_it() -> None:
    error: dict[str, object] = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    wire = [*_tool_reply('{"city": "Par', 'is"}', stop=False), error]
    seen = collect(arx.from_sse_bytes(sse(wire)).pipe(ops.tool_inputs()))
    assert [value.input for value in seen.items] == [{}, {}, {"city": "Paris"}]
    assert not any(value.complete for value in seen.items)  # the call was cut off
    assert isinstance(seen.error, arx.OverloadedError)
    assert seen.error.partial_message is not None
