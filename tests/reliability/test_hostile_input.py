"""Hostile input from the browser's side: resume ids, channel and flag names, request bodies.

- ``Last-Event-ID``: huge, non-ASCII, negative, ``0-0``, past 2**64, with an injected line
  break... against ``MemoryBroadcaster.subscribe`` and ``RedisBroadcaster.subscribe`` (a typed
  ``ResumeError``, an exact replay, or nothing after the end: never another exception, never a
  duplicate) and the demo's stream route over raw sockets (204 or a 200 with an error frame, or
  the server's 4xx for a header it refuses: never a 500, never a traceback).
- Channel, flag and prefix names that could reach into other Redis keys (``*``, braces,
  spaces, line breaks, very long, empty) are refused with ``ValueError`` at the call, before any
  request is paid for and before any key is written.
- The demo's API bodies, fuzzed with hypothesis (JSON of any shape, huge strings, other
  content types, odd ids): a 4xx with a JSON ``error``, or the 2xx of a valid request; never a
  500, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anthropic_rx as arx
from anthropic_rx import cancel, sinks, testing
from anthropic_rx.demo import DemoSettings, create_app

from .._services import redis_url, unique_prefix
from ..sinks._server import RawClient, parse_sse, serve, serve_in_thread
from ._common import SOAK

WAIT = 5.0
REPLY = testing.text_reply(*(f"w{n} " for n in range(8)))

HOSTILE_IDS = [
    "",
    " ",
    "-1",
    "+1",
    "0",
    "00",
    "0-0",
    "0-1",
    "-0",
    "1-",
    "-",
    "1.5",
    "1e3",
    "0x10",
    "18446744073709551615",
    "18446744073709551616-0",
    "9999999999999999999-0",
    "9999999999999999999999-0",
    "1-99999999999999999999999",
    "9" * 21,
    "9" * 100_000,
    "1" * 5_000 + "-0",
    "١٢",  # Arabic-Indic digits: str.isdigit() says yes
    "²",
    "Ⅷ",
    "\uff11",  # fullwidth digit one
    "\x00",
    "1\x00",
    "1\r\nevent: done",
    "1\n\ndata: injected",
    "\u2028",
    "*",
    "{a}",
    "$",
    "1 2",
]


async def publish_one(hub: sinks.Broadcaster, channel: str) -> list[str]:
    """Publish :data:`REPLY` on ``channel``; the ids of its whole log, terminal included."""
    await hub.publish(channel, arx.from_sse_bytes(REPLY.to_sse()))
    return [item.id async for item in items_of(hub.subscribe(channel))]


async def items_of(subscription: Any) -> AsyncIterator[sinks.Broadcast]:
    async with asyncio.timeout(WAIT):
        async for item in arx.to_async_iterator(subscription):
            yield item


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.services)])
async def hub(request: pytest.FixtureRequest) -> AsyncIterator[sinks.Broadcaster]:
    made: sinks.Broadcaster
    if request.param == "memory":
        made = sinks.MemoryBroadcaster()
    else:
        made = sinks.RedisBroadcaster(redis_url(), prefix=unique_prefix(), ttl=60)
    try:
        yield made
    finally:
        await made.aclose()


async def test_hostile_last_event_ids_are_typed_refusals_or_exact_replays(
    hub: sinks.Broadcaster,
) -> None:
    log = await publish_one(hub, "conversation.1")
    ids = [*HOSTILE_IDS, *log, log[0] + "0", log[-1] + "1"]
    outcomes: dict[str, int] = {"refused": 0, "replayed": 0, "after the end": 0}
    for last_event_id in ids:
        got: list[str] = []
        try:
            async for item in items_of(hub.subscribe("conversation.1", last_event_id)):
                got.append(item.id)
        except sinks.ResumeError as error:
            refusal: str | None = str(error)
        else:
            refusal = None
        if refusal is not None:
            assert got == [], last_event_id
            assert len(refusal) < 100_000 + 200, last_event_id  # no amplification
            outcomes["refused"] += 1
            continue
        # Anything else is an exact tail of the log: no duplicate, no gap, in order.
        assert len(set(got)) == len(got), last_event_id
        if not got:
            outcomes["after the end"] += 1
            continue
        start = log.index(got[0])
        assert got == log[start:], (last_event_id, got)
        if last_event_id in log:
            assert start == log.index(last_event_id) + 1, last_event_id
        outcomes["replayed"] += 1
    assert all(outcomes.values()), outcomes


async def test_the_demo_stream_route_never_fails_on_a_hostile_last_event_id(
    tmp_path: Path,
) -> None:
    fake = testing.FakeAnthropic(default=REPLY)
    app = create_app(
        DemoSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db", fake=fake)
    )
    statuses: dict[int, int] = {}
    async with serve(app, lifespan="on") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            cid = (await http.post("/api/conversations")).json()["id"]
            cookie = http.cookies["arx_owner"]
            asked = await http.post(f"/api/conversations/{cid}/messages", json={"content": "hi"})
            assert asked.status_code == 202
            # The reply ended: an id at or past its terminal entry is a 204, not a refusal.
            async with asyncio.timeout(WAIT):
                while True:  # polled: the demo's HTTP API has no event to wait on
                    rows = (await http.get(f"/api/conversations/{cid}/messages")).json()
                    if rows[-1]["status"] != "streaming":
                        break
                    await asyncio.sleep(0.02)
        raw_ids: list[bytes] = [i.encode("utf-8") for i in HOSTILE_IDS if "\n" not in i]
        raw_ids += [b"\xff\xfe", b"1\xc0", "ü".encode("latin-1"), b"9" * 70_000]
        for raw_id in raw_ids:
            client = await open_with_header(server.port, cid, cookie, raw_id)
            try:
                async with asyncio.timeout(WAIT):
                    await client.read_head()
                    while not client.ended:
                        await client.read_some()
            finally:
                await client.close()
            statuses[client.status] = statuses.get(client.status, 0) + 1
            assert client.status in (200, 204, 400, 431), (raw_id[:40], client.status)
            assert b"Traceback" not in client.body
            if client.status == 200:
                frames = [f for f in parse_sse(client.body) if f.data is not None]
                ends = [f for f in frames if f.event in ("done", "error", "cancelled")]
                assert len(ends) == 1, (raw_id[:40], frames[-3:])
    assert statuses.get(200) and statuses.get(204), statuses


async def open_with_header(port: int, cid: str, cookie: str, value: bytes) -> RawClient:
    """A GET of the stream route with ``Last-Event-ID: value`` sent as raw bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**20)
    head = (
        f"GET /api/conversations/{cid}/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Cookie: arx_owner={cookie}\r\nConnection: close\r\nLast-Event-ID: "
    ).encode()
    writer.write(head + value + b"\r\n\r\n")
    await writer.drain()
    return RawClient(reader, writer)


