"""Odd and hostile HTTP responses, from real loopback servers that send the exact bytes we choose.

Each server speaks just enough HTTP/1.1 to read a request and answer it with a scripted step;
it counts the requests it saw and the connections still open on its side, so retries and leaked
connections can be asserted. Where the comparison means something, the official SDK is pointed
at the same server.
"""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anthropic
import pytest

import anthropic_rx as arx
from tests.conftest import fixture_bytes

SECRET = "sk-ant-hostile-SECRET-never-shown"
PARAMS: dict[str, Any] = {
    "model": "claude-test",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hi"}],
}
SSE = fixture_bytes("docs_basic_text")
MIDSTREAM_ERROR = fixture_bytes("docs_error_overloaded_midstream")
GZIP_SSE = gzip.compress(SSE, mtime=0)
HUGE = 5 * 1024 * 1024
RUN_LIMIT = 5.0  # no single stream in this file may take longer: a hang fails, never blocks

E = TypeVar("E", bound=BaseException)
Custom = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# --- the loopback server ---------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """How to answer one request: write ``data``, then ``keep`` the connection for the next
    request, ``close`` it, or ``stall`` (send nothing more until the client goes away)."""

    data: bytes = b""
    then: str = "keep"


class Server:
    """A loopback HTTP/1.1 server answering the n-th request with the n-th step (the last
    step repeats)."""

    def __init__(self, steps: Sequence[Step | Custom]) -> None:
        self.steps = list(steps)
        self.requests: list[bytes] = []
        self.connections = 0
        self.open = 0
        self.url = ""
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        self.open += 1
        self._writers.add(writer)
        try:
            while True:
                if not await self._read_request(reader):
                    return
                step = self.steps[min(len(self.requests), len(self.steps)) - 1]
                if not isinstance(step, Step):
                    await step(reader, writer)
                    return
                if step.data:
                    writer.write(step.data)
                    await writer.drain()
                if step.then == "close":
                    return
                if step.then == "stall":
                    while await reader.read(65536):  # until the client closes its side
                        pass
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self.open -= 1
            self._writers.discard(writer)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        self.requests.append(head + await reader.readexactly(length))
        return True

    async def aclose(self) -> None:
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)


@asynccontextmanager
async def serve(*steps: Step | Custom) -> AsyncIterator[Server]:
    server = Server(steps)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()
        await server.aclose()
        await listener.wait_closed()


async def settled(condition: Callable[[], bool], within: float = 1.0) -> bool:
    """Whether ``condition`` holds within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# --- responses ---------------------------------------------------------------------------------


