"""The demo worker's edges, run in this process: a reply whose conversation's channel stays
busy, a reply whose stream fails, a startup whose database cannot open, and settings without
a queue."""

from __future__ import annotations

import asyncio
import datetime
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import reactivex
import sqlalchemy as sa
from arq.connections import ArqRedis, RedisSettings

from anthropic_rx import MessageStreamEvent, testing
from anthropic_rx.demo import DemoSettings, _worker
from anthropic_rx.demo._queue import channel_name

from .._services import redis_url, unique_prefix

pytestmark = pytest.mark.services

WAIT = 10.0
MESSAGES = [{"role": "user", "content": "Hi"}]


def settings_for(tmp_path: Path, **options: Any) -> DemoSettings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/demo.db",
        "redis_url": redis_url(),
        "redis_prefix": unique_prefix(),
        "worker": "external",
        "tokens_per_second": 1000,
    }
    values.update(options)
    return DemoSettings(**values)


@pytest.fixture
async def arq_redis() -> AsyncIterator[ArqRedis]:
    redis = ArqRedis.from_url(redis_url())
    yield redis
    await redis.aclose()


@pytest.fixture
async def worker(tmp_path: Path, arq_redis: ArqRedis) -> AsyncIterator[_worker.DemoWorker]:
    made = _worker.DemoWorker(settings_for(tmp_path), arq_redis)
    await made.open()
    yield made
    await made.aclose()


async def streaming_row(worker: _worker.DemoWorker, reply_id: str, conversation: str) -> None:
    """The assistant row the web process inserts before it queues the reply."""
    now = datetime.datetime.now(datetime.UTC)
    async with worker.writer.engine.begin() as conn:
        await conn.execute(
            sa.insert(worker.writer.table).values(
                id=reply_id,
                conversation_id=conversation,
                role="assistant",
                status="streaming",
                text="",
                content=[],
                usage_estimated=False,
                created_at=now,
                updated_at=now,
            )
        )


async def ask(worker: _worker.DemoWorker, conversation: str, reply_id: str) -> str:
    """One reply of the worker to the test's one-message conversation: how it ended."""
    return await worker.reply(
        conversation_id=conversation,
        reply_id=reply_id,
        messages=MESSAGES,
        model="claude-sonnet-4-5",
        max_tokens=64,
    )


async def row_of(worker: _worker.DemoWorker, reply_id: str) -> Any:
    table = worker.writer.table
    async with worker.writer.engine.connect() as conn:
        return (await conn.execute(sa.select(table).where(table.c.id == reply_id))).one()


def never_ending() -> reactivex.Observable[MessageStreamEvent]:
    return reactivex.never()


async def test_a_reply_whose_channel_stays_busy_ends_failed_and_asks_nothing(
    worker: _worker.DemoWorker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_worker, "_BUSY_WAIT", 0.3)  # the 3 s wait, shortened
    conversation, reply_id = "c-busy", "r-busy"
    await streaming_row(worker, reply_id, conversation)
    # Another reply's publisher holds the conversation's channel for the whole wait.
    other = await worker.hub.start(channel_name(conversation), never_ending())
    try:
        async with asyncio.timeout(WAIT):
            with caplog.at_level(logging.WARNING, "anthropic_rx.demo"):
                outcome = await ask(worker, conversation, reply_id)
    finally:
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
    assert outcome == "busy"
    assert "the conversation's channel stayed busy" in caplog.text
    row = await row_of(worker, reply_id)
    assert (row.status, row.error_type) == ("failed", _worker.BUSY_ERROR[0])
    assert await worker.claims.state(reply_id) == "failed"
    assert worker.fake is not None and worker.fake.requests == []  # nothing was asked