# --- names that could reach into other Redis keys ---------------------------------------------

UNSAFE = r"must match \[A-Za-z0-9\._:-\]"
BAD_NAMES = [
    "*",
    "a*",
    "conv.{1}",
    "{",
    "}",
    "a b",
    "a\nb",
    "a\r\nDEL x",
    "x" * 201,
    "",
    "é",
    "a\x00",
]


@pytest.mark.services
@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_unsafe_names_are_refused_at_the_call_before_anything_is_sent(name: str) -> None:
    import redis.asyncio as redis_asyncio

    url = redis_url()
    prefix = unique_prefix()
    fake = testing.FakeAnthropic()
    hub = sinks.RedisBroadcaster(url, prefix=prefix)
    flags = cancel.RedisCancelFlags(url, prefix=prefix)
    try:
        async with fake.client(max_retries=0) as client:
            events = client.stream(
                model="m", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
            )
            with pytest.raises(ValueError, match=UNSAFE):
                hub.subscribe(name)
            with pytest.raises(ValueError, match=UNSAFE):
                await hub.publish(name, events)
            with pytest.raises(ValueError, match=UNSAFE):
                await hub.start(name, events)
            with pytest.raises(ValueError, match=UNSAFE):
                await sinks.relay(events, hub=hub, channel=name)
            with pytest.raises(ValueError, match=UNSAFE):
                flags.watch(name)
            with pytest.raises(ValueError, match=UNSAFE):
                await flags.request_stop(name)
            with pytest.raises(ValueError, match=UNSAFE):
                sinks.RedisBroadcaster(url, prefix=name)
            with pytest.raises(ValueError, match=UNSAFE):
                cancel.RedisCancelFlags(url, prefix=name)
        assert fake.requests == []  # no request was paid for
        check = redis_asyncio.Redis.from_url(url)
        try:
            assert [key async for key in check.scan_iter(match=f"{prefix}*")] == []
        finally:
            await check.aclose()
    finally:
        await hub.aclose()
        await flags.aclose()


