"""Accumulating stream events into a :class:`Message`.

Two ways, one set of rules:

- :func:`apply_event` is the pure reducer ``(snapshot | None, event) -> snapshot``: it returns
  new values and never mutates its input, so snapshots can be shared freely. Each call costs
  time proportional to the block it touches (a text block's text is copied once).
- :class:`MessageBuilder` feeds events in place and builds the message on demand; each event
  costs O(1) (fragments are joined once, at build time), so a 100k-delta reply costs no more
  per event than a 1k one. It is what :func:`final_message` and every error's
  ``partial_message`` use.

Both apply each delta through the same :class:`_BlockState`, so they agree by construction.

Rules: text and thinking append; ``signature_delta`` replaces; citations append; tool input is
parsed from the concatenated ``partial_json`` fragments with ``pydantic_core.from_json(...,
allow_partial=True)`` and never raises (the raw string is kept in ``input_json``); usage on
``message_delta`` overwrites (it is cumulative) and may be absent; of the fields beside ``delta``
and ``usage`` only the beta ``context_management`` and ``input_transformations`` reach the
message (others stay on the event); blocks that arrive whole in
``content_block_start`` are kept as they are; a delta or stop for a block never started, a block
started out of order, a delta of the wrong kind for its block, or a second ``message_start`` is
a :class:`ProtocolError`. Unknown events, blocks and deltas pass without effect.
"""

from __future__ import annotations

import re
from typing import Any, overload

import pydantic_core
from pydantic import TypeAdapter

from ._events import (
    Citation,
    CitationsDelta,
    CompactionBlock,
    CompactionDelta,
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    JSONValue,
    Message,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStreamEvent,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    UnknownBlock,
    Usage,
)
from ._exceptions import ProtocolError

__all__ = ["MessageBuilder", "apply_event", "parse_tool_input"]

_JSON_VALUE: TypeAdapter[JSONValue] = TypeAdapter(JSONValue)


# --- tool input ------------------------------------------------------------------------------

# A backslash followed by anything JSON does not allow after one (``\d`` in a regex the model
# wrote, say), or an escaped UTF-16 surrogate without its other half (valid JSON syntax, not
# Unicode). Escapes are consumed left to right so ``\\d`` stays an escaped backslash, and an
# escaped surrogate pair is taken whole before a lone surrogate is looked for.
_ESCAPE = re.compile(
    r'\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|["\\/bfnrt]|u|.|$)',
    re.DOTALL,
)
_LONE_SURROGATE_ESCAPE = re.compile(r"u[dD][89a-fA-F][0-9a-fA-F]{2}")
_POSITION = re.compile(r"line (\d+) column (\d+)")


def _fix_escape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    if _LONE_SURROGATE_ESCAPE.fullmatch(escaped):
        return "\\ufffd"  # as a browser's decoder does
    return match.group(0) if len(escaped) != 1 or escaped in '"\\/bfnrt' else "\\\\" + escaped


def parse_tool_input(raw: str) -> Any:
    """Parse streamed tool input JSON, complete or not, without ever raising.

    Partial JSON gives the value so far (an unfinished string is left out). Invalid escapes such
    as ``\\d`` are read as a literal backslash. Past any other error, the value up to the error
    is returned; ``{}`` when nothing before it parses.
    """
    try:
        return pydantic_core.from_json(raw, allow_partial=True)
    except ValueError:
        pass
    repaired = _ESCAPE.sub(_fix_escape, raw)
    try:
        return pydantic_core.from_json(repaired, allow_partial=True)
    except ValueError as exc:
        cut = _error_offset(str(exc), repaired)
    if cut:
        try:
            return pydantic_core.from_json(repaired[:cut], allow_partial=True)
        except ValueError:
            pass
    return {}


def _error_offset(message: str, text: str) -> int | None:
    found = _POSITION.search(message)
    if found is None:
        return None
    line, column = int(found.group(1)), int(found.group(2))
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
    return max(0, start + column - 1)


# --- one block -------------------------------------------------------------------------------


def _appended_field(block: ContentBlock, delta_field: str) -> bool:
    """Whether a delta appending to ``delta_field`` fits ``block``."""
    if isinstance(block, UnknownBlock):
        extra = block.model_extra or {}
        return isinstance(extra.get(delta_field), str) or (
            delta_field == "input_json" and "input" in extra
        )
    if delta_field == "input_json":
        return hasattr(block, "input")
    return isinstance(getattr(block, delta_field, None), str)


