"""Input validation of the client: nothing a caller passes can split a request on the wire.

Every hostile value is refused with a ``ValueError`` (``TypeError`` for a wrong type) when the
``Client`` is built or when ``stream()`` is called, and a loopback server proves that not one
connection was opened for it, through the client's own transport and through httpx's.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import anthropic_rx as arx
from anthropic_rx import testing
from anthropic_rx._transport import StreamingTransport

PARAMS: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Hello"}],
}
MARKER = "sk-ant-MARKER-4f0c9d1e2b-never-shown"


class Listener:
    """A loopback TCP server that counts connections and keeps every byte it receives."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            self.received += await reader.read(65536)
        finally:
            writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[tuple[Listener, str]]:
    counted = Listener()
    server = await asyncio.start_server(counted.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield counted, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(params=["own-transport", "httpx-transport"])
async def via(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Client options selecting the transport: the client's own, or httpx's (h11)."""
    if request.param == "own-transport":
        yield {}
        return
    async with httpx.AsyncClient() as http:
        yield {"http_client": http}


async def assert_nothing_reached(listener: Listener) -> None:
    await asyncio.sleep(0.05)  # a connection attempt, had there been one, would have landed
    assert listener.connections == 0
    assert listener.received == b""


# Each value a caller may pass as a header (default_headers / extra_headers), with what the
# refusal must say.
HOSTILE_HEADERS: list[tuple[dict[str, str], str]] = [
    ({"x-a": "v\r\nx-injected: 1"}, "line break"),
    ({"x-a": "v\nx-injected: 1"}, "line break"),
    ({"x-a": "v\rx"}, "line break"),
    ({"x-a": "v\r\n\r\nPOST /v1/other HTTP/1.1"}, "line break"),
    ({"x-a": "v\x00"}, "NUL"),
    ({"x-a": "v\x1bx"}, "control character"),
    ({"x-a": "v\x7f"}, "control character"),
    ({"x-user": "café"}, "not ASCII"),
    ({"x-user": "\u2028"}, "not ASCII"),
    ({"bad name": "v"}, "not a valid header name"),
    ({"x-a\r\nx-b": "v"}, "not a valid header name"),
    ({"x-a:": "v"}, "not a valid header name"),
    ({"": "v"}, "not a valid header name"),
    ({"x-ünï": "v"}, "not a valid header name"),
    ({"Host": "evil.example"}, "set by the HTTP transport"),
    ({"Content-Length": "0"}, "set by the HTTP transport"),
    ({"transfer-encoding": "chunked"}, "set by the HTTP transport"),
    ({"Connection": "close"}, "set by the HTTP transport"),
    ({"upgrade": "websocket"}, "set by the HTTP transport"),
]
HEADER_IDS = [repr(headers)[:40] for headers, _ in HOSTILE_HEADERS]


@pytest.mark.parametrize(("headers", "says"), HOSTILE_HEADERS, ids=HEADER_IDS)
async def test_hostile_default_headers_refused_when_the_client_is_built(
    listener: tuple[Listener, str], headers: dict[str, str], says: str
) -> None:
    counted, base_url = listener
    with pytest.raises(ValueError, match=says) as caught:
        arx.Client(base_url=base_url, default_headers=headers)
    assert "default_headers" in str(caught.value)
    await assert_nothing_reached(counted)


@pytest.mark.parametrize(("headers", "says"), HOSTILE_HEADERS, ids=HEADER_IDS)
async def test_hostile_extra_headers_refused_when_stream_is_called(
    listener: tuple[Listener, str], via: dict[str, Any], headers: dict[str, str], says: str
) -> None:
    counted, base_url = listener
    async with arx.Client(base_url=base_url, max_retries=0, **via) as client:
        with pytest.raises(ValueError, match=says) as caught:
            client.stream(**PARAMS, extra_headers=headers)
    assert "extra_headers" in str(caught.value)
    await assert_nothing_reached(counted)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"api_key": "sk-ant-k\r\nx-injected: 1"}, "api_key contains a line break"),
        ({"api_key": "sk-ant-k\n"}, "api_key contains a line break"),
        ({"api_key": "sk-ant-k\x00"}, "api_key contains a NUL"),
        ({"api_key": "sk-ant-clé"}, "api_key is not ASCII"),
        ({"anthropic_version": "2023-06-01\r\nx: y"}, "anthropic_version contains a line break"),
        ({"betas": ["beta-ok", "beta\r\nx: y"]}, "betas.*line break"),
        ({"betas": ["beta-é"]}, "betas.*not ASCII"),
    ],
    ids=lambda value: repr(value)[:40],
)
async def test_hostile_values_the_client_builds_headers_from_are_refused(
    listener: tuple[Listener, str], options: dict[str, Any], says: str
) -> None:
    counted, base_url = listener
    with pytest.raises(ValueError, match=says):
        arx.Client(base_url=base_url, **options)
    await assert_nothing_reached(counted)


@pytest.mark.parametrize("betas", [["beta\r\nx: y"], ["beta\x00"], ["bêta"]])
async def test_hostile_per_call_betas_refused_when_stream_is_called(
    listener: tuple[Listener, str], via: dict[str, Any], betas: list[str]
) -> None:
    counted, base_url = listener
    async with arx.Client(base_url=base_url, max_retries=0, **via) as client:
        with pytest.raises(ValueError, match="betas"):
            client.stream(**PARAMS, betas=betas)
    await assert_nothing_reached(counted)


def test_wrong_types_are_type_errors() -> None:
    base = "http://127.0.0.1:9"
    with pytest.raises(TypeError, match="list of beta names"):
        arx.Client(base_url=base, betas="fine-grained-tool-streaming-2025-05-14")
    with pytest.raises(TypeError, match="list of beta names"):
        arx.Client(base_url=base).stream(**PARAMS, betas="one-beta")
    with pytest.raises(TypeError, match="must be str"):
        arx.Client(base_url=base, default_headers={"x-a": b"bytes"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="must be str"):
        arx.Client(base_url=base, default_headers={b"x-a": "v"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="api_key must be a str"):
        arx.Client(base_url=base, api_key=b"sk-ant-bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="base_url must be a str"):
        arx.Client(base_url=httpx.URL(base))  # type: ignore[arg-type]


async def test_the_same_listener_receives_a_benign_request(
    listener: tuple[Listener, str], via: dict[str, Any]
) -> None:
    """The control: the counters above can fail, and what is allowed reaches the wire."""
    counted, base_url = listener
    async with arx.Client(
        base_url=base_url, max_retries=0, default_headers={"X-Team": "blue"}, **via
    ) as client:
        events = client.stream(**PARAMS, extra_headers={"x-trace": "t 1"}, betas=["beta-a"])
        with pytest.raises(arx.APIConnectionError):
            async with asyncio.timeout(2):
                await arx.final_message(events)
    assert counted.connections == 1
    head = counted.received.lower()
    assert b"x-team: blue\r\n" in head
    assert b"x-trace: t 1\r\n" in head
    assert b"anthropic-beta: beta-a\r\n" in head


async def test_allowed_header_overrides_still_reach_the_server() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("ok"))
    async with fake.serve() as base_url:
        async with arx.Client(
            api_key="sk-ant-default",
            base_url=base_url,
            default_headers={"Accept-Encoding": "identity"},
        ) as client:
            extra = {"x-api-key": "sk-ant-per-call", "anthropic-version": "2099-01-01", "x-e": ""}
            await arx.final_message(client.stream(**PARAMS, extra_headers=extra))
    sent = fake.requests[0].headers
    assert sent["x-api-key"] == "sk-ant-per-call"
    assert sent["anthropic-version"] == "2099-01-01"
    assert sent["accept-encoding"] == "identity"
    assert sent["x-e"] == ""


# --- base URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("127.0.0.1:9", "http:// or https://.*did you mean 'http://127.0.0.1:9'"),
        ("localhost:8080", "http:// or https://.*did you mean 'http://localhost:8080'"),
        ("api.anthropic.com", "http:// or https://"),
        ("ftp://x", "http:// or https://"),
        ("ws://127.0.0.1:9", "http:// or https://"),
        ("", "empty"),
        ("http://", "no host"),
        ("http:///v1", "no host"),
        ("https://:443", "no host"),
        ("http://exa mple.com", "whitespace or a control character"),
        ("http://127.0.0.1:9\r\nx: y", "whitespace or a control character"),
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://[::1", "not a valid URL"),
        ("http://127.0.0.1:9/?key=1", "query or fragment"),
        ("http://127.0.0.1:9/#x", "query or fragment"),
    ],
)
async def test_base_url_must_be_an_absolute_http_url(
    listener: tuple[Listener, str], base_url: str, says: str
) -> None:
    counted, _ = listener
    with pytest.raises(ValueError, match=says) as caught:
        arx.Client(base_url=base_url, api_key="sk-ant-k")
    assert "base_url" in str(caught.value)
    await assert_nothing_reached(counted)


def test_base_url_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "localhost:8080")
    with pytest.raises(ValueError, match=r"ANTHROPIC_BASE_URL.*http://"):
        arx.Client(api_key="sk-ant-k")
    arx.Client(api_key="sk-ant-k", base_url="http://127.0.0.1:9")  # the argument wins
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")  # an empty variable is an unset one
    assert arx.Client(api_key="sk-ant-k").base_url == "https://api.anthropic.com"


@pytest.mark.parametrize(
    ("base_url", "kept"),
    [
        ("http://127.0.0.1:9", "http://127.0.0.1:9"),
        ("https://proxy.example/anthropic/", "https://proxy.example/anthropic"),
        ("HTTPS://API.example", "HTTPS://API.example"),
        ("http://[::1]:8080/", "http://[::1]:8080"),
        ("https://bücher.example", "https://bücher.example"),
    ],
)
def test_good_base_urls_are_kept(base_url: str, kept: str) -> None:
    assert arx.Client(base_url=base_url).base_url == kept


# --- the API key never shows -----------------------------------------------------------------


def shown(exc: BaseException) -> str:
    """Everything a log line or a traceback could show of ``exc``, causes included."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"api_key": MARKER + "\n"}, "api_key contains a line break"),
        ({"api_key": MARKER + "\r\nx-injected: 1"}, "api_key contains a line break"),
        ({"api_key": MARKER + "é"}, "api_key is not ASCII"),
        ({"default_headers": {"x-api-key": MARKER + "\n"}}, "'x-api-key' contains a line"),
        ({"default_headers": {"authorization": f"Bearer {MARKER}\x00"}}, "contains a NUL"),
        ({"default_headers": {f"x-{MARKER} bad": "v"}}, "'x-.redacted. bad' is not a valid"),
        ({"default_headers": {MARKER: "v\n"}}, "header '.redacted.' contains a line break"),
        ({"betas": [MARKER + "\n"]}, "betas.0. '.redacted.*' contains a line break"),
        ({"base_url": f"http://user:{MARKER}@127.0.0.1:9/#x"}, "query or fragment"),
        ({"base_url": f"127.0.0.1:9/{MARKER}"}, "did you mean 'http://127.0.0.1:9/.redacted.'"),
        ({"base_url": f"http://127.0.0.1:9/{MARKER} x"}, "whitespace"),
    ],
    ids=lambda value: next(iter(value.keys()), "") if isinstance(value, dict) else "",
)
def test_the_api_key_never_appears_in_a_refusal(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says) as caught:
        arx.Client(**{"api_key": MARKER, "base_url": "http://127.0.0.1:9", **options})
    assert MARKER not in shown(caught.value)


