"""A sans-IO Server-Sent Events decoder: feed bytes, get frames.

It follows the WHATWG event-stream parsing rules, working on bytes until a line is complete:

- lines end at CR, LF or CRLF only (a CR that ends one chunk and an LF that starts the next are
  one line end); U+2028, U+2029 and U+0085 inside a line are text, never line ends, which is why
  ``str.splitlines`` is never used;
- each complete line is decoded as UTF-8 on its own, so a multi-byte character cut across chunks
  survives, and invalid UTF-8 raises :class:`ProtocolError` naming the byte offset;
- one leading byte-order mark is stripped; comments (``:``) and unknown fields are ignored;
  ``data`` lines join with ``\\n``; ``event``, ``id`` and ``retry`` are kept; a blank line
  dispatches;
- a line longer than ``max_line_bytes`` raises :class:`ProtocolError` instead of growing the
  buffer without bound.

At the end of the body, :meth:`SSEDecoder.flush` treats an unterminated last line as a line and
dispatches an event that only lacked its closing blank line. (WHATWG discards it; we hand it to
the caller, which knows whether the stream was complete.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._exceptions import ProtocolError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event.

    Attributes:
        event: the event type (``"message"`` when the frame named none).
        data: the ``data`` lines joined with ``\\n``.
        id: the last event id seen on the stream so far, if any (ids persist across events).
        retry: the reconnection time in milliseconds, when this frame set one.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder. Not thread-safe; one per stream.

    Args:
        max_line_bytes: the longest line accepted; a longer one raises :class:`ProtocolError`.
    """

    __slots__ = (
        "_bom_pending",
        "_consumed",
        "_data",
        "_event",
        "_last_id",
        "_max_line",
        "_retry",
        "_skip_lf",
        "_tail",
    )

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self._max_line = max_line_bytes
        self._tail = b""
        self._skip_lf = False
        self._bom_pending = True
        self._consumed = 0  # absolute offset of the first byte of self._tail
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Take the next bytes of the body; return the events they complete, in order.

        Raises:
            ProtocolError: a line longer than ``max_line_bytes``, or invalid UTF-8.
        """
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:  # the LF of a CRLF cut after the CR
                chunk = chunk[1:]
                self._consumed += 1
                if not chunk:
                    return []
        data = self._tail + chunk if self._tail else chunk
        if self._bom_pending:
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._tail = data  # could still become a BOM
                return []
            self._bom_pending = False
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self._consumed += len(_BOM)
        if b"\r" in data:
            lines = _LINE_END.split(data)
            # A trailing CR ends its line now; an LF at the start of the next chunk belongs to it.
            self._skip_lf = data[-1] == 0x0D
        else:
            lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > self._max_line:
            raise ProtocolError(
                f"SSE line longer than {self._max_line} bytes at byte offset "
                f"{self._consumed + len(data) - len(tail)}"
            )
        events = self._lines(lines, data) if lines else []
        self._consumed += len(data) - len(tail)
        self._tail = tail
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End of body: process an unterminated last line and dispatch a pending event.

        The decoder is reset afterwards and may be fed again as a new stream.
        """
        lines = [self._tail, b""] if self._tail else [b""]
        data = self._tail
        self._tail = b""
        try:
            return self._lines(lines, data)
        finally:
            self._skip_lf = False
            self._bom_pending = True
            self._consumed = 0
            self._event = ""
            self._data = []

    def _lines(self, lines: list[bytes], source: bytes) -> list[ServerSentEvent]:
        events: list[ServerSentEvent] = []
        data = self._data
        max_line = self._max_line
        for line in lines:
            if not line:
                if data:
                    events.append(
                        ServerSentEvent(
                            self._event or "message", "\n".join(data), self._last_id, self._retry
                        )
                    )
                    data = self._data = []
                    self._retry = None
                self._event = ""
                continue
            if len(line) > max_line:
                raise ProtocolError(
                    f"SSE line longer than {max_line} bytes at byte offset "
                    f"{self._consumed + source.index(line)}"
                )
            first = line[0]
            if first == 0x3A:  # ":" starts a comment
                continue
            try:
                if first == 0x64 and line.startswith(b"data:"):  # the hot path
                    value = line[6:] if line[5:6] == b" " else line[5:]
                    data.append(value.decode("utf-8"))
                    continue
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                offset = self._consumed + source.index(line) + exc.start
                raise ProtocolError(f"invalid UTF-8 in SSE stream at byte offset {offset}") from exc
            self._field(text, data)
        return events

    def _field(self, text: str, data: list[str]) -> None:
        name, sep, value = text.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