class _BlockState:
    """What the deltas of one block have added to the block it started as."""

    __slots__ = ("citations", "field", "pieces", "start", "updates")

    def __init__(self, start: ContentBlock) -> None:
        self.start = start
        self.field: str | None = None  # the text field the pieces append to
        self.pieces: list[str] = []
        self.citations: list[Citation] | None = None
        self.updates: dict[str, Any] | None = None

    def apply(self, delta: object, index: int) -> None:
        block = self.start
        kind = type(delta)
        # Appends are nearly every event: exact-type checks, and no call once the field is set
        # (not even ``typing.cast``, a function call at run time).
        if kind is TextDelta:
            text: str = delta.text  # type: ignore[attr-defined]
            if self.field == "text":
                self.pieces.append(text)
            else:
                self._append(block, "text", text, index, "text_delta")
        elif kind is InputJSONDelta:
            fragment: str = delta.partial_json  # type: ignore[attr-defined]
            if self.field == "input_json":
                self.pieces.append(fragment)
            else:
                self._append(block, "input_json", fragment, index, "input_json_delta")
        elif kind is ThinkingDelta:
            thinking: str = delta.thinking  # type: ignore[attr-defined]
            if self.field == "thinking":
                self.pieces.append(thinking)
            else:
                self._append(block, "thinking", thinking, index, "thinking_delta")
        elif isinstance(delta, SignatureDelta):
            if self._fits(block, ThinkingBlock, delta.type, index):
                self._update(signature=delta.signature)
        elif isinstance(delta, CitationsDelta):
            if self._fits(block, TextBlock, delta.type, index):
                if self.citations is None:
                    self.citations = []
                self.citations.append(delta.citation)
        elif isinstance(delta, CompactionDelta) and self._fits(
            block, CompactionBlock, delta.type, index
        ):
            self._update(content=delta.content, encrypted_content=delta.encrypted_content)
        # Unknown deltas carry nothing this version knows how to apply.

    def _append(self, block: ContentBlock, name: str, text: str, index: int, kind: str) -> None:
        if self.field != name:
            if self.field is not None or not _appended_field(block, name):
                if isinstance(block, UnknownBlock):
                    return
                raise ProtocolError(f"{kind} for content block {index} of type {block.type!r}")
            self.field = name
        self.pieces.append(text)

    @staticmethod
    def _fits(block: ContentBlock, expected: type[Any], kind: str, index: int) -> bool:
        if isinstance(block, expected):
            return True
        if isinstance(block, UnknownBlock):
            return False
        raise ProtocolError(f"{kind} for content block {index} of type {block.type!r}")

    def _update(self, **fields: Any) -> None:
        if self.updates is None:
            self.updates = {}
        self.updates.update(fields)

    def result(self) -> ContentBlock:
        start = self.start
        if not self.pieces and self.citations is None and self.updates is None:
            return start
        update: dict[str, Any] = dict(self.updates) if self.updates else {}
        if self.field == "input_json":
            previous = getattr(start, "input_json", None) or ""
            raw = previous + "".join(self.pieces)
            update["input_json"] = raw
            if raw:
                value = parse_tool_input(raw)
                # An unknown block keeps its fields as JSON values (objects as JSONObject).
                update["input"] = (
                    _JSON_VALUE.validate_python(value) if isinstance(start, UnknownBlock) else value
                )
        elif self.field is not None:
            update[self.field] = getattr(start, self.field) + "".join(self.pieces)
        if self.citations is not None:
            update["citations"] = (getattr(start, "citations", None) or ()) + tuple(self.citations)
        return start.model_copy(update=update)


# --- the message -----------------------------------------------------------------------------


# Fields of ``message_delta`` beside ``delta`` and ``usage`` that replace the message's (as the
# SDK's beta stream helper does).
_MESSAGE_LEVEL_FIELDS = frozenset({"context_management", "input_transformations"})


def _apply_message_delta(message: Message, event: MessageDeltaEvent) -> Message:
    delta = event.delta
    update: dict[str, Any] = {
        "stop_reason": delta.stop_reason,
        "stop_sequence": delta.stop_sequence,
    }
    # Newer fields inside ``delta`` (container...) replace when given; stop_details, like
    # stop_reason, belongs to this delta and is replaced even when absent (as the SDK does).
    extra = delta.model_extra
    update["stop_details"] = extra.get("stop_details") if extra else None
    if extra:
        update.update((k, v) for k, v in extra.items() if v is not None)
    # Beside ``delta`` and ``usage``, only the fields the protocol defines at message level
    # (beta) are message data; any other field there belongs to the event, and a same-named
    # field of the message must survive it (as in the SDK).
    extra = event.model_extra
    if extra:
        update.update(
            (k, v) for k, v in extra.items() if k in _MESSAGE_LEVEL_FIELDS and v is not None
        )
    usage = event.usage
    if usage is not None:
        counts = {k: v for k, v in usage if v is not None}
        if usage.model_extra:
            counts.update((k, v) for k, v in usage.model_extra.items() if v is not None)
        if counts:
            current = message.usage
            update["usage"] = (
                current.model_copy(update=counts)
                if current is not None
                else Usage.model_validate(counts)
            )
    return message.model_copy(update=update)


def _fallback_model(block: ContentBlock) -> str | None:
    """The model a ``fallback`` block (beta) says now serves the reply."""
    if isinstance(block, UnknownBlock) and block.type == "fallback":
        target = (block.model_extra or {}).get("to")
        model = getattr(target, "model", None)
        if isinstance(model, str):
            return model
    return None


