"""Bridges: ``to_async_iterator``, ``to_iterator``, ``from_async_iterable``, ``final_message``."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import reactivex
from reactivex import operators as rx_ops

import anthropic_rx as arx
from tests.conftest import FIXTURE_FILES, fixture_bytes

T = TypeVar("T")

FIXTURE_NAMES = [p.stem for p in FIXTURE_FILES]
MESSAGE_FIXTURES = [n for n in FIXTURE_NAMES if not n.startswith("docs_error")]


def frames(data: bytes) -> list[bytes]:
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def events_of(data: bytes) -> list[arx.MessageStreamEvent]:
    events: list[arx.MessageStreamEvent] = []
    arx.from_sse_bytes(data).subscribe(events.append, lambda e: None)
    return events


def built(events: list[arx.MessageStreamEvent]) -> arx.Message | None:
    builder = arx.MessageBuilder()
    for event in events:
        builder.feed(event)
    return builder.message()


@dataclass
class Producer:
    """An async source that records how many items it produced and whether it was closed.

    With ``hold_after`` it stops after that many items until :attr:`release` is set.
    """

    items: list[Any]
    hold_after: int | None = None
    error: Exception | None = None
    produced: int = 0
    closed: bool = False
    started: int = 0
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> AsyncIterator[Any]:
        self.started += 1
        try:
            for index, item in enumerate(self.items):
                if index == self.hold_after:
                    self.holding.set()
                    await self.release.wait()
                self.produced += 1
                yield item
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True

    def __aiter__(self) -> AsyncIterator[Any]:
        return self.run()


async def drain(iterator: AsyncIterator[T], into: list[T]) -> None:
    async for item in iterator:
        into.append(item)


async def settle(turns: int = 20) -> None:
    """Give the loop's other tasks a few turns."""
    for _ in range(turns):
        await asyncio.sleep(0)


# --- to_async_iterator -----------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_async_iterator_gives_every_event(name: str) -> None:
    data = fixture_bytes(name)
    items = [event async for event in arx.to_async_iterator(arx.from_sse_bytes(data))]
    assert items == events_of(data)


async def test_async_iterator_over_an_async_source() -> None:
    producer = Producer(list(range(50)))
    items = [i async for i in arx.to_async_iterator(arx.from_async_iterable(producer))]
    assert items == list(range(50))
    assert producer.closed


async def test_async_iterator_raises_after_the_earlier_items() -> None:
    data = b"".join(frames(fixture_bytes("docs_basic_text"))[:-1])
    items: list[arx.MessageStreamEvent] = []
    with pytest.raises(arx.IncompleteStreamError) as caught:
        await drain(arx.to_async_iterator(arx.from_sse_bytes(data)), items)
    assert items == events_of(data)
    assert items[-1].type == "message_delta"
    assert caught.value.partial_message == built(events_of(data))


async def test_async_iterator_raises_a_source_error_after_items() -> None:
    boom = RuntimeError("source failed")
    producer = Producer([1, 2, 3], error=boom)
    items: list[int] = []
    with pytest.raises(RuntimeError, match="source failed") as caught:
        await drain(arx.to_async_iterator(arx.from_async_iterable(producer)), items)
    assert caught.value is boom
    assert items == [1, 2, 3]


async def test_break_disposes_the_subscription() -> None:
    producer = Producer(list(range(1000)))
    try:
        async for item in arx.to_async_iterator(arx.from_async_iterable(producer), max_buffer=8):
            assert item == 0
            break
        await settle()
        assert producer.closed
        assert producer.produced < 20
    finally:
        gc.collect()
        await settle()


async def test_break_then_garbage_collection_disposes() -> None:
    producer = Producer(list(range(1000)))
    async for item in arx.to_async_iterator(arx.from_async_iterable(producer), max_buffer=8):
        assert item == 0
        break
    await settle()
    gc.collect()
    await settle()
    assert producer.closed
    assert producer.produced <= 8 + 2


async def test_aclose_disposes() -> None:
    producer = Producer(list(range(1000)), hold_after=3)
    iterator = arx.to_async_iterator(arx.from_async_iterable(producer))
    assert await anext(iterator) == 0
    await iterator.aclose()
    await settle()
    assert producer.closed
    with pytest.raises(StopAsyncIteration):
        await anext(iterator)


async def test_async_with_disposes() -> None:
    producer = Producer(list(range(1000)), hold_after=3)
    async with arx.to_async_iterator(arx.from_async_iterable(producer)) as iterator:
        assert await anext(iterator) == 0
    await settle()
    assert producer.closed
    assert producer.produced == 3


PING = b'event: ping\ndata: {"type": "ping"}\n\n'


