"""Every exception raised while a request is opened or read reaches the subscriber.

Whatever goes wrong inside the request task — a bug in a custom transport, an httpx or h11
refusal of the request, a failing event hook, a body stream that raises — ends the subscription
with ``on_error`` (never a silent hang), with the response closed. An exception that says the
request itself is wrong is passed as itself and never retried; cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import h11
import httpx
import pytest

import anthropic_rx as arx
from anthropic_rx import testing

PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello"}],
}


class TransportBug(Exception):
    """An exception type no library knows."""


class RaisingTransport(httpx.AsyncBaseTransport):
    """A transport whose every request raises ``make()``; counts the requests."""

    def __init__(self, make: Callable[[httpx.Request], BaseException]) -> None:
        self.make = make
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise self.make(request)


def unicode_error(_: httpx.Request) -> BaseException:
    return UnicodeEncodeError("ascii", "café", 3, 4, "ordinal not in range(128)")


# What a transport may raise, and what the subscriber must get: the same exception, untouched.
RAISED: list[tuple[Callable[[httpx.Request], BaseException], type[BaseException]]] = [
    (lambda _: RuntimeError("bug in a custom transport"), RuntimeError),
    (lambda _: TransportBug("unknown to everyone"), TransportBug),
    (lambda _: TypeError("bad argument inside the transport"), TypeError),
    (lambda _: KeyError("missing"), KeyError),
    (unicode_error, UnicodeEncodeError),
    (lambda _: h11.LocalProtocolError("Illegal header value b'v\\r\\n'"), h11.LocalProtocolError),
    (
        lambda r: httpx.LocalProtocolError("Illegal header value", request=r),
        httpx.LocalProtocolError,
    ),
    (lambda r: httpx.UnsupportedProtocol("no such scheme", request=r), httpx.UnsupportedProtocol),
    (lambda _: httpx.InvalidURL("Invalid non-printable ASCII character in URL"), httpx.InvalidURL),
]
RAISED_IDS = [expected.__name__ for _, expected in RAISED]


async def final_message_within(events: Any, seconds: float = 2.0) -> arx.Message:
    async with asyncio.timeout(seconds):
        return await arx.final_message(events)


async def iterate_within(events: Any, seconds: float = 2.0) -> list[Any]:
    async with asyncio.timeout(seconds):
        return [event async for event in arx.to_async_iterator(events)]


@pytest.mark.parametrize(("make", "expected"), RAISED, ids=RAISED_IDS)
async def test_a_transport_exception_reaches_final_message_and_is_never_retried(
    make: Callable[[httpx.Request], BaseException], expected: type[BaseException]
) -> None:
    transport = RaisingTransport(make)
    async with arx.Client(transport=transport, max_retries=3) as client:
        with pytest.raises(expected):
            await final_message_within(client.stream(**PARAMS))
    # Not a network failure: retrying cannot help, and is not done.
    assert transport.calls == 1


@pytest.mark.parametrize(("make", "expected"), RAISED, ids=RAISED_IDS)
async def test_a_transport_exception_reaches_to_async_iterator(
    make: Callable[[httpx.Request], BaseException], expected: type[BaseException]
) -> None:
    async with arx.Client(transport=RaisingTransport(make), max_retries=0) as client:
        with pytest.raises(expected):
            await iterate_within(client.stream(**PARAMS))


async def test_a_transport_exception_reaches_a_plain_subscriber() -> None:
    async with arx.Client(
        transport=RaisingTransport(lambda _: RuntimeError("bug")), max_retries=0
    ) as client:
        errors: list[Exception] = []
        failed = asyncio.Event()

        def on_error(error: Exception) -> None:
            errors.append(error)
            failed.set()

        client.stream(**PARAMS).subscribe(on_error=on_error)
        async with asyncio.timeout(2):
            await failed.wait()
    assert [type(error) for error in errors] == [RuntimeError]
    assert str(errors[0]) == "bug"


async def test_network_errors_are_still_connection_errors_and_retried() -> None:
    """The control: a real transport error keeps its meaning (retried, then typed)."""
    transport = RaisingTransport(lambda r: httpx.ConnectError("refused", request=r))
    async with arx.Client(transport=transport, max_retries=1) as client:
        with pytest.raises(arx.APIConnectionError) as caught:
            await final_message_within(client.stream(**PARAMS), seconds=5)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert transport.calls == 2


class FailingBuild(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose request cannot be built (as a non-ASCII header once did)."""

    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        raise UnicodeEncodeError("ascii", "café", 3, 4, "ordinal not in range(128)")


async def test_an_exception_building_the_request_reaches_the_subscriber() -> None:
    async with FailingBuild() as http:
        client = arx.Client(http_client=http, max_retries=2)
        with pytest.raises(UnicodeEncodeError):
            await final_message_within(client.stream(**PARAMS))
        with pytest.raises(UnicodeEncodeError):
            await iterate_within(client.stream(**PARAMS))


