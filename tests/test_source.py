"""``from_sse_bytes``: the cold event source over bytes, (async) iterables and httpx responses."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as rx_ops

import anthropic_rx as arx
from tests.conftest import FIXTURE_FILES, fixture_bytes
from tests.strategies import chunked, sse_streams

FIXTURE_NAMES = [p.stem for p in FIXTURE_FILES]
HEADERS = {"content-type": "text/event-stream", "request-id": "req_1"}


# --- helpers ---------------------------------------------------------------------------------


def frames(data: bytes) -> list[bytes]:
    """The SSE frames of ``data``, each with its closing blank line."""
    return [part + b"\n\n" for part in data.split(b"\n\n") if part]


def dumps(events: Sequence[arx.MessageStreamEvent]) -> list[dict[str, Any]]:
    return [event.model_dump(mode="json") for event in events]


def wire_types(data: bytes) -> list[str]:
    return re.findall(r"^event: (\w+)$", data.decode(), flags=re.MULTILINE)


@dataclass
class Outcome:
    events: list[arx.MessageStreamEvent] = field(default_factory=list)
    error: Exception | None = None
    completed: bool = False

    def message(self) -> arx.Message | None:
        builder = arx.MessageBuilder()
        for event in self.events:
            builder.feed(event)
        return builder.message()


def collect_sync(observable: reactivex.Observable[arx.MessageStreamEvent]) -> Outcome:
    """Subscribe to a stream over a synchronous source; it ends before ``subscribe`` returns."""
    outcome = Outcome()

    def on_error(error: Exception) -> None:
        outcome.error = error

    def on_completed() -> None:
        outcome.completed = True

    observable.subscribe(outcome.events.append, on_error, on_completed)
    assert outcome.completed != (outcome.error is not None)
    return outcome


async def collect(observable: reactivex.Observable[Any]) -> Outcome:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    outcome = Outcome()

    def on_error(error: Exception) -> None:
        assert not done.done()
        outcome.error = error
        done.set_result(None)

    def on_completed() -> None:
        assert not done.done()
        outcome.completed = True
        done.set_result(None)

    subscription = observable.subscribe(outcome.events.append, on_error, on_completed)
    try:
        await asyncio.wait_for(done, timeout=10)
    finally:
        subscription.dispose()
    await asyncio.sleep(0)  # let a reading task finish closing its source
    return outcome


@dataclass
class Recorder:
    """Hands out chunks one at a time and records how far it was read and whether closed."""

    chunks: Sequence[bytes | str]
    fail_after: int | None = None
    error: Exception = field(default_factory=lambda: RuntimeError("chunk source failed"))
    read: int = 0
    closed: bool = False

    def _next(self, index: int) -> bytes | str:
        if self.fail_after is not None and index >= self.fail_after:
            raise self.error
        self.read += 1
        return self.chunks[index]

    def sync(self) -> Iterator[Any]:
        try:
            for index in range(len(self.chunks)):
                yield self._next(index)
            if self.fail_after is not None:
                self._next(len(self.chunks))
        finally:
            self.closed = True

    async def aiter(self) -> AsyncIterator[Any]:
        try:
            for index in range(len(self.chunks)):
                yield self._next(index)
            if self.fail_after is not None:
                self._next(len(self.chunks))
        finally:
            self.closed = True


class SyncStream(httpx.SyncByteStream):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __iter__(self) -> Iterator[bytes]:
        return self.recorder.sync()

    def close(self) -> None:
        self.recorder.closed = True


class AsyncStream(httpx.AsyncByteStream):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.recorder.aiter()

    async def aclose(self) -> None:
        self.recorder.closed = True


def sync_response(recorder: Recorder) -> httpx.Response:
    return httpx.Response(200, headers=HEADERS, stream=SyncStream(recorder))


def async_response(recorder: Recorder) -> httpx.Response:
    return httpx.Response(200, headers=HEADERS, stream=AsyncStream(recorder))


SourceFactory = Callable[[Recorder], Any]

SOURCES: dict[str, SourceFactory] = {
    "bytes": lambda r: b"".join(bytes(c) for c in r.chunks if isinstance(c, bytes)),
    "bytearray": lambda r: bytearray(b"".join(c for c in r.chunks if isinstance(c, bytes))),
    "list": lambda r: list(r.chunks),
    "generator": lambda r: r.sync(),
    "async generator": lambda r: r.aiter(),
    "sync response": sync_response,
    "async response": async_response,
}
STREAMING = {k: v for k, v in SOURCES.items() if k not in ("bytes", "bytearray", "list")}
RESPONSES = {"sync response": sync_response, "async response": async_response}


def reference(name: str) -> Outcome:
    return collect_sync(arx.from_sse_bytes(fixture_bytes(name)))


# --- every kind of source --------------------------------------------------------------------


@pytest.mark.parametrize("kind", SOURCES)
@pytest.mark.parametrize("name", FIXTURE_NAMES)
async def test_every_source_gives_the_wire_events_in_order(name: str, kind: str) -> None:
    data = fixture_bytes(name)
    recorder = Recorder(frames(data))
    outcome = await collect(arx.from_sse_bytes(SOURCES[kind](recorder)))
    assert outcome.error is None
    assert outcome.completed
    assert [event.type for event in outcome.events] == wire_types(data)
    assert dumps(outcome.events) == dumps(reference(name).events)
    if kind in STREAMING:
        assert recorder.read == len(frames(data))
        assert recorder.closed


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_events_carry_the_wire_data(name: str) -> None:
    data = fixture_bytes(name)
    wire = [
        _without_nulls(json.loads(line[len("data: ") :]))
        for line in data.decode().splitlines()
        if line.startswith("data: ")
    ]
    events = reference(name).events
    assert [e.model_dump(mode="json", exclude_none=True) for e in events] == wire


def test_ping_and_error_events_are_emitted() -> None:
    outcome = reference("docs_error_overloaded_midstream")
    assert outcome.completed
    assert outcome.error is None
    assert any(isinstance(e, arx.PingEvent) for e in outcome.events)
    last = outcome.events[-1]
    assert isinstance(last, arx.ErrorEvent)
    assert last.error == arx.ErrorDetail(type="overloaded_error", message="Overloaded")


# --- cold ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", STREAMING)
async def test_nothing_is_read_before_subscribe(kind: str) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_basic_text")))
    observable = arx.from_sse_bytes(STREAMING[kind](recorder)).pipe(rx_ops.map(lambda e: e))
    await asyncio.sleep(0)
    assert recorder.read == 0
    outcome = await collect(observable)
    assert outcome.completed
    assert recorder.read == len(recorder.chunks)


class Reiterable:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.iterations = 0

    def __iter__(self) -> Iterator[bytes]:
        self.iterations += 1
        return iter(self.chunks)


async def test_each_subscription_reads_a_reiterable_source_again() -> None:
    source = Reiterable(frames(fixture_bytes("docs_tool_use")))
    observable = arx.from_sse_bytes(source)
    assert source.iterations == 0
    first = await collect(observable)
    second = await collect(observable)
    assert source.iterations == 2
    assert first.completed
    assert second.completed
    assert first.events == second.events
    assert first.message() == second.message()


async def test_each_subscription_reads_bytes_again() -> None:
    observable = arx.from_sse_bytes(fixture_bytes("docs_citations"))
    first, second = collect_sync(observable), collect_sync(observable)
    assert first.events == second.events
    assert len(first.events) == len(wire_types(fixture_bytes("docs_citations")))


# --- how a stream ends -----------------------------------------------------------------------

EXTRA = [b'event: ping\ndata: {"type": "ping"}\n\n', b"data: {not json\n\n", b"\xff\xfe"]


@pytest.mark.parametrize("kind", ["generator", "async generator", "sync response"])
@pytest.mark.parametrize("name", ["docs_basic_text", "docs_error_overloaded_midstream"])
async def test_nothing_after_message_stop_or_error_is_read(name: str, kind: str) -> None:
    chunks = frames(fixture_bytes(name))
    recorder = Recorder([*chunks, *EXTRA])
    outcome = await collect(arx.from_sse_bytes(STREAMING[kind](recorder)))
    assert outcome.completed
    assert outcome.error is None
    assert outcome.events[-1].type in ("message_stop", "error")
    assert recorder.read == len(chunks)
    assert recorder.closed


async def test_completion_comes_right_after_message_stop() -> None:
    seen: list[str] = []

    def on_next(event: arx.MessageStreamEvent) -> None:
        seen.append(event.type)

    def on_completed() -> None:
        seen.append("completed")

    arx.from_sse_bytes(fixture_bytes("docs_basic_text") + EXTRA[0]).subscribe(
        on_next, on_completed=on_completed
    )
    assert seen[-2:] == ["message_stop", "completed"]
    assert seen.count("ping") == 1


@pytest.mark.parametrize("kind", SOURCES)
async def test_body_ending_before_message_stop_is_incomplete(kind: str) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_basic_text"))[:-1])
    outcome = await collect(arx.from_sse_bytes(SOURCES[kind](recorder)))
    assert isinstance(outcome.error, arx.IncompleteStreamError)
    partial = outcome.error.partial_message
    assert partial is not None
    assert partial == outcome.message()
    assert partial.content == (arx.TextBlock(text="Hello!"),)
    assert partial.stop_reason == "end_turn"


async def test_empty_body_is_incomplete_without_a_message() -> None:
    outcome = collect_sync(arx.from_sse_bytes(b""))
    assert isinstance(outcome.error, arx.IncompleteStreamError)
    assert outcome.error.partial_message is None
    assert outcome.events == []


def test_a_cut_inside_the_last_event_is_incomplete_not_a_protocol_error() -> None:
    data = fixture_bytes("docs_tool_use")
    chunks = frames(data)
    last_delta = chunks[-4]  # a content_block_delta of the tool input
    assert b"input_json_delta" in last_delta
    head = b"".join(chunks[:-4])
    for cut in range(1, len(last_delta) - 2):
        outcome = collect_sync(arx.from_sse_bytes(head + last_delta[:cut]))
        assert type(outcome.error) is arx.IncompleteStreamError, cut
        assert outcome.error.partial_message == outcome.message()


@pytest.mark.parametrize("kind", ["list", "async generator"])
async def test_bad_json_mid_stream_is_a_protocol_error(kind: str) -> None:
    chunks = frames(fixture_bytes("docs_basic_text"))
    bad = b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0,\n\n'
    recorder = Recorder([*chunks[:4], bad, *chunks[4:]])
    outcome = await collect(arx.from_sse_bytes(SOURCES[kind](recorder)))
    assert type(outcome.error) is arx.ProtocolError
    partial = outcome.error.partial_message
    assert partial is not None
    assert partial.content == (arx.TextBlock(text="Hello"),)


def test_impossible_event_order_is_a_protocol_error() -> None:
    chunks = frames(fixture_bytes("docs_basic_text"))
    stray = b'event: content_block_stop\ndata: {"type": "content_block_stop", "index": 3}\n\n'
    outcome = collect_sync(arx.from_sse_bytes([*chunks[:4], stray, *chunks[4:]]))
    assert isinstance(outcome.error, arx.ProtocolError)
    assert outcome.error.partial_message == outcome.message()
    assert [e.type for e in outcome.events] == wire_types(b"".join(chunks[:4]))


def test_invalid_utf8_is_a_protocol_error() -> None:
    chunks = frames(fixture_bytes("docs_basic_text"))
    outcome = collect_sync(arx.from_sse_bytes([*chunks[:2], b"data: \xff\n\n", *chunks[2:]]))
    assert isinstance(outcome.error, arx.ProtocolError)
    assert outcome.error.partial_message is not None


def test_a_line_longer_than_the_limit_is_a_protocol_error() -> None:
    outcome = collect_sync(arx.from_sse_bytes(fixture_bytes("docs_basic_text"), max_line_bytes=100))
    assert isinstance(outcome.error, arx.ProtocolError)
    with pytest.raises(ValueError, match="max_line_bytes"):
        arx.from_sse_bytes(b"", max_line_bytes=0)


# --- failures of the source and of the subscriber --------------------------------------------


@pytest.mark.parametrize("kind", ["generator", "async generator"])
async def test_an_exception_from_the_chunk_iterable_is_passed_through(kind: str) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_basic_text"))[:3], fail_after=3)
    outcome = await collect(arx.from_sse_bytes(STREAMING[kind](recorder)))
    assert outcome.error is recorder.error
    assert [e.type for e in outcome.events] == ["message_start", "content_block_start", "ping"]
    assert recorder.closed


@pytest.mark.parametrize(
    ("raised", "named"),
    [
        (httpx.ReadError("socket closed"), "socket closed"),
        (httpx.RemoteProtocolError(""), "Remote"),
    ],
)
def test_a_transport_error_mid_body_is_a_connection_error_that_says_what(
    raised: httpx.TransportError, named: str
) -> None:
    def body() -> Iterator[bytes]:
        yield frames(fixture_bytes("docs_basic_text"))[0]
        raise raised

    outcome = collect_sync(arx.from_sse_bytes(body()))
    assert isinstance(outcome.error, arx.APIConnectionError)
    assert outcome.error.__cause__ is raised
    assert str(outcome.error).startswith("connection lost mid-stream: ")
    assert named in str(outcome.error)  # never an empty reason
    assert outcome.error.partial_message is not None


@pytest.mark.parametrize("source", ["event: ping\n", ""])
def test_a_str_source_is_a_type_error_at_call_time(source: str) -> None:
    with pytest.raises(TypeError, match="bytes"):
        arx.from_sse_bytes(source)  # type: ignore[arg-type]


def test_a_non_iterable_source_is_a_type_error_at_call_time() -> None:
    with pytest.raises(TypeError):
        arx.from_sse_bytes(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["list", "generator", "async generator"])
async def test_str_chunks_are_a_type_error_via_on_error(kind: str) -> None:
    recorder = Recorder(["event: ping\ndata: {}\n\n"])
    outcome = await collect(arx.from_sse_bytes(SOURCES[kind](recorder)))
    assert isinstance(outcome.error, TypeError)
    assert outcome.events == []


@pytest.mark.parametrize("kind", ["generator", "async generator", "async response"])
async def test_on_next_raising_stops_reading_and_reaches_on_error(kind: str) -> None:
    chunks = frames(fixture_bytes("docs_tool_use"))
    recorder = Recorder(chunks)
    boom = ValueError("subscriber failed")
    seen: list[str] = []

    def on_next(event: arx.MessageStreamEvent) -> None:
        seen.append(event.type)
        if len(seen) == 2:
            raise boom

    loop = asyncio.get_running_loop()
    errors: asyncio.Future[Exception] = loop.create_future()
    arx.from_sse_bytes(STREAMING[kind](recorder)).subscribe(on_next, errors.set_result)
    assert await asyncio.wait_for(errors, timeout=10) is boom
    await asyncio.sleep(0)
    assert seen == ["message_start", "content_block_start"]
    assert recorder.read == 2
    assert recorder.closed


@pytest.mark.parametrize("kind", STREAMING)
async def test_dispose_mid_stream_stops_reading_and_closes(kind: str) -> None:
    chunks = frames(fixture_bytes("docs_tool_use"))
    recorder = Recorder(chunks)
    outcome = await collect(arx.from_sse_bytes(STREAMING[kind](recorder)).pipe(rx_ops.take(2)))
    assert outcome.completed
    assert [e.type for e in outcome.events] == ["message_start", "content_block_start"]
    assert recorder.read == 2
    assert recorder.closed


async def test_dispose_before_the_first_chunk_reads_nothing() -> None:
    recorder = Recorder(frames(fixture_bytes("docs_basic_text")))
    subscription = arx.from_sse_bytes(recorder.aiter()).subscribe(lambda e: None)
    subscription.dispose()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert recorder.read == 0


async def test_an_async_source_needs_a_running_loop() -> None:
    def subscribe_without_loop() -> None:
        arx.from_sse_bytes(Recorder([]).aiter()).subscribe(lambda e: None)

    with pytest.raises(RuntimeError, match="event loop"):
        await asyncio.to_thread(subscribe_without_loop)


# --- httpx.Response --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RESPONSES)
async def test_response_meta_on_message_start_and_error_events(kind: str) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_error_overloaded_midstream")))
    outcome = await collect(arx.from_sse_bytes(RESPONSES[kind](recorder)))
    assert outcome.completed
    start, error = outcome.events[0], outcome.events[-1]
    assert isinstance(start, arx.MessageStartEvent)
    assert isinstance(error, arx.ErrorEvent)
    for event in (start, error):
        assert event.response_meta is not None
        assert event.response_meta.request_id == "req_1"
        assert event.response_meta.status_code == 200
    assert "response_meta" not in start.model_dump()
    assert recorder.closed


async def test_no_response_meta_without_a_response() -> None:
    start = reference("docs_basic_text").events[0]
    assert isinstance(start, arx.MessageStartEvent)
    assert start.response_meta is None


async def test_a_response_with_its_content_read() -> None:
    response = httpx.Response(200, headers=HEADERS, content=fixture_bytes("docs_basic_text"))
    outcome = await collect(arx.from_sse_bytes(response))
    assert outcome.completed
    assert dumps(outcome.events) == dumps(reference("docs_basic_text").events)
    start = outcome.events[0]
    assert isinstance(start, arx.MessageStartEvent)
    assert start.response_meta is not None
    assert start.response_meta.request_id == "req_1"


def _truncated(chunks: list[bytes]) -> Recorder:
    return Recorder(chunks[:-1])


def _bad_json(chunks: list[bytes]) -> Recorder:
    return Recorder([*chunks[:3], b"data: {\n\n"])


def _transport(chunks: list[bytes]) -> Recorder:
    return Recorder(chunks[:3], fail_after=3, error=httpx.ReadError("connection reset"))


def _read_timeout(chunks: list[bytes]) -> Recorder:
    return Recorder(chunks[:3], fail_after=3, error=httpx.ReadTimeout("slow"))


ERROR_CASES: dict[str, tuple[Callable[[list[bytes]], Recorder], type[Exception]]] = {
    "incomplete": (_truncated, arx.IncompleteStreamError),
    "bad json": (_bad_json, arx.ProtocolError),
    "transport": (_transport, arx.APIConnectionError),
    "timeout": (_read_timeout, arx.APITimeoutError),
}


@pytest.mark.parametrize("kind", RESPONSES)
@pytest.mark.parametrize("case", ERROR_CASES)
async def test_every_error_from_a_response_carries_meta(case: str, kind: str) -> None:
    make, expected = ERROR_CASES[case]
    recorder = make(frames(fixture_bytes("docs_basic_text")))
    outcome = await collect(arx.from_sse_bytes(RESPONSES[kind](recorder)))
    error = outcome.error
    assert isinstance(error, expected)
    assert isinstance(error, arx.AnthropicRxError)
    assert error.meta is not None
    assert error.request_id == "req_1"
    assert error.partial_message is not None
    assert error.partial_message.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    if case in ("transport", "timeout"):
        assert error.__cause__ is recorder.error
    assert recorder.closed


# --- truncation and chunking -----------------------------------------------------------------


def check_truncations(data: bytes, offsets: Iterable[int]) -> None:
    """Cut ``data`` at each offset: a complete stream equal to the whole, or a typed error."""
    full = collect_sync(arx.from_sse_bytes(data))
    assert full.completed
    for cut in offsets:
        outcome = collect_sync(arx.from_sse_bytes(data[:cut]))
        if outcome.completed:
            assert outcome.events == full.events, cut
            assert outcome.message() == full.message()
            continue
        error = outcome.error
        assert isinstance(error, arx.IncompleteStreamError | arx.ProtocolError), (cut, error)
        assert error.partial_message == outcome.message(), cut
        assert outcome.events == full.events[: len(outcome.events)], cut


@pytest.mark.parametrize(
    "name",
    list(FIXTURE_NAMES),
)
def test_truncation_at_every_byte_offset(name: str) -> None:
    data = fixture_bytes(name)
    check_truncations(data, range(len(data) + 1))


@pytest.mark.parametrize("name", ["docs_error_only", "docs_error_overloaded_midstream"])
def test_truncation_before_the_error_frame_has_data(name: str) -> None:
    data = fixture_bytes(name)
    # Up to "event: error\ndat": the error frame has no data line yet.
    check_truncations(data, range(data.rindex(b"event: error") + len(b"event: error\ndat") + 1))


@pytest.mark.parametrize("cut", [len("event: error\ndata"), 60, 99])
async def test_a_cut_inside_an_error_event_is_incomplete(cut: int) -> None:
    data = fixture_bytes("docs_error_only")[:cut]
    outcome = collect_sync(arx.from_sse_bytes(data))
    assert outcome.events == []
    assert isinstance(outcome.error, arx.IncompleteStreamError)
    with pytest.raises(arx.IncompleteStreamError):
        await arx.final_message(arx.from_sse_bytes(data))


@settings(max_examples=100, deadline=None)
@given(sse_streams(), st.data())
def test_any_chunking_gives_the_same_events(
    stream: tuple[list[dict[str, Any]], bytes], data: st.DataObject
) -> None:
    events, raw = stream
    whole = collect_sync(arx.from_sse_bytes(raw))
    assert whole.completed
    assert [e.type for e in whole.events] == [e["type"] for e in events]
    chunks = data.draw(chunked(raw))
    assert collect_sync(arx.from_sse_bytes(chunks)).events == whole.events


@settings(max_examples=60, deadline=None)
@given(sse_streams(), st.data())
def test_a_generated_stream_cut_anywhere(
    stream: tuple[list[dict[str, Any]], bytes], data: st.DataObject
) -> None:
    _, raw = stream
    whole = collect_sync(arx.from_sse_bytes(raw))
    cut = data.draw(st.integers(0, len(raw)))
    outcome = collect_sync(arx.from_sse_bytes(data.draw(chunked(raw[:cut]))))
    if outcome.completed:
        assert outcome.events == whole.events
    else:
        assert isinstance(outcome.error, arx.IncompleteStreamError | arx.ProtocolError)
        assert outcome.events == whole.events[: len(outcome.events)]


def test_sources_are_iterables_of_chunks() -> None:
    chunks: Iterable[bytes] = (bytes([b]) for b in fixture_bytes("docs_basic_text"))
    outcome = collect_sync(arx.from_sse_bytes(chunks))
    assert outcome.events == reference("docs_basic_text").events


def test_an_error_event_carries_the_message_before_it_off_the_wire() -> None:
    outcome = collect_sync(arx.from_sse_bytes(fixture_bytes("docs_error_overloaded_midstream")))
    error = outcome.events[-1]
    assert isinstance(error, arx.ErrorEvent)
    assert error.partial_message is not None
    assert error.partial_message.content[0].model_dump()["text"] == "Hello"
    assert "partial_message" not in error.model_dump()  # not wire data
    assert outcome.completed


async def test_a_lone_surrogate_escape_in_a_delta_does_not_end_the_stream() -> None:
    data = fixture_bytes("docs_basic_text").replace(b'"Hello"', b'"Hi \\ud83d"', 1)
    assert b"\\ud83d" in data
    message = await arx.final_message(arx.from_sse_bytes(data))
    assert message.content[0].model_dump()["text"].startswith("Hi \ufffd")


# --- a subscriber without on_error -----------------------------------------------------------


@dataclass
class Reported:
    """What the running loop's exception handler was given, while :func:`reported` lasts."""

    contexts: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def first(self) -> dict[str, Any]:
        async with asyncio.timeout(2):
            await self.arrived.wait()
        return self.contexts[0]