class LongStream(httpx.AsyncByteStream):
    """A response body of ``message_start`` and then many pings; records reads and closing."""

    def __init__(self, pings: int = 1000) -> None:
        self.chunks = [frames(fixture_bytes("docs_basic_text"))[0], *[PING] * pings]
        self.read = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.read += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def long_response(stream: LongStream) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)


async def test_break_closes_the_http_response() -> None:
    stream = LongStream()
    response = long_response(stream)
    try:
        async for event in arx.to_async_iterator(arx.from_sse_bytes(response), max_buffer=4):
            assert event.type == "message_start"
            break
        await settle()
        assert stream.closed
        assert response.is_closed
    finally:
        gc.collect()
        await settle()


async def test_aclose_closes_the_http_response() -> None:
    stream = LongStream()
    response = long_response(stream)
    iterator = arx.to_async_iterator(arx.from_sse_bytes(response), max_buffer=4)
    first = await anext(iterator)
    assert first.type == "message_start"
    await iterator.aclose()
    assert stream.closed
    assert response.is_closed
    assert stream.read <= 4 + 2


async def test_cancelling_the_waiting_task_disposes() -> None:
    producer = Producer(list(range(10)), hold_after=1)
    received: list[int] = []

    async def consume() -> None:
        async for item in arx.to_async_iterator(arx.from_async_iterable(producer)):
            received.append(item)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(producer.holding.wait(), timeout=10)
    await settle()
    assert received == [0]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert producer.closed
    assert producer.produced == 1


async def test_pacing_bounds_what_the_source_produces() -> None:
    producer = Producer(list(range(1000)))
    iterator = arx.to_async_iterator(arx.from_async_iterable(producer), max_buffer=4)
    assert await anext(iterator) == 0
    await settle(200)
    # Paused at the high-water mark: the buffer (4) plus the item handed out plus one in flight.
    assert 4 <= producer.produced <= 4 + 2
    rest = [item async for item in iterator]
    assert rest == list(range(1, 1000))
    assert producer.closed


async def test_pacing_bounds_the_chunks_read_from_the_network() -> None:
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    data = fixture_bytes("docs_basic_text")
    head, tail = frames(data)[:1], frames(data)[1:]
    producer = Producer([*head, *[ping] * 1000, *tail])
    iterator = arx.to_async_iterator(arx.from_sse_bytes(producer.run()), max_buffer=4)
    first = await anext(iterator)
    assert first.type == "message_start"
    await settle(200)
    assert 4 <= producer.produced <= 4 + 2
    rest = [event.type async for event in iterator]
    assert rest.count("ping") == 1001
    assert rest[-1] == "message_stop"


def run_python(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter that reports unraisable exceptions and warnings."""
    prelude = textwrap.dedent(
        """
        import gc, sys, warnings
        warnings.simplefilter("error")
        problems = []
        sys.unraisablehook = lambda u: problems.append(repr(u.exc_value))
        """
    )
    epilogue = textwrap.dedent(
        """
        gc.collect()
        if problems:
            sys.exit("\\n".join(problems))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script) + epilogue],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


MAX_BUFFER_ZERO = """
    import reactivex
    import anthropic_rx as arx

    for bridge in (arx.to_async_iterator, arx.to_iterator):
        try:
            bridge(reactivex.empty(), max_buffer=0)
        except ValueError as exc:
            assert "max_buffer" in str(exc), exc
        else:
            raise AssertionError("no ValueError")
        gc.collect()
    print("refused")
"""


def test_max_buffer_must_be_positive() -> None:
    result = run_python(MAX_BUFFER_ZERO)
    assert result.stdout == "refused\n"


def test_max_buffer_refusal_leaves_nothing_behind() -> None:
    result = run_python(MAX_BUFFER_ZERO)
    assert (result.returncode, result.stderr) == (0, "")


# --- to_iterator -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_iterator_gives_every_event(name: str) -> None:
    data = fixture_bytes(name)
    assert list(arx.to_iterator(arx.from_sse_bytes(data))) == events_of(data)


def test_iterator_over_an_async_source() -> None:
    data = fixture_bytes("docs_tool_use")

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in frames(data):
            yield chunk

    assert list(arx.to_iterator(arx.from_sse_bytes(chunks()))) == events_of(data)


def test_iterator_over_from_async_iterable() -> None:
    async def numbers() -> AsyncIterator[int]:
        for i in range(5):
            await asyncio.sleep(0)
            yield i

    assert list(arx.to_iterator(arx.from_async_iterable(numbers()))) == [0, 1, 2, 3, 4]


def test_iterator_close_stops_and_closes_the_source() -> None:
    state = {"produced": 0, "closed": False}

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                state["produced"] += 1
                yield i
        finally:
            state["closed"] = True

    iterator = arx.to_iterator(arx.from_async_iterable(numbers()), max_buffer=4)
    assert next(iterator) == 0
    iterator.close()
    assert state["closed"]
    assert state["produced"] < 10
    with pytest.raises(StopIteration):
        next(iterator)