def response(
    status: int,
    body: bytes = b"",
    *,
    content_type: str | None = "application/json",
    headers: Sequence[tuple[str, str]] = (),
    framing: str = "length",
    request_id: bool = True,
) -> bytes:
    """One HTTP/1.1 response; ``framing``: ``length``, ``chunked`` or ``close`` (no length:
    the body ends when the connection does, so use it with ``Step(then="close")``)."""
    lines = [f"HTTP/1.1 {status} Whatever"]
    if content_type is not None:
        lines.append(f"content-type: {content_type}")
    if request_id:
        lines.append(f"request-id: req_{status}_hostile")
    lines += [f"{name}: {value}" for name, value in headers]
    if framing == "length":
        lines.append(f"content-length: {len(body)}")
        payload = body
    elif framing == "chunked":
        lines.append("transfer-encoding: chunked")
        pieces = [body[i : i + 37] for i in range(0, len(body), 37)]
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    else:
        lines.append("connection: close")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def api_error(error_type: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": error_type, "message": message}}).encode()


FAST_RETRY = (("retry-after-ms", "1"),)


def sse_ok(*, framing: str = "length", content_type: str = "text/event-stream") -> bytes:
    return response(200, SSE, content_type=content_type, framing=framing)


# --- running a stream, ours and the SDK's --------------------------------------------------------


async def ours(url: str, **options: Any) -> arx.Message | Exception:
    """The final message of one stream through our client, or what it raised."""
    async with arx.Client(api_key=SECRET, base_url=url, **options) as client:
        return await final_or_error(client)


async def final_or_error(client: arx.Client, **call: Any) -> arx.Message | Exception:
    try:
        async with asyncio.timeout(RUN_LIMIT):
            return await arx.final_message(client.stream(**PARAMS, **call))
    except Exception as exc:
        return exc


async def sdk(url: str, *, max_retries: int = 2, sdk_timeout: float = 5.0) -> object:
    """The official SDK's final message for the same server, or what it raised."""
    client = anthropic.AsyncAnthropic(
        base_url=url, api_key=SECRET, max_retries=max_retries, timeout=sdk_timeout
    )
    try:
        async with asyncio.timeout(RUN_LIMIT):
            async with client.messages.stream(**PARAMS) as stream:
                return await stream.get_final_message()
    except Exception as exc:
        return exc
    finally:
        await client.close()


def expect(outcome: object, cls: type[E]) -> E:
    """``outcome`` is exactly a ``cls``."""
    assert type(outcome) is cls, f"expected {cls.__name__}, got {outcome!r}"
    assert isinstance(outcome, cls)
    return outcome


def assert_no_secret(error: BaseException) -> None:
    """The API key is nowhere in the error: str, repr, message, body, meta, causes, traceback."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, arx.AnthropicRxError):
        texts += [repr(error.meta), str(error.meta), repr(error.partial_message)]
    if isinstance(error, arx.APIError):
        texts += [error.message, repr(error.body)]
    cause = error.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    for text in texts:
        assert SECRET not in text


async def _replay() -> dict[str, Any]:
    """The message of the fixture stream, read from its bytes with no HTTP at all."""
    return (await arx.final_message(arx.from_sse_bytes(SSE))).model_dump(mode="json")


def assert_is_the_fixture_message(outcome: object, reference: dict[str, Any]) -> None:
    assert isinstance(outcome, arx.Message), f"expected the message, got {outcome!r}"
    assert outcome.model_dump(mode="json") == reference
    assert outcome.content[0].model_dump()["text"] == "Hello!"


# --- every error status the API uses --------------------------------------------------------------

# status, the API's error.type (an unlisted one where the API names none), our class, retried
STATUSES: list[tuple[int, str, type[arx.APIError], bool]] = [
    (400, "invalid_request_error", arx.BadRequestError, False),
    (401, "authentication_error", arx.AuthenticationError, False),
    (402, "billing_error", arx.BillingError, False),
    (403, "permission_error", arx.PermissionDeniedError, False),
    (404, "not_found_error", arx.NotFoundError, False),
    (408, "request_timeout_error", arx.APIError, True),
    (409, "conflict_error", arx.APIError, True),
    (413, "request_too_large", arx.RequestTooLargeError, False),
    (429, "rate_limit_error", arx.RateLimitError, True),
    (500, "api_error", arx.InternalServerError, True),
    (502, "bad_gateway_error", arx.InternalServerError, True),
    (503, "service_unavailable_error", arx.InternalServerError, True),
    (504, "timeout_error", arx.GatewayTimeoutError, True),
    (529, "overloaded_error", arx.OverloadedError, True),
]
STATUS_IDS = [str(s[0]) for s in STATUSES]


@pytest.mark.parametrize(("status", "error_type", "cls", "retried"), STATUSES, ids=STATUS_IDS)
async def test_api_json_error_body(
    status: int, error_type: str, cls: type[arx.APIError], retried: bool
) -> None:
    body = api_error(error_type, f"the API said {status}")
    step = Step(response(status, body, headers=FAST_RETRY))
    async with serve(step) as server:
        outcome = await ours(server.url, max_retries=2)
        our_requests, our_connections = len(server.requests), server.connections
        theirs = await sdk(server.url, max_retries=2)
        their_requests = len(server.requests) - our_requests

    error = expect(outcome, cls)
    assert error.status_code == status
    assert error.error_type == error_type
    assert error.message == f"the API said {status}"
    assert error.body == json.loads(body)
    assert error.request_id == f"req_{status}_hostile"
    assert error.meta is not None and error.meta.status_code == status
    assert error.meta.retry_after == pytest.approx(0.001)
    assert error.partial_message is None
    assert our_requests == (3 if retried else 1)
    assert our_connections == 1  # the error bodies were read to their end: one kept-alive socket
    assert b"x-api-key: " + SECRET.encode() in server.requests[0]
    assert_no_secret(error)
    # The SDK, at the same server: same retries, same status, same 5xx family.
    assert isinstance(theirs, anthropic.APIStatusError)
    assert their_requests == our_requests
    assert theirs.status_code == status
    assert theirs.request_id == error.request_id
    assert isinstance(theirs, anthropic.InternalServerError) == isinstance(
        error, arx.InternalServerError
    )


# A body variant: (id, body bytes, content type, extra headers)
HTML_PAGE = (
    b"<html><head><title>Bad Gateway</title></head><body><h1>nginx says no</h1></body></html>"
)
VARIANTS: list[tuple[str, bytes, str | None, tuple[tuple[str, str], ...]]] = [
    ("html", HTML_PAGE, "text/html", ()),
    ("empty", b"", None, ()),
    ("json-not-an-error", b'{"detail": "nope", "code": 7}', "application/json", ()),
    ("huge", b"<p>" + b"x" * HUGE + b"</p>", "text/html", ()),
    (
        "gzip-json-error",
        gzip.compress(api_error("overloaded_error", "zipped busy")),
        "application/json",
        (("content-encoding", "gzip"),),
    ),
]


@pytest.mark.parametrize(
    ("status", "cls", "retried"),
    [(s, c, r) for s, _, c, r in STATUSES],
    ids=STATUS_IDS,
)
@pytest.mark.parametrize(
    ("variant", "body", "content_type", "extra"), VARIANTS, ids=[v[0] for v in VARIANTS]
)
async def test_error_status_with_an_odd_body(
    status: int,
    cls: type[arx.APIError],
    retried: bool,
    variant: str,
    body: bytes,
    content_type: str | None,
    extra: tuple[tuple[str, str], ...],
) -> None:
    step = Step(response(status, body, content_type=content_type, headers=FAST_RETRY + extra))
    async with serve(step) as server:
        outcome = await ours(server.url, max_retries=2)
        requests = len(server.requests)
        # Nothing left open on the server's side by a body we stopped reading (huge), and the
        # ones read to their end kept one connection alive for the retries.
        closed_all = await settled(lambda: server.open == 0)
        connections = server.connections
        theirs = await sdk(server.url, max_retries=2)
        their_requests = len(server.requests) - requests

    attempts = 3 if retried else 1
    assert requests == attempts
    error: arx.APIError
    if variant == "gzip-json-error":  # decoded: the class comes from error.type
        error = expect(outcome, arx.OverloadedError)
        assert error.error_type == "overloaded_error"
        assert error.message == "zipped busy"
    else:
        error = expect(outcome, cls)
        assert error.error_type is None
    assert error.status_code == status
    assert error.request_id == f"req_{status}_hostile"
    if variant == "html":
        assert "nginx says no" in error.message
        assert isinstance(error.body, str) and "nginx says no" in error.body
    elif variant == "empty":
        assert error.message == f"HTTP {status}"
        assert error.body is None
    elif variant == "json-not-an-error":
        assert error.body == {"detail": "nope", "code": 7}
        assert "nope" in error.message
    elif variant == "huge":
        assert len(str(error)) < 2000  # an excerpt, not megabytes
        assert isinstance(error.body, str) and len(error.body) < 2000
        assert closed_all  # each unread body's connection was closed, not left hanging
        assert connections == attempts
    if variant != "huge":
        assert connections == 1
    assert_no_secret(error)
    assert isinstance(theirs, anthropic.APIStatusError)
    assert theirs.status_code == status
    assert their_requests == attempts


# --- error.type first, status second -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "cls"),
    [
        (400, "overloaded_error", arx.OverloadedError),
        (500, "rate_limit_error", arx.RateLimitError),
        (529, "invalid_request_error", arx.BadRequestError),
        (418, "teapot_error", arx.APIError),
        (599, "teapot_error", arx.InternalServerError),
        (200, "overloaded_error", arx.OverloadedError),
        (200, "billing_error", arx.BillingError),
    ],
    ids=["400-overloaded", "500-rate-limit", "529-invalid", "418-unknown", "599-unknown",
         "200-overloaded", "200-billing"],
)  # fmt: skip
async def test_error_type_wins_over_the_status(
    status: int, error_type: str, cls: type[arx.APIError]
) -> None:
    body = api_error(error_type, "typed")
    async with serve(Step(response(status, body))) as server:
        outcome = await ours(server.url, max_retries=0)
    error = expect(outcome, cls)
    assert error.error_type == error_type
    assert error.status_code == status
    assert error.message == "typed"
    assert error.request_id == f"req_{status}_hostile"
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b"[]",
        b'"oops"',
        b"42",
        b'{"error": "a string"}',
        b'{"error": {"type": 5, "message": ["x"]}}',
        b'{"type": "error", "error": {"type": "api_error"',  # cut JSON
        b"\xff\xfe{\x00",  # not UTF-8
        b"[" * 100_000,  # nesting deeper than any parser's stack
    ],
    ids=["null", "list", "string", "number", "error-string", "error-wrong-types", "cut-json",
         "not-utf8", "deep-nesting"],
)  # fmt: skip
async def test_500_with_a_strange_json_shape(body: bytes) -> None:
    async with serve(Step(response(500, body))) as server:
        outcome = await ours(server.url, max_retries=0)
    error = expect(outcome, arx.InternalServerError)
    assert error.status_code == 500
    assert error.request_id == "req_500_hostile"
    assert error.error_type is None
    assert error.message.startswith("HTTP 500")
    assert len(str(error)) < 2000


LONE_SURROGATE = b'{"type": "error", "error": {"type": "%s", "message": "bad input \\ud800 here"}}'


@pytest.mark.parametrize(
    ("status", "error_type", "cls"),
    [
        (400, "invalid_request_error", arx.BadRequestError),
        (200, "overloaded_error", arx.OverloadedError),
    ],
    ids=["400", "200"],
)
async def test_an_error_body_with_a_lone_surrogate_keeps_its_type(
    status: int, error_type: str, cls: type[arx.APIError]
) -> None:
    body = LONE_SURROGATE % error_type.encode()
    async with serve(Step(response(status, body))) as server:
        outcome = await ours(server.url, max_retries=0)
    error = expect(outcome, cls)
    assert error.error_type == error_type
    assert error.message.startswith("bad input ")


# --- retry-after ---------------------------------------------------------------------------------


def http_date(offset: float) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((("retry-after-ms", "250"),), 0.25),
        ((("retry-after-ms", "1.5"),), 0.0015),
        ((("retry-after", "3"),), 3.0),
        ((("retry-after", "1.5"),), 1.5),
        ((("retry-after", " 7 "),), 7.0),
        ((("retry-after", "DATE+30"),), 30.0),
        ((("retry-after", "DATE-30"),), 0.0),
        ((("retry-after-ms", "100"), ("retry-after", "9")), 0.1),
        ((("retry-after-ms", "soon"), ("retry-after", "2")), 2.0),
        ((("retry-after", "soon"),), None),
        ((("retry-after", "-1"),), None),
        ((("retry-after", "nan"),), None),
        ((("retry-after", "inf"),), None),
        ((("retry-after", "1e309"),), None),
        ((("retry-after", "99999999"),), None),
        ((("retry-after", "Mon, 32 Foo 2025 99:99:99 GMT"),), None),
        ((), None),
    ],
    ids=["ms", "ms-fraction", "seconds", "seconds-float", "seconds-padded", "date-future",
         "date-past", "ms-wins", "ms-garbage-falls-back", "garbage", "negative", "nan", "inf",
         "overflow", "more-than-a-day", "bad-date", "absent"],
)  # fmt: skip
async def test_retry_after_is_parsed_onto_the_meta(
    headers: tuple[tuple[str, str], ...], expected: float | None
) -> None:
    body = api_error("rate_limit_error", "slow down")
    headers = tuple(  # an HTTP date is made now, not when the tests were collected
        (name, http_date(float(value[4:])) if value.startswith("DATE") else value)
        for name, value in headers
    )
    async with serve(Step(response(429, body, headers=headers))) as server:
        outcome = await ours(server.url, max_retries=0)
    error = expect(outcome, arx.RateLimitError)
    assert error.meta is not None
    if expected is None:
        assert error.retry_after is None
        assert error.meta.retry_after is None
    else:
        assert error.retry_after == pytest.approx(expected, abs=2.0 if expected >= 30 else 1e-6)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("headers", "at_least", "at_most"),
    [
        ((("retry-after-ms", "200"),), 0.2, 1.5),
        ((("retry-after", "0.2"),), 0.2, 1.5),
        ((("retry-after", "0"),), 0.0, 0.35),  # the backoff would wait 0.375 s at least
    ],
    ids=["ms", "seconds", "zero"],
)
async def test_retry_waits_as_long_as_asked(
    headers: tuple[tuple[str, str], ...], at_least: float, at_most: float
) -> None:
    steps = [Step(response(429, api_error("rate_limit_error", "wait"), headers=headers))]
    async with serve(*steps, Step(sse_ok())) as server:
        started = time.monotonic()
        outcome = await ours(server.url, max_retries=1)
        elapsed = time.monotonic() - started
    assert isinstance(outcome, arx.Message)
    assert len(server.requests) == 2
    assert at_least <= elapsed <= at_most


# --- retries -------------------------------------------------------------------------------------


def overloaded(*extra: tuple[str, str]) -> Step:
    return Step(response(529, api_error("overloaded_error", "busy"), headers=FAST_RETRY + extra))


@pytest.mark.parametrize(
    ("steps", "max_retries", "requests", "outcome_cls"),
    [
        ([overloaded(), overloaded(), Step(sse_ok())], 2, 3, arx.Message),
        ([overloaded()], 2, 3, arx.OverloadedError),
        ([overloaded()], 0, 1, arx.OverloadedError),
        ([overloaded()], 5, 6, arx.OverloadedError),
        ([overloaded(("x-should-retry", "false"))], 2, 1, arx.OverloadedError),
        (
            [
                Step(
                    response(
                        400,
                        api_error("invalid_request_error", "try again"),
                        headers=(("x-should-retry", "true"), *FAST_RETRY),
                    )
                )
            ],
            2,
            3,
            arx.BadRequestError,
        ),
        (
            [
                Step(
                    response(
                        400,
                        api_error("invalid_request_error", "try again"),
                        headers=(("x-should-retry", "true"), *FAST_RETRY),
                    )
                ),
                Step(sse_ok()),
            ],
            2,
            2,
            arx.Message,
        ),
        ([overloaded(("x-should-retry", "maybe"))], 1, 2, arx.OverloadedError),
        (
            [Step(response(529, b"", content_type=None, headers=FAST_RETRY, framing="close"),
                  then="close"), Step(sse_ok())],
            1,
            2,
            arx.Message,
        ),
    ],
    ids=["529-529-200", "529-exhausted", "max-retries-0", "max-retries-5", "should-retry-false",
         "should-retry-true-400", "should-retry-true-then-200", "should-retry-garbage",
         "connection-close-error-then-200"],
)  # fmt: skip
async def test_retry_policy_counts_requests_like_the_sdk(
    steps: list[Step], max_retries: int, requests: int, outcome_cls: type[object]
) -> None:
    async with serve(*steps) as server:
        outcome = await ours(server.url, max_retries=max_retries)
        our_requests = len(server.requests)
    async with serve(*steps) as server:
        theirs = await sdk(server.url, max_retries=max_retries)
        their_requests = len(server.requests)
    assert isinstance(outcome, outcome_cls), repr(outcome)
    assert our_requests == requests
    assert their_requests == requests
    if isinstance(outcome, Exception):
        assert isinstance(theirs, anthropic.APIStatusError)
        assert_no_secret(outcome)
    else:
        assert isinstance(theirs, anthropic.types.Message)


async def test_per_call_max_retries_overrides_the_clients() -> None:
    async with serve(overloaded()) as server:
        async with arx.Client(api_key=SECRET, base_url=server.url, max_retries=5) as client:
            outcome = await final_or_error(client, max_retries=1)
    expect(outcome, arx.OverloadedError)
    assert len(server.requests) == 2


async def test_a_dropped_connection_before_any_response_is_retried_then_raised() -> None:
    async with serve(Step(then="close")) as server:
        outcome = await ours(server.url, max_retries=1)  # one backoff of ~0.5 s
        requests = len(server.requests)
    error = expect(outcome, arx.APIConnectionError)
    assert error.meta is None
    assert error.__cause__ is not None
    assert requests == 2
    assert_no_secret(error)


def cut(data: bytes, before: bytes) -> bytes:
    return data[: data.index(before)]


SSE_HEAD = response(200, SSE, content_type="text/event-stream")[: -len(SSE)]
CHUNKED_SSE = response(200, SSE, content_type="text/event-stream", framing="chunked")


@pytest.mark.parametrize(
    ("step", "cls", "partial", "sdk_gives_message"),
    [
        (Step(SSE_HEAD + cut(SSE, b"event: content_block_stop"), then="close"),
         arx.APIConnectionError, True, False),
        (Step(CHUNKED_SSE[:-300], then="close"), arx.APIConnectionError, True, False),
        (Step(response(200, cut(SSE, b"event: content_block_stop"),
                       content_type="text/event-stream", framing="close"), then="close"),
         arx.IncompleteStreamError, True, True),  # the SDK returns the truncated message
        (Step(SSE_HEAD, then="close"), arx.APIConnectionError, False, False),
    ],
    ids=["length-cut-after-events", "chunked-cut-mid-event", "until-close-cut-after-events",
         "headers-only"],
)  # fmt: skip
async def test_never_a_retry_once_the_response_is_accepted(
    step: Step, cls: type[arx.AnthropicRxError], partial: bool, sdk_gives_message: bool
) -> None:
    async with serve(step, Step(sse_ok())) as server:
        outcome = await ours(server.url, max_retries=2)
        our_requests = len(server.requests)
        closed = await settled(lambda: server.open == 0)
    async with serve(step, Step(sse_ok())) as server:
        theirs = await sdk(server.url, max_retries=2)
        their_requests = len(server.requests)
    error = expect(outcome, cls)
    assert our_requests == their_requests == 1
    assert error.meta is not None and error.meta.status_code == 200
    assert error.request_id == "req_200_hostile"
    assert (error.partial_message is not None) == partial
    assert closed
    assert_no_secret(error)
    if sdk_gives_message:  # silently truncated: no stop reason
        assert isinstance(theirs, anthropic.types.Message) and theirs.stop_reason is None
    else:
        assert isinstance(theirs, Exception)


# --- a 200 that is not an event stream, and the forms an event stream can take ----------------

MESSAGE_JSON = json.dumps(
    {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "not streamed"}],
        "model": "claude-test",
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (MESSAGE_JSON, "application/json", "not streamed"),
        (HTML_PAGE, "text/html", "nginx says no"),
        (HTML_PAGE, "text/html; charset=iso-8859-1", "nginx says no"),
        (b"", "text/plain", "(empty body)"),
        (SSE, None, "message_start"),
        (SSE, "text/event-streamx", "message_start"),
        (SSE, "application/octet-stream", "message_start"),
    ],
    ids=["json-message", "html", "html-charset", "empty-text", "sse-without-content-type",
         "lookalike-type", "octet-stream"],
)  # fmt: skip
async def test_a_200_that_is_not_an_event_stream_is_a_protocol_error(
    body: bytes, content_type: str | None, needle: str
) -> None:
    async with serve(Step(response(200, body, content_type=content_type))) as server:
        outcome = await ours(server.url, max_retries=2)
        assert await settled(lambda: server.connections == 1)
    error = expect(outcome, arx.ProtocolError)
    assert isinstance(error, ValueError)
    assert "text/event-stream" in str(error)
    assert needle in str(error)
    assert error.meta is not None and error.meta.status_code == 200
    assert error.request_id == "req_200_hostile"
    assert error.partial_message is None
    assert len(server.requests) == 1  # a wrong kind of success is not retried
    assert_no_secret(error)


async def test_a_json_message_with_200_fails_typed_where_the_sdk_fails_untyped() -> None:
    async with serve(Step(response(200, MESSAGE_JSON))) as server:
        outcome = await ours(server.url)
        theirs = await sdk(server.url)
    expect(outcome, arx.ProtocolError)
    assert isinstance(theirs, Exception)
    assert not isinstance(theirs, anthropic.types.Message)


async def test_an_error_object_with_200_is_typed_and_not_retried() -> None:
    body = api_error("overloaded_error", "busy at 200")
    async with serve(Step(response(200, body, headers=FAST_RETRY)), Step(sse_ok())) as server:
        outcome = await ours(server.url, max_retries=2)
    error = expect(outcome, arx.OverloadedError)
    assert error.status_code == 200
    assert error.message == "busy at 200"
    assert error.body == json.loads(body)
    assert error.request_id == "req_200_hostile"
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "content_type",
    [
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "text/event-stream;charset=UTF-8",
        " text/event-stream ; charset=utf-8",
    ],
    ids=["plain", "charset", "charset-no-space", "padded"],
)
@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_every_framing_of_an_event_stream_gives_the_message(
    content_type: str, framing: str
) -> None:
    reference = await _replay()
    then = "close" if framing == "close" else "keep"
    step = Step(sse_ok(framing=framing, content_type=content_type), then=then)
    async with serve(step) as server:
        async with arx.Client(api_key=SECRET, base_url=server.url, max_retries=0) as client:
            first = await final_or_error(client)
            await asyncio.sleep(0.02)
            second = await final_or_error(client)
            connections = server.connections
        theirs = await sdk(server.url)
    assert_is_the_fixture_message(first, reference)
    assert_is_the_fixture_message(second, reference)
    assert isinstance(theirs, anthropic.types.Message)
    assert theirs.content[0].type == "text" and theirs.content[0].text == "Hello!"
    # A framed body read to its end is reused; one ended by closing cannot be.
    assert connections == (2 if framing == "close" else 1)


@pytest.mark.parametrize(
    "extra",
    [(("connection", "close"),), (("Connection", "Close"),)],
    ids=["lower", "mixed-case"],
)
async def test_connection_close_on_a_framed_stream_opens_a_new_connection(
    extra: tuple[tuple[str, str], ...],
) -> None:
    reference = await _replay()
    step = Step(response(200, SSE, content_type="text/event-stream", headers=extra))
    async with serve(step) as server:
        async with arx.Client(api_key=SECRET, base_url=server.url, max_retries=0) as client:
            first = await final_or_error(client)
            second = await final_or_error(client)
        connections = server.connections
        assert await settled(lambda: server.open == 0)
    assert_is_the_fixture_message(first, reference)
    assert_is_the_fixture_message(second, reference)
    assert connections == 2


async def test_a_keep_alive_connection_the_server_dropped_is_not_reused() -> None:
    # No "connection: close" header, yet the server hangs up after every response (an idle
    # timeout on a proxy): the next stream must not fail on the dead pooled socket.
    reference = await _replay()
    async with serve(Step(sse_ok(), then="close")) as server:
        async with arx.Client(api_key=SECRET, base_url=server.url, max_retries=0) as client:
            outcomes = []
            for _ in range(3):
                outcomes.append(await final_or_error(client))
                await asyncio.sleep(0.05)
    for outcome in outcomes:
        assert_is_the_fixture_message(outcome, reference)
    assert len(server.requests) == server.connections == 3


@pytest.mark.parametrize("content_type", ["text/event-stream", "text/event-stream; charset=utf-8"])
async def test_a_gzip_event_stream_is_decoded_like_the_sdk_does(content_type: str) -> None:
    reference = await _replay()
    step = Step(
        response(
            200,
            gzip.compress(SSE),
            content_type=content_type,
            headers=(("content-encoding", "gzip"),),
            framing="chunked",
        )
    )
    async with serve(step) as server:
        outcome = await ours(server.url)
        theirs = await sdk(server.url)
    assert_is_the_fixture_message(outcome, reference)
    assert isinstance(theirs, anthropic.types.Message)


async def test_an_in_stream_error_after_200_is_typed_and_never_retried() -> None:
    step = Step(response(200, MIDSTREAM_ERROR, content_type="text/event-stream"))
    async with serve(step, Step(sse_ok())) as server:
        outcome = await ours(server.url, max_retries=2)
    error = expect(outcome, arx.OverloadedError)
    assert error.status_code == 200
    assert error.partial_message is not None
    assert error.request_id == "req_200_hostile"
    assert len(server.requests) == 1
    assert_no_secret(error)


@pytest.mark.parametrize("content_type", ["Text/Event-Stream", "TEXT/EVENT-STREAM; charset=utf-8"])
async def test_a_capitalised_event_stream_type_is_still_an_event_stream(content_type: str) -> None:
    reference = await _replay()
    async with serve(Step(response(200, SSE, content_type=content_type))) as server:
        theirs = await sdk(server.url)
        outcome = await ours(server.url)
    assert isinstance(theirs, anthropic.types.Message)
    assert_is_the_fixture_message(outcome, reference)


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", GZIP_SSE[:200] + bytes(b ^ 0xFF for b in GZIP_SSE[200:220]) + GZIP_SSE[220:]),
        ("deflate", b"\x00\x01\x02 not deflate"),
    ],
    ids=["gzip-garbage", "gzip-corrupt-middle", "deflate-garbage"],
)
async def test_an_undecodable_event_stream_body_is_a_library_error(
    encoding: str, body: bytes
) -> None:
    step = Step(
        response(
            200, body, content_type="text/event-stream", headers=(("content-encoding", encoding),)
        )
    )
    async with serve(step) as server:
        outcome = await ours(server.url, max_retries=2)
        assert await settled(lambda: server.open == 0)
    assert isinstance(outcome, arx.StreamError | arx.APIConnectionError), repr(outcome)
    assert len(server.requests) == 1


async def test_an_undecodable_error_body_still_gives_the_status_class() -> None:
    step = Step(
        response(
            529,
            b"definitely not gzip",
            headers=(("content-encoding", "gzip"), *FAST_RETRY),
        )
    )
    async with serve(step) as server:
        outcome = await ours(server.url, max_retries=1)
    error = expect(outcome, arx.OverloadedError)
    assert error.status_code == 529
    assert len(server.requests) == 2


# --- silence: timeouts ------------------------------------------------------------------------


async def informational_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for _ in range(200):  # bounded: ~10 s at most, the client gives up long before
        writer.write(b"HTTP/1.1 102 Processing\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("step", "options", "kind"),
    [
        (Step(then="stall"), {"idle_timeout": 0.2}, "idle"),
        (Step(then="stall"), {"idle_timeout": None, "timeout": 0.2}, "total"),
        (Step(then="stall"), {"idle_timeout": 5.0, "timeout": 0.2}, "total"),
        (informational_forever, {"idle_timeout": 0.3}, "idle"),
    ],
    ids=["never-answers-idle", "never-answers-total", "total-shorter-than-idle",
         "102-processing-forever"],
)  # fmt: skip
async def test_a_server_that_never_answers_times_out(
    step: Step | Custom, options: dict[str, Any], kind: str
) -> None:
    async with serve(step) as server:
        started = time.monotonic()
        outcome = await ours(server.url, max_retries=0, **options)
        elapsed = time.monotonic() - started
        closed = await settled(lambda: server.open == 0)
    error = expect(outcome, arx.APITimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.kind == kind
    assert elapsed < 1.5
    assert len(server.requests) == 1
    assert closed  # the socket that never answered was not left open
    assert_no_secret(error)


async def test_a_timeout_waiting_for_the_response_is_retried_like_the_sdk() -> None:
    async with serve(Step(then="stall"), Step(sse_ok())) as server:
        outcome = await ours(server.url, max_retries=1, idle_timeout=0.2)
        our_requests = len(server.requests)
    async with serve(Step(then="stall"), Step(sse_ok())) as server:
        theirs = await sdk(server.url, max_retries=1, sdk_timeout=0.2)
        their_requests = len(server.requests)
    assert isinstance(outcome, arx.Message)
    assert isinstance(theirs, anthropic.types.Message)
    assert our_requests == their_requests == 2


@pytest.mark.parametrize(
    ("data", "partial"),
    [
        (response(200, b"", content_type="text/event-stream", framing="chunked")[:-5], False),
        (
            response(200, SSE, content_type="text/event-stream")[: -len(SSE)]
            + cut(SSE, b"event: content_block_delta"),
            True,
        ),
        (
            response(200, SSE, content_type="text/event-stream")[: -len(SSE)]
            + cut(SSE, b"event: content_block_delta")
            + b'event: ping\ndata: {"type": "ping"}\n\n' * 3,
            True,
        ),
    ],
    ids=["headers-then-nothing", "message-start-then-nothing", "then-only-pings"],
)
async def test_headers_then_a_stall_hits_the_idle_timeout_without_retry(
    data: bytes, partial: bool
) -> None:
    async with serve(Step(data, then="stall"), Step(sse_ok())) as server:
        started = time.monotonic()
        outcome = await ours(server.url, max_retries=2, idle_timeout=0.25)
        elapsed = time.monotonic() - started
        closed = await settled(lambda: server.open == 0)
    error = expect(outcome, arx.APITimeoutError)
    assert error.kind == "idle"
    assert 0.2 <= elapsed < 1.5
    assert (error.partial_message is not None) == partial
    assert error.meta is not None and error.request_id == "req_200_hostile"
    assert len(server.requests) == 1
    assert closed
    assert_no_secret(error)


@pytest.mark.parametrize(
    ("data", "options", "cls"),
    [
        (b"HTTP/1.1 529 Overloaded\r\ncontent-type: application/json\r\ncontent-length: 200\r\n"
         b"\r\n{\"type\": \"error\"", {"idle_timeout": 0.3}, arx.OverloadedError),
        (b"HTTP/1.1 500 Oops\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n"
         b"5\r\n<html", {"idle_timeout": None, "timeout": 0.3}, arx.InternalServerError),
        (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
         {"idle_timeout": 0.3}, arx.ProtocolError),
    ],
    ids=["529-json-idle", "500-html-total", "200-json-idle"],
)  # fmt: skip
async def test_an_error_body_that_stalls_is_read_for_the_wait_limit_only(
    data: bytes, options: dict[str, Any], cls: type[arx.AnthropicRxError]
) -> None:
    # The body of a non-stream response is read for as long as the response's headers may
    # be waited for (the smaller of idle_timeout and timeout); what arrived by then, with the
    # status, describes the error.
    async with serve(Step(data, then="stall")) as server:
        started = time.monotonic()
        async with arx.Client(api_key=SECRET, base_url=server.url, max_retries=0, **options) as c:
            try:
                async with asyncio.timeout(2.0):  # bounded: the failure would be a hang
                    outcome: object = await arx.final_message(c.stream(**PARAMS))
            except Exception as exc:
                outcome = exc
        elapsed = time.monotonic() - started
    assert type(outcome) is cls, repr(outcome)
    assert 0.25 <= elapsed < 1.5


# --- the API key ---------------------------------------------------------------------------------


async def refused_url() -> str:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("steps", "options", "cls"),
    [
        ([Step(response(401, api_error("authentication_error", "invalid x-api-key")))], {},
         arx.AuthenticationError),
        ([Step(response(502, HTML_PAGE, content_type="text/html"))], {}, arx.InternalServerError),
        ([Step(response(200, HTML_PAGE, content_type="text/html"))], {}, arx.ProtocolError),
        ([Step(then="close")], {}, arx.APIConnectionError),
        ([Step(then="stall")], {"idle_timeout": 0.1}, arx.APITimeoutError),
        ([Step(response(200, cut(SSE, b"event: message_stop"),
                        content_type="text/event-stream", framing="close"), then="close")], {},
         arx.IncompleteStreamError),
        ([Step(response(200, MIDSTREAM_ERROR, content_type="text/event-stream"))], {},
         arx.OverloadedError),
        ([], {}, arx.APIConnectionError),
    ],
    ids=["401", "502-html", "200-html", "dropped", "idle-timeout", "incomplete", "in-stream-error",
         "refused"],
)  # fmt: skip
async def test_the_api_key_is_in_no_error(
    steps: list[Step], options: dict[str, Any], cls: type[arx.AnthropicRxError]
) -> None:
    if steps:
        async with serve(*steps) as server:
            outcome = await ours(server.url, max_retries=0, **options)
        assert SECRET.encode() in server.requests[0]  # it was sent, so it could have leaked
    else:
        outcome = await ours(await refused_url(), max_retries=0)
    error = expect(outcome, cls)
    assert_no_secret(error)


@pytest.mark.parametrize("where", ["body", "header"])
async def test_an_echoed_api_key_is_redacted(where: str) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = server.requests[-1].split(b"\r\n\r\n", 1)[0]
        if where == "body":
            writer.write(response(400, b"<pre>" + head + b"</pre>", content_type="text/html"))
        else:
            writer.write(
                response(400, b"", headers=(("x-echo-api-key", SECRET),), content_type=None)
            )
        await writer.drain()

    async with serve(echo) as server:
        outcome = await ours(server.url, max_retries=0)
    error = expect(outcome, arx.BadRequestError)
    assert_no_secret(error)