def _check_index(index: int, count: int, kind: str) -> None:
    if not 0 <= index < count:
        raise ProtocolError(f"{kind} for content block {index}, which was never started")


@overload
def apply_event(snapshot: Message, event: MessageStreamEvent) -> Message: ...
@overload
def apply_event(snapshot: None, event: MessageStreamEvent) -> Message | None: ...
def apply_event(snapshot: Message | None, event: MessageStreamEvent) -> Message | None:
    """The pure reducer: the snapshot after ``event``, as a new value.

    Events that do not change the message (``ping``, ``message_stop``, ``error``, unknown types)
    return ``snapshot`` itself, so before ``message_start`` they return ``None``.

    Raises:
        ProtocolError: the event cannot follow ``snapshot`` (see the module rules).
    """
    if isinstance(event, MessageStartEvent):
        if snapshot is not None:
            raise ProtocolError("a second message_start in one stream")
        return event.message
    if isinstance(event, ContentBlockStartEvent | ContentBlockDeltaEvent | ContentBlockStopEvent):
        if snapshot is None:
            raise ProtocolError(f"{event.type} before message_start")
        content = snapshot.content
        if isinstance(event, ContentBlockStartEvent):
            if event.index != len(content):
                raise ProtocolError(
                    f"content_block_start for block {event.index} where block "
                    f"{len(content)} was expected"
                )
            update: dict[str, Any] = {"content": (*content, event.content_block)}
            model = _fallback_model(event.content_block)
            if model is not None:
                update["model"] = model
            return snapshot.model_copy(update=update)
        _check_index(event.index, len(content), event.type)
        if isinstance(event, ContentBlockStopEvent):
            return snapshot
        state = _BlockState(content[event.index])
        state.apply(event.delta, event.index)
        block = state.result()
        if block is content[event.index]:
            return snapshot
        blocks = list(content)
        blocks[event.index] = block
        return snapshot.model_copy(update={"content": tuple(blocks)})
    if isinstance(event, MessageDeltaEvent):
        if snapshot is None:
            raise ProtocolError("message_delta before message_start")
        return _apply_message_delta(snapshot, event)
    if snapshot is None and event.type == "message_stop":
        raise ProtocolError("message_stop before message_start")
    return snapshot


class MessageBuilder:
    """Accumulates events in place at O(1) per event; builds the message on demand.

    Not thread-safe; one per stream. :meth:`feed` raises :class:`ProtocolError` exactly where
    :func:`apply_event` would, and :meth:`message` equals folding :func:`apply_event` over the
    same events.
    """

    __slots__ = ("_blocks", "_message", "message_stopped")

    def __init__(self) -> None:
        self._message: Message | None = None
        self._blocks: list[_BlockState] = []
        self.message_stopped = False

    @property
    def started(self) -> bool:
        """Whether ``message_start`` has arrived."""
        return self._message is not None

    def feed(self, event: MessageStreamEvent) -> None:
        """Apply one event.

        Raises:
            ProtocolError: the event cannot follow the ones fed before.
        """
        if type(event) is ContentBlockDeltaEvent:
            blocks = self._blocks
            index = event.index
            if 0 <= index < len(blocks):
                blocks[index].apply(event.delta, index)
                return
            if self._message is None:
                raise ProtocolError("content_block_delta before message_start")
            _check_index(index, len(blocks), event.type)
        message = self._message
        if isinstance(event, MessageStartEvent):
            if message is not None:
                raise ProtocolError("a second message_start in one stream")
            self._message = event.message.model_copy(update={"content": ()})
            self._blocks = [_BlockState(block) for block in event.message.content]
        elif isinstance(event, ContentBlockStartEvent | ContentBlockStopEvent):
            if message is None:
                raise ProtocolError(f"{event.type} before message_start")
            if isinstance(event, ContentBlockStopEvent):
                _check_index(event.index, len(self._blocks), event.type)
                return
            if event.index != len(self._blocks):
                raise ProtocolError(
                    f"content_block_start for block {event.index} where block "
                    f"{len(self._blocks)} was expected"
                )
            self._blocks.append(_BlockState(event.content_block))
            model = _fallback_model(event.content_block)
            if model is not None:
                self._message = message.model_copy(update={"model": model})
        elif isinstance(event, MessageDeltaEvent):
            if message is None:
                raise ProtocolError("message_delta before message_start")
            self._message = _apply_message_delta(message, event)
        elif event.type == "message_stop":
            if message is None:
                raise ProtocolError("message_stop before message_start")
            self.message_stopped = True

    def message(self) -> Message | None:
        """The message so far, or ``None`` before ``message_start``. Costs O(size of message)."""
        if self._message is None:
            return None
        return self._message.model_copy(
            update={"content": tuple(state.result() for state in self._blocks)}
        )