# --- the demo's API bodies, fuzzed -------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
CONTENT = st.one_of(
    JSON,
    st.text(min_size=1, max_size=50),
    st.sampled_from(["", " ", "\n\t", "\u2028"]),
    # Sizes around the demo's limit of 20,000 characters (built lazily: a literal this long
    # would be the strategy's repr).
    st.tuples(st.sampled_from("xé€"), st.sampled_from([20_000, 20_001, 100_000])).map(
        lambda pair: pair[0] * pair[1]
    ),
    st.text(min_size=1, max_size=8).map(lambda piece: piece * (20_001 // len(piece))),
)
BODIES = st.one_of(
    JSON.map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries({"content": CONTENT}, optional={"extra": JSON}).map(
        lambda value: json.dumps(value).encode()
    ),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"content=hi",
            b'{"content": "hi"',
            b'{"content": "hi"}{"content": "again"}',
            b'\xef\xbb\xbf{"content": "hi"}',
            b'{"content": "hi", "content": 5}',
            b"[" * 50 + b"]" * 50,
        ]
    ),
    st.just(2_000_000).map(lambda size: json.dumps({"content": "x" * size}).encode()),
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "image/png",
    ]
)
PATHS = st.sampled_from(["/api/conversations/{cid}/messages", "/api/conversations/{cid}/stop"])
IDS = st.one_of(st.just("{own}"), st.text(min_size=1, max_size=30), st.just("x" * 2_000))


def check_answer(response: httpx.Response) -> None:
    """A 2xx, or a 4xx; the demo's own 4xx say why in JSON (the router's 404 and 405 for a
    path it has no route for are plain text)."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        assert isinstance(response.json().get("error"), str), response.text[:300]


def test_the_demo_api_answers_any_body_with_a_4xx_never_a_500(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic(default=testing.text_reply("ok"))
    app = create_app(
        DemoSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db", fake=fake)
    )
    seen: dict[int, int] = {}
    with serve_in_thread(app, lifespan="on") as server:
        with httpx.Client(base_url=server.url, timeout=WAIT) as http:
            own = http.post("/api/conversations").json()["id"]

            @settings(
                max_examples=600 if SOAK else 60,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(body=BODIES, content_type=CONTENT_TYPES, path=PATHS, cid=IDS)
            def post(body: bytes, content_type: str | None, path: str, cid: str) -> None:
                target = path.format(cid=own if cid == "{own}" else quote(cid, safe=""))
                headers = {"content-type": content_type} if content_type else {}
                try:
                    response = http.post(target, content=body, headers=headers)
                except httpx.InvalidURL:
                    return  # not a URL httpx will send: no server sees it
                check_answer(response)
                seen[response.status_code] = seen.get(response.status_code, 0) + 1

            post()
            for method, path in [
                ("POST", "/api/conversations"),
                ("GET", "/api/conversations"),
                ("PUT", f"/api/conversations/{own}/messages"),
                ("DELETE", f"/api/conversations/{own}"),
                ("GET", "/api/conversations/%00/messages"),
                ("GET", "/api/conversations/" + "a" * 10_000 + "/messages"),
            ]:
                response = http.request(method, path, content=b'{"content": 1}')
                assert response.status_code < 500, (method, path, response.status_code)
                assert "Traceback" not in response.text
    assert any(400 <= status < 500 for status in seen), seen


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            b'{"content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", id="deeply-nested-json"
        ),
        pytest.param(b'{"content": "hello \\ud800"}', id="lone-surrogate"),
    ],
)
async def test_the_demo_refuses_bodies_json_accepts_but_the_api_cannot_take(
    tmp_path: Path, body: bytes
) -> None:
    fake = testing.FakeAnthropic(default=testing.text_reply("ok"))
    app = create_app(
        DemoSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db", fake=fake)
    )
    async with serve(app, lifespan="on") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            cid = (await http.post("/api/conversations")).json()["id"]
            response = await http.post(f"/api/conversations/{cid}/messages", content=body)
    check_answer(response)
    assert response.status_code == 422
    assert fake.requests == []
