"""The contenders: one way each to read a stream's bytes into a final message or its text.

A contender is an async callable made by a factory for one process: ``run(stream)`` returns
the text it read (for the ``text`` task) or the final message's text (for ``final``), which the
child checks once against the stream's own text. Factories take a :class:`Target`: the chunks
in memory, or the URL of the loopback server.

Contenders:

- ``rx`` / ``rx-iter`` / ``rx-subscribe``: anthropic-rx (``final_message``; text deltas through
  ``to_async_iterator``; text deltas through a plain ``subscribe``);
- ``sdk`` / ``sdk-text`` / ``sdk-create``: the official SDK (``messages.stream`` +
  ``get_final_message()``; ``messages.stream`` + ``text_stream``; raw iteration of
  ``messages.create(stream=True)``), over ``httpx2.MockTransport`` in memory;
- ``httpx-sse``: httpx + httpx-sse + ``json.loads`` (loopback only);
- ``floor``: split on ``b"\\n\\n"``, ``orjson.loads`` of each data line, a list of pieces
  joined at the end (over loopback: read with a plain ``httpx.AsyncClient``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ._streams import Stream, chunked

__all__ = ["CONCURRENT", "CONTENDERS", "Target", "make", "make_concurrent"]

MODEL = "claude-sonnet-5-5"
MESSAGES = [{"role": "user", "content": "Tell me about streams."}]
Run = Callable[[Stream], Awaitable[str]]
RunWatched = Callable[[Stream, Callable[[], None]], Awaitable[str]]


@dataclass
class Target:
    """Where a contender reads from.

    Attributes:
        mode: ``"memory"`` or ``"loopback"``.
        base_url: the loopback server (``http://127.0.0.1:PORT``).
        chunk_size: the size of the in-memory chunks.
        route: the server route of a stream (sent as the ``x-bench-route`` header), by default
            the whole stream at once.
        closers: what to close when the process is done.
    """

    mode: str
    base_url: str = ""
    chunk_size: int = 4096
    route: Callable[[Stream], str] = field(default=lambda stream: f"s/{stream.name}")
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)
    _chunks: dict[str, list[bytes]] = field(default_factory=dict)

    def headers(self, stream: Stream) -> dict[str, str]:
        return {"x-bench-route": self.route(stream)}

    def chunks(self, stream: Stream) -> list[bytes]:
        found = self._chunks.get(stream.name)
        if found is None:
            found = self._chunks[stream.name] = chunked(stream.body, self.chunk_size)
        return found

    async def aclose(self) -> None:
        for close in self.closers:
            await close()


# --- the floor -------------------------------------------------------------------------------


class FloorReader:
    """The least work that still reads a stream right: split, orjson, append, join."""

    __slots__ = ("blocks", "kinds", "loads", "tail", "texts")

    def __init__(self) -> None:
        import orjson

        self.loads = orjson.loads
        self.tail = b""
        self.blocks: list[list[str]] = []
        self.kinds: list[str] = []
        self.texts: list[str] = []

    def feed(self, chunk: bytes) -> bool:
        """Returns whether ``message_stop`` was read."""
        frames = (self.tail + chunk).split(b"\n\n")
        self.tail = frames.pop()
        loads = self.loads
        blocks = self.blocks
        for frame in frames:
            start = frame.find(b"data: ")
            if start < 0:
                continue
            end = frame.find(b"\n", start)
            event = loads(frame[start + 6 :] if end < 0 else frame[start + 6 : end])
            kind = event["type"]
            if kind == "content_block_delta":
                delta = event["delta"]
                piece = delta.get("text") or delta.get("partial_json") or delta.get("thinking")
                if piece is not None:
                    blocks[event["index"]].append(piece)
            elif kind == "content_block_start":
                blocks.append([])
                self.kinds.append(event["content_block"]["type"])
            elif kind == "message_stop":
                return True
        return False

    def text_pieces(self) -> Iterable[str]:
        for kind, pieces in zip(self.kinds, self.blocks, strict=True):
            if kind == "text":
                yield from pieces

    def final_text(self) -> str:
        """Join every block once, as a final message would (tool input parsed)."""
        texts = []
        for kind, pieces in zip(self.kinds, self.blocks, strict=True):
            joined = "".join(pieces)
            if kind == "tool_use":
                self.loads(joined)
            elif kind == "text":
                texts.append(joined)
        return "".join(texts)


class FloorTextReader(FloorReader):
    """The floor for text: the text of each ``text_delta`` handed on at once."""

    __slots__ = ()

    def feed(self, chunk: bytes) -> bool:
        frames = (self.tail + chunk).split(b"\n\n")
        self.tail = frames.pop()
        loads = self.loads
        texts = self.texts
        for frame in frames:
            start = frame.find(b"data: ")
            if start < 0:
                continue
            end = frame.find(b"\n", start)
            event = loads(frame[start + 6 :] if end < 0 else frame[start + 6 : end])
            kind = event["type"]
            if kind == "content_block_delta":
                delta = event["delta"]
                if delta["type"] == "text_delta":
                    texts.append(delta["text"])
            elif kind == "message_stop":
                return True
        return False


def _floor(task: str, target: Target) -> Run:
    reader_class = FloorTextReader if task == "text" else FloorReader

    def finish(reader: FloorReader) -> str:
        return "".join(reader.texts) if task == "text" else reader.final_text()

    if target.mode == "memory":

        async def run_memory(stream: Stream) -> str:
            reader = reader_class()
            for chunk in target.chunks(stream):
                if reader.feed(chunk):
                    break
            return finish(reader)

        return run_memory

    import httpx

    http = httpx.AsyncClient(
        base_url=target.base_url,
        timeout=httpx.Timeout(120.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    )
    target.closers.append(http.aclose)
    body = {"model": MODEL, "max_tokens": 64000, "messages": MESSAGES, "stream": True}

    async def run_loopback(stream: Stream) -> str:
        reader = reader_class()
        async with http.stream(
            "POST", "/v1/messages", json=body, headers=target.headers(stream)
        ) as r:
            # Read to the end of the body (after message_stop only the end of the chunked
            # body is left), so that the connection goes back to the pool, as anthropic-rx's
            # and the SDK's do.
            async for chunk in r.aiter_bytes():
                reader.feed(chunk)
        return finish(reader)

    return run_loopback


# --- anthropic-rx ----------------------------------------------------------------------------


def _text_operator() -> Any:
    try:
        from anthropic_rx.operators import text_deltas

        return text_deltas()
    except ImportError:
        from reactivex import operators as ops

        import anthropic_rx as arx

        return lambda source: source.pipe(
            ops.filter(
                lambda e: (
                    isinstance(e, arx.ContentBlockDeltaEvent) and isinstance(e.delta, arx.TextDelta)
                )
            ),
            ops.map(lambda e: e.delta.text),
        )


def _rx(task: str, target: Target, *, via: str = "iter") -> Run:
    import reactivex

    import anthropic_rx as arx

    if target.mode == "memory":

        def source(stream: Stream) -> reactivex.Observable[Any]:
            return arx.from_sse_bytes(target.chunks(stream))

    else:
        client = arx.Client(base_url=target.base_url, api_key="k", timeout=120.0)
        target.closers.append(client.aclose)

        def source(stream: Stream) -> reactivex.Observable[Any]:
            return client.stream(
                model=MODEL,
                max_tokens=64000,
                messages=MESSAGES,
                extra_headers=target.headers(stream),
            )

    if task == "final":

        async def run_final(stream: Stream) -> str:
            message = await arx.final_message(source(stream))
            return "".join(block.text for block in message.content if block.type == "text")

        return run_final

    text_deltas = _text_operator()
    if via == "iter":

        async def run_iter(stream: Stream) -> str:
            pieces = []
            async for text in arx.to_async_iterator(source(stream).pipe(text_deltas)):
                pieces.append(text)
            return "".join(pieces)

        return run_iter

    async def run_subscribe(stream: Stream) -> str:
        pieces: list[str] = []
        done = asyncio.get_running_loop().create_future()
        source(stream).pipe(text_deltas).subscribe(
            pieces.append,
            done.set_exception,
            lambda: done.set_result(None),
        )
        await done
        return "".join(pieces)

    return run_subscribe


# --- the official SDK ------------------------------------------------------------------------


def _sdk_client(target: Target) -> Callable[[Stream], Any]:
    import anthropic
    import httpx2

    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=100)
    if target.mode == "memory":
        current: list[Stream] = []

        async def body() -> AsyncIterator[bytes]:
            for chunk in target.chunks(current[0]):
                yield chunk

        def handler(request: Any) -> Any:
            return httpx2.Response(
                200, headers={"content-type": "text/event-stream"}, content=body()
            )

        http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler), limits=limits)
        client = anthropic.AsyncAnthropic(
            api_key="k", base_url="http://sdk.invalid", http_client=http, max_retries=0
        )
        target.closers.append(client.close)

        def for_memory(stream: Stream) -> Any:
            current[:] = [stream]
            return client

        return for_memory

    http = httpx2.AsyncClient(limits=limits, timeout=httpx2.Timeout(120.0))
    client = anthropic.AsyncAnthropic(
        api_key="k", base_url=target.base_url, http_client=http, max_retries=0
    )
    target.closers.append(client.close)
    return lambda stream: client


def _sdk(task: str, target: Target, *, via: str = "stream") -> Run:
    client_for = _sdk_client(target)

    if task == "final":

        async def run_final(stream: Stream) -> str:
            client = client_for(stream)
            async with client.messages.stream(
                model=MODEL,
                max_tokens=64000,
                messages=MESSAGES,
                extra_headers=target.headers(stream),
            ) as events:
                message = await events.get_final_message()
            return "".join(block.text for block in message.content if block.type == "text")

        return run_final

    if via == "stream":

        async def run_text_stream(stream: Stream) -> str:
            client = client_for(stream)
            pieces = []
            async with client.messages.stream(
                model=MODEL,
                max_tokens=64000,
                messages=MESSAGES,
                extra_headers=target.headers(stream),
            ) as events:
                async for text in events.text_stream:
                    pieces.append(text)
            return "".join(pieces)

        return run_text_stream

    async def run_create(stream: Stream) -> str:
        client = client_for(stream)
        pieces = []
        events = await client.messages.create(
            model=MODEL,
            max_tokens=64000,
            messages=MESSAGES,
            stream=True,
            extra_headers=target.headers(stream),
        )
        async with events:
            async for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    pieces.append(event.delta.text)
        return "".join(pieces)

    return run_create


# --- httpx-sse -------------------------------------------------------------------------------


def _httpx_sse(task: str, target: Target) -> Run:
    import json

    import httpx
    from httpx_sse import aconnect_sse

    if target.mode != "loopback":
        raise ValueError("httpx-sse runs over loopback only")
    http = httpx.AsyncClient(
        base_url=target.base_url,
        timeout=httpx.Timeout(120.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    )
    target.closers.append(http.aclose)
    body = {"model": MODEL, "max_tokens": 64000, "messages": MESSAGES, "stream": True}

    async def run(stream: Stream) -> str:
        pieces = []
        async with aconnect_sse(
            http, "POST", "/v1/messages", json=body, headers=target.headers(stream)
        ) as es:
            async for sse in es.aiter_sse():
                event = json.loads(sse.data)
                kind = event["type"]
                if kind == "content_block_delta" and event["delta"]["type"] == "text_delta":
                    pieces.append(event["delta"]["text"])
        return "".join(pieces)

    return run


# --- registry --------------------------------------------------------------------------------

CONTENDERS: dict[str, Callable[[str, Target], Run]] = {
    "rx": _rx,
    "rx-iter": lambda task, target: _rx(task, target, via="iter"),
    "rx-subscribe": lambda task, target: _rx(task, target, via="subscribe"),
    "sdk": _sdk,
    "sdk-text": lambda task, target: _sdk(task, target, via="stream"),
    "sdk-create": lambda task, target: _sdk(task, target, via="create"),
    "httpx-sse": _httpx_sse,
    "floor": _floor,
}
"""Name → factory ``(task, target) -> run``."""


def make(name: str, task: str, target: Target) -> Run:
    """The contender ``name`` for ``task`` (``"final"`` or ``"text"``) reading ``target``."""
    return CONTENDERS[name](task, target)


# --- many streams at once --------------------------------------------------------------------
#
# As an application reads a reply's text: each piece as it comes. ``first()`` is called at the
# first piece of text, for the time to first token.


def _rx_watched(target: Target) -> RunWatched:
    import anthropic_rx as arx

    client = arx.Client(base_url=target.base_url, api_key="k", timeout=300.0)
    target.closers.append(client.aclose)
    text_deltas = _text_operator()

    async def run(stream: Stream, first: Callable[[], None]) -> str:
        events = client.stream(
            model=MODEL, max_tokens=64000, messages=MESSAGES, extra_headers=target.headers(stream)
        )
        pieces: list[str] = []
        async for text in arx.to_async_iterator(events.pipe(text_deltas)):
            if not pieces:
                first()
            pieces.append(text)
        return "".join(pieces)

    return run


def _sdk_watched(target: Target) -> RunWatched:
    client_for = _sdk_client(target)

    async def run(stream: Stream, first: Callable[[], None]) -> str:
        client = client_for(stream)
        pieces: list[str] = []
        async with client.messages.stream(
            model=MODEL,
            max_tokens=64000,
            messages=MESSAGES,
            extra_headers=target.headers(stream),
        ) as events:
            async for text in events.text_stream:
                if not pieces:
                    first()
                pieces.append(text)
        return "".join(pieces)

    return run


def _floor_watched(target: Target) -> RunWatched:
    import httpx

    http = httpx.AsyncClient(
        base_url=target.base_url,
        timeout=httpx.Timeout(300.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
    )
    target.closers.append(http.aclose)
    body = {"model": MODEL, "max_tokens": 64000, "messages": MESSAGES, "stream": True}

    async def run(stream: Stream, first: Callable[[], None]) -> str:
        reader = FloorTextReader()
        async with http.stream(
            "POST", "/v1/messages", json=body, headers=target.headers(stream)
        ) as response:
            started = False
            async for chunk in response.aiter_bytes():  # to the end: the connection is reused
                reader.feed(chunk)
                if not started and reader.texts:
                    started = True
                    first()
        return "".join(reader.texts)

    return run


CONCURRENT: dict[str, Callable[[Target], RunWatched]] = {
    "rx": _rx_watched,
    "sdk": _sdk_watched,
    "floor": _floor_watched,
}
"""Name → factory of a reader of one stream's text that reports its first piece."""


def make_concurrent(name: str, target: Target) -> RunWatched:
    """The contender ``name`` reading text pieces from the loopback ``target``."""
    return CONCURRENT[name](target)
