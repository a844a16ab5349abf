"""A sans-IO HTTP/1.1 response parser: feed bytes, get the head, body pieces and the end.

:class:`ResponseParser` decodes the responses of one client connection, one at a time
(:meth:`~ResponseParser.start` before each), with no socket in sight, so every rule below is
tested on bytes alone. What it accepts and refuses (RFC 9112) is at least as strict as h11
everywhere, but for one leniency the transport always had: a bare LF may end a chunk line or
a chunk's data (h11 wants CRLF there). It is stricter than h11 in the HTTP version, obs-fold,
``Transfer-Encoding`` with ``Content-Length``, NUL or CR in a chunk extension, framing fields
among trailers, and its 64 KiB and 4 KiB caps (httpcore lets h11 buffer 100 KiB):

- a head is a status line and header lines ending at the first blank line; lines end at CRLF
  or a bare LF (RFC 9112 §2.2); a head or a trailer section over 64 KiB is refused;
- the status line is ``HTTP/1.0`` or ``HTTP/1.1``, one space, exactly three digits (100 to
  999), then optionally a space and a reason phrase with no NUL, CR, LF, VT or FF; no empty
  line before it;
- a header line is ``name:value`` with a token name (no space before the colon), the value
  free of NUL, CR, LF, VT and FF (optional blanks around it are dropped); an obs-fold
  continuation line (one starting with a space or a tab) is refused;
- framing (RFC 9112 §6.1, §6.3): ``Transfer-Encoding`` is accepted only as exactly one
  coding, ``chunked`` (any case), across all its headers; ``Content-Length`` is up to 20
  digits, repeated only with the same value; both together are refused; 204, 304 and the
  answer to ``HEAD`` have no body; with neither header the body runs until the connection
  closes;
- a chunk-size line is 1 to 20 hex digits, optional ``;extensions`` (no NUL or CR), optional
  trailing blanks, at most 4 KiB; the data of each chunk is followed by CRLF (or LF); trailer
  lines are header lines, and ``Content-Length`` or ``Transfer-Encoding`` among them is
  refused;
- ``101 Switching Protocols`` is refused (no upgrade is ever asked for); other 1xx heads are
  checked and skipped;
- ``Connection`` headers are combined: ``close`` in any ends the connection after this
  response; an HTTP/1.0 response keeps it only when it says ``keep-alive`` and has no
  ``Transfer-Encoding``;
- bytes after the end of a response are no part of it: :attr:`ResponseParser.leftover` is set,
  and the connection is not to be reused.

:meth:`ResponseParser.feed` never raises: any failure, ours or the server's, becomes
:attr:`ResponseParser.error`, an ``httpx.RemoteProtocolError``, and the parser takes no more
bytes. A pending error always wins over a complete body.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import httpx

__all__ = ["MAX_CHUNK_LINE_BYTES", "MAX_HEAD_BYTES", "ResponseHead", "ResponseParser"]

MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one response
MAX_TRAILER_BYTES = 64 * 1024  # the trailer section of a chunked body
MAX_CHUNK_LINE_BYTES = 4096  # a chunk-size line with its extensions

# The character classes are h11's (``_abnf.py``): a field value or reason phrase holds no NUL
# and no whitespace but spaces and tabs between its visible bytes.
_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*")
_STATUS_LINE = re.compile(rb"HTTP/([0-9]\.[0-9]) ([0-9]{3})(?: ((?:[ \t]|[^\x00\s])*))?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\x00]*)?[ \t]*")
_ANY_CHUNK_EXTENSION = re.compile(rb"[0-9A-Fa-f]{1,20};.*[ \t]*", re.DOTALL)  # h11's rule
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,20}")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_VERSIONS = {b"1.0": b"HTTP/1.0", b"1.1": b"HTTP/1.1"}
_FRAMING_FIELDS = (b"content-length", b"transfer-encoding")

# Parser states.
_IDLE, _HEAD, _SIZE, _DATA, _DATA_END, _TRAILERS, _UNTIL_CLOSE, _DONE, _ERROR = range(9)


class ResponseHead(NamedTuple):
    """The head of one final (non-1xx) response.

    Attributes:
        status: the status code, 200 to 999.
        reason: the reason phrase, possibly empty.
        version: ``b"HTTP/1.0"`` or ``b"HTTP/1.1"``.
        headers: ``(name, value)`` pairs as sent, names in their own case, values stripped.
    """

    status: int
    reason: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]


class _Refused(Exception):
    """A rule of the module's list was broken; the message says which."""