def test_iterator_with_block_closes() -> None:
    state = {"closed": False}

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                yield i
        finally:
            state["closed"] = True

    with arx.to_iterator(arx.from_async_iterable(numbers())) as iterator:
        assert next(iterator) == 0
    assert state["closed"]


def test_iterator_raises_errors_at_the_for() -> None:
    data = b"".join(frames(fixture_bytes("docs_basic_text"))[:-1])
    seen: list[arx.MessageStreamEvent] = []
    with pytest.raises(arx.IncompleteStreamError):
        seen.extend(arx.to_iterator(arx.from_sse_bytes(data)))
    assert seen == events_of(data)


def test_iterator_raises_a_source_error() -> None:
    boom = ValueError("boom")

    async def failing() -> AsyncIterator[int]:
        yield 1
        raise boom

    iterator = arx.to_iterator(arx.from_async_iterable(failing()))
    assert next(iterator) == 1
    with pytest.raises(ValueError, match="boom") as caught:
        next(iterator)
    assert caught.value is boom
    with pytest.raises(StopIteration):
        next(iterator)


async def test_iterator_refuses_to_run_inside_a_running_loop() -> None:
    iterator = arx.to_iterator(arx.from_sse_bytes(fixture_bytes("docs_basic_text")))
    with pytest.raises(RuntimeError, match="running event loop"):
        next(iterator)
    # close() runs the iterator's private loop, which it cannot do on this thread now.
    await asyncio.to_thread(iterator.close)
    with pytest.raises(StopIteration):
        next(iterator)


def test_iterator_refused_inside_a_loop_cleans_up_quietly() -> None:
    result = run_python(
        """
        import asyncio
        import anthropic_rx as arx

        async def main():
            iterator = arx.to_iterator(arx.from_sse_bytes(b""))
            try:
                next(iterator)
            except RuntimeError:
                pass
            else:
                raise AssertionError("no RuntimeError")
            del iterator
            gc.collect()

        asyncio.run(main())
        """
    )
    assert (result.returncode, result.stderr) == (0, "")


# --- from_async_iterable ---------------------------------------------------------------------


