"""The API key never leaves the process: not in an exception, a log line, a recording, an SSE
frame, a stored row or a demo response, however the request fails.

Every test runs with a key holding :data:`MARKER` (twice) and fails if the marker shows up
anywhere it looks. The fake API is made hostile where a proxy could be: it echoes the key back
in error bodies and headers. Logs are captured at DEBUG from every logger; exceptions are read
whole: ``str``, ``repr``, notes, ``args``, the ``__cause__``/``__context__`` chain, the meta and
the partial message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import reactivex
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import anthropic_rx as arx
from anthropic_rx import sinks, testing
from anthropic_rx.demo import DemoSettings, create_app
from anthropic_rx.sinks import SSEFormat
from anthropic_rx.sinks._database import DatabaseWriter

from ..sinks._server import serve
from ._common import API_KEY, MARKER, PARAMS

WAIT = 5.0
WORDS = [f"w{n} " for n in range(20)]
FORMATS: list[SSEFormat] = ["text", "events", "ai-sdk"]
_FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


def error_texts(error: BaseException) -> Iterator[str]:
    """Everything an exception shows, down its whole cause and context chain."""
    yield "".join(traceback.format_exception(error))
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        yield from (repr(arg) for arg in current.args)
        yield from getattr(current, "__notes__", ())
        for name in ("partial_message", "meta", "body", "message", "request_id", "error_type"):
            yield repr(getattr(current, name, None))
        if isinstance(current, httpx.HTTPError):
            with contextlib.suppress(RuntimeError):
                yield repr(current.request)
        pending += [current.__cause__, current.__context__]


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Every test captures the log at DEBUG, from every logger (see :func:`logged`)."""
    caplog.set_level(logging.DEBUG)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured log record, formatted with its traceback."""
    return "\n".join(_FORMAT.format(record) for record in caplog.records)


def assert_clean(*texts: str) -> None:
    for text in texts:
        assert MARKER not in text, text[:2000]


def plan(fake: testing.FakeAnthropic, flow: str) -> None:
    """Queue the responses of one failure ``flow`` (the key echoed wherever it can be)."""
    reply = testing.text_reply(*WORDS)
    echo = {"x-echo": API_KEY, "www-authenticate": f'Bearer realm="{API_KEY}"'}
    if flow == "401":
        fake.add_error(401, "authentication_error", f"invalid x-api-key: {API_KEY}", headers=echo)
    elif flow == "529":
        for _ in range(2):  # the retry too
            fake.add_error(
                529,
                "overloaded_error",
                f"busy ({API_KEY})",
                headers={**echo, "retry-after-ms": "1"},
            )
    elif flow == "cut":
        fake.add_stream(reply, headers=echo, disconnect_after=len(reply.to_sse()) // 2)
    elif flow == "truncated":
        fake.add_stream(reply, headers=echo, truncate_after=len(reply.to_sse()) // 2)
    elif flow == "400":
        fake.add_error(400, "invalid_request_error", f"max_tokens: bad, key {API_KEY}")
    elif flow == "html":
        for _ in range(2):  # the retry too
            page = f"<html>bad gateway for {API_KEY}</html>".encode()
            fake.add_response(502, page, headers=echo)
    elif flow == "not-sse":
        fake.add_response(200, f'{{"key": "{API_KEY}"}}'.encode(), content_type="application/json")
    elif flow == "stall":
        fake.add_stream(reply, headers=echo, stall_after=200, stall_for=5.0)
    elif flow == "echoing-error":
        echoing_error(fake)
    else:
        raise AssertionError(flow)


def planned(flow: str, times: int = 1) -> testing.FakeAnthropic:
    """A fake that answers ``times`` requests (retries included) with the failure ``flow``."""
    fake = testing.FakeAnthropic()
    for _ in range(times):
        plan(fake, flow)
    return fake


def echoing_error(fake: testing.FakeAnthropic) -> None:
    """Queue a reply whose stream breaks off with an error event that echoes the key."""
    fake.add_stream(testing.text_reply(*WORDS), error_after=(4, "api_error", f"bad: {API_KEY}"))


async def in_every_format(
    source: Callable[[], reactivex.Observable[Any]],
) -> list[httpx.Response]:
    """GET ``sinks.sse_response(source())`` once in each of :data:`FORMATS`, in order (each
    request within ``WAIT`` seconds, else httpx's TimeoutException): the responses, read whole."""

    async def endpoint(request: Request) -> Response:
        return sinks.sse_response(source(), format=FORMATS[int(request.query_params["format"])])

    app = Starlette(routes=[Route("/sse", endpoint)])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://test", timeout=WAIT
    ) as http:
        return [await http.get("/sse", params={"format": index}) for index in range(len(FORMATS))]