async def test_a_failing_request_hook_reaches_the_subscriber() -> None:
    fake = testing.FakeAnthropic()

    async def hook(request: httpx.Request) -> None:
        raise RuntimeError("request hook failed")

    async with httpx.AsyncClient(transport=fake.transport, event_hooks={"request": [hook]}) as http:
        client = arx.Client(http_client=http)
        with pytest.raises(RuntimeError, match="request hook failed"):
            await final_message_within(client.stream(**PARAMS))
    assert fake.requests == []


async def test_a_failing_response_hook_reaches_the_subscriber_and_the_response_closes() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply(*(["tick "] * 50)), tokens_per_second=100)

    async def hook(response: httpx.Response) -> None:
        raise TransportBug("response hook failed")

    async with fake.serve() as base_url:
        async with httpx.AsyncClient(event_hooks={"response": [hook]}) as http:
            client = arx.Client(base_url=base_url, http_client=http)
            with pytest.raises(TransportBug):
                await final_message_within(client.stream(**PARAMS))
            await fake.wait_closed()
    assert fake.open_streams == 0
    assert len(fake.requests) == 1


class BreakingBody(httpx.AsyncByteStream):
    """A body that yields ``good`` and then raises ``error`` (or waits for ever, with
    ``hang``); counts its closes."""

    def __init__(self, good: bytes, error: BaseException | None, *, hang: bool = False) -> None:
        self.good = good
        self.error = error
        self.hang = hang
        self.closed = 0
        self.waiting = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.good
        if self.hang:
            self.waiting.set()
            await asyncio.Event().wait()
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed += 1


class BodyTransport(httpx.AsyncBaseTransport):
    """Answers every request with ``body``, as an event stream unless told otherwise."""

    def __init__(
        self,
        body: httpx.AsyncByteStream,
        status: int = 200,
        content_type: str = "text/event-stream",
    ) -> None:
        self.body = body
        self.status = status
        self.content_type = content_type

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            self.status,
            headers={"content-type": self.content_type},
            stream=self.body,
            request=request,
        )


START = (
    b"event: message_start\ndata: "
    b'{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant",'
    b'"model":"m","content":[],"stop_reason":null,"usage":{"input_tokens":1,"output_tokens":0}}}'
    b"\n\n"
)


@pytest.mark.parametrize(
    "error", [RuntimeError("body bug"), TransportBug("odd"), h11.LocalProtocolError("x")]
)
async def test_a_body_that_raises_mid_stream_reaches_the_subscriber_closed(
    error: Exception,
) -> None:
    body = BreakingBody(START, error)
    async with arx.Client(transport=BodyTransport(body), max_retries=0) as client:
        with pytest.raises(type(error)):
            await final_message_within(client.stream(**PARAMS))
    assert body.closed == 1


class CloseFails(BreakingBody):
    async def aclose(self) -> None:
        await super().aclose()
        raise RuntimeError("close failed")


def request_tasks() -> set[asyncio.Task[Any]]:
    """The client's request tasks alive on this loop."""
    return {
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "Client._run"
    }


@pytest.mark.parametrize(
    ("status", "content_type", "first"),
    [
        (200, "text/event-stream", START),  # cancelled while reading the events
        (500, "application/json", b'{"type":"error",'),  # ... while reading an error body
    ],
    ids=["events", "error-body"],
)
async def test_cancellation_survives_a_close_that_raises(
    status: int, content_type: str, first: bytes
) -> None:
    body = CloseFails(first, None, hang=True)
    transport = BodyTransport(body, status, content_type)
    async with arx.Client(transport=transport, max_retries=0) as client:
        consumer = asyncio.create_task(final_message_within(client.stream(**PARAMS)))
        async with asyncio.timeout(2):
            await body.waiting.wait()
        (reading,) = request_tasks()
        consumer.cancel()
        async with asyncio.timeout(2):
            with pytest.raises(asyncio.CancelledError):
                await consumer
            # The request task ends cancelled, not with the close's RuntimeError.
            with pytest.raises(asyncio.CancelledError):
                await reading
    assert body.closed == 1


async def test_cancelling_while_the_transport_is_waiting_is_not_turned_into_an_error() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class Waiting(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
            raise AssertionError("unreachable")

    async with arx.Client(transport=Waiting(), max_retries=0) as client:
        errors: list[Exception] = []
        subscription = client.stream(**PARAMS).subscribe(on_error=errors.append)
        async with asyncio.timeout(2):
            await started.wait()
            subscription.dispose()
            await cancelled.wait()
        await asyncio.sleep(0.01)
    assert errors == []