class Countdown:
    """A re-iterable async iterable that counts its iterations."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.iterations = 0

    def __aiter__(self) -> AsyncIterator[int]:
        self.iterations += 1
        return self._run()

    async def _run(self) -> AsyncIterator[int]:
        for i in range(self.n, 0, -1):
            yield i


async def collect(observable: reactivex.Observable[Any]) -> tuple[list[Any], Exception | None]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Exception | None] = loop.create_future()
    items: list[Any] = []
    observable.subscribe(items.append, done.set_result, lambda: done.set_result(None))
    return items, await asyncio.wait_for(done, timeout=10)


async def test_from_async_iterable_is_cold() -> None:
    source = Countdown(3)
    observable = arx.from_async_iterable(source)
    await settle()
    assert source.iterations == 0
    assert await collect(observable) == ([3, 2, 1], None)
    assert await collect(observable) == ([3, 2, 1], None)
    assert source.iterations == 2


async def test_from_async_iterable_errors() -> None:
    boom = KeyError("k")
    producer = Producer(["a", "b"], error=boom)
    items, error = await collect(arx.from_async_iterable(producer))
    assert items == ["a", "b"]
    assert error is boom
    assert producer.closed


async def test_from_async_iterable_dispose_closes_the_iterator() -> None:
    producer = Producer(list(range(100)))
    items, error = await collect(arx.from_async_iterable(producer).pipe(rx_ops.take(2)))
    assert (items, error) == ([0, 1], None)
    await settle()
    assert producer.closed
    assert producer.produced <= 3


async def test_from_async_iterable_reads_nothing_after_dispose() -> None:
    producer = Producer(list(range(100)))
    items, error = await collect(arx.from_async_iterable(producer).pipe(rx_ops.take(2)))
    assert (items, error) == ([0, 1], None)
    await settle()
    assert producer.produced == 2


async def test_from_async_iterable_dispose_while_waiting() -> None:
    producer = Producer([1, 2, 3], hold_after=1)
    items: list[int] = []
    subscription = arx.from_async_iterable(producer).subscribe(items.append)
    await asyncio.wait_for(producer.holding.wait(), timeout=10)
    subscription.dispose()
    await settle()
    assert producer.closed
    assert items == [1]


@pytest.mark.parametrize("source", [[1, 2], b"bytes", iter([1]), None])
def test_from_async_iterable_refuses_non_async_iterables(source: Any) -> None:
    with pytest.raises(TypeError, match="async iterable"):
        arx.from_async_iterable(source)


# --- final_message ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
async def test_final_message_of_each_fixture(name: str) -> None:
    data = fixture_bytes(name)
    message = await arx.final_message(arx.from_sse_bytes(data))
    assert message == built(events_of(data))
    assert message.stop_reason is not None
    assert message.content


async def test_final_message_over_chunks_and_async_sources() -> None:
    data = fixture_bytes("docs_web_search")

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in frames(data):
            yield chunk

    def single_bytes() -> Iterator[bytes]:
        for byte in data:
            yield bytes([byte])

    whole = await arx.final_message(arx.from_sse_bytes(data))
    assert await arx.final_message(arx.from_sse_bytes(chunks())) == whole
    assert await arx.final_message(arx.from_sse_bytes(single_bytes())) == whole


@pytest.mark.parametrize(
    ("name", "partial_text"),
    [("docs_error_only", None), ("docs_error_overloaded_midstream", "Hello")],
)
async def test_final_message_raises_the_typed_error_event(
    name: str, partial_text: str | None
) -> None:
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(arx.from_sse_bytes(fixture_bytes(name)))
    error = caught.value
    assert isinstance(error, arx.APIError)
    assert error.status_code == 200
    assert error.error_type == "overloaded_error"
    assert error.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    if partial_text is None:
        assert error.partial_message is None
    else:
        assert error.partial_message is not None
        assert error.partial_message.content == (arx.TextBlock(text=partial_text),)


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("rate_limit_error", arx.RateLimitError),
        ("api_error", arx.InternalServerError),
        ("invalid_request_error", arx.BadRequestError),
        ("brand_new_error", arx.APIError),
    ],
)
async def test_final_message_picks_the_class_by_error_type(
    error_type: str, expected: type[arx.APIError]
) -> None:
    data = (
        b'event: error\ndata: {"type": "error", "error": {"type": "'
        + error_type.encode()
        + b'", "message": "no"}}\n\n'
    )
    with pytest.raises(arx.APIError) as caught:
        await arx.final_message(arx.from_sse_bytes(data))
    assert type(caught.value) is expected
    assert caught.value.message == "no"


async def test_final_message_error_carries_the_response_meta() -> None:
    response = httpx.Response(
        200,
        headers={"content-type": "text/event-stream", "request-id": "req_1"},
        content=fixture_bytes("docs_error_overloaded_midstream"),
    )
    with pytest.raises(arx.OverloadedError) as caught:
        await arx.final_message(arx.from_sse_bytes(response))
    assert caught.value.request_id == "req_1"
    assert "req_1" in str(caught.value)


async def test_final_message_completion_without_message_stop_is_incomplete() -> None:
    data = fixture_bytes("docs_basic_text")
    with pytest.raises(arx.IncompleteStreamError) as caught:
        await arx.final_message(arx.from_sse_bytes(data).pipe(rx_ops.take(4)))
    partial = caught.value.partial_message
    assert partial is not None
    assert partial.content == (arx.TextBlock(text="Hello"),)


async def test_final_message_of_message_stop_alone_is_a_protocol_error() -> None:
    data = b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    with pytest.raises(arx.ProtocolError, match="before message_start") as caught:
        await arx.final_message(arx.from_sse_bytes(data))
    assert caught.value.partial_message is None


async def test_final_message_passes_stream_errors_through() -> None:
    chunks = frames(fixture_bytes("docs_basic_text"))
    data = b"".join([*chunks[:3], b"event: content_block_delta\ndata: [1]\n\n", *chunks[3:]])
    with pytest.raises(arx.ProtocolError) as caught:
        await arx.final_message(arx.from_sse_bytes(data))
    assert caught.value.partial_message is not None


async def test_final_message_of_an_empty_observable_is_incomplete() -> None:
    with pytest.raises(arx.IncompleteStreamError):
        await arx.final_message(reactivex.empty())


async def test_cancelling_final_message_disposes() -> None:
    head = frames(fixture_bytes("docs_basic_text"))[:3]
    producer = Producer([*head, *frames(fixture_bytes("docs_basic_text"))[3:]], hold_after=3)
    task = asyncio.create_task(arx.final_message(arx.from_sse_bytes(producer.run())))
    await asyncio.wait_for(producer.holding.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    assert producer.closed
    assert producer.produced == 3


async def test_to_iterator_closed_inside_async_code_still_closes_the_response() -> None:
    closed = threading.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in frames(fixture_bytes("docs_basic_text")):
                yield chunk
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    def first_item() -> tuple[arx.MessageStreamEvent, Any]:
        iterator = arx.to_iterator(arx.from_sse_bytes(body()))
        return next(iterator), iterator

    item, iterator = await asyncio.to_thread(first_item)
    assert isinstance(item, arx.MessageStartEvent)
    iterator.close()  # this thread runs a loop: the private one runs on a thread of its own
    assert closed.is_set()
    with pytest.raises(StopIteration):
        next(iterator)
