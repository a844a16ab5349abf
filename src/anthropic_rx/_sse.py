"""A sans-IO Server-Sent Events decoder: feed bytes, get frames.

It follows the WHATWG event-stream parsing rules, working on bytes until a line is complete:

- lines end at CR, LF or CRLF only (a CR that ends one chunk and an LF that starts the next are
  one line end); U+2028, U+2029 and U+0085 inside a line are text, never line ends, which is why
  ``str.splitlines`` is never used;
- each complete line is decoded as UTF-8 on its own, so a multi-byte character cut across chunks
  survives, and invalid UTF-8 raises :class:`ProtocolError` naming the byte offset;
- one leading byte-order mark is stripped; comments (``:``) and unknown fields are ignored;
  ``data`` lines join with ``\\n``; ``event``, ``id`` and ``retry`` are kept; a blank line
  dispatches (a frame without data only when it is named ``error``: an error is never dropped);
- a line longer than ``max_line_bytes`` raises :class:`ProtocolError` instead of growing the
  buffer without bound.

At the end of the body, :meth:`SSEDecoder.flush` treats an unterminated last line as a line and
dispatches an event that only lacked its closing blank line. (WHATWG discards it; we hand it to
the caller, which knows whether the stream was complete.)
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from ._exceptions import ProtocolError

__all__ = ["DEFAULT_MAX_LINE_BYTES", "SSEDecoder", "ServerSentEvent"]

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"
# A whole frame of the form every Anthropic event has: ``event: <type>``, one ``data:`` line,
# a blank line. ``[^\n]`` takes U+2028 and friends as text, as the spec requires.
_ANY_LINE = re.compile(rb"([^\r\n]*)(?:\r\n|\r|\n|$)")
_CANONICAL = re.compile(r"event: ?([^\n]*)\ndata: ?([^\n]*)\n\n")


class ServerSentEvent(NamedTuple):
    """One dispatched event (an immutable tuple: cheap to make, one per event).

    Attributes:
        event: the event type (``"message"`` when the frame named none).
        data: the ``data`` lines joined with ``\\n``.
        id: the last event id seen on the stream so far, if any (ids persist across events).
        retry: the reconnection time in milliseconds, when a ``retry`` field arrived since the
            previous dispatched event (a frame with no data is not dispatched, so its
            ``retry`` goes with the next event).
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


