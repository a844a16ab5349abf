"""The demo on PostgreSQL (``ANTHROPIC_RX_DATABASE_URL=postgresql+asyncpg://...``), served by
uvicorn on 127.0.0.1, every reply from a :class:`~anthropic_rx.testing.FakeAnthropic`.

The demo's table names are fixed (``arx_messages``, ``arx_demo_conversations``) and its settings
take a URL, not an engine, and asyncpg reads no ``search_path`` from a SQLAlchemy URL: so each
test gets a database of its own on the shared server (``CREATE DATABASE``, trust auth), dropped
with its sessions (``WITH (FORCE)``) at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from anthropic_rx import testing
from anthropic_rx.demo import DemoSettings, create_app

from ..sinks._postgres import POSTGRES_HOST, POSTGRES_PORT, postgres_url
from ..sinks._server import Frame, parse_sse, serve
from ._client import DemoClient, terminal, text_of

pytestmark = pytest.mark.services

WAIT = 5.0


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database on the shared server; its SQLAlchemy URL. Dropped at exit."""
    # Skips, or fails under ANTHROPIC_RX_REQUIRE_SERVICES=1, when the server does not answer.
    admin = create_async_engine(postgres_url(), isolation_level="AUTOCOMMIT")
    name = f"arx_demo_{uuid.uuid4().hex[:12]}"
    try:
        async with asyncio.timeout(WAIT), admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"
        finally:
            async with asyncio.timeout(WAIT), admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """The URL of a database of the test's own (:func:`fresh_database`), dropped after it."""
    async with fresh_database() as made:
        yield made


def replying(count: int) -> tuple[testing.FakeAnthropic, list[str]]:
    """A fake that answers once, ``count`` words at 100 tokens a second; and the words."""
    fake = testing.FakeAnthropic()
    parts = [f"w{i} " for i in range(count)]
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=100)
    return fake, parts


@contextlib.asynccontextmanager
async def running(
    database_url: str, fake: testing.FakeAnthropic, cookies: httpx.Cookies | None = None
) -> AsyncIterator[DemoClient]:
    settings = DemoSettings(database_url=database_url, fake=fake, tokens_per_second=500)
    async with serve(create_app(settings), lifespan="on") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT, cookies=cookies) as http:
            yield DemoClient(http, wait=WAIT)


async def stored(database_url: str) -> list[tuple[str, str, str]]:
    """``(role, status, text)`` of every row of ``arx_messages``, read with an engine of its
    own (not the app's)."""
    engine = create_async_engine(database_url)
    try:
        async with asyncio.timeout(WAIT), engine.connect() as conn:
            result = await conn.execute(
                text("SELECT role, status, text FROM arx_messages ORDER BY created_at")
            )
            return [(row.role, row.status, row.text) for row in result]
    finally:
        await engine.dispose()


async def test_a_reply_streams_is_stored_and_survives_a_restart(url: str) -> None:
    fake, parts = replying(30)
    async with running(url, fake) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "What is streaming?")
        frames = await demo.read_reply(cid, "".join(parts))
        assert json.loads(terminal(frames).data or "")["stop_reason"] == "end_turn"
        before = await demo.settled(cid)
        assert [(r["role"], r["status"]) for r in before] == [
            ("user", "finished"),
            ("assistant", "finished"),
        ]
        reply = before[-1]
        assert reply["id"] == mid and reply["content"] == "".join(parts)
        assert reply["stop_reason"] == "end_turn"
        assert reply["usage"] == {"input_tokens": 10, "output_tokens": 30}
        cookies = demo.http.cookies
    # The rows are PostgreSQL's, in this test's database.
    assert await stored(url) == [
        ("user", "finished", "What is streaming?"),
        ("assistant", "finished", "".join(parts)),
    ]

    # A new app on the same database: the same browser finds its conversation unchanged.
    async with running(url, fake, cookies) as demo:
        assert await demo.messages(cid) == before
        listed = (await demo.http.get("/api/conversations")).json()
        assert [(c["id"], c["title"]) for c in listed] == [(cid, "What is streaming?")]
        assert (await demo.http.get(f"/api/conversations/{cid}/stream")).status_code == 204
    async with running(url, fake) as stranger:
        response = await stranger.http.get(f"/api/conversations/{cid}/messages")
        assert response.status_code == 404
    assert len(fake.requests) == 1


async def test_stop_ends_the_reply_cancelled(url: str) -> None:
    fake, parts = replying(300)
    async with running(url, fake) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "Talk")
        frames: list[Frame] = []
        body = b""
        async with asyncio.timeout(WAIT):
            async with demo.http.stream("GET", f"/api/conversations/{cid}/stream") as response:
                assert response.status_code == 200
                stopped = False
                async for chunk in response.aiter_bytes():
                    body += chunk
                    frames = parse_sse(body, complete=False)
                    # Stop once text has been seen: the reply is mid-generation.
                    if not stopped and text_of(frames):
                        stop = await demo.http.post(f"/api/conversations/{cid}/stop")
                        assert stop.status_code == 202
                        stopped = True
        assert terminal(frames).event == "cancelled"
        shown = text_of(frames)
        assert shown and "".join(parts).startswith(shown)
        assert len(shown) < len("".join(parts))
        rows = await demo.settled(cid)
        assert rows[-1]["id"] == mid and rows[-1]["status"] == "cancelled"
        assert rows[-1]["content"] == shown
        await fake.wait_closed()
    assert (await stored(url))[-1] == ("assistant", "cancelled", shown)
    assert fake.disconnects == 1