async def test_a_reply_whose_stream_fails_is_failed_and_recorded(
    worker: _worker.DemoWorker,
) -> None:
    assert worker.fake is not None
    # An overloaded error mid-stream: not retried, the reply ends with it.
    worker.fake.add_stream(
        testing.text_reply("a ", "b ", "c "), error_after=(2, "overloaded_error", "Overloaded")
    )
    conversation, reply_id = "c-fail", "r-fail"
    await streaming_row(worker, reply_id, conversation)
    async with asyncio.timeout(WAIT):
        outcome = await ask(worker, conversation, reply_id)
    assert outcome == "failed"
    row = await row_of(worker, reply_id)
    assert (row.status, row.error_type) == ("failed", "overloaded_error")
    assert await worker.claims.state(reply_id) == "open"  # the channel carried the failure


async def test_a_reply_a_web_process_abandoned_is_not_asked(worker: _worker.DemoWorker) -> None:
    assert await worker.claims.abandon("r-gone")
    async with asyncio.timeout(WAIT):
        outcome = await ask(worker, "c-gone", "r-gone")
    assert outcome == "abandoned"
    assert worker.fake is not None and worker.fake.requests == []


async def test_a_startup_whose_database_cannot_open_closes_what_it_opened(
    tmp_path: Path, arq_redis: ArqRedis
) -> None:
    unreachable = "postgresql+asyncpg://nobody@127.0.0.1:9/test"  # nothing listens there
    ctx: dict[str, Any] = {
        "redis": arq_redis,
        _worker._SETTINGS: settings_for(tmp_path, database_url=unreachable),
    }
    async with asyncio.timeout(WAIT):
        with pytest.raises((OSError, sa.exc.DBAPIError)):
            await _worker.startup(ctx)
    assert _worker._STATE not in ctx
    await _worker.shutdown(ctx)  # nothing left to close: no error


async def test_startup_and_shutdown_open_and_close_the_worker(
    tmp_path: Path, arq_redis: ArqRedis
) -> None:
    ctx: dict[str, Any] = {"redis": arq_redis, _worker._SETTINGS: settings_for(tmp_path)}
    await _worker.startup(ctx)
    worker = ctx[_worker._STATE]
    assert isinstance(worker, _worker.DemoWorker)
    await _worker.shutdown(ctx)
    assert _worker._STATE not in ctx
    # open() created the writer's table: the worker may start before any web process.
    with sqlite3.connect(tmp_path / "demo.db") as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert worker.writer.table.name in tables


def test_a_worker_without_a_redis_url_is_refused(tmp_path: Path) -> None:
    settings = DemoSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db")
    with pytest.raises(ValueError, match="needs ANTHROPIC_RX_REDIS_URL"):
        _worker.worker_options(settings)
    with pytest.raises(ValueError, match="needs ANTHROPIC_RX_REDIS_URL"):
        _worker.DemoWorker(settings, ArqRedis.from_url("redis://127.0.0.1:6379/0"))


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"ANTHROPIC_RX_DEMO_WORKER": "thread"}, "must be one of"),
        (
            {"ANTHROPIC_RX_REDIS_URL": "redis://127.0.0.1:6379/0", "ANTHROPIC_RX_DEMO_PORT": "x"},
            "not a port number",
        ),
    ],
)
def test_the_arq_settings_class_falls_back_to_arqs_defaults_on_bad_variables(
    environ: dict[str, str], match: str
) -> None:
    """Read at import: bad variables must not break ``import``; the worker's startup reads
    them again and says what is wrong."""
    redis, queue = _worker._env_queue(environ)
    assert (redis.host, redis.port) == (RedisSettings().host, RedisSettings().port)
    assert queue == DemoSettings().queue_name
    with pytest.raises(ValueError, match=match):
        DemoSettings.from_env(environ)


def test_the_arq_settings_class_reads_the_queue_of_good_variables() -> None:
    environ = {
        "ANTHROPIC_RX_REDIS_URL": "redis://127.0.0.1:6390/2",
        "ANTHROPIC_RX_DEMO_REDIS_PREFIX": "p",
    }
    redis, queue = _worker._env_queue(environ)
    assert (redis.port, redis.database, queue) == (6390, 2, "p:queue")