@pytest.fixture
async def reported() -> AsyncIterator[Reported]:
    loop = asyncio.get_running_loop()
    seen = Reported()
    previous = loop.get_exception_handler()

    def handler(_: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.contexts.append(context)
        seen.arrived.set()

    loop.set_exception_handler(handler)
    try:
        yield seen
    finally:
        loop.set_exception_handler(previous)


PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}


async def test_on_next_raising_without_on_error_is_reported_at_once(reported: Reported) -> None:
    from anthropic_rx import testing

    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("one", " two", " three"), tokens_per_second=200)
    boom = ValueError("subscriber bug")

    def on_text(event: arx.MessageStreamEvent) -> None:
        if event.type == "content_block_delta":
            raise boom

    async with fake.client(max_retries=0) as client:
        client.stream(**PARAMS).subscribe(on_next=on_text)
        context = await reported.first()
        await fake.wait_closed()
    assert context["exception"] is boom
    assert "on_text" in context["message"]
    assert "on_error" in context["message"]
    assert fake.open_streams == 0
    assert fake.disconnects == 1  # the response was closed before its end
    assert len(reported.contexts) == 1


async def test_an_http_error_without_on_error_is_reported(reported: Reported) -> None:
    from anthropic_rx import testing

    fake = testing.FakeAnthropic()
    fake.add_error(404, "not_found_error", "model: claude-test")

    def on_event(_: arx.MessageStreamEvent) -> None:
        pass

    async with fake.client(max_retries=0) as client:
        client.stream(**PARAMS).subscribe(on_next=on_event)
        context = await reported.first()
    assert isinstance(context["exception"], arx.NotFoundError)
    assert "on_event" in context["message"]