def test_the_api_key_from_the_environment_never_appears(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", MARKER + "\n")
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY contains a line break") as caught:
        arx.Client()
    assert MARKER not in shown(caught.value)


@pytest.mark.parametrize(
    ("extra_headers", "says"),
    [
        ({"x-api-key": MARKER + "\r\n"}, "'x-api-key' contains a line break"),
        ({"authorization": MARKER + "é"}, "'authorization' is not ASCII"),
        ({MARKER + ":": "v"}, "'.redacted.:' is not a valid header name"),
    ],
)
def test_the_api_key_never_appears_in_a_per_call_refusal(
    extra_headers: dict[str, str], says: str
) -> None:
    client = arx.Client(api_key=MARKER, base_url="http://127.0.0.1:9")
    with pytest.raises(ValueError, match=says) as caught:
        client.stream(**PARAMS, extra_headers=extra_headers)
    assert MARKER not in shown(caught.value)


# --- past the client's checks: the transports refuse too -------------------------------------


@pytest.mark.parametrize("transport", ["own-transport", "httpx-transport"])
async def test_a_header_added_after_the_checks_is_refused_by_the_transport_unsent(
    listener: tuple[Listener, str], transport: str
) -> None:
    """An ``httpx`` request hook runs after the client's checks; what it adds is still refused
    before a byte is written, passed as the ``httpx.LocalProtocolError`` it is, not retried."""
    counted, base_url = listener
    hooked = 0

    async def add_hostile_header(request: httpx.Request) -> None:
        nonlocal hooked
        hooked += 1
        request.headers["x-hooked"] = "v\r\nx-injected: 1"

    inner = StreamingTransport() if transport == "own-transport" else None
    async with httpx.AsyncClient(
        transport=inner, event_hooks={"request": [add_hostile_header]}
    ) as http:
        client = arx.Client(base_url=base_url, http_client=http, max_retries=2)
        with pytest.raises(httpx.LocalProtocolError):
            async with asyncio.timeout(2):
                await arx.final_message(client.stream(**PARAMS))
    assert hooked == 1
    await asyncio.sleep(0.05)
    assert counted.received == b""
