"""Small stream builders and recorders for the operator tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import reactivex
from reactivex import abc
from reactivex.notification import Notification, OnError, OnNext
from reactivex.scheduler.eventloop import AsyncIOScheduler
from reactivex.testing.recorded import Recorded

import anthropic_rx as arx
from tests.conftest import fixture_bytes

T = TypeVar("T")

Wire = Mapping[str, Any]


# --- wire events -----------------------------------------------------------------------------


def message_start(*, input_tokens: int = 10, output_tokens: int = 1) -> Wire:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "claude-test",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        },
    }


def block_start(index: int, block: Wire) -> Wire:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_start(index: int) -> Wire:
    return block_start(index, {"type": "text", "text": ""})


def tool_start(index: int, name: str = "get_weather", kind: str = "tool_use") -> Wire:
    return block_start(index, {"type": kind, "id": f"toolu_{index}", "name": name, "input": {}})


def delta(index: int, payload: Wire) -> Wire:
    return {"type": "content_block_delta", "index": index, "delta": payload}


def text_delta(index: int, text: str) -> Wire:
    return delta(index, {"type": "text_delta", "text": text})


def thinking_delta(index: int, text: str) -> Wire:
    return delta(index, {"type": "thinking_delta", "thinking": text})


def json_delta(index: int, partial: str) -> Wire:
    return delta(index, {"type": "input_json_delta", "partial_json": partial})


def block_stop(index: int) -> Wire:
    return {"type": "content_block_stop", "index": index}


def message_delta(*, output_tokens: int = 42, stop_reason: str = "end_turn") -> Wire:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


MESSAGE_STOP: Wire = {"type": "message_stop"}
PING: Wire = {"type": "ping"}


def error_event(kind: str = "overloaded_error", message: str = "Overloaded") -> Wire:
    return {"type": "error", "error": {"type": kind, "message": message}}


def text_reply(*parts: str, finished: bool = True) -> list[Wire]:
    """A one-block text reply; without ``message_delta`` and ``message_stop`` when unfinished."""
    wire = [message_start(), text_start(0), *(text_delta(0, p) for p in parts)]
    if finished:
        wire += [block_stop(0), message_delta(), MESSAGE_STOP]
    return wire


def sse(wire: Sequence[Wire]) -> list[bytes]:
    """One SSE frame per event, as byte chunks."""
    return [f"event: {w['type']}\ndata: {json.dumps(w)}\n\n".encode() for w in wire]


def parsed(wire: Sequence[Wire]) -> list[arx.MessageStreamEvent]:
    return [arx.parse_event(json.dumps(w)) for w in wire]


def events_of(wire: Sequence[Wire]) -> reactivex.Observable[arx.MessageStreamEvent]:
    """A synchronous event source over ``wire`` (no completion rule: it just completes)."""
    return reactivex.from_iterable(parsed(wire))


def fixture_events(name: str) -> reactivex.Observable[arx.MessageStreamEvent]:
    return arx.from_sse_bytes(fixture_bytes(name))


def fixture_chunks(name: str) -> list[bytes]:
    """A recorded fixture cut into one chunk per SSE frame."""
    raw = fixture_bytes(name).replace(b"\r\n", b"\n")
    return [frame + b"\n\n" for frame in raw.split(b"\n\n") if frame.strip()]


# --- a body that records being closed --------------------------------------------------------


class Body:
    """Response chunks as an async generator that records its close and can stall.

    ``stall_after``: after this many chunks, wait until :meth:`release` (forever if never).
    """

    def __init__(self, chunks: Sequence[bytes], *, stall_after: int | None = None) -> None:
        self.chunks = list(chunks)
        self.stall_after = stall_after
        self.started = False
        self.closed = False
        self.sent = 0
        self._released: asyncio.Event | None = None

    def release(self) -> None:
        if self._released is not None:
            self._released.set()

    async def stream(self) -> AsyncIterator[bytes]:
        self.started = True
        self._released = asyncio.Event()
        try:
            for index, chunk in enumerate(self.chunks):
                if index == self.stall_after:
                    await self._released.wait()
                elif index:
                    await asyncio.sleep(0)  # one read per turn of the loop, as from a socket
                self.sent += 1
                yield chunk
        finally:
            self.closed = True

    def events(self) -> reactivex.Observable[arx.MessageStreamEvent]:
        return arx.from_sse_bytes(self.stream())


async def settle(condition: Callable[[], bool], turns: int = 200) -> bool:
    """Let the event loop run (no sleeping) until ``condition`` holds or ``turns`` pass."""
    for _ in range(turns):
        if condition():
            return True
        await asyncio.sleep(0)
    return condition()


# --- recording -------------------------------------------------------------------------------


@dataclass
class Recorder(Generic[T]):
    """What one subscription saw."""

    items: list[T] = field(default_factory=list)
    error: Exception | None = None
    completed: bool = False

    @property
    def done(self) -> bool:
        return self.completed or self.error is not None

    def on_next(self, item: T) -> None:
        self.items.append(item)

    def on_error(self, error: Exception) -> None:
        self.error = error

    def on_completed(self) -> None:
        self.completed = True

    def subscribe(
        self, source: reactivex.Observable[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return source.subscribe(self.on_next, self.on_error, self.on_completed, scheduler=scheduler)


def collect(source: reactivex.Observable[T]) -> Recorder[T]:
    """Subscribe a synchronous source and record everything it does."""
    recorder: Recorder[T] = Recorder()
    recorder.subscribe(source)
    return recorder


async def collect_async(source: reactivex.Observable[T]) -> Recorder[T]:
    """Subscribe on the running loop and wait until the source ends."""
    recorder: Recorder[T] = Recorder()
    recorder.subscribe(source, AsyncIOScheduler(asyncio.get_running_loop()))
    assert await settle(lambda: recorder.done, turns=10_000)
    return recorder


# --- virtual-time results --------------------------------------------------------------------


def kinds(records: Sequence[Recorded[Any]]) -> list[tuple[float, str]]:
    """``(time, "N" | "E" | "C")`` of each recorded notification."""
    return [(r.time, r.value.kind) for r in records if isinstance(r.value, Notification)]


def values(records: Sequence[Recorded[T]]) -> list[tuple[float, T]]:
    """``(time, value)`` of each recorded ``on_next``."""
    return [(r.time, r.value.value) for r in records if isinstance(r.value, OnNext)]


def error_of(records: Sequence[Recorded[Any]]) -> Exception | None:
    """The recorded ``on_error``'s exception, if any."""
    for record in records:
        if isinstance(record.value, OnError):
            return record.value.exception
    return None
