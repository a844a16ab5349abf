"""The Vercel AI SDK "UI message stream" (protocol ``v1``): what a ``useChat`` front end reads.

:class:`AiSdkEncoder` turns the events of one reply into UI message stream chunks (JSON
objects); the SSE writer sends each as one ``data: <json>`` frame and ``data: [DONE]`` last,
with the headers in :data:`AI_SDK_HEADERS`.

Mapping (part ids are ``text-<index>``, ``reasoning-<index>``; tool call ids are block ids):

- ``message_start`` -> ``start`` (``messageId``) and ``start-step``.
- ``text`` block -> ``text-start`` / ``text-delta`` / ``text-end``; a ``citations_delta`` with
  a ``url`` -> one ``source-url`` per distinct url.
- ``thinking`` block -> ``reasoning-start`` / ``reasoning-delta`` / ``reasoning-end``; the
  signature rides on ``reasoning-end`` as ``providerMetadata.anthropic.signature``, and a
  ``redacted_thinking`` block is an empty reasoning part with
  ``providerMetadata.anthropic.redactedData``: the keys ``@ai-sdk/anthropic`` reads back, so a
  conversation stored by ``useChat`` can be sent to the model again with its thinking intact.
- ``tool_use`` / ``server_tool_use`` / ``mcp_tool_use`` -> ``tool-input-start`` /
  ``tool-input-delta`` (the ``partial_json`` fragments) / ``tool-input-available`` (the whole
  input) at block stop. Server and MCP tools run at the API, so they are
  ``providerExecuted`` (the front end does not call them); MCP tools are ``dynamic`` (their
  names are not known to the front end's code). A block ending with ``_tool_result`` (web search,
  code execution...) whose ``tool_use_id`` is a call of this reply -> ``tool-output-available``.
- An in-stream ``error`` event -> :meth:`AiSdkEncoder.error`.
- ``ping``, ``message_delta``, ``message_stop`` -> nothing (the end is :meth:`~AiSdkEncoder.done`).
- Unknown events, blocks and deltas -> nothing. The protocol would carry them as ``data-*``
  parts, but those become parts of the message the front end keeps and sends back with the next
  request; the stream carries only what the AI SDK's own Anthropic provider would.

Every chunk uses only keys the ``ai`` package's ``uiMessageChunkSchema`` declares (its objects
are loose in ai 5.0.277 and 6.x, strict in the first 5.0 releases, which had no ``finishReason``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .._events import (
    CitationsDelta,
    ContentBlock,
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    ErrorEvent,
    InputJSONDelta,
    MCPToolUseBlock,
    Message,
    MessageDeltaEvent,
    MessageStartEvent,
    MessageStreamEvent,
    RedactedThinkingBlock,
    ServerToolUseBlock,
    SignatureDelta,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolUseBlock,
)
from .._snapshot import parse_tool_input
from ._errors import public_text

__all__ = ["AI_SDK_HEADERS", "AiSdkEncoder", "Chunk"]

AI_SDK_HEADERS: Mapping[str, str] = {"x-vercel-ai-ui-message-stream": "v1"}
"""The response header that tells the AI SDK's transport the body is a UI message stream."""

Chunk = dict[str, object]
"""One UI message stream chunk: a JSON object with a ``type``."""

# The AI SDK's finish reasons, as its Anthropic provider maps the API's stop reasons.
_FINISH_REASONS: Final[Mapping[str, str]] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool-calls",
    "refusal": "content-filter",
}
_OTHER: Final = "other"  # pause_turn, newer stop reasons, none at all

# An API key that reached an error message by accident is never sent to a browser.
_CUT_OFF = "the tool call was cut off before its input was complete"


@dataclass(slots=True)
class _Part:
    """A part that was started and not yet ended, by block index."""

    kind: str  # "text", "reasoning" or "tool"
    id: str  # the part id, or the tool call id
    tool_name: str = ""
    provider_executed: bool = False
    dynamic: bool = False
    start_input: Any = None
    fragments: list[str] = field(default_factory=list)
    signature: str | None = None


