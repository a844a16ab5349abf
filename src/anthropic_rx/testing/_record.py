"""Recording real streams to ``.sse`` files, to replay them with ``fake.add_stream(path)``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

__all__ = ["RecordingTransport"]


class RecordingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that passes requests on and saves each event-stream body it returns.

    Every ``text/event-stream`` response is written to ``directory/NNNN.sse`` (``0001.sse``,
    ``0002.sse``... in the order responses arrive) once its body ends or is closed, exactly as
    far as the client read it. Other responses pass through unrecorded. The directory is
    created when needed.

    Args:
        directory: where the files go.
        transport: the transport to wrap; default a new ``httpx.AsyncHTTPTransport()``. Closed
            with this one, either way.

    Example:
        >>> recorder = testing.RecordingTransport("tests/fixtures/recorded")
        >>> async with arx.Client(transport=recorder) as client:   # the real API, once
        ...     await arx.final_message(client.stream(...))
        >>> fake.add_stream(recorder.paths[0])                     # replayed, offline
    """

    def __init__(
        self, directory: str | os.PathLike[str], transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.directory = Path(directory)
        self._transport = transport or httpx.AsyncHTTPTransport()
        self._count = 0
        self.paths: list[Path] = []
        """The files written so far, in the order they were written."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._transport.handle_async_request(request)
        content_type = response.headers.get("content-type", "")
        if content_type.split(";")[0].strip() != "text/event-stream":
            return response
        self._count += 1
        path = self.directory / f"{self._count:04d}.sse"
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Tee(response.stream, path, self.paths),
            request=request,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()


class _Tee(httpx.AsyncByteStream):
    """Passes a body on and keeps a copy, written to ``path`` when the body ends or closes."""

    def __init__(self, inner: httpx.AsyncByteStream, path: Path, paths: list[Path]) -> None:
        self._inner = inner
        self._path = path
        self._paths = paths
        self._chunks: list[bytes] = []
        self._saved = False
        self._iterator: AsyncIterator[bytes] = aiter(inner)

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = aiter(self._inner)
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await anext(self._iterator)
        except StopAsyncIteration:
            self._save()
            raise
        self._chunks.append(chunk)
        return chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            # Saved without awaiting: closing often runs in a task that is being cancelled.
            self._save()

    def _save(self) -> None:
        if self._saved:
            return
        self._saved = True
        _write(self._path, b"".join(self._chunks))
        self._paths.append(self._path)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