class ResponseParser:
    """Decodes the responses of one HTTP/1.1 connection from the bytes it receives.

    Call :meth:`start` before each response, then :meth:`feed` with every piece of bytes and
    :meth:`feed_eof` when the peer closes. Results are attributes, read after each call:

    - :attr:`head`: the :class:`ResponseHead`, once the final head has arrived;
    - :attr:`pieces`: body bytes not yet taken (:meth:`take` empties it), :attr:`held` their
      length;
    - :attr:`complete`: the body has ended (no more pieces will come);
    - :attr:`error`: an ``httpx.RemoteProtocolError`` once the response is found malformed;
      set, it stays, and nothing more is parsed;
    - :attr:`keep_alive`: the connection may carry another request after this response;
    - :attr:`leftover`: bytes came after the end of a response (or before any was asked for);
    - :attr:`trailers`: the trailer fields of a chunked body, once it has ended;
    - :attr:`bare_lf`: a chunk line or a chunk's data ended with a bare LF, not CRLF
      (accepted, as RFC 9112 §2.2 allows; h11 refuses it).

    It holds no more than the 64 KiB of one head, trailer section or chunk line before it
    refuses; body bytes are sliced from what was fed, never copied one by one.
    """

    __slots__ = (
        "_chunked",
        "_head_only",
        "_pending",
        "_remaining",
        "_scan_from",
        "_state",
        "bare_lf",
        "error",
        "head",
        "held",
        "keep_alive",
        "leftover",
        "pieces",
        "trailers",
    )

    def __init__(self) -> None:
        self._state = _IDLE
        # The start of a head or trailer section (a bytearray), or of a chunk line (bytes).
        self._pending: bytes | bytearray = b""
        self._scan_from = 0  # where in ``_pending`` the search for its end goes on
        self._remaining = 0  # bytes left of the current chunk or Content-Length body
        self._head_only = False
        self._chunked = False
        self.head: ResponseHead | None = None
        self.pieces: list[bytes] = []
        self.held = 0
        self.error: httpx.RemoteProtocolError | None = None
        self.keep_alive = True
        self.leftover = False
        self.bare_lf = False
        self.trailers: list[tuple[bytes, bytes]] = []

    @property
    def complete(self) -> bool:
        """Whether the current response's body has ended."""
        return self._state == _DONE

    @property
    def idle(self) -> bool:
        """Whether no response is under way: none started, or the last one complete."""
        return self._state in (_IDLE, _DONE)

    def start(self, *, head_only: bool = False) -> None:
        """Expects the next response; ``head_only`` for the answer to a ``HEAD`` request.

        Raises:
            RuntimeError: the previous response has not ended, or failed.
        """
        if self._state not in (_IDLE, _DONE):
            raise RuntimeError("the previous response has not ended")
        self._state = _HEAD
        self._head_only = head_only
        self.head = None
        self.pieces = []
        self.held = 0
        self.trailers = []
        self.bare_lf = False

    def take(self) -> list[bytes]:
        """Returns the body pieces that arrived since the last call, and forgets them."""
        pieces = self.pieces
        self.pieces = []
        self.held = 0
        return pieces

    def feed(self, data: bytes) -> None:
        """Parses ``data``, the next bytes of the connection; never raises (see :attr:`error`)."""
        if self._state == _ERROR or not data:
            return
        try:
            if self._pending:
                data = self._join_pending(data)
                if not data:
                    return
            self._parse(data)
        except _Refused as exc:
            self._fail(str(exc))
        except Exception as exc:  # whatever breaks, it is a malformed response
            self._fail(f"malformed response ({type(exc).__name__}: {exc})")

    def feed_eof(self, detail: str = "") -> None:
        """The peer closed the connection: a body read until close ends, any other is cut.

        Args:
            detail: appended to the error's message (the socket error, say).
        """
        state = self._state
        if state == _UNTIL_CLOSE:
            self._state = _DONE
        elif state not in (_IDLE, _DONE, _ERROR):
            self._fail(
                "server disconnected before the response ended" + detail
                if self.head is not None
                else "server disconnected without sending a response" + detail
            )

    def fail(self, message: str) -> None:
        """Ends the current response with an error of ``message`` (kept if one is set)."""
        self._fail(message)

    # --- internals ---------------------------------------------------------------------------

    def _fail(self, message: str) -> None:
        if self.error is None:
            self.error = httpx.RemoteProtocolError(message)
        self._state = _ERROR
        self.keep_alive = False
        self._pending = b""

    def _join_pending(self, data: bytes) -> bytes:
        """Adds ``data`` to a started line or section; its bytes once it ends, else ``b""``.

        A head or trailer section grows in a bytearray, and the search for its end goes on
        from where the last one stopped, so a head fed one byte at a time is scanned once, not
        once per byte. A chunk line (4 KiB at most) is joined as bytes: cheaper when short.
        """
        state = self._state
        if state in (_SIZE, _DATA_END):
            joined = bytes(self._pending) + data
            if state == _SIZE and joined.find(b"\n", self._scan_from) < 0:
                if len(joined) > MAX_CHUNK_LINE_BYTES:
                    raise _Refused(_TOO_LONG[state])
                self._pending = joined
                self._scan_from = len(joined)
                return b""
            self._pending = b""
            self._scan_from = 0
            return joined
        pending = self._pending
        assert isinstance(pending, bytearray)
        pending += data
        if (
            pending[:1] == b"\n"
            or pending[:2] == b"\r\n"
            or _BLANK_LINE.search(pending, self._scan_from) is not None
        ):
            self._pending = b""
            self._scan_from = 0
            return bytes(pending)
        if len(pending) > _LIMITS[state]:
            raise _Refused(_TOO_LONG[state])
        self._scan_from = max(0, len(pending) - 2)
        return b""

    def _stash(self, rest: bytes) -> None:
        state = self._state
        if len(rest) > _LIMITS[state]:
            raise _Refused(_TOO_LONG[state])
        if state in (_HEAD, _TRAILERS):
            self._pending = bytearray(rest)
            self._scan_from = max(0, len(rest) - 2)
        else:
            self._pending = rest
            self._scan_from = len(rest)

    def _parse(self, buf: bytes) -> None:
        pos = 0
        end = len(buf)
        while pos < end:
            state = self._state
            if state == _DATA:
                take = end - pos
                remaining = self._remaining
                if take >= remaining:
                    take = remaining
                    self._state = _DATA_END if self._chunked else _DONE
                self._remaining = remaining - take
                self.pieces.append(buf[pos : pos + take] if pos or take != end else buf)
                self.held += take
                pos += take
            elif state == _SIZE:
                newline = buf.find(b"\n", pos)
                if newline < 0:
                    self._stash(buf[pos:])
                    return
                if newline > pos and buf[newline - 1] == 0x0D:
                    line = buf[pos : newline - 1]
                else:
                    line = buf[pos:newline]
                    self.bare_lf = True
                if newline - pos > MAX_CHUNK_LINE_BYTES:
                    raise _Refused("chunked encoding line too long")
                pos = newline + 1
                match = _CHUNK_SIZE.fullmatch(line)
                if match is None:
                    if _ANY_CHUNK_EXTENSION.fullmatch(line) is not None:
                        raise _Refused(f"invalid chunk extension (NUL or CR) {line[:20]!r}")
                    raise _Refused(f"invalid chunk size {line[:20]!r}")
                size = int(match[1], 16)
                if size:
                    self._remaining = size
                    self._state = _DATA
                else:
                    self._state = _TRAILERS
            elif state == _DATA_END:
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                elif buf.startswith(b"\n", pos):
                    pos += 1
                    self.bare_lf = True
                elif end - pos == 1 and buf[pos] == 0x0D:
                    self._stash(buf[pos:])
                    return
                else:
                    raise _Refused("chunk data longer than its size")
                self._state = _SIZE
            elif state in (_HEAD, _TRAILERS):
                pos = self._section(buf, pos, state)
                if pos < 0:
                    return
            elif state == _UNTIL_CLOSE:
                piece = buf[pos:] if pos else buf
                self.pieces.append(piece)
                self.held += end - pos
                return
            else:  # _IDLE or _DONE: bytes no request asked for
                self.leftover = True
                self.keep_alive = False
                return

    def _section(self, buf: bytes, pos: int, state: int) -> int:
        """Reads a head or trailer section at ``pos``; where it ended, or -1 if it has not."""
        limit = MAX_HEAD_BYTES if state == _HEAD else MAX_TRAILER_BYTES
        if buf.startswith(b"\n", pos):
            blank_start, after = pos, pos + 1
        elif buf.startswith(b"\r\n", pos):
            blank_start, after = pos, pos + 2
        else:
            match = _BLANK_LINE.search(buf, pos)
            if match is None:
                self._stash(buf[pos:])
                return -1
            blank_start, after = match.start() + 1, match.end()
        if blank_start - pos > limit:
            raise _Refused(_TOO_LONG[state])
        lines = buf[pos:blank_start].split(b"\n")
        if lines[-1] == b"":
            lines.pop()  # the line end of the last line
        if state == _HEAD:
            self._read_head(lines)
        else:
            self.trailers = _fields(lines, trailers=True)
            self._state = _DONE
        return after

    def _read_head(self, lines: list[bytes]) -> None:
        if not lines:
            raise _Refused("no status line received")
        status_line = _strip_cr(lines[0])
        match = _STATUS_LINE.fullmatch(status_line)
        if match is None:
            raise _Refused(f"invalid status line {status_line[:80]!r}")
        version = _VERSIONS.get(match[1])
        if version is None:
            raise _Refused(f"unsupported HTTP version {status_line[:12]!r}")
        status = int(match[2])
        if status < 100:
            raise _Refused(f"invalid status code {status:03d}")
        headers = _fields(lines[1:], trailers=False)
        length, chunked, close, keep_alive_asked = _framing(headers)
        if status == 101:
            raise _Refused("101 Switching Protocols, but no upgrade was asked for")
        if status < 200:
            return  # informational: the final head follows
        self.head = ResponseHead(status, match[3] or b"", version, headers)
        if version == b"HTTP/1.0":
            self.keep_alive = keep_alive_asked and not close and not chunked
        else:
            self.keep_alive = not close
        self._chunked = chunked
        if status in (204, 304) or self._head_only:
            self._state = _DONE
        elif chunked:
            self._state = _SIZE
        elif length is not None:
            self._remaining = length
            self._state = _DATA if length else _DONE
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE


