"""``tool_inputs()``: the input of each tool call as it streams, then its final value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pydantic_core
import reactivex
from reactivex import abc

from .._error_event import error_of_event
from .._events import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    ErrorEvent,
    InputJSONDelta,
    MCPToolUseBlock,
    MessageStreamEvent,
    ServerToolUseBlock,
    ToolUseBlock,
)
from .._snapshot import parse_tool_input

__all__ = ["ToolInput", "tool_inputs"]

_TOOL_BLOCKS = (ToolUseBlock, ServerToolUseBlock, MCPToolUseBlock)


@dataclass(frozen=True, slots=True)
class ToolInput:
    """The input of one tool call (``tool_use``, ``server_tool_use``, ``mcp_tool_use``) so far.

    Attributes:
        index: the content block's index.
        id: the tool call's id.
        name: the tool's name.
        input: the parsed input: partial while ``complete`` is false (an unfinished string is
            left out), final when true.
        complete: whether the block has stopped.
        input_json: the JSON text streamed so far, exactly as sent.
        error: set only on the final value when ``input_json`` is not valid JSON; ``input`` is
            then the best-effort reading of it.
    """

    index: int
    id: str
    name: str
    input: Any
    complete: bool
    input_json: str
    error: str | None = None


class _Call:
    __slots__ = ("block", "raw")

    def __init__(self, block: ToolUseBlock | ServerToolUseBlock | MCPToolUseBlock) -> None:
        self.block = block
        self.raw = block.input_json or ""


def tool_inputs() -> Callable[
    [reactivex.Observable[MessageStreamEvent]], reactivex.Observable[ToolInput]
]:
    """Events → a :class:`ToolInput` per tool call: at its start, per fragment, at its end.

    While the input streams, each value is parsed leniently (partial JSON, invalid escapes such
    as ``\\d`` read literally) and never fails. At ``content_block_stop`` the whole JSON is
    parsed strictly: the last value has ``complete=True``, and ``error`` set (with the
    best-effort value) when the JSON is invalid. Parsing the input so far costs time
    proportional to its length at each fragment.

    ```
    events:  -start(tool)--{"city":--"Paris"}--stop-|
    output:  -T({})--------T({})-----T({city})--T({city}, complete)-|
    ```

    Returns:
        An operator. It completes when the events complete (a call cut off by a cancel gets
        no final value) and passes errors on unchanged; an in-stream ``ErrorEvent`` becomes
        ``on_error`` with its typed exception (as ``raise_on_error()``); disposal disposes the
        events.

    Example:
        >>> calls = events.pipe(ops.tool_inputs(), rx_ops.filter(lambda t: t.complete))
    """

    def operator(
        events: reactivex.Observable[MessageStreamEvent],
    ) -> reactivex.Observable[ToolInput]:
        def subscribe(
            observer: abc.ObserverBase[ToolInput], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            calls: dict[int, _Call] = {}

            def on_next(event: MessageStreamEvent) -> None:
                if type(event) is ErrorEvent:
                    # Completing would make the calls cut off here look merely unfinished.
                    observer.on_error(error_of_event(event))
                    return
                value = _step(calls, event)
                if value is not None:
                    observer.on_next(value)

            return events.subscribe(
                on_next, observer.on_error, observer.on_completed, scheduler=scheduler
            )

        return reactivex.create(subscribe)

    return operator


def _step(calls: dict[int, _Call], event: MessageStreamEvent) -> ToolInput | None:
    if isinstance(event, ContentBlockDeltaEvent):
        call = calls.get(event.index)
        delta = event.delta
        if call is None or not isinstance(delta, InputJSONDelta) or not delta.partial_json:
            return None
        raw = call.raw = call.raw + delta.partial_json
        return _value(event.index, call, parse_tool_input(raw), raw, complete=False)
    if isinstance(event, ContentBlockStartEvent):
        block = event.content_block
        if isinstance(block, _TOOL_BLOCKS):
            call = calls[event.index] = _Call(block)
            return _value(event.index, call, block.input, call.raw, complete=False)
        return None
    if isinstance(event, ContentBlockStopEvent):
        call = calls.pop(event.index, None)
        if call is None:
            return None
        raw = call.raw
        if not raw:  # no fragments: the input arrived whole in content_block_start
            return _value(event.index, call, call.block.input, raw, complete=True)
        try:
            value = pydantic_core.from_json(raw)
        except ValueError as exc:
            return _value(
                event.index, call, parse_tool_input(raw), raw, complete=True, error=str(exc)
            )
        return _value(event.index, call, value, raw, complete=True)
    return None


def _value(
    index: int, call: _Call, value: Any, raw: str, *, complete: bool, error: str | None = None
) -> ToolInput:
    block = call.block
    return ToolInput(index, block.id, block.name, value, complete, raw, error)
