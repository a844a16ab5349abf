"""Replies built in code: the wire events of one streamed Messages API reply, and their bytes."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from .._events import Message, parse_event_object
from .._snapshot import MessageBuilder

__all__ = ["DEFAULT_MODEL", "Reply", "sse_bytes", "text_reply"]

DEFAULT_MODEL = "claude-sonnet-4-5"

_PING: dict[str, Any] = {"type": "ping"}


def sse_bytes(events: Iterable[Mapping[str, Any]]) -> bytes:
    """The Server-Sent Events bytes of ``events``, as the API writes them.

    Each event becomes ``event: {type}\\ndata: {compact JSON}\\n\\n`` (UTF-8, non-ASCII kept as
    is). An event without a string ``type`` gets no ``event:`` line.

    Example:
        >>> sse_bytes([{"type": "ping"}])
        b'event: ping\\ndata: {"type":"ping"}\\n\\n'
    """
    out: list[bytes] = []
    for event in events:
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        kind = event.get("type")
        head = f"event: {kind}\n" if isinstance(kind, str) else ""
        out.append(f"{head}data: {data}\n\n".encode())
    return b"".join(out)


class _Block:
    __slots__ = ("deltas", "start")

    def __init__(self, start: dict[str, Any], deltas: list[dict[str, Any]]) -> None:
        self.start = start
        self.deltas = deltas


class _End:
    __slots__ = ("error", "output_tokens", "stop_reason", "stop_sequence")

    def __init__(
        self,
        *,
        stop_reason: str | None = None,
        stop_sequence: str | None = None,
        output_tokens: int | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        self.stop_reason = stop_reason
        self.stop_sequence = stop_sequence
        self.output_tokens = output_tokens
        self.error = error


class Reply:
    """A streamed reply, built block by block; :meth:`events` gives its wire events.

    Each builder method returns a new ``Reply`` (the receiver is unchanged), so a partial reply
    can be the common start of several. Every block is a ``content_block_start``, one
    ``content_block_delta`` per part, and a ``content_block_stop``. The reply ends with
    :meth:`stop` (``message_delta`` and ``message_stop``) or :meth:`error` (an in-stream
    ``error`` event); when neither is called, :meth:`events` ends it as :meth:`stop` with its
    defaults would.

    Args:
        model: the ``model`` of ``message_start``.
        id: the message id; default a new ``msg_fake_...`` id per ``Reply(...)`` call.
        input_tokens: ``usage.input_tokens`` of ``message_start``.
        output_tokens: ``usage.output_tokens`` of ``message_start`` (the final count is in
            :meth:`stop`).
        cache_creation_input_tokens: sent in ``usage`` when given.
        cache_read_input_tokens: sent in ``usage`` when given.
        **message: more fields of the ``message_start`` message (e.g. ``container``).

    Example:
        >>> reply = Reply(input_tokens=12).text("Hello", ", world").stop(output_tokens=42)
        >>> fake.add_stream(reply)
    """

    __slots__ = ("_blocks", "_end", "_message")

    _message: dict[str, Any]
    _blocks: tuple[_Block | dict[str, Any], ...]
    _end: _End | None

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        id: str | None = None,
        input_tokens: int = 10,
        output_tokens: int = 1,
        cache_creation_input_tokens: int | None = None,
        cache_read_input_tokens: int | None = None,
        **message: Any,
    ) -> None:
        usage: dict[str, Any] = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        if cache_creation_input_tokens is not None:
            usage["cache_creation_input_tokens"] = cache_creation_input_tokens
        if cache_read_input_tokens is not None:
            usage["cache_read_input_tokens"] = cache_read_input_tokens
        self._message = {
            "id": id if id is not None else f"msg_fake_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
            **message,
        }
        self._blocks = ()
        self._end = None

    @property
    def id(self) -> str:
        """The message id sent in ``message_start``."""
        return str(self._message["id"])

    # --- blocks --------------------------------------------------------------------------

    def text(self, *parts: str) -> Reply:
        """Add a text block streamed as one ``text_delta`` per part."""
        return self.block(
            {"type": "text", "text": ""}, *({"type": "text_delta", "text": p} for p in parts)
        )

    def thinking(self, *parts: str, signature: str | None = None) -> Reply:
        """Add a thinking block: one ``thinking_delta`` per part, then a ``signature_delta``
        when ``signature`` is given."""
        deltas: list[dict[str, Any]] = [{"type": "thinking_delta", "thinking": p} for p in parts]
        if signature is not None:
            deltas.append({"type": "signature_delta", "signature": signature})
        return self.block({"type": "thinking", "thinking": "", "signature": ""}, *deltas)

    def redacted_thinking(self, data: str) -> Reply:
        """Add a ``redacted_thinking`` block (whole in its start event, no deltas)."""
        return self.block({"type": "redacted_thinking", "data": data})

    def tool_use(
        self,
        name: str,
        input: Mapping[str, Any],
        *,
        id: str | None = None,
        fragment_size: int | None = None,
    ) -> Reply:
        """Add a ``tool_use`` block whose ``input`` is streamed as ``input_json_delta``
        fragments of ``json.dumps(input)``, ``fragment_size`` characters each (default: one
        fragment).

        Raises:
            ValueError: ``fragment_size`` is less than 1.
            TypeError: ``input`` is not JSON-serialisable.
        """
        if fragment_size is not None and fragment_size < 1:
            raise ValueError("fragment_size must be at least 1")
        raw = json.dumps(dict(input), ensure_ascii=False)
        size = fragment_size or max(len(raw), 1)
        fragments = [raw[i : i + size] for i in range(0, len(raw), size)]
        start = {
            "type": "tool_use",
            "id": id if id is not None else f"toolu_fake_{uuid.uuid4().hex[:24]}",
            "name": name,
            "input": {},
        }
        return self.block(
            start, *({"type": "input_json_delta", "partial_json": f} for f in fragments)
        )

    def block(self, content_block: Mapping[str, Any], *deltas: Mapping[str, Any]) -> Reply:
        """Add any block: ``content_block`` is sent in ``content_block_start``, each delta in
        its own ``content_block_delta`` (e.g. ``server_tool_use``, ``citations_delta``, a type
        this library does not know)."""
        return self._add(_Block(copy.deepcopy(dict(content_block)), [dict(d) for d in deltas]))

    def event(self, event: Mapping[str, Any]) -> Reply:
        """Add one raw event at this point (a ``ping``, an unknown event type...)."""
        return self._add(copy.deepcopy(dict(event)))

    # --- the end -------------------------------------------------------------------------

    def stop(
        self,
        stop_reason: str | None = None,
        *,
        output_tokens: int | None = None,
        stop_sequence: str | None = None,
    ) -> Reply:
        """End with ``message_delta`` (``stop_reason``, ``stop_sequence``, ``usage``) and
        ``message_stop``.

        ``stop_reason`` defaults to ``"tool_use"`` when the last block is a tool use, else
        ``"end_turn"``; ``output_tokens`` to the number of deltas (at least 1).

        Raises:
            ValueError: the reply already ended.
        """
        return self._ended(
            _End(stop_reason=stop_reason, stop_sequence=stop_sequence, output_tokens=output_tokens)
        )

    def error(self, error_type: str = "overloaded_error", message: str = "Overloaded") -> Reply:
        """End with an in-stream ``error`` event instead of ``message_stop``, as the API does
        when it fails after the stream opened.

        Raises:
            ValueError: the reply already ended.
        """
        return self._ended(_End(error={"type": error_type, "message": message}))

    # --- output --------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """The wire events of the reply, in order (new dicts on every call)."""
        out: list[dict[str, Any]] = [
            {"type": "message_start", "message": copy.deepcopy(self._message)}
        ]
        index = 0
        deltas = 0
        last_block_type: object = None
        for item in self._blocks:
            if isinstance(item, dict):
                out.append(copy.deepcopy(item))
                continue
            out.append(
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": copy.deepcopy(item.start),
                }
            )
            out.extend(
                {"type": "content_block_delta", "index": index, "delta": copy.deepcopy(d)}
                for d in item.deltas
            )
            out.append({"type": "content_block_stop", "index": index})
            deltas += len(item.deltas)
            last_block_type = item.start.get("type")
            index += 1
        end = self._end or _End()
        if end.error is not None:
            out.append({"type": "error", "error": dict(end.error)})
            return out
        reason = end.stop_reason
        if reason is None:
            reason = "tool_use" if last_block_type == "tool_use" else "end_turn"
        tokens = end.output_tokens if end.output_tokens is not None else max(deltas, 1)
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": end.stop_sequence},
                "usage": {"output_tokens": tokens},
            }
        )
        out.append({"type": "message_stop"})
        return out

    def to_sse(self, *, ping_every: int | None = None) -> bytes:
        """The reply's SSE bytes; with ``ping_every=n``, a ``ping`` event after every ``n``
        events (never after the last).

        Raises:
            ValueError: ``ping_every`` is less than 1.
        """
        events = self.events()
        if ping_every is None:
            return sse_bytes(events)
        if ping_every < 1:
            raise ValueError("ping_every must be at least 1")
        paced: list[dict[str, Any]] = []
        for number, event in enumerate(events, start=1):
            paced.append(event)
            if number % ping_every == 0 and number < len(events):
                paced.append(dict(_PING))
        return sse_bytes(paced)

    def message(self) -> Message:
        """The final :class:`~anthropic_rx.Message` these events accumulate into (what
        ``await arx.final_message(...)`` gives for them).

        Raises:
            ValueError: the reply ends with :meth:`error`, so it has no final message.
        """
        if self._end is not None and self._end.error is not None:
            raise ValueError("this reply ends with an error event: it has no final message")
        builder = MessageBuilder()
        for event in self.events():
            builder.feed(parse_event_object(event))
        message = builder.message()
        assert message is not None  # message_start is always the first event
        return message

    def __repr__(self) -> str:
        kinds = [
            f"event:{item.get('type')}" if isinstance(item, dict) else str(item.start.get("type"))
            for item in self._blocks
        ]
        end = self._end
        tail = (
            ""
            if end is None
            else f", error={end.error['type']!r}"
            if end.error is not None
            else f", stop={end.stop_reason or 'default'!r}"
        )
        return f"Reply(model={self._message['model']!r}, blocks={kinds}{tail})"

    # --- internals -----------------------------------------------------------------------

    def _copy(self) -> Reply:
        new = object.__new__(Reply)
        new._message = self._message
        new._blocks = self._blocks
        new._end = self._end
        return new

    def _add(self, item: _Block | dict[str, Any]) -> Reply:
        if self._end is not None:
            raise ValueError("this reply already ended (stop() or error()); add blocks before")
        new = self._copy()
        new._blocks = (*self._blocks, item)
        return new

    def _ended(self, end: _End) -> Reply:
        if self._end is not None:
            raise ValueError("this reply already ended (stop() or error())")
        new = self._copy()
        new._end = end
        return new


def text_reply(*parts: str, model: str = DEFAULT_MODEL) -> Reply:
    """A reply of one text block, one ``text_delta`` per part, ending with ``end_turn``.

    Example:
        >>> fake.add_stream(text_reply("Hello", " world"))
    """
    return Reply(model=model).text(*parts)