CLIENT_FLOWS = ["401", "529", "cut", "truncated", "400", "html", "not-sse", "stall"]


@pytest.mark.parametrize("over", ["loopback", "memory"])
@pytest.mark.parametrize("flow", CLIENT_FLOWS)
async def test_client_errors_never_show_the_key(
    flow: str, over: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = planned(flow)
    options: dict[str, Any] = {"api_key": API_KEY, "max_retries": 1, "idle_timeout": 0.3}
    errors: list[BaseException] = []
    async with contextlib.AsyncExitStack() as stack:
        if over == "loopback":
            options["base_url"] = await stack.enter_async_context(fake.serve())
        else:
            options["transport"] = fake.transport
        client = await stack.enter_async_context(arx.Client(**options))
        assert_clean(repr(client))
        async with asyncio.timeout(WAIT):
            try:
                await arx.final_message(client.stream(**PARAMS))
            except arx.AnthropicRxError as error:
                errors.append(error)
    assert len(errors) == 1, flow
    assert fake.requests[0].headers["x-api-key"] == API_KEY  # it was sent, where it belongs
    assert_clean(*error_texts(errors[0]), logged(caplog), *map(repr, fake.requests))


async def test_a_refused_connection_never_shows_the_key(caplog: pytest.LogCaptureFixture) -> None:
    with socketless_port() as port:
        async with arx.Client(
            base_url=f"http://127.0.0.1:{port}", api_key=API_KEY, max_retries=1
        ) as client:
            with pytest.raises(arx.APIConnectionError) as caught:
                async with asyncio.timeout(WAIT):
                    await arx.final_message(client.stream(**PARAMS))
    assert_clean(*error_texts(caught.value), logged(caplog))


@contextlib.contextmanager
def socketless_port() -> Iterator[int]:
    """A loopback port nothing listens on (bound, never listening, so nobody takes it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "make",
    [
        lambda: arx.Client(api_key=API_KEY + "\n", base_url="http://127.0.0.1:9"),
        lambda: arx.Client(api_key=API_KEY + "é", base_url="http://127.0.0.1:9"),
        lambda: arx.Client(api_key=API_KEY + "\x00", base_url="http://127.0.0.1:9"),
        lambda: arx.Client(api_key=API_KEY, base_url=f"http://127.0.0.1:9/{API_KEY}\n"),
        lambda: arx.Client(api_key=API_KEY, base_url=f"ftp://{API_KEY}@example"),
        lambda: arx.Client(
            api_key=API_KEY, base_url="http://127.0.0.1:9", default_headers={"x-a": API_KEY + "\r"}
        ),
        lambda: arx.Client(
            api_key=API_KEY, base_url="http://127.0.0.1:9", default_headers={API_KEY + " x": "v"}
        ),
        lambda: arx.Client(api_key=API_KEY, base_url="http://127.0.0.1:9", betas=[API_KEY + "\n"]),
        lambda: arx.Client(api_key=API_KEY, base_url="http://127.0.0.1:9").stream(
            extra_headers={"x-b": f"{API_KEY}\n"}, **PARAMS
        ),
        lambda: arx.Client(api_key=API_KEY, base_url="http://127.0.0.1:9").stream(
            extra_headers={f"{API_KEY}:": "v"}, **PARAMS
        ),
    ],
    ids=[
        "key-newline",
        "key-non-ascii",
        "key-nul",
        "base-url-newline",
        "base-url-scheme",
        "header-value",
        "header-name",
        "beta",
        "extra-header-value",
        "extra-header-name",
    ],
)
def test_refused_options_never_show_the_key(make: Callable[[], object]) -> None:
    with pytest.raises((ValueError, TypeError)) as caught:
        make()
    assert_clean(*error_texts(caught.value))


# --- an error event in the stream that echoes the key ----------------------------------------


async def test_an_error_event_echoing_the_key_is_raised_without_it() -> None:
    fake = planned("echoing-error")
    async with arx.Client(transport=fake.transport, api_key=API_KEY, max_retries=0) as client:
        with pytest.raises(arx.InternalServerError) as caught:
            await arx.final_message(client.stream(**PARAMS))
    assert_clean(*error_texts(caught.value))


# --- recordings ------------------------------------------------------------------------------


async def test_recorded_sse_files_never_hold_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = testing.FakeAnthropic()
    reply = testing.text_reply(*WORDS)
    fake.add_stream(reply, headers={"x-echo": API_KEY})
    fake.add_stream(reply, disconnect_after=300)
    fake.add_stream(reply, truncate_after=300)
    fake.add_stream(reply, error_after=(3, "overloaded_error", "busy"))
    plan(fake, "401")
    recorder = testing.RecordingTransport(tmp_path / "rec", transport=fake.transport)
    async with arx.Client(transport=recorder, api_key=API_KEY, max_retries=0) as client:
        for _ in range(5):
            with contextlib.suppress(arx.AnthropicRxError):
                await arx.final_message(client.stream(**PARAMS))
    files = sorted((tmp_path / "rec").glob("*.sse"))
    assert len(files) == 4 and files == recorder.paths
    for path in files:
        assert MARKER.encode() not in path.read_bytes(), path
    assert_clean(logged(caplog))


# --- SSE frames, the broadcaster, the row ----------------------------------------------------


SSE_FLOWS = ["401", "529", "cut", "truncated", "400", "html", "not-sse", "echoing-error"]


@pytest.mark.parametrize("flow", SSE_FLOWS)
async def test_sse_frames_in_every_format_never_show_the_key(
    flow: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake = planned(flow, times=len(FORMATS))
    bodies: list[str] = []
    async with arx.Client(transport=fake.transport, api_key=API_KEY, max_retries=1) as client:
        responses = await in_every_format(lambda: client.stream(**PARAMS))
    for format, response in zip(FORMATS, responses, strict=True):
        assert response.status_code == 200
        assert "error" in response.text, (format, response.text[-300:])
        bodies += [response.text, repr(response.headers)]
    assert_clean(*bodies, logged(caplog))


@pytest.mark.parametrize("flow", SSE_FLOWS)
async def test_the_broadcast_and_the_row_never_show_the_key(
    flow: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = planned(flow)
    hub = sinks.MemoryBroadcaster()
    writer = DatabaseWriter(f"sqlite+aiosqlite:///{tmp_path}/db")
    await writer.create_all()
    shown: list[str] = []
    try:
        async with arx.Client(transport=fake.transport, api_key=API_KEY, max_retries=1) as client:
            job = await sinks.start_relay(
                client.stream(**PARAMS), hub=hub, channel="c.1", writer=writer, message_id="m1"
            )
            async with asyncio.timeout(WAIT):
                with contextlib.suppress(arx.AnthropicRxError):
                    async for item in arx.to_async_iterator(hub.subscribe("c.1")):
                        shown.append(repr(item))
                with contextlib.suppress(arx.AnthropicRxError):
                    await job
            shown += [
                response.text for response in await in_every_format(lambda: hub.subscribe("c.1"))
            ]
        row = await writer.get("m1")
        assert row is not None and row.status in ("failed", "incomplete")
        shown.append(repr(row))
        # The error a late subscriber rebuilds from the log, with its partial message.
        late: list[BaseException] = []
        async with asyncio.timeout(WAIT):
            try:
                async for _ in arx.to_async_iterator(hub.subscribe("c.1")):
                    pass
            except arx.AnthropicRxError as error:
                late.append(error)
        assert len(late) == 1
        shown += error_texts(late[0])
    finally:
        await writer.aclose()
        await hub.aclose()
    assert_clean(*shown, logged(caplog))


# --- the demo --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def demo_on_the_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, testing.FakeAnthropic]]:
    """The demo in its real-API mode (a key given), pointed at the fake over loopback."""
    fake = testing.FakeAnthropic()
    async with fake.serve() as base_url:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", base_url)
        settings = DemoSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db",
            api_key=API_KEY,
            max_retries=1,
        )
        async with serve(create_app(settings), lifespan="on") as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
                yield http, fake


async def test_the_demo_never_shows_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    flows = SSE_FLOWS
    shown: list[str] = []
    async with demo_on_the_fake(tmp_path, monkeypatch) as (http, fake):

        async def get(path: str, **options: Any) -> httpx.Response:
            response = await http.get(path, **options)
            shown.extend([response.text, repr(response.headers)])
            return response

        await get("/")
        for flow in flows:
            created = await http.post("/api/conversations")
            cid = created.json()["id"]
            plan(fake, flow)
            asked = await http.post(f"/api/conversations/{cid}/messages", json={"content": "hi"})
            shown.extend([created.text, asked.text, repr(asked.headers)])
            assert asked.status_code == 202, asked.text
            async with asyncio.timeout(WAIT):
                while True:
                    await get(f"/api/conversations/{cid}/stream")
                    rows = (await get(f"/api/conversations/{cid}/messages")).json()
                    if rows[-1]["status"] != "streaming":
                        break
            assert rows[-1]["status"] in ("failed", "incomplete"), (flow, rows[-1])
        await get("/api/conversations")
        assert fake.requests and all(r.headers["x-api-key"] == API_KEY for r in fake.requests)
    assert_clean(*shown, logged(caplog))