_TOO_LONG = {
    _HEAD: "response headers too long",
    _TRAILERS: "response trailers too long",
    _SIZE: "chunked encoding line too long",
    _DATA_END: "chunk data longer than its size",
}
_LIMITS = {
    _HEAD: MAX_HEAD_BYTES,
    _TRAILERS: MAX_TRAILER_BYTES,
    _SIZE: MAX_CHUNK_LINE_BYTES,
    _DATA_END: 1,
}


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _fields(lines: list[bytes], *, trailers: bool) -> list[tuple[bytes, bytes]]:
    fields: list[tuple[bytes, bytes]] = []
    for raw in lines:
        line = _strip_cr(raw)
        if line[:1] in (b" ", b"\t"):
            raise _Refused(f"obsolete line folding in {line[:80]!r}")
        match = _FIELD.fullmatch(line)
        if match is None:
            kind = "trailer" if trailers else "header"
            raise _Refused(f"invalid {kind} line {line[:80]!r}")
        name = match[1]
        if trailers and name.lower() in _FRAMING_FIELDS:
            raise _Refused(f"framing field {name[:40]!r} in the trailers")
        fields.append((name, match[2]))
    return fields


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool, bool, bool]:
    """The Content-Length, whether chunked, ``close`` and ``keep-alive`` of a head's headers."""
    length: bytes | None = None
    codings: list[bytes] = []
    connection: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            values = {item.strip() for item in value.split(b",")}
            if len(values) != 1:
                raise _Refused("conflicting content-length headers")
            (single,) = values
            if _CONTENT_LENGTH.fullmatch(single) is None:
                raise _Refused(f"invalid content-length {single[:24]!r}")
            if length is not None and single != length:
                raise _Refused("conflicting content-length headers")
            length = single
        elif lowered == b"transfer-encoding":
            codings.extend(item.strip().lower() for item in value.split(b","))
        elif lowered == b"connection":
            connection.extend(item.strip().lower() for item in value.split(b","))
    if codings and codings != [b"chunked"]:
        raise _Refused(f"unsupported transfer-encoding {b', '.join(codings)[:60]!r}")
    if codings and length is not None:
        raise _Refused("both transfer-encoding and content-length")
    return (
        None if length is None else int(length),
        bool(codings),
        b"close" in connection,
        b"keep-alive" in connection,
    )
