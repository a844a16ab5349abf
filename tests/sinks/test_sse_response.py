"""``sinks.sse_response`` over real loopback HTTP: uvicorn serves, httpx and raw sockets read."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import reactivex
from hypothesis import given, settings
from hypothesis import strategies as st
from reactivex import operators as rx_ops
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import anthropic_rx as arx
from anthropic_rx import operators as ops
from anthropic_rx import testing
from anthropic_rx.sinks._broadcast import (
    Broadcast,
    BroadcastSubscription,
    ChannelNotFound,
    ResumeError,
)
from anthropic_rx.sinks._sse import sse_response

from ..conftest import FIXTURE_FILES
from ._server import (
    Frame,
    RawClient,
    data_frames,
    eventually,
    parse_sse,
    raw_request,
    serve,
    serve_in_thread,
)

KEY = "sk-ant-api03-MARKERmarker_0123456789abcdef"
PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hi"}],
}
Handler = Callable[[Request], Response]


def app_of(handler: Handler, methods: tuple[str, ...] = ("GET", "POST")) -> Starlette:
    async def endpoint(request: Request) -> Response:
        return handler(request)

    return Starlette(routes=[Route("/sse", endpoint, methods=list(methods))])


def client_for(base_url: str, **options: Any) -> arx.Client:
    options.setdefault("max_retries", 0)
    return arx.Client(base_url=base_url, api_key=KEY, **options)


def events_of(reply: testing.Reply) -> list[arx.MessageStreamEvent]:
    received: list[arx.MessageStreamEvent] = []
    arx.from_sse_bytes(reply.to_sse()).subscribe(received.append)
    return received


async def get_all(
    url: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[httpx.Response, bytes]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.request(method, url, headers=headers)
        return response, response.content


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    return testing.FakeAnthropic()


# --- headers, retry, ids, pings ----------------------------------------------------------------


async def test_headers_retry_line_ids_and_done_over_httpx(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(testing.Reply(input_tokens=4).text("Hello", ", world").stop(output_tokens=2))
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS))

        async with serve(app_of(handler)) as server:
            response, body = await get_all(server.url + "/sse")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert body.startswith(b"retry: 1000\n\n")
    frames = parse_sse(body)
    assert [(f.id, f.event, f.data) for f in frames[1:]] == [
        ("2", None, '{"text":"Hello"}'),
        ("3", None, '{"text":", world"}'),
        ("7", "done", '{"stop_reason":"end_turn","usage":{"input_tokens":4,"output_tokens":2}}'),
    ]
    assert fake.open_streams == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_raw_socket_sees_strict_frames(fake: testing.FakeAnthropic, method: str) -> None:
    fake.add_stream(testing.text_reply("a\n\ndata: x", "b\r\n", "\u2028</script>"))
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS), retry=2.5)

        async with serve(app_of(handler)) as server:
            raw = await RawClient.open(server.port, "/sse", method=method, body=b"{}")
            frames = await raw.read_to_end()
            await raw.close()
    assert raw.status == 200
    assert frames[0] == Frame(retry="2500", raw=b"retry: 2500")
    texts = [json.loads(f.data or "")["text"] for f in data_frames(frames)[:-1]]
    assert texts == ["a\n\ndata: x", "b\r\n", "\u2028</script>"]
    assert all(f.id is not None for f in data_frames(frames))


async def test_pings_while_waiting_for_the_first_event_and_on_silence(
    fake: testing.FakeAnthropic,
) -> None:
    reply = testing.text_reply("one", "two")
    body = reply.to_sse()
    first_delta_end = body.index(b"\n\n", body.index(b"content_block_delta")) + 2
    fake.add_stream(reply, latency=0.7, stall_after=first_delta_end, stall_for=0.7)
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS), ping=0.2)

        async with serve(app_of(handler)) as server:
            _, body = await get_all(server.url + "/sse")
    frames = parse_sse(body)[1:]
    kinds = ["ping" if f.comment == "ping" else f.data for f in frames]
    first = kinds.index('{"text":"one"}')
    second = kinds.index('{"text":"two"}')
    assert kinds[:first].count("ping") >= 2  # before the first event
    assert kinds[first:second].count("ping") >= 2  # during the stall
    assert all(f.id is None and f.data is None for f in frames if f.comment == "ping")


# --- format="text": endings ----------------------------------------------------------------


async def test_text_cancelled_by_take_until_cancel(fake: testing.FakeAnthropic) -> None:
    words = [f"word{i} " for i in range(50)]
    fake.add_stream(testing.Reply(input_tokens=3).text(*words), tokens_per_second=200)
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            token = arx.CancelToken()
            deltas = 0

            def count(event: arx.MessageStreamEvent) -> None:
                nonlocal deltas
                if isinstance(event, arx.ContentBlockDeltaEvent):
                    deltas += 1
                    if deltas == 3:
                        token.cancel()

            events = client.stream(**PARAMS).pipe(rx_ops.do_action(count))
            return sse_response(events.pipe(ops.take_until_cancel(token)))

        async with serve(app_of(handler)) as server:
            _, body = await get_all(server.url + "/sse")
            await fake.wait_closed(1.0)
    frames = data_frames(parse_sse(body))
    # The third delta fires the token before it passes: two deltas, four events, got through.
    assert [json.loads(f.data or "")["text"] for f in frames[:-1]] == words[:2]
    last = frames[-1]
    assert (last.event, last.id) == ("cancelled", "4")
    chars = len("".join(words[:2]))
    assert json.loads(last.data or "") == {
        "usage": {"input_tokens": 3, "output_tokens": math.ceil(chars / 4)},
        "usage_estimated": True,
    }
    assert [f.event for f in frames].count("cancelled") == 1


async def test_in_stream_error_event_is_the_one_error_terminal(
    fake: testing.FakeAnthropic,
) -> None:
    fake.add_stream(testing.text_reply("a", "b", "c"), error_after=(4, "overloaded_error", "Busy"))
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS))

        async with serve(app_of(handler)) as server:
            response, body = await get_all(server.url + "/sse")
    frames = data_frames(parse_sse(body))
    assert response.status_code == 200
    assert [f.event for f in frames] == [None, None, "error"]
    assert frames[-1].id == "4"
    assert json.loads(frames[-1].data or "") == {"type": "overloaded_error", "message": "Busy"}


@pytest.mark.parametrize(
    ("status", "error_type"), [(529, "overloaded_error"), (400, "invalid_request_error")]
)
async def test_error_before_the_first_event_is_an_error_frame_in_a_200(
    fake: testing.FakeAnthropic, status: int, error_type: str
) -> None:
    fake.add_error(status, message="nope")
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS))

        async with serve(app_of(handler)) as server:
            response, body = await get_all(server.url + "/sse")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    frames = data_frames(parse_sse(body))
    assert [(f.id, f.event) for f in frames] == [("0", "error")]
    assert json.loads(frames[0].data or "") == {"type": error_type, "message": "nope"}


@pytest.mark.parametrize(
    ("plan", "error_type"),
    [
        ({"truncate_after": 200}, "IncompleteStreamError"),
        ({"disconnect_after": 200}, "APIConnectionError"),
    ],
)
async def test_library_errors_are_named_by_their_class(
    fake: testing.FakeAnthropic, plan: dict[str, Any], error_type: str
) -> None:
    fake.add_stream(testing.text_reply("a", "b", "c"), **plan)
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS))

        async with serve(app_of(handler)) as server:
            _, body = await get_all(server.url + "/sse")
    last = data_frames(parse_sse(body))[-1]
    assert last.event == "error"
    assert json.loads(last.data or "")["type"] == error_type


async def test_an_internal_error_is_hidden_from_the_browser_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def handler(request: Request) -> Response:
        return sse_response(reactivex.throw(RuntimeError(f"database password {KEY}")))

    with caplog.at_level(logging.ERROR, logger="anthropic_rx.sinks"):
        async with serve(app_of(handler)) as server:
            _, body = await get_all(server.url + "/sse")
    frames = data_frames(parse_sse(body))
    assert [(f.id, f.event) for f in frames] == [("0", "error")]
    assert json.loads(frames[0].data or "") == {
        "type": "internal_error",
        "message": "internal server error",
    }
    assert b"password" not in body and b"Traceback" not in body
    logged = [r for r in caplog.records if r.name == "anthropic_rx.sinks"]
    assert logged and logged[0].exc_info is not None


@pytest.mark.parametrize("where", ["http_error", "in_stream"])
async def test_the_api_key_never_reaches_the_browser(
    fake: testing.FakeAnthropic, where: str
) -> None:
    if where == "http_error":
        fake.add_error(401, "authentication_error", f"invalid x-api-key {KEY}")
    else:
        fake.add_stream(testing.text_reply("a"), error_after=(3, "api_error", f"bad {KEY}"))
    async with fake.serve() as base, client_for(base) as client:

        def handler(request: Request) -> Response:
            return sse_response(client.stream(**PARAMS))

        async with serve(app_of(handler)) as server:
            _, body = await get_all(server.url + "/sse")
    assert b"MARKER" not in body
    assert data_frames(parse_sse(body))[-1].event == "error"


# --- broadcast subscriptions and Last-Event-ID ---------------------------------------------


def subscription(
    items: list[Broadcast],
    *,
    error: Exception | None = None,
    delay: float = 0.0,
    follow: bool = False,
    last_event_id: str | None = None,
    closed: list[bool] | None = None,
) -> BroadcastSubscription:
    """A hand-built ``hub.subscribe(...)``: ``items``, then completion, ``error``, or (``follow``)
    waiting for more forever; ``closed`` records that the subscription was let go."""

    async def entries() -> AsyncIterator[Broadcast]:
        try:
            if delay:
                await asyncio.sleep(delay)
            for item in items:
                yield item
            if error is not None:
                raise error
            if follow:
                await asyncio.Event().wait()
        finally:
            if closed is not None:
                closed.append(True)

    def subscribe(observer: Any, scheduler: Any = None) -> Any:
        return arx.from_async_iterable(entries()).subscribe(observer, scheduler=scheduler)

    sub = BroadcastSubscription(subscribe)
    sub.channel = "conversation.1"
    sub.last_event_id = last_event_id
    return sub


def logged(reply: testing.Reply, first_id: int = 1) -> list[Broadcast]:
    return [Broadcast(id=str(first_id + n), event=e) for n, e in enumerate(events_of(reply))]


async def serve_one(
    response: Callable[[], Response], **request: Any
) -> tuple[httpx.Response, bytes]:
    async with serve(app_of(lambda _: response())) as server:
        return await get_all(server.url + "/sse", **request)


async def test_a_broadcast_is_framed_with_its_ids_and_terminal_entry() -> None:
    usage = arx.Usage(input_tokens=1, output_tokens=2)
    items = [
        *logged(testing.text_reply("a", "b")),
        Broadcast(id="8", end="done", stop_reason="end_turn", usage=usage),
    ]
    response, body = await serve_one(lambda: sse_response(subscription(items)))
    assert response.status_code == 200
    frames = data_frames(parse_sse(body))
    assert [(f.id, f.event) for f in frames] == [("3", None), ("4", None), ("8", "done")]


async def test_a_broadcast_error_terminal_then_the_subscription_error_is_one_terminal() -> None:
    items = [
        *logged(testing.text_reply("a").error("overloaded_error", "Busy")),
        Broadcast(id="9", end="error", error_type="overloaded_error", error_message="Busy"),
    ]
    error = arx.OverloadedError("Busy", error_type="overloaded_error")
    _, body = await serve_one(lambda: sse_response(subscription(items, error=error)))
    terminals = [f for f in data_frames(parse_sse(body)) if f.event]
    assert [(f.id, f.event) for f in terminals] == [("9", "error")]
    assert json.loads(terminals[0].data or "") == {"type": "overloaded_error", "message": "Busy"}


async def test_an_unknown_channel_is_204() -> None:
    response, body = await serve_one(
        lambda: sse_response(subscription([], error=ChannelNotFound("conversation.1")))
    )
    assert (response.status_code, body) == (204, b"")


async def test_a_resume_after_the_end_is_204() -> None:
    response, body = await serve_one(lambda: sse_response(subscription([], last_event_id="9")))
    assert (response.status_code, body) == (204, b"")


async def test_a_resume_error_is_a_200_with_one_error_frame() -> None:
    sub = subscription([], error=ResumeError("id 3 is gone"), last_event_id="3")
    response, body = await serve_one(lambda: sse_response(sub))
    assert response.status_code == 200
    frames = data_frames(parse_sse(body))
    assert [(f.id, f.event) for f in frames] == [("3", "error")]
    assert json.loads(frames[0].data or "")["type"] == "resume_error"


async def test_a_slow_first_notification_starts_the_200() -> None:
    items = [*logged(testing.text_reply("a")), Broadcast(id="9", end="done")]
    started = time.monotonic()
    async with serve(app_of(lambda _: sse_response(subscription(items, delay=0.9)))) as server:
        async with httpx.AsyncClient(timeout=5) as http:
            async with http.stream("GET", server.url + "/sse") as response:
                headers_after = time.monotonic() - started
                body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert response.status_code == 200
    assert headers_after < 0.85  # the wait for the first notification is bounded
    assert data_frames(parse_sse(body))[-1].event == "done"


async def test_a_direct_reply_asked_with_last_event_id_is_204_without_a_request(
    fake: testing.FakeAnthropic,
) -> None:
    async with fake.serve() as base, client_for(base) as client:
        response, body = await serve_one(
            lambda: sse_response(client.stream(**PARAMS)), headers={"Last-Event-ID": "4"}
        )
    assert (response.status_code, body) == (204, b"")
    assert fake.requests == []


async def test_a_broadcast_with_last_event_id_is_served() -> None:
    items = [*logged(testing.text_reply("a"), first_id=5), Broadcast(id="20", end="done")]
    sub = subscription(items[3:], last_event_id="7")
    response, body = await serve_one(lambda: sse_response(sub), headers={"Last-Event-ID": "7"})
    assert response.status_code == 200
    assert [f.id for f in data_frames(parse_sse(body))] == ["20"]


async def test_leaving_a_broadcast_ends_only_that_subscription_even_detached() -> None:
    closed: list[bool] = []
    sub = subscription(logged(testing.text_reply("a", "b")), follow=True, closed=closed)
    async with serve(app_of(lambda _: sse_response(sub, on_disconnect="detach"))) as server:
        raw = await RawClient.open(server.port, "/sse")
        await raw.read_head()
        await raw.read_until(lambda frames: len(data_frames(frames)) == 2)
        await raw.close()
        await eventually(lambda: bool(closed), 1.0)
    assert closed == [True]


# --- format="events" -------------------------------------------------------------------------


async def outcome(events: reactivex.Observable[arx.MessageStreamEvent]) -> Any:
    """The final message's dump, or the error's class and message."""
    try:
        message = await arx.final_message(events)
    except arx.AnthropicRxError as exc:
        return type(exc).__name__, getattr(exc, "message", str(exc))
    return message.model_dump(mode="json")


async def test_events_round_trip_the_fixtures() -> None:
    sources = {path.stem: path.read_bytes() for path in FIXTURE_FILES}

    def handler(request: Request) -> Response:
        return sse_response(arx.from_sse_bytes(sources[request.query_params["f"]]), format="events")

    async with serve(app_of(handler)) as server:
        for name, data in sources.items():
            _, body = await get_all(f"{server.url}/sse?f={name}")
            parse_sse(body)
            assert await outcome(arx.from_sse_bytes(body)) == await outcome(
                arx.from_sse_bytes(data)
            ), name


async def test_events_round_trip_a_tool_use_and_thinking_reply(
    fake: testing.FakeAnthropic,
) -> None:
    reply = (
        testing.Reply(input_tokens=12)
        .thinking("Let me think", " about\u2028it", signature="sig")
        .text("Hello\n\ndata: x", ", world")
        .tool_use("get_weather", {"city": "Paris\r\n"}, fragment_size=5)
        .stop("tool_use", output_tokens=42)
    )
    fake.add_stream(reply.to_sse(ping_every=3))
    async with fake.serve() as base, client_for(base) as client:
        _, body = await serve_one(lambda: sse_response(client.stream(**PARAMS), format="events"))
    frames = parse_sse(body)
    assert "ping" not in [f.event for f in frames]
    assert [f.comment for f in frames if f.comment] == ["ping"] * (len(reply.events()) // 3)
    message = await arx.final_message(arx.from_sse_bytes(body))
    assert message.model_dump() == reply.message().model_dump()


async def test_events_cancelled_reply_ends_with_a_cancelled_frame(
    fake: testing.FakeAnthropic,
) -> None:
    fake.add_stream(testing.text_reply(*(f"w{i} " for i in range(40))), tokens_per_second=200)
    async with fake.serve() as base, client_for(base) as client:

        def response() -> Response:
            events = client.stream(**PARAMS).pipe(rx_ops.take(4))
            return sse_response(events, format="events")

        _, body = await serve_one(response)
        await fake.wait_closed(1.0)
    last = parse_sse(body)[-1]
    assert (last.event, last.id) == ("cancelled", "4")
    assert json.loads(last.data or "")["type"] == "cancelled"
    with pytest.raises(arx.IncompleteStreamError):
        await arx.final_message(arx.from_sse_bytes(body))


async def test_events_error_is_the_wire_error_frame(fake: testing.FakeAnthropic) -> None:
    fake.add_error(529)
    async with fake.serve() as base, client_for(base) as client:
        _, body = await serve_one(lambda: sse_response(client.stream(**PARAMS), format="events"))
    frames = data_frames(parse_sse(body))
    assert [(f.id, f.event) for f in frames] == [("0", "error")]
    assert json.loads(frames[0].data or "") == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    with pytest.raises(arx.OverloadedError):
        await arx.final_message(arx.from_sse_bytes(body))


# --- format="ai-sdk" -------------------------------------------------------------------------


async def test_ai_sdk_chunks_then_done(fake: testing.FakeAnthropic) -> None:
    from anthropic_rx.sinks._ai_sdk import AiSdkEncoder

    reply = testing.Reply().thinking("hm", signature="s").text("Hi", "!").tool_use("f", {"a": 1})
    events = events_of(reply)
    encoder = AiSdkEncoder()
    expected = [(str(n), c) for n, e in enumerate(events) for c in encoder.event(e)]
    expected += [(str(len(events)), c) for c in encoder.done(reply.message())]
    fake.add_stream(reply)
    async with fake.serve() as base, client_for(base) as client:
        response, body = await serve_one(
            lambda: sse_response(client.stream(**PARAMS), format="ai-sdk")
        )
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    frames = data_frames(parse_sse(body))
    assert frames[-1].data == "[DONE]"
    assert frames[-1].id == str(len(events))
    assert [(f.id, json.loads(f.data or "")) for f in frames[:-1]] == expected
    assert expected[-1][1]["type"] == "finish"


async def test_ai_sdk_error_before_the_first_event(fake: testing.FakeAnthropic) -> None:
    fake.add_error(529)
    async with fake.serve() as base, client_for(base) as client:
        response, body = await serve_one(
            lambda: sse_response(client.stream(**PARAMS), format="ai-sdk")
        )
    assert response.status_code == 200
    frames = data_frames(parse_sse(body))
    assert frames[-1].data == "[DONE]"
    chunks = [json.loads(f.data or "") for f in frames[:-1]]
    assert chunks[-1]["type"] == "error"
    assert "Overloaded" in json.dumps(chunks)


# --- disconnects -----------------------------------------------------------------------------

SLOW_WORDS = [f"w{i} " for i in range(100)]


async def test_leaving_mid_reply_closes_the_model_request_within_a_second(
    fake: testing.FakeAnthropic,
) -> None:
    fake.add_stream(testing.text_reply(*SLOW_WORDS), tokens_per_second=20)
    async with fake.serve() as base, client_for(base) as client:
        app = app_of(lambda _: sse_response(client.stream(**PARAMS)))
        async with serve(app) as server:
            raw = await RawClient.open(server.port, "/sse")
            await raw.read_head()
            await raw.read_until(lambda frames: len(data_frames(frames)) == 3)
            assert fake.open_streams == 1
            left = time.monotonic()
            await raw.close()
            await fake.wait_closed(1.0)
            assert time.monotonic() - left < 1.0
    assert fake.disconnects == 1


async def test_leaving_while_the_first_event_is_awaited_closes_the_model_request(
    fake: testing.FakeAnthropic,
) -> None:
    fake.add_stream(testing.text_reply("late"), delay=10)
    async with fake.serve() as base, client_for(base) as client:
        app = app_of(lambda _: sse_response(client.stream(**PARAMS), ping=0.1))
        async with serve(app) as server:
            raw = await RawClient.open(server.port, "/sse")
            await raw.read_head()
            await raw.read_until(lambda frames: any(f.comment == "ping" for f in frames))
            assert fake.open_streams == 1
            await raw.close()
            await fake.wait_closed(1.0)
    assert fake.disconnects == 1


async def test_detach_reads_the_source_to_its_end(fake: testing.FakeAnthropic) -> None:
    reply = testing.text_reply(*SLOW_WORDS[:30])
    fake.add_stream(reply, tokens_per_second=100)
    seen: list[arx.MessageStreamEvent] = []
    async with fake.serve() as base, client_for(base) as client:
        events = client.stream(**PARAMS).pipe(rx_ops.do_action(seen.append))
        app = app_of(lambda _: sse_response(events, on_disconnect="detach"))
        async with serve(app) as server:
            raw = await RawClient.open(server.port, "/sse")
            await raw.read_head()
            await raw.read_until(lambda frames: len(data_frames(frames)) == 2)
            await raw.close()
            await eventually(lambda: len(seen) == len(reply.events()), 3.0)
            await fake.wait_closed(1.0)
    assert [e.type for e in seen][-1] == "message_stop"
    assert fake.disconnects == 0


async def test_a_client_that_stops_reading_is_bounded_and_dropped(
    fake: testing.FakeAnthropic,
) -> None:
    # 24 MB: more than the kernel's socket buffers and the client's read-ahead can hold.
    deltas = 12_000
    reply = testing.text_reply(*("x" * 2000 for _ in range(deltas)))
    fake.add_stream(reply)
    pulled = 0

    def count(_: object) -> None:
        nonlocal pulled
        pulled += 1

    async with fake.serve() as base, client_for(base) as client:
        events = client.stream(**PARAMS).pipe(rx_ops.do_action(count))
        app = app_of(lambda _: sse_response(events, send_timeout=0.5))
        async with serve(app) as server:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            try:
                loop = asyncio.get_running_loop()
                await loop.sock_connect(sock, ("127.0.0.1", server.port))
                await loop.sock_sendall(sock, b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
                started = time.monotonic()
                await eventually(lambda: fake.open_streams == 1, 2.0)
                await fake.wait_closed(5.0)  # never read: dropped after send_timeout
                elapsed = time.monotonic() - started
            finally:
                sock.close()
    assert fake.disconnects == 1
    # Paced: what was pulled fits in the server's socket send buffer (the kernel's, at most
    # tcp_wmem's maximum) and a few hundred kilobytes of the library's and uvicorn's buffers.
    assert pulled * 2000 < _max_send_buffer() + 1_000_000, pulled
    assert elapsed < 3.0
    print(f"events pulled before the drop: {pulled} of {deltas + 5}; dropped after {elapsed:.2f} s")


def _max_send_buffer() -> int:
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
            return int(wmem.read().split()[2])
    except OSError:
        return 4 * 1024 * 1024


async def test_gzip_middleware_does_not_hold_frames_back(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(testing.text_reply(*SLOW_WORDS[:10]), tokens_per_second=10)
    async with fake.serve() as base, client_for(base) as client:
        app = GZipMiddleware(app_of(lambda _: sse_response(client.stream(**PARAMS))), 10)
        async with serve(app) as server, httpx.AsyncClient(timeout=5) as http:
            started = time.monotonic()
            request = http.stream("GET", server.url + "/sse", headers={"Accept-Encoding": "gzip"})
            async with request as response:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if data_frames(parse_sse(body, complete=False)):
                        break
                first_frame = time.monotonic() - started
    assert "content-encoding" not in response.headers
    assert first_frame < 0.6  # the reply takes a second


async def test_server_shutdown_ends_open_responses_and_closes_model_requests(
    fake: testing.FakeAnthropic,
) -> None:
    fake.add_stream(testing.text_reply(*SLOW_WORDS), tokens_per_second=20)
    async with fake.serve() as base, client_for(base) as client:
        async with serve(app_of(lambda _: sse_response(client.stream(**PARAMS)))) as server:
            raw = await RawClient.open(server.port, "/sse")
            await raw.read_head()
            await raw.read_until(lambda frames: len(data_frames(frames)) == 2)
            server.server.should_exit = True
            started = time.monotonic()
            frames = await raw.read_to_end(timeout=2.0)
            ended = time.monotonic() - started
            await raw.close()
            await fake.wait_closed(1.0)
    assert ended < 2.0
    assert 2 <= len(data_frames(frames)) < len(SLOW_WORDS)


async def test_head_subscribes_nothing(fake: testing.FakeAnthropic) -> None:
    async with fake.serve() as base, client_for(base) as client:
        app = app_of(lambda _: sse_response(client.stream(**PARAMS)), methods=("GET",))
        async with serve(app) as server, httpx.AsyncClient(timeout=5) as http:
            response = await http.head(server.url + "/sse")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert fake.requests == []


def test_invalid_options_are_refused_at_the_call() -> None:
    events = arx.from_sse_bytes(b"")
    with pytest.raises(ValueError, match="format"):
        sse_response(events, format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_disconnect"):
        sse_response(events, on_disconnect="ignore")  # type: ignore[arg-type]
    for name in ("ping", "send_timeout", "retry"):
        negative: dict[str, Any] = {name: -1.0}
        with pytest.raises(ValueError, match=name):
            sse_response(events, **negative)
    with pytest.raises(TypeError, match="Observable"):
        sse_response([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"x-id": "1\r\nSet-Cookie: a=b"}, "line break"),
        ({"x-id": "1\n\ndata: injected"}, "line break"),
        ({"x-id": "a\x00b"}, "NUL"),
        ({"x-id": "a\x7fb"}, "control"),
        ({"x-id": "caf\u00e9"}, "not ASCII"),
        ({"x id": "1"}, "token"),
        ({"x-id:": "1"}, "token"),
        ({"Content-Type": "text/html"}, "own"),
        ({"transfer-encoding": "identity"}, "own"),
    ],
)
def test_header_values_that_could_split_the_head_are_refused(
    headers: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        sse_response(arx.from_sse_bytes(b""), headers=headers)


async def test_extra_headers_reach_the_browser(fake: testing.FakeAnthropic) -> None:
    fake.add_stream(testing.text_reply("hi"))
    async with fake.serve() as base, client_for(base) as client:

        async def route(request: Request) -> Response:
            return sse_response(
                client.stream(**PARAMS),
                headers={"X-Conversation": "c-1", "Cache-Control": "no-store"},
            )

        app = Starlette(routes=[Route("/chat", route)])
        async with serve(app) as running, httpx.AsyncClient() as http:
            response = await http.get(f"{running.url}/chat")
    assert response.headers["x-conversation"] == "c-1"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"


# --- frameworks ------------------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["fastapi", "starlette"])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_works_from_fastapi_and_starlette_routes(
    fake: testing.FakeAnthropic, framework: str, method: str
) -> None:
    fake.add_stream(testing.text_reply("hi"))
    async with fake.serve() as base, client_for(base) as client:
        if framework == "fastapi":
            from fastapi import FastAPI

            api = FastAPI()

            @api.api_route("/sse", methods=[method])
            async def route() -> Response:
                return sse_response(client.stream(**PARAMS))

            app: Any = api
        else:
            app = app_of(lambda _: sse_response(client.stream(**PARAMS)), methods=(method,))
        async with serve(app) as server:
            response, body = await get_all(server.url + "/sse", method=method)
    assert response.status_code == 200
    assert [f.event for f in data_frames(parse_sse(body))] == [None, "done"]


# --- framing, property-tested over HTTP ------------------------------------------------------

HOSTILE = ["\n", "\r", "\r\n", "\u2028", "\u2029", "\x85", "\n\ndata: x", "</script>", "a", "é"]


@pytest.fixture(scope="module")
def text_server() -> Iterator[int]:
    async def endpoint(request: Request) -> Response:
        parts = json.loads(await request.body())
        source = arx.from_sse_bytes(testing.text_reply(*parts).to_sse())
        format: Any = request.query_params.get("format", "text")
        return sse_response(source, format=format)

    app = Starlette(routes=[Route("/sse", endpoint, methods=["POST"])])
    with serve_in_thread(app) as server:
        yield server.port


@settings(max_examples=40, deadline=None)
@given(
    parts=st.lists(
        st.one_of(st.text(max_size=20), st.lists(st.sampled_from(HOSTILE)).map("".join)),
        max_size=6,
    ),
    format=st.sampled_from(["text", "events"]),
)
def test_no_text_can_add_end_or_split_a_frame(
    text_server: int, parts: list[str], format: str
) -> None:
    status, _, body = raw_request(
        text_server, f"/sse?format={format}", method="POST", body=json.dumps(parts).encode()
    )
    assert status == 200
    frames = data_frames(parse_sse(body))
    assert all(f.id is not None for f in frames)
    if format == "text":
        assert [json.loads(f.data or "")["text"] for f in frames[:-1]] == parts
        assert frames[-1].event == "done"
    else:
        texts = [
            json.loads(f.data or "")["delta"]["text"]
            for f in frames
            if f.event == "content_block_delta"
        ]
        assert texts == parts


# --- with the memory broadcaster -------------------------------------------------------------


async def test_memory_broadcaster_replay_then_resume_after_the_end_is_204() -> None:
    from anthropic_rx.sinks import MemoryBroadcaster

    hub = MemoryBroadcaster()
    reply = testing.text_reply("one", " two")
    await hub.publish("c.1", arx.from_sse_bytes(reply.to_sse()))

    def handler(request: Request) -> Response:
        last = request.headers.get("last-event-id")
        return sse_response(hub.subscribe("c.1", last_event_id=last))

    async with serve(app_of(handler)) as server:
        _, body = await get_all(server.url + "/sse")
        frames = data_frames(parse_sse(body))
        assert [f.data for f in frames[:2]] == ['{"text":"one"}', '{"text":" two"}']
        assert frames[-1].event == "done"
        terminal = frames[-1].id or ""
        again, rest = await get_all(server.url + "/sse", headers={"Last-Event-ID": terminal})
        assert (again.status_code, rest) == (204, b"")
        _, part = await get_all(server.url + "/sse", headers={"Last-Event-ID": frames[0].id or ""})
        assert data_frames(parse_sse(part))[0].data == '{"text":" two"}'
        bogus, bad = await get_all(server.url + "/sse", headers={"Last-Event-ID": "not-an-id"})
        assert bogus.status_code == 200
        assert json.loads(data_frames(parse_sse(bad))[0].data or "")["type"] == "resume_error"
    await hub.aclose()


async def test_memory_broadcaster_unknown_channel_is_204() -> None:
    from anthropic_rx.sinks import MemoryBroadcaster

    hub = MemoryBroadcaster()
    response, body = await serve_one(lambda: sse_response(hub.subscribe("nobody")))
    assert (response.status_code, body) == (204, b"")
    await hub.aclose()


async def test_memory_broadcaster_live_reply_reaches_the_browser(
    fake: testing.FakeAnthropic,
) -> None:
    from anthropic_rx.sinks import MemoryBroadcaster

    hub = MemoryBroadcaster()
    fake.add_stream(testing.text_reply(*SLOW_WORDS[:10]), tokens_per_second=50)
    async with fake.serve() as base, client_for(base) as client:
        job = asyncio.create_task(hub.publish("c.2", client.stream(**PARAMS)))
        await eventually(lambda: fake.open_streams == 1, 2.0)
        _, body = await serve_one(lambda: sse_response(hub.subscribe("c.2")))
        await job
    frames = data_frames(parse_sse(body))
    assert "".join(json.loads(f.data or "")["text"] for f in frames[:-1]) == "".join(
        SLOW_WORDS[:10]
    )
    assert frames[-1].event == "done"
    await hub.aclose()
