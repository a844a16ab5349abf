"""Test helpers: an ASGI app under uvicorn on 127.0.0.1, and a raw-socket SSE reader.

- :func:`serve` runs the app in the test's own event loop (port 0), yields a
  :class:`Running` server, and shuts it down cleanly (``should_exit``) on exit.
- :func:`serve_in_thread` runs it on a loop of its own in a thread, for synchronous tests
  (hypothesis).
- :class:`RawClient` speaks HTTP/1.1 over a plain socket and undoes the chunked encoding, so a
  test sees exactly the bytes the server framed; :func:`parse_sse` parses them strictly.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = [
    "Frame",
    "RawClient",
    "Running",
    "data_frames",
    "eventually",
    "parse_sse",
    "raw_request",
    "serve",
    "serve_in_thread",
]

_FIELD = re.compile(rb"(id|event|data|retry): (.*)")


@dataclass
class Running:
    """A server being served: its uvicorn ``Server`` and base URL."""

    server: uvicorn.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _config(app: Any, **options: Any) -> uvicorn.Config:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "log_level": "warning",
        "lifespan": "off",
        "http": "h11",
        "ws": "none",
        "timeout_graceful_shutdown": 3,
    }
    settings.update(options)
    return uvicorn.Config(app, **settings)


def _port(server: uvicorn.Server) -> int:
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def serve(app: Any, **options: Any) -> AsyncIterator[Running]:
    """Serve ``app`` on ``127.0.0.1`` (a free port) in this event loop while the block runs."""
    server = uvicorn.Server(_config(app, **options))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(5):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield Running(server, _port(server))
    finally:
        server.should_exit = True
        async with asyncio.timeout(6):
            await task


@contextlib.contextmanager
def serve_in_thread(app: Any, **options: Any) -> Iterator[Running]:
    """Serve ``app`` on ``127.0.0.1`` from a thread with its own event loop."""
    server = uvicorn.Server(_config(app, **options))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield Running(server, _port(server))
    finally:
        server.should_exit = True
        thread.join(6)
        assert not thread.is_alive(), "uvicorn did not stop"


async def eventually(predicate: Callable[[], bool], timeout: float) -> None:  # noqa: ASYNC109
    """Wait until ``predicate()`` holds, polling (at most ``timeout`` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the predicates are plain attributes
            await asyncio.sleep(0.01)


# --- SSE parsing -----------------------------------------------------------------------------


@dataclass
class Frame:
    """One SSE frame: a comment, or fields (each at most once)."""

    comment: str | None = None
    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: str | None = None
    raw: bytes = field(default=b"", repr=False)


def parse_sse(body: bytes, *, complete: bool = True) -> list[Frame]:
    """Parse ``body`` strictly, as this library writes SSE: LF line ends only (no CR at all),
    frames ended by a blank line, each field at most once per frame, ``name: value``.

    Args:
        complete: the body must end at a frame boundary; else an unfinished tail is ignored.

    Raises:
        AssertionError: anything else.
    """
    assert b"\r" not in body, "a CR in the body"
    blocks = body.split(b"\n\n")
    tail = blocks.pop()
    if complete:
        assert tail == b"", f"the body ends inside a frame: {tail[:80]!r}"
    frames: list[Frame] = []
    for block in blocks:
        assert block, "an empty frame (two blank lines)"
        lines = block.split(b"\n")
        if lines[0].startswith(b":"):
            assert len(lines) == 1, f"a comment with more lines: {block!r}"
            frames.append(Frame(comment=lines[0][1:].decode().strip(), raw=block))
            continue
        fields: dict[str, str] = {}
        for line in lines:
            match = _FIELD.fullmatch(line)
            assert match is not None, f"not a field line: {line!r}"
            name = match.group(1).decode()
            assert name not in fields, f"{name} twice in one frame: {block!r}"
            fields[name] = match.group(2).decode()
        frames.append(Frame(raw=block, **fields))
    return frames


def data_frames(frames: list[Frame]) -> list[Frame]:
    """The frames that carry data (not comments, not the retry frame)."""
    return [f for f in frames if f.data is not None]


# --- a raw HTTP/1.1 client -------------------------------------------------------------------


class RawClient:
    """One HTTP/1.1 request over a plain socket; the body de-chunked as it arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        self.ended = False
        self._chunked = False
        self._left: int | None = None

    @classmethod
    async def open(
        cls,
        port: int,
        path: str = "/",
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        rcvbuf: int | None = None,
    ) -> RawClient:
        """Connect and send the request (``rcvbuf``: a small receive buffer, set before
        connecting so the window stays small)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return cls(reader, writer)

    async def read_head(self) -> None:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        self.status = int(status_line.split(" ")[1])
        for line in header_lines:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if "content-length" in self.headers:
            self._left = int(self.headers["content-length"])
        if self.status in (204, 304) or self._left == 0:
            self.ended = True

    async def read_some(self) -> bytes:
        """Read the next piece of the body (``b""`` at its end)."""
        if self.ended:
            return b""
        if self._chunked:
            size_line = await self.reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                self.ended = True
                return b""
            data = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        elif self._left is not None:
            data = await self.reader.read(self._left)
            self._left -= len(data)
            self.ended = self._left == 0 or not data
        else:
            data = await self.reader.read(65536)
            self.ended = not data
        self.body += data
        return data

    async def read_until(self, predicate: Any, timeout: float = 5.0) -> list[Frame]:  # noqa: ASYNC109
        """Read until ``predicate(frames)`` holds (or the body ends); the frames so far."""
        async with asyncio.timeout(timeout):
            while True:
                frames = parse_sse(self.body, complete=False)
                if predicate(frames) or self.ended:
                    return frames
                await self.read_some()

    async def read_to_end(self, timeout: float = 5.0) -> list[Frame]:  # noqa: ASYNC109
        """Read the whole body; its frames (the body must end at a frame boundary)."""
        async with asyncio.timeout(timeout):
            if not self.status:
                await self.read_head()
            while not self.ended:
                await self.read_some()
        return parse_sse(self.body)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


def raw_request(
    port: int, path: str = "/", *, method: str = "GET", body: bytes = b"", timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """A blocking HTTP/1.1 request over a plain socket (``Connection: close``): the status,
    headers and de-chunked body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        received = bytearray()
        while chunk := sock.recv(65536):
            received += chunk
    head_bytes, _, rest = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() != "chunked":
        return int(status_line.split(" ")[1]), headers, rest
    decoded = bytearray()
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        decoded += rest[:size]
        assert rest[size : size + 2] == b"\r\n", "bad chunk framing"
        rest = rest[size + 2 :]
    return int(status_line.split(" ")[1]), headers, bytes(decoded)