async def test_on_next_raising_over_an_async_source_is_reported(reported: Reported) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_tool_use")))
    boom = RuntimeError("subscriber bug")

    def on_next(_: arx.MessageStreamEvent) -> None:
        raise boom

    arx.from_sse_bytes(STREAMING["async generator"](recorder)).subscribe(on_next)
    context = await reported.first()
    assert context["exception"] is boom
    assert "on_next" in context["message"]
    await asyncio.sleep(0)
    assert recorder.closed
    assert recorder.read == 1


async def test_a_subscriber_with_on_error_is_not_reported(reported: Reported) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_tool_use")))
    boom = RuntimeError("subscriber bug")

    def on_next(_: arx.MessageStreamEvent) -> None:
        raise boom

    errors: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
    arx.from_sse_bytes(STREAMING["async generator"](recorder)).subscribe(on_next, errors.set_result)
    assert await asyncio.wait_for(errors, timeout=2) is boom
    await asyncio.sleep(0)
    assert recorder.closed
    assert reported.contexts == []


async def test_a_raising_on_error_is_reported(reported: Reported) -> None:
    recorder = Recorder(frames(fixture_bytes("docs_tool_use"))[:-1])
    broken = KeyError("in on_error")

    def on_error(_: Exception) -> None:
        raise broken

    arx.from_sse_bytes(STREAMING["async generator"](recorder)).subscribe(on_error=on_error)
    context = await reported.first()
    assert context["exception"] is broken
    assert "test_a_raising_on_error_is_reported.<locals>.on_error" in context["message"]
    assert "IncompleteStreamError" in context["message"]  # what on_error was handling


def test_a_synchronous_source_still_raises_into_subscribe() -> None:
    boom = ValueError("subscriber bug")

    def on_next(_: arx.MessageStreamEvent) -> None:
        raise boom

    with pytest.raises(ValueError, match="subscriber bug"):
        arx.from_sse_bytes(fixture_bytes("docs_basic_text")).subscribe(on_next)