class AiSdkEncoder:
    """Turns one reply's events into Vercel AI SDK UI message stream chunks (JSON objects).

    Feed every event of the reply to :meth:`event` in order, then end with exactly one of
    :meth:`done` (the reply completed), :meth:`cancelled` (it was stopped on purpose) or
    :meth:`error`. Each call returns the chunks to send, in order; once ended, every call returns
    ``[]``, except that :meth:`done` or :meth:`cancelled` after :meth:`error` still end the
    message (``finish`` with ``finishReason="error"``, or ``abort``). Not thread-safe: one
    encoder per response.

    Args:
        message_id: the ``messageId`` of the ``start`` chunk; default the API's message id.
    """

    __slots__ = (
        "_ended",
        "_errored",
        "_message_id",
        "_open",
        "_sources",
        "_started",
        "_step_started",
        "_stop_reason",
        "_tool_calls",
    )

    def __init__(self, *, message_id: str | None = None) -> None:
        self._message_id = message_id
        self._open: dict[int, _Part] = {}
        self._tool_calls: set[str] = set()
        self._sources: set[str] = set()
        self._started = False
        self._step_started = False
        self._errored = False
        self._ended = False
        self._stop_reason: str | None = None

    # --- events ----------------------------------------------------------------------------

    def event(self, event: MessageStreamEvent) -> list[Chunk]:
        """The chunks for one wire event, possibly none (``ping``, ``message_delta``, unknown
        types...). An ``error`` event gives what :meth:`error` gives.

        Args:
            event: the next event of the reply, as the library's sources emit it.

        Returns:
            The chunks, in order; ``[]`` once the encoder has ended or errored.
        """
        if self._ended or self._errored:
            return []
        if isinstance(event, ContentBlockDeltaEvent):
            return self._delta(event)
        if isinstance(event, ContentBlockStartEvent):
            return self._block_start(event.index, event.content_block)
        if isinstance(event, ContentBlockStopEvent):
            part = self._open.pop(event.index, None)
            return [] if part is None else [self._end_part(part)]
        if isinstance(event, MessageStartEvent):
            if self._started:
                return []  # a second message_start is the source's protocol error
            if self._message_id is None:
                self._message_id = event.message.id
            return [*self._start(), *self._start_step()]
        if isinstance(event, MessageDeltaEvent):
            if event.delta.stop_reason is not None:
                self._stop_reason = event.delta.stop_reason
            return []
        if isinstance(event, ErrorEvent):
            return self.error(event.error.type, event.error.message)
        return []

    def done(self, message: Message | None) -> list[Chunk]:
        """The chunks that end a completed reply: open parts ended, then ``finish-step`` and
        ``finish``.

        ``finishReason`` is mapped from the stop reason (``end_turn`` -> ``stop``, ``tool_use``
        -> ``tool-calls``, ``max_tokens`` -> ``length``, ``refusal`` -> ``content-filter``,
        anything else ``other``; ``error`` after :meth:`error`). ``messageMetadata`` is
        ``{"usage": <the API's usage>}`` when ``message`` has usage.

        Args:
            message: the final message, when known.

        Returns:
            The chunks, in order; ``[]`` when the encoder already ended.
        """
        if self._ended:
            return []
        chunks = [*self._start(), *self._close_all()]
        if self._step_started:
            chunks.append({"type": "finish-step"})
        stop_reason = message.stop_reason if message is not None else None
        stop_reason = stop_reason or self._stop_reason
        finish: Chunk = {
            "type": "finish",
            "finishReason": "error"
            if self._errored
            else _FINISH_REASONS.get(stop_reason or "", _OTHER),
        }
        metadata = _usage_metadata(message)
        if metadata is not None:
            finish["messageMetadata"] = metadata
        chunks.append(finish)
        self._ended = True
        return chunks

    def cancelled(self, message: Message | None) -> list[Chunk]:
        """The chunks that end a reply stopped on purpose: open parts ended (a tool call whose
        input is not complete with ``tool-input-error``), ``message-metadata`` with the usage
        when known (``usage_estimated`` says whether it was counted locally), then ``abort``.

        Args:
            message: the message as far as it arrived, when known.

        Returns:
            The chunks, in order; ``[]`` when the encoder already ended.
        """
        if self._ended:
            return []
        chunks = [*self._start(), *self._close_all()]
        metadata = _usage_metadata(message)
        if metadata is not None:
            chunks.append({"type": "message-metadata", "messageMetadata": metadata})
        chunks.append({"type": "abort"})
        self._ended = True
        return chunks

    def error(self, error_type: str, message: str) -> list[Chunk]:
        """The chunks for an error: open parts ended (an unfinished tool call with
        ``tool-input-error``), then one ``error`` chunk whose ``errorText`` is
        ``"<error_type>: <message>"``, at most 1000 characters, anything shaped like an API key
        replaced by ``[redacted]``.

        Args:
            error_type: the API's error type (``overloaded_error``...) or the library's.
            message: a message fit for the browser (no traceback).

        Returns:
            The chunks, in order; ``[]`` after an earlier error or once ended.
        """
        if self._ended or self._errored:
            return []
        self._errored = True
        text = f"{error_type}: {message}" if message else error_type
        text = public_text(text)
        return [*self._start(), *self._close_all(), {"type": "error", "errorText": text}]

    # --- internals ---------------------------------------------------------------------------

    def _start(self) -> list[Chunk]:
        if self._started:
            return []
        self._started = True
        chunk: Chunk = {"type": "start"}
        if self._message_id is not None:
            chunk["messageId"] = self._message_id
        return [chunk]

    def _start_step(self) -> list[Chunk]:
        self._step_started = True
        return [{"type": "start-step"}]

    def _block_start(self, index: int, block: ContentBlock) -> list[Chunk]:
        if not self._started:
            return []  # the source refuses a block before message_start
        if isinstance(block, TextBlock):
            part = _Part("text", f"text-{index}")
            self._open[index] = part
            chunks: list[Chunk] = [{"type": "text-start", "id": part.id}]
            if block.text:
                chunks.append({"type": "text-delta", "id": part.id, "delta": block.text})
            return chunks
        if isinstance(block, ThinkingBlock):
            part = _Part("reasoning", f"reasoning-{index}", signature=block.signature or None)
            self._open[index] = part
            chunks = [{"type": "reasoning-start", "id": part.id}]
            if block.thinking:
                chunks.append({"type": "reasoning-delta", "id": part.id, "delta": block.thinking})
            return chunks
        if isinstance(block, RedactedThinkingBlock):
            # Arrives whole: no part stays open.
            part_id = f"reasoning-{index}"
            metadata = {"anthropic": {"redactedData": block.data}}
            return [
                {"type": "reasoning-start", "id": part_id, "providerMetadata": metadata},
                {"type": "reasoning-end", "id": part_id},
            ]
        if isinstance(block, ToolUseBlock | ServerToolUseBlock | MCPToolUseBlock):
            part = _Part(
                "tool",
                block.id,
                tool_name=block.name,
                provider_executed=not isinstance(block, ToolUseBlock),
                dynamic=isinstance(block, MCPToolUseBlock),
                start_input=block.input,
            )
            self._open[index] = part
            self._tool_calls.add(block.id)
            return [{"type": "tool-input-start", **self._tool_fields(part)}]
        return self._tool_result(block)

    def _tool_result(self, block: ContentBlock) -> list[Chunk]:
        if not block.type.endswith("_tool_result"):
            return []
        tool_use_id = getattr(block, "tool_use_id", None)
        # The front end fails on an output for a call it never saw.
        if not isinstance(tool_use_id, str) or tool_use_id not in self._tool_calls:
            return []
        output = block.model_dump(mode="json").get("content")
        return [
            {
                "type": "tool-output-available",
                "toolCallId": tool_use_id,
                "output": output,
                "providerExecuted": True,
            }
        ]

    def _delta(self, event: ContentBlockDeltaEvent) -> list[Chunk]:
        part = self._open.get(event.index)
        if part is None:
            return []  # a delta of a block the stream does not carry
        delta = event.delta
        if isinstance(delta, TextDelta) and part.kind == "text":
            return (
                [{"type": "text-delta", "id": part.id, "delta": delta.text}] if delta.text else []
            )
        if isinstance(delta, ThinkingDelta) and part.kind == "reasoning":
            if not delta.thinking:
                return []
            return [{"type": "reasoning-delta", "id": part.id, "delta": delta.thinking}]
        if isinstance(delta, InputJSONDelta) and part.kind == "tool":
            if not delta.partial_json:
                return []
            part.fragments.append(delta.partial_json)
            return [
                {
                    "type": "tool-input-delta",
                    "toolCallId": part.id,
                    "inputTextDelta": delta.partial_json,
                }
            ]
        if isinstance(delta, SignatureDelta) and part.kind == "reasoning":
            part.signature = delta.signature
            return []
        if isinstance(delta, CitationsDelta) and part.kind == "text":
            return self._source(delta)
        return []

    def _source(self, delta: CitationsDelta) -> list[Chunk]:
        citation = delta.citation
        url = (citation.model_extra or {}).get("url")
        if not isinstance(url, str) or url in self._sources:
            return []
        self._sources.add(url)
        chunk: Chunk = {
            "type": "source-url",
            "sourceId": f"source-{len(self._sources)}",
            "url": url,
        }
        title = (citation.model_extra or {}).get("title")
        if isinstance(title, str):
            chunk["title"] = title
        return [chunk]

    def _tool_fields(self, part: _Part) -> Chunk:
        fields: Chunk = {"toolCallId": part.id, "toolName": part.tool_name}
        if part.provider_executed:
            fields["providerExecuted"] = True
        if part.dynamic:
            fields["dynamic"] = True
        return fields

    def _end_part(self, part: _Part) -> Chunk:
        if part.kind == "text":
            return {"type": "text-end", "id": part.id}
        if part.kind == "reasoning":
            chunk: Chunk = {"type": "reasoning-end", "id": part.id}
            if part.signature:
                chunk["providerMetadata"] = {"anthropic": {"signature": part.signature}}
            return chunk
        raw = "".join(part.fragments)
        tool_input = parse_tool_input(raw) if raw else part.start_input
        return {
            "type": "tool-input-available",
            **self._tool_fields(part),
            "input": tool_input if tool_input is not None else {},
        }

    def _close_all(self) -> list[Chunk]:
        """End every open part: text and reasoning as they are; a tool call with
        ``tool-input-error``, since its input may be cut short and must not be run."""
        chunks: list[Chunk] = []
        for part in self._open.values():
            if part.kind != "tool":
                chunks.append(self._end_part(part))
                continue
            raw = "".join(part.fragments)
            chunks.append(
                {
                    "type": "tool-input-error",
                    **self._tool_fields(part),
                    "input": parse_tool_input(raw) if raw else {},
                    "errorText": _CUT_OFF,
                }
            )
        self._open.clear()
        return chunks


def _usage_metadata(message: Message | None) -> dict[str, object] | None:
    usage = message.usage if message is not None else None
    if usage is None:
        return None
    metadata: dict[str, object] = {"usage": usage.model_dump(mode="json", exclude_none=True)}
    if usage.estimated:
        metadata["usage_estimated"] = True
    return metadata
