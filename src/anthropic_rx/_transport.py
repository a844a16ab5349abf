"""A small HTTP/1.1 transport for httpx, built for many long streamed responses at once.

:class:`StreamingTransport` is an ``httpx.AsyncBaseTransport``: the :class:`~anthropic_rx.Client`
uses it under its own ``httpx.AsyncClient``, so requests, responses and errors are httpx's own.
It exists because a streamed reply arrives as many small network chunks, and httpcore spends
about 25 µs on each (h11's event machinery, anyio's stream layers, a pool scan per request that
grows with the open connections), several times what anthropic-rx spends on the events in it.
Here each connection is an ``asyncio.Protocol`` that decodes the response as bytes arrive, and
the pool is a stack of idle connections per origin: O(1) to take and to give back.

What it does: HTTP/1.1 over TCP or TLS (ALPN ``http/1.1``), keep-alive, ``Content-Length``,
``chunked`` and read-until-close bodies, 1xx responses skipped, back-pressure (a connection
stops reading from its socket while ``_HIGH_WATER`` decoded bytes wait for the consumer), and
httpx's timeouts from the request's ``timeout`` extension (connect, read, write; ``None`` waits).
What it does not: HTTP/2, proxies (the client uses httpx's own transport when the environment
names a proxy for its URL), request bodies other than bytes known up front (an async stream is
read whole before it is sent).

A response closed before its body ended closes its connection; one read to its end goes back
to the pool. Errors are httpx's: ``ConnectError``, ``ConnectTimeout``, ``ReadError``,
``ReadTimeout``, ``WriteError``, ``WriteTimeout``, ``RemoteProtocolError``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["StreamingTransport"]

_HIGH_WATER = 256 * 1024  # decoded body bytes held before the socket stops being read
_MAX_HEAD_BYTES = 64 * 1024  # status line and headers of one response
_MAX_CHUNK_LINE = 4096  # a chunk-size line with its extensions
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")

# Parser states of one response.
_HEAD, _SIZE, _DATA, _DATA_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, decoding each response as its bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._state = _DONE
        self._remaining = 0  # bytes left of the current chunk, or of a Content-Length body
        self._framed_by_length = False
        self._pieces: list[bytes] = []  # decoded body bytes the consumer has not taken
        self._held = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._write_paused = False
        self.head: tuple[int, bytes, list[tuple[bytes, bytes]]] | None = None
        self.error: Exception | None = None
        self.closed = False
        self.keep_alive = True
        self._head_only = False  # the response to a HEAD request has no body

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer = self._buffer + data if self._buffer else data
        try:
            self._parse()
        except httpx.RemoteProtocolError as exc:
            self._fail(exc)
            return
        if self._held > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._closed_by_peer(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed_by_peer(exc)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- parsing -----------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buffer
        pos = 0
        end = len(buf)
        while pos < end:
            state = self._state
            if state in (_DATA, _UNTIL_CLOSE):
                if state == _UNTIL_CLOSE:
                    take = end - pos
                else:
                    take = min(self._remaining, end - pos)
                    self._remaining -= take
                piece = buf[pos : pos + take] if pos or take != end else buf
                self._pieces.append(piece)
                self._held += take
                pos += take
                if state == _DATA and self._remaining == 0:
                    self._state = _DONE if self._framed_by_length else _DATA_END
                continue
            if state == _HEAD:
                # The blank line that ends the head; bare LF line ends are accepted too.
                head_end = _HEAD_END.search(buf, pos)
                if head_end is None:
                    if end - pos > _MAX_HEAD_BYTES:
                        raise httpx.RemoteProtocolError("response headers too long")
                    break
                if head_end.start() - pos > _MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("response headers too long")
                self._read_head(buf[pos : head_end.start()])
                pos = head_end.end()
                continue
            newline = buf.find(b"\n", pos)
            if newline < 0:
                if end - pos > _MAX_CHUNK_LINE:
                    raise httpx.RemoteProtocolError("chunked encoding line too long")
                break
            line = buf[pos:newline].rstrip(b"\r")
            pos = newline + 1
            if state == _SIZE:
                size_text = line.split(b";", 1)[0].strip()
                if _CHUNK_SIZE.fullmatch(size_text) is None:  # int() would take "-1", "1_0"
                    raise httpx.RemoteProtocolError(f"invalid chunk size {size_text[:20]!r}")
                size = int(size_text, 16)
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _DATA
            elif state == _DATA_END:
                if line:
                    raise httpx.RemoteProtocolError("chunk data longer than its size")
                self._state = _SIZE
            elif state == _TRAILERS:
                if not line:
                    self._state = _DONE
            else:  # _DONE: bytes after a complete response, unasked for
                raise httpx.RemoteProtocolError("data after the end of the response")
        self._buffer = buf[pos:] if pos < end else b""

    def _read_head(self, raw: bytes) -> None:
        # Empty lines before a status line are to be ignored (RFC 9112, 2.2).
        lines = [line.rstrip(b"\r") for line in raw.lstrip(b"\r\n").split(b"\n")]
        status_line = lines[0]
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(f"invalid status line {status_line[:80]!r}")
        status = int(parts[1])
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise httpx.RemoteProtocolError(f"invalid header line {line[:80]!r}")
            headers.append((name, value.strip()))
        if 100 <= status < 200:
            return  # informational: the real head follows
        version_10 = parts[0] == b"HTTP/1.0"
        connection = b""
        length: int | None = None
        chunked = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"connection":
                connection = value.lower()
            elif lowered == b"transfer-encoding":
                chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
            elif lowered == b"content-length":
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise httpx.RemoteProtocolError(f"invalid content-length {value[:20]!r}")
                length = int(value)
        self.keep_alive = b"keep-alive" in connection if version_10 else b"close" not in connection
        self.head = (status, parts[0], headers)
        if status in (204, 304) or self._head_only:
            self._state = _DONE
        elif chunked:
            self._state = _SIZE
        elif length is not None:
            self._framed_by_length = True
            self._remaining = length
            self._state = _DATA if length else _DONE
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE

    # --- waiting -----------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # A server may answer before it has read the whole request (a 413 from a proxy): the
        # answer ends the wait to send the rest.
        drained = self._drained
        if drained is not None and self.head is not None and not drained.done():
            drained.set_result(None)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            self.error = exc
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _closed_by_peer(self, exc: Exception | None) -> None:
        self.closed = True
        self.keep_alive = False
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        elif self._state != _DONE and self.error is None:
            detail = f": {exc}" if exc else ""
            self.error = httpx.RemoteProtocolError(
                "server disconnected before the response ended" + detail
                if self.head is not None
                else "server disconnected without sending a response" + detail
            )
        self._wake()

    async def _wait(self, limit: float | None, error: type[httpx.TimeoutException]) -> None:
        self._waiter = self._loop.create_future()
        try:
            if limit is None:
                await self._waiter
            else:
                async with asyncio.timeout(limit):
                    await self._waiter
        except TimeoutError:
            raise error("timed out reading the response") from None
        finally:
            self._waiter = None

    # --- use ---------------------------------------------------------------------------------

    async def send(self, head: bytes, body: bytes, method: bytes, timeouts: dict[str, Any]) -> None:
        """Write one request and wait for its response's head."""
        self._head_only = method == b"HEAD"
        self.head = None
        self._state = _HEAD
        self._framed_by_length = False
        transport = self.transport
        assert transport is not None
        if self._pieces:  # the end of the last body, which its reader closed without taking
            self._pieces = []
            self._held = 0
        if self._paused:
            self._paused = False
            transport.resume_reading()
        try:
            transport.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                transport.write(body)
        except (OSError, RuntimeError) as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__) from exc
        if self._write_paused:
            self._drained = self._loop.create_future()
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    await self._drained
            except TimeoutError:
                raise httpx.WriteTimeout("timed out sending the request") from None
            finally:
                self._drained = None
            if self._write_paused:  # answered before the request was sent whole
                self.keep_alive = False
        read_timeout = timeouts.get("read")
        while self.head is None:
            if self.error is not None:
                raise self.error
            await self._wait(read_timeout, httpx.ReadTimeout)

    async def body(self, read_limit: float | None) -> AsyncIterator[bytes]:
        """The decoded body, as it arrives."""
        while True:
            if self._pieces:
                pieces, self._pieces = self._pieces, []
                self._held = 0
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                continue
            if self._state == _DONE:
                return
            if self.error is not None:
                raise self.error
            await self._wait(read_limit, httpx.ReadTimeout)

    @property
    def reusable(self) -> bool:
        return (
            self._state == _DONE
            and self.keep_alive
            and not self.closed
            and not self._buffer
            and self.error is None
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the connection was opened on, the only one it can be used from."""
        return self._loop

    def discard(self) -> None:
        """Close a connection whose event loop may be closed already."""
        self.keep_alive = False
        transport = self.transport
        if transport is None:
            return
        try:
            transport.abort()
        except RuntimeError:  # its loop is closed: it cannot schedule its own closing
            lost = getattr(transport, "_call_connection_lost", None)  # asyncio's own step
            if lost is not None:
                lost(None)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(
        self,
        connection: _Connection,
        pool: StreamingTransport,
        origin: tuple[str, str, int],
        read_limit: float | None,
    ) -> None:
        self._connection = connection
        self._pool = pool
        self._origin = origin
        self._read_limit = read_limit
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._connection.body(self._read_limit):
            yield chunk
        self._release()

    async def aclose(self) -> None:
        self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._give_back(self._origin, self._connection)


class StreamingTransport(httpx.AsyncBaseTransport):
    """An HTTP/1.1 ``httpx`` transport for streamed responses (see the module's notes).

    Args:
        ssl_context: for ``https`` URLs; default ``httpx.create_ssl_context()``.
        max_idle_per_origin: idle keep-alive connections kept for each scheme, host and port.
    """

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, max_idle_per_origin: int = 64
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        host = url.host
        origin = (scheme, host, url.port or _DEFAULT_PORTS[scheme])
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.content if hasattr(request, "_content") else await request.aread()
        head = _request_head(request, body)
        method = request.method.encode("ascii")
        connection = self._idle_connection(origin)
        if connection is None:
            connection = await self._connect(origin, timeouts.get("connect"))
        self._open.add(connection)
        try:
            await connection.send(head, body, method, timeouts)
        except BaseException:
            self._open.discard(connection)
            connection.close()
            raise
        status, version, headers = connection.head  # type: ignore[misc]
        return httpx.Response(
            status,
            headers=headers,
            stream=_ResponseStream(connection, self, origin, timeouts.get("read")),
            extensions={"http_version": version},
        )

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        loop = asyncio.get_running_loop()
        while idle:
            connection = idle.pop()
            if connection.loop is not loop:
                # Opened on another event loop (one client used by successive to_iterator
                # calls, each on a loop of its own): unusable here, whatever its state.
                connection.discard()
            elif connection.reusable:
                return connection
            else:
                connection.close()
        return None

    async def _connect(self, origin: tuple[str, str, int], limit: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
            context = self._ssl_context
        try:
            async with asyncio.timeout(limit):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop),
                    host,
                    port,
                    ssl=context,
                    server_hostname=host if context is not None else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    def _give_back(self, origin: tuple[str, str, int], connection: _Connection) -> None:
        self._open.discard(connection)
        if self._closed or not connection.reusable:
            connection.close()
            return
        idle = self._idle.setdefault(origin, deque())
        if len(idle) >= self._max_idle:
            idle.popleft().close()
        idle.append(connection)

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        for connection in list(self._open):
            connection.close()
        self._open.clear()


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    chunked = False
    has_length = False
    for name, value in request.headers.raw:
        lowered = name.lower()
        if lowered == b"transfer-encoding":
            chunked = True
            continue  # the body is sent whole, with its length
        if lowered == b"content-length":
            has_length = True
        lines.append(name + b": " + value)
    if (chunked or not has_length) and (body or request.method not in ("GET", "HEAD")):
        lines.append(b"Content-Length: " + str(len(body)).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"
