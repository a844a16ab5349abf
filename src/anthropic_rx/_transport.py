"""A small HTTP/1.1 transport for httpx, built for many long streamed responses at once.

:class:`StreamingTransport` is an ``httpx.AsyncBaseTransport``: the :class:`~anthropic_rx.Client`
uses it under its own ``httpx.AsyncClient``, so requests, responses and errors are httpx's own.
It exists because a streamed reply arrives as many small network chunks, and httpcore spends
about 25 µs on each (h11's event machinery, anyio's stream layers, a pool scan per request that
grows with the open connections), several times what anthropic-rx spends on the events in it.
Here each connection is an ``asyncio.Protocol`` that feeds a sans-IO parser
(:class:`~anthropic_rx._http11.ResponseParser`) as bytes arrive, and the pool is a stack of idle
connections per origin: O(1) to take and to give back.

What it does: HTTP/1.1 over TCP or TLS (ALPN ``http/1.1``; the host in the socket address, the
SNI and the certificate check is the URL's ASCII (IDNA) form), keep-alive, ``Content-Length``,
``chunked`` and read-until-close bodies, 1xx responses skipped, back-pressure (a connection
stops reading from its socket while ``_HIGH_WATER`` decoded bytes wait for the consumer; body
pieces are handed out 64 KiB at most), and httpx's timeouts from the request's ``timeout``
extension (connect, read, write, pool; ``None`` waits).
What it does not: HTTP/2, proxies (the client uses httpx's own transport when the environment
names a proxy for its URL), upgrades, request bodies other than bytes known up front (an async
stream is read whole before it is sent).

Requests it refuses, before a byte is written (:class:`UnsafeRequestError`, an
``httpx.LocalProtocolError`` and a ``ValueError``; the rules are h11's): a method that is not
an RFC 9110 token; a target that is empty or holds anything but visible ASCII (so no space,
CR or LF); a header name that is not a token; a header value holding NUL, CR, LF, VT or FF,
or starting or ending with a blank. It writes the body's real ``Content-Length`` itself: a
``Content-Length`` or ``Transfer-Encoding`` header of the request is dropped, so a wrong one
cannot desynchronise the connection.

Responses (parsed by :class:`~anthropic_rx._http11.ResponseParser`; at least as strict as h11
everywhere, stricter where marked *):

- accepted: a status line ``HTTP/1.1`` or ``HTTP/1.0`` (* other versions refused), a space,
  exactly three digits, optionally a space and a reason phrase; header lines ``name:value``
  with a token name and optional blanks around the value; lines ending in CRLF or a bare LF,
  in heads and (where h11 wants CRLF) in chunk framing; ``Content-Length`` of up to 20 digits,
  repeated or listed only with the same value; ``Transfer-Encoding`` of exactly one coding,
  ``chunked`` (any case, blanks around it), across all its headers; chunk sizes of 1 to 20 hex
  digits with extensions and trailer fields; 1xx heads (checked, skipped); no body for 204,
  304 and ``HEAD``; read-until-close without framing headers;
- refused (``httpx.RemoteProtocolError``): an empty line before the status line; a status
  below 100 or of another number of digits; ``101 Switching Protocols`` (no upgrade is ever
  asked for); NUL, CR, LF, VT or FF in a reason or header value; a header name that is not a
  token, or a space before its colon; obs-fold continuation lines*; any other transfer coding
  or list of them (``gzip, chunked``, ``chunked, gzip``, ``identity``, two headers);
  ``Transfer-Encoding`` with ``Content-Length``*; conflicting or malformed ``Content-Length``;
  a malformed chunk-size line, NUL or CR in a chunk extension*, chunk data longer than its
  size; trailer lines that are not ``name: value`` fields, or are ``Content-Length`` or
  ``Transfer-Encoding``*; a head or trailer section over 64 KiB*, a chunk line over 4 KiB*
  (httpcore lets h11 buffer 100 KiB); a close before the response ended;
- ``Connection`` headers are combined: ``close`` in any closes the connection after the
  response; an HTTP/1.0 response keeps it only with ``keep-alive`` and no
  ``Transfer-Encoding``. Bytes after the end of a response are no part of it, but keep its
  connection from reuse.

Any failure while parsing, whatever it is, becomes an ``httpx.RemoteProtocolError`` for the
request (nothing escapes ``data_received``); body bytes that came before the fault are
delivered first, and an error found after them wins over the body's end.

Connections: at most ``max_connections_per_origin`` (default 1,000) are open for one scheme,
host and port; a request over it waits for one to be freed, for the ``pool`` timeout at most
(``httpx.PoolTimeout``). Not httpx's 100: an HTTP/1.1 connection carries one streamed reply for
its whole length, so the cap is the number of replies a process streams at once, and 1,000 at
once is what this transport is built and measured for; the cap keeps a runaway loop from
taking every file descriptor of the process. A response closed before its body ended closes its
connection; one whose body has fully arrived goes back to the pool (unread bytes dropped, the
socket read again so that a server's close is seen) unless it said ``close``, was HTTP/1.0
without ``keep-alive``, had bytes after its end or failed. An idle connection older than
``keepalive_expiry`` seconds (default 30), or one seen closed by its server, is never reused.
Errors are httpx's: ``ConnectError``, ``ConnectTimeout``, ``PoolTimeout``, ``ReadError``,
``ReadTimeout``, ``WriteError``, ``WriteTimeout``, ``RemoteProtocolError``, ``DecodingError``.

:func:`aiter_decoded` reads a response's body decoded by its ``Content-Encoding`` (gzip,
deflate, and what else httpx decodes) in pieces of at most 64 KiB, so a compressed body that
inflates a thousandfold costs a slow consumer no more memory than a plain one.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import httpx

from ._http11 import ResponseParser

__all__ = ["StreamingTransport", "UnsafeRequestError", "aiter_decoded"]

_HIGH_WATER = 256 * 1024  # decoded body bytes held before the socket stops being read
_MAX_PIECE = 64 * 1024  # the largest body piece handed out, raw or decoded
_DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")  # h11's field-value
_TARGET = re.compile(rb"[\x21-\x7e]+")
_FRAMING = (b"content-length", b"transfer-encoding")

Origin = tuple[str, str, int]


class UnsafeRequestError(httpx.LocalProtocolError, ValueError):
    """A request whose head could not be written as it is without changing its meaning.

    Raised by :meth:`StreamingTransport.handle_async_request` before anything is sent; the
    message names the part refused but never a header's value (it may be a secret).
    """


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, feeding its parser as bytes arrive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self._loop = loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = ResponseParser()
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._write_paused = False
        self.closed = False  # the peer closed it (EOF) or it was lost
        self.counted = True  # holds one of its origin's connection slots
        self.idle_since = 0.0

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        try:
            parser.feed(data)
            if parser.error is not None:
                self._abort()
            elif parser.held > _HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
        except Exception as exc:  # nothing may escape into the event loop
            parser.fail(f"malformed response ({type(exc).__name__}: {exc})")
            self._abort()
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

    # --- waiting -----------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        # A server may answer before it has read the whole request (a 413 from a proxy): the
        # answer ends the wait to send the rest.
        drained = self._drained
        if drained is not None and self.parser.head is not None and not drained.done():
            drained.set_result(None)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _closed_by_peer(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser.feed_eof(f": {exc}" if exc else "")
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

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    # --- use ---------------------------------------------------------------------------------

    async def send(self, head: bytes, body: bytes, method: bytes, timeouts: dict[str, Any]) -> None:
        """Write one request and wait for its response's head."""
        parser = self.parser
        parser.start(head_only=method == b"HEAD")
        self._resume()
        transport = self.transport
        assert transport is not None
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
                parser.keep_alive = False
        read_timeout = timeouts.get("read")
        while parser.head is None:
            if parser.error is not None:
                raise parser.error
            await self._wait(read_timeout, httpx.ReadTimeout)

    async def body(self, read_limit: float | None) -> AsyncIterator[bytes]:
        """The body, as it arrives, in pieces of at most ``_MAX_PIECE`` bytes."""
        parser = self.parser
        while True:
            if parser.pieces:
                held = parser.held
                pieces = parser.take()
                self._resume()
                if held <= _MAX_PIECE:
                    yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                else:
                    for piece in _bounded(pieces):
                        yield piece
                continue
            if parser.error is not None:  # a pending error wins over a complete body
                raise parser.error
            if parser.complete:
                return
            await self._wait(read_limit, httpx.ReadTimeout)

    def park(self, now: float) -> None:
        """Back to the pool: unread body bytes dropped, the socket read again (to see EOF)."""
        self.parser.take()
        self._resume()
        self.idle_since = now

    @property
    def reusable(self) -> bool:
        parser = self.parser
        return (
            parser.idle
            and parser.keep_alive
            and not parser.leftover
            and parser.error is None
            and not self.closed
            and not self._paused
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        self.parser.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the connection was opened on, the only one it can be used from."""
        return self._loop

    def discard(self) -> None:
        """Close a connection whose event loop may be closed already."""
        self.parser.keep_alive = False
        transport = self.transport
        if transport is None:
            return
        try:
            transport.abort()
        except RuntimeError:  # its loop is closed: it cannot schedule its own closing
            lost = getattr(transport, "_call_connection_lost", None)  # asyncio's own step
            if lost is not None:
                lost(None)


def _bounded(pieces: list[bytes]) -> Iterator[bytes]:
    """``pieces`` regrouped into pieces of at most ``_MAX_PIECE`` bytes, in order."""
    batch: list[bytes] = []
    size = 0
    for piece in pieces:
        if size + len(piece) > _MAX_PIECE and batch:
            yield b"".join(batch)
            batch, size = [], 0
        if len(piece) > _MAX_PIECE:
            for start in range(0, len(piece), _MAX_PIECE):
                yield piece[start : start + _MAX_PIECE]
            continue
        batch.append(piece)
        size += len(piece)
    if batch:
        yield b"".join(batch)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(
        self, connection: _Connection, pool: StreamingTransport, read_limit: float | None
    ) -> None:
        self._connection = connection
        self._pool = pool
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
            self._pool._give_back(self._connection)


class StreamingTransport(httpx.AsyncBaseTransport):
    """An HTTP/1.1 ``httpx`` transport for streamed responses (see the module's notes).

    Args:
        ssl_context: for ``https`` URLs; default ``httpx.create_ssl_context()``. Its ALPN
            protocols are set to ``http/1.1`` (as httpcore does to the context it is given).
        max_idle_per_origin: idle keep-alive connections kept for each scheme, host and port.
        max_connections_per_origin: connections open at once for each scheme, host and port;
            a request over it waits for one to be freed (``httpx.PoolTimeout`` after the
            request's ``pool`` timeout).
        keepalive_expiry: seconds an idle connection may wait to be reused before it is
            closed; ``None`` for no limit.

    Raises:
        ValueError: a limit below 1, or a negative expiry.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle_per_origin: int = 64,
        max_connections_per_origin: int = 1000,
        keepalive_expiry: float | None = 30.0,
    ) -> None:
        if max_idle_per_origin < 1 or max_connections_per_origin < 1:
            raise ValueError("connection limits must be at least 1")
        if keepalive_expiry is not None and keepalive_expiry < 0:
            raise ValueError("keepalive_expiry must not be negative")
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._max_connections = max_connections_per_origin
        self._expiry = keepalive_expiry
        self._idle: dict[Origin, deque[_Connection]] = {}
        self._counts: dict[Origin, int] = {}  # connections holding a slot: idle, busy, opening
        self._waiters: dict[Origin, deque[asyncio.Future[None]]] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Sends ``request`` and returns its response once the head has arrived.

        Returns:
            an ``httpx.Response`` whose stream reads the body as it arrives.

        Raises:
            RuntimeError: the transport is closed.
            httpx.UnsupportedProtocol: a scheme other than ``http`` and ``https``.
            UnsafeRequestError: a head that cannot be written safely (nothing is sent).
            httpx.TransportError: connecting, sending or reading failed (see the module).
        """
        if self._closed:
            raise RuntimeError("the transport is closed")
        origin = _origin_of(request.url)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = request.content if hasattr(request, "_content") else await request.aread()
        head = _request_head(request, body)
        method = request.method.encode("ascii")
        connection = await self._acquire(origin, timeouts)
        self._open.add(connection)
        try:
            await connection.send(head, body, method, timeouts)
        except BaseException:
            self._open.discard(connection)
            self._retire(connection)
            raise
        status, _, version, headers = connection.parser.head  # type: ignore[misc]
        return httpx.Response(
            status,
            headers=headers,
            stream=_ResponseStream(connection, self, timeouts.get("read")),
            extensions={"http_version": version},
        )

    # --- the pool ----------------------------------------------------------------------------

    async def _acquire(self, origin: Origin, timeouts: dict[str, Any]) -> _Connection:
        loop = asyncio.get_running_loop()
        pool_limit = timeouts.get("pool")
        deadline = None if pool_limit is None else loop.time() + pool_limit
        while True:
            connection = self._idle_connection(origin)
            if connection is not None:
                return connection
            if self._counts.get(origin, 0) < self._max_connections:
                self._counts[origin] = self._counts.get(origin, 0) + 1
                try:
                    return await self._connect(origin, timeouts.get("connect"))
                except BaseException:
                    self._free_slot(origin)
                    raise
            waiter: asyncio.Future[None] = loop.create_future()
            waiters = self._waiters.setdefault(origin, deque())
            waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise httpx.PoolTimeout("timed out waiting for a connection") from None
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one(origin)  # woken but leaving: the freed slot is not lost
                raise
            finally:
                if waiter in waiters:
                    waiters.remove(waiter)
            if self._closed:
                raise RuntimeError("the transport is closed")

    def _wake_one(self, origin: Origin) -> None:
        waiters = self._waiters.get(origin)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # a response closed outside any event loop
            running = None
        while waiters:
            waiter = waiters.popleft()
            if waiter.done():
                continue
            loop = waiter.get_loop()
            try:
                if loop is running:
                    waiter.set_result(None)
                else:
                    loop.call_soon_threadsafe(_resolve, waiter)
            except RuntimeError:  # its loop is closed: the next waiter gets the slot
                continue
            return

    def _free_slot(self, origin: Origin) -> None:
        count = self._counts.get(origin, 0) - 1
        if count > 0:
            self._counts[origin] = count
        else:
            self._counts.pop(origin, None)
        self._wake_one(origin)

    def _retire(self, connection: _Connection, *, discard: bool = False) -> None:
        """Closes ``connection`` and frees its slot (once)."""
        if discard:
            connection.discard()
        else:
            connection.close()
        if connection.counted:
            connection.counted = False
            self._free_slot(connection.origin)

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        loop = asyncio.get_running_loop()
        while idle:
            connection = idle.pop()
            if connection.loop is not loop:
                # Opened on another event loop (one client used by successive to_iterator
                # calls, each on a loop of its own): unusable here, whatever its state.
                self._retire(connection, discard=True)
            elif connection.reusable and not self._expired(connection, loop.time()):
                return connection
            else:
                self._retire(connection)
        return None

    def _expired(self, connection: _Connection, now: float) -> bool:
        return self._expiry is not None and now - connection.idle_since > self._expiry

    async def _connect(self, origin: Origin, limit: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = httpx.create_ssl_context()
                self._ssl_context.set_alpn_protocols(["http/1.1"])
            context = self._ssl_context
        try:
            async with asyncio.timeout(limit):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, origin),
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

    def _give_back(self, connection: _Connection) -> None:
        self._open.discard(connection)
        now = connection.loop.time()
        connection.park(now)
        if self._closed or not connection.reusable:
            self._retire(connection)
            return
        idle = self._idle.setdefault(connection.origin, deque())
        while idle and (len(idle) >= self._max_idle or self._expired(idle[0], now)):
            self._retire(idle.popleft())
        idle.append(connection)
        self._wake_one(connection.origin)

    async def aclose(self) -> None:
        """Closes every connection, idle or in use; requests waiting for one fail."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                self._retire(connection)
        self._idle.clear()
        for connection in list(self._open):
            self._retire(connection)
        self._open.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _origin_of(url: httpx.URL) -> Origin:
    """The scheme, ASCII host (IDNA, as sent in SNI) and port of ``url``.

    Raises:
        httpx.UnsupportedProtocol: a scheme other than ``http`` and ``https``.
    """
    scheme = url.scheme
    if scheme not in _DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
    return (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])


def _request_head(request: httpx.Request, body: bytes) -> bytes:
    """The request line and headers of ``request``, with the real length of ``body``.

    Raises:
        UnsafeRequestError: a method, target or header that would change the head's meaning.
    """
    method = request.method.encode("ascii", errors="replace")
    if _TOKEN.fullmatch(method) is None:
        raise UnsafeRequestError(f"invalid request method {method[:40]!r}")
    target = request.url.raw_path
    if _TARGET.fullmatch(target) is None:
        raise UnsafeRequestError("invalid request target (empty, or not visible ASCII)")
    lines = [method + b" " + target + b" HTTP/1.1"]
    length_at: int | None = None
    for name, value in request.headers.raw:
        if _TOKEN.fullmatch(name) is None:
            raise UnsafeRequestError(f"invalid header name {name[:40]!r}")
        if _FIELD_VALUE.fullmatch(value) is None:
            # The value is not named: it may be a credential.
            raise UnsafeRequestError(f"invalid value of header {name[:40]!r}")
        if name.lower() in _FRAMING:
            if length_at is None:
                length_at = len(lines)
            continue  # the body is sent whole, with its real length
        lines.append(name + b": " + value)
    if length_at is not None or body or method not in (b"GET", b"HEAD"):
        length = b"Content-Length: " + str(len(body)).encode("ascii")
        lines.insert(len(lines) if length_at is None else length_at, length)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# --- bounded decoding ------------------------------------------------------------------------


class _Stage(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def flush(self) -> Iterator[bytes]: ...


class _ZlibStage:
    """gzip or deflate, inflated ``_MAX_PIECE`` bytes at a time."""

    def __init__(self, coding: str) -> None:
        self._deflate = coding == "deflate"
        self._first = self._deflate  # httpx's rule: a deflate body may be raw, without zlib
        wbits = zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        first, self._first = self._first, False
        while True:
            try:
                out = self._inflater.decompress(data, _MAX_PIECE)
            except zlib.error as exc:
                if first:
                    first = False
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(str(exc)) from exc
            first = False
            data = self._inflater.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < _MAX_PIECE:
                return

    def flush(self) -> Iterator[bytes]:
        try:
            out = self._inflater.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from exc
        if out:
            yield out


class _SmallInputStage:
    """Another httpx decoder (brotli, zstd), fed 1 KiB at a time to bound each output."""

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder

    def decode(self, data: bytes) -> Iterator[bytes]:
        for start in range(0, len(data), 1024):
            out = self._decoder.decode(data[start : start + 1024])
            yield from _bounded([out]) if out else ()

    def flush(self) -> Iterator[bytes]:
        out = self._decoder.flush()
        yield from _bounded([out]) if out else ()


def _stages(response: httpx.Response) -> list[_Stage]:
    from httpx._decoders import SUPPORTED_DECODERS  # the codings httpx itself decodes

    stages: list[_Stage] = []
    codings = response.headers.get_list("content-encoding", split_commas=True)
    for coding in reversed([value.strip().lower() for value in codings]):
        if coding in ("gzip", "deflate"):
            stages.append(_ZlibStage(coding))
        elif coding != "identity" and coding in SUPPORTED_DECODERS:
            stages.append(_SmallInputStage(SUPPORTED_DECODERS[coding]()))
        # else: left as it is, as httpx does with a coding it does not know
    return stages


def _through(stages: list[_Stage], index: int, data: bytes) -> Iterator[bytes]:
    if index == len(stages):
        yield data
        return
    for out in stages[index].decode(data):
        yield from _through(stages, index + 1, out)


def _flushed(stages: list[_Stage], index: int) -> Iterator[bytes]:
    if index == len(stages):
        return
    for out in stages[index].flush():
        yield from _through(stages, index + 1, out)
    yield from _flushed(stages, index + 1)


async def aiter_decoded(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body of ``response`` decoded by its ``Content-Encoding``, 64 KiB at most a piece.

    Unlike ``httpx.Response.aiter_bytes``, which inflates each raw piece whole, the output
    is made only as the consumer asks for it, so memory stays bounded whatever the ratio.

    Returns:
        an async iterator of decoded pieces; it ends with the body.

    Raises:
        httpx.DecodingError: the body is not valid for its coding.
        httpx.StreamError, httpx.TransportError: as ``response.aiter_raw()`` raises.
    """
    if hasattr(response, "_content"):  # read (and decoded) already, e.g. a mocked response
        content = response.content
        for start in range(0, len(content), _MAX_PIECE):
            yield content[start : start + _MAX_PIECE]
        return
    stages = _stages(response)
    try:
        async for raw in response.aiter_raw():
            if raw:
                for piece in _through(stages, 0, raw):
                    yield piece
        for piece in _flushed(stages, 0):
            yield piece
    except httpx.DecodingError as exc:
        exc.request = response.request
        raise