# ``tuple.__new__`` directly: a NamedTuple's own constructor is a Python function, and this
# runs once per event.
_new_event = functools.partial(tuple.__new__, ServerSentEvent)


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
            ProtocolError: a line longer than ``max_line_bytes``, or invalid UTF-8 (the events
                completed before the bad line are lost to this call: :meth:`feed_into` keeps
                them).
        """
        events: list[ServerSentEvent] = []
        self.feed_into(chunk, events)
        return events

    def feed_into(self, chunk: bytes, events: list[ServerSentEvent]) -> None:
        """Like :meth:`feed`, appending to ``events``; on a bad line, the events completed before
        it are in ``events`` when :class:`ProtocolError` is raised, whatever the chunking."""
        if not chunk:
            return
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:  # the LF of a CRLF cut after the CR
                chunk = chunk[1:]
                self._consumed += 1
                if not chunk:
                    return
        data = self._tail + chunk if self._tail else chunk
        if self._bom_pending:
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._tail = data  # could still become a BOM
                return
            self._bom_pending = False
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self._consumed += len(_BOM)
        has_cr = b"\r" in data
        cut = (max(data.rfind(b"\n"), data.rfind(b"\r")) if has_cr else data.rfind(b"\n")) + 1
        too_long = len(data) - cut > self._max_line
        if cut == 0:
            self._tail = data
        else:
            complete = data[:cut] if cut < len(data) else data
            self._tail = data[cut:]
            # A CR that ends the bytes so far ends its line now; an LF that starts the next
            # chunk belongs to it.
            self._skip_lf = not self._tail and complete[-1] == 0x0D
            self._lines(complete, has_cr, events)
            self._consumed += cut
        if too_long:  # after the complete lines before it, as if they had come alone
            self._tail = b""  # never held: the buffer stays within the cap
            raise ProtocolError(
                f"SSE line longer than {self._max_line} bytes at byte offset {self._consumed}"
            )

    def flush(self) -> list[ServerSentEvent]:
        """End of body: process an unterminated last line and dispatch a pending event.

        The decoder is reset afterwards and may be fed again as a new stream.
        """
        tail, self._tail = self._tail, b""
        try:
            text = self._decode(tail) + "\n\n" if tail else "\n"
            events: list[ServerSentEvent] = []
            self._text(text, tail, events)
            return events
        finally:
            self._skip_lf = False
            self._bom_pending = True
            self._consumed = 0
            self._event = ""
            self._data = []

    def _lines(self, complete: bytes, has_cr: bool, events: list[ServerSentEvent]) -> None:
        """Process whole lines; invalid UTF-8 raises after the lines before the bad one."""
        try:
            text = complete.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Rare: the lines before the bad one are whole and valid; process them first.
            good = max(complete.rfind(b"\n", 0, exc.start), complete.rfind(b"\r", 0, exc.start))
            if good >= 0:
                self._lines(complete[: good + 1], has_cr, events)
            offset = self._consumed + exc.start
            raise ProtocolError(f"invalid UTF-8 in SSE stream at byte offset {offset}") from exc
        if has_cr:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self._text(text, complete, events)

    def _decode(self, complete: bytes) -> str:
        # Only whole lines (or the last, at the end of the body) are decoded, so a multi-byte
        # character is never cut here, and the error's start is the exact byte offset.
        try:
            return complete.decode("utf-8")
        except UnicodeDecodeError as exc:
            offset = self._consumed + exc.start
            raise ProtocolError(f"invalid UTF-8 in SSE stream at byte offset {offset}") from exc

    def _text(self, text: str, source: bytes, events: list[ServerSentEvent]) -> None:
        """Process whole lines: ``text`` is ``source`` decoded, its line ends made ``\\n``."""
        short = len(source) <= self._max_line  # then no line in it can be too long
        match = _CANONICAL.match
        pos, end = 0, len(text)
        while pos < end:
            # At a frame boundary, the frames every Anthropic stream is made of take one regex
            # match each; anything else (ids, comments, several data lines) goes line by line.
            if short and not self._data and not self._event and self._retry is None:
                found = match(text, pos)
                while found is not None:
                    event, data = found.groups()
                    events.append(_new_event((event or "message", data, self._last_id, None)))
                    pos = found.end()
                    found = match(text, pos)
                if pos >= end:
                    break
            newline = text.index("\n", pos)
            line = text[pos:newline]
            if not short and len(line) * 4 > self._max_line and len(line.encode()) > self._max_line:
                raise ProtocolError(
                    f"SSE line longer than {self._max_line} bytes at byte offset "
                    f"{self._consumed + _long_line_offset(source, self._max_line)}"
                )
            pos = newline + 1
            self._line(line, events)

    def _line(self, line: str, events: list[ServerSentEvent]) -> None:
        if not line:
            # WHATWG drops a frame without data; a frame named ``error`` is dispatched all the
            # same (with empty data), so that an error is never taken for silence.
            if self._data or self._event == "error":
                events.append(
                    ServerSentEvent(
                        self._event or "message", "\n".join(self._data), self._last_id, self._retry
                    )
                )
                self._data = []
                self._retry = None
            self._event = ""
            return
        if line[0] == ":":  # a comment
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)


def _long_line_offset(source: bytes, max_line: int) -> int:
    """The offset in ``source`` of its first line longer than ``max_line`` bytes (error path)."""
    offset = 0
    for match in _ANY_LINE.finditer(source):
        if len(match.group(1)) > max_line:
            return offset
        offset = match.end()
    return offset
