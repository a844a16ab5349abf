"""The queued job on a real queue: an arq worker OS process relays each reply, the web process
enqueues it, streams the channel over SSE and stops it.

```
test process                                        worker process (python -m arq ...)
  FakeAnthropic.serve()  ◄──── HTTP/1.1 loopback ────  client.stream(...)
  Starlette app (uvicorn, 127.0.0.1)                     .pipe(take_until_cancel(flags.watch))
    POST .../messages ──► arq queue (Redis) ──────────►  sinks.relay(hub=, writer=)
    GET  .../stream  ◄── RedisBroadcaster channel ◄────────┤
    POST .../stop    ──► RedisCancelFlags ─────────────────┘
  DatabaseWriter.get / recover ◄── the same SQLite file (or PostgreSQL table) ──┘
```

The worker is ``tests/sinks/_arq_worker.py``; every test has an arq queue, a key prefix and a
database of its own, and both processes' broadcasters agree on ``stale_after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import anthropic_rx as arx
from anthropic_rx import cancel, sinks, testing
from tests._services import redis_url, unique_prefix
from tests.sinks._arq_worker import ENV, MODEL
from tests.sinks._postgres import postgres_url, unique_table
from tests.sinks._server import Frame, parse_sse, serve

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0  # seconds any single wait in this file may take before the test fails
STALE_AFTER = 1.0  # both processes' broadcasters: a dead publisher is noticed within this
STORY = "Once upon a time, a small robot learned to stream its thoughts, one word at a time."


def story_reply() -> testing.Reply:
    return testing.text_reply(*re.findall(r"\S+\s*", STORY))


# --- the worker process ----------------------------------------------------------------------


class Worker:
    """One arq worker OS process; its output (arq's log) is kept for failure messages."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.output = bytearray()
        self._reading: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "arq",
            "tests.sinks._arq_worker.WorkerSettings",
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reading = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while chunk := await self.process.stdout.read(65536):
            self.output += chunk

    @property
    def log(self) -> str:
        return self.output.decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crashed or OOM-killed worker."""
        assert self.process is not None
        self.process.kill()

    async def wait(self) -> int:
        """Wait for the process to end (at most WAIT) and its output; its exit status."""
        assert self.process is not None and self._reading is not None
        async with asyncio.timeout(WAIT):
            status = await self.process.wait()
            await self._reading
        return status

    async def stop(self) -> int:
        """SIGTERM (arq's shutdown: running jobs cancelled, ``on_shutdown`` run), then wait;
        killed when it does not end within WAIT."""
        if self.process is None:
            return 0
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                self.process.send_signal(signal.SIGTERM)
        try:
            return await self.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise


# --- the web process: a Starlette app over the same queue, hub and flags -----------------------


def web_app(pool: ArqRedis, hub: sinks.RedisBroadcaster, flags: cancel.RedisCancelFlags) -> Any:
    """The web side of the guide's recipe: enqueue, follow the channel, stop."""

    async def ask(request: Request) -> Response:
        conversation_id = request.path_params["cid"]
        body = await request.json()
        message_id = uuid.uuid4().hex
        job = await pool.enqueue_job(
            "ask_claude", conversation_id, message_id, body["content"], _job_id=message_id
        )
        assert job is not None
        return JSONResponse({"message_id": message_id}, status_code=202)

    async def stream(request: Request) -> Response:
        channel = f"conversation.{request.path_params['cid']}"
        replay = hub.subscribe(channel, last_event_id=request.headers.get("last-event-id"))
        return sinks.sse_response(replay, format="text")

    async def stop(request: Request) -> Response:
        await flags.request_stop(f"stop-stream-{request.path_params['mid']}")
        return Response(status_code=202)

    return Starlette(
        routes=[
            Route("/conversations/{cid}/messages", ask, methods=["POST"]),
            Route("/conversations/{cid}/stream", stream),
            Route("/conversations/{cid}/messages/{mid}/stop", stop, methods=["POST"]),
        ]
    )


@dataclass
class Stack:
    """The test process's side: the fake API, the web app over HTTP, the database, and the
    worker processes it started."""

    fake: testing.FakeAnthropic
    http: httpx.AsyncClient
    hub: sinks.RedisBroadcaster
    writer: sinks.DatabaseWriter
    pool: ArqRedis
    queue: str
    worker_env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)  # message ids, which are the job ids

    async def start_worker(self) -> Worker:
        worker = await Worker(self.worker_env).start()
        self.workers.append(worker)
        return worker

    async def ask(self, conversation_id: str, content: str) -> str:
        """POST a message: the reply is queued; its message id."""
        response = await self.http.post(
            f"/conversations/{conversation_id}/messages", json={"content": content}
        )
        assert response.status_code == 202, response.text
        message_id: str = response.json()["message_id"]
        self.asked.append(message_id)
        return message_id

    async def stop(self, conversation_id: str, message_id: str) -> None:
        response = await self.http.post(
            f"/conversations/{conversation_id}/messages/{message_id}/stop"
        )
        assert response.status_code == 202

    async def frames(
        self, conversation_id: str, last_event_id: str | None = None
    ) -> AsyncIterator[Frame]:
        """The SSE frames of the conversation's stream as they arrive, until it ends.

        Until the worker has opened the channel for this reply the route answers 204 (no
        channel yet, or nothing after ``last_event_id`` in the reply before): it is asked
        again, as a page does, until the caller's timeout.
        """
        headers = {"last-event-id": last_event_id} if last_event_id else {}
        while True:
            async with self.http.stream(
                "GET", f"/conversations/{conversation_id}/stream", headers=headers
            ) as response:
                if response.status_code == 204:
                    await asyncio.sleep(0.02)  # the job is still queued: look again
                    continue
                assert response.status_code == 200
                assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
                pending = b""
                async for chunk in response.aiter_bytes():
                    pending += chunk
                    complete, _, pending = pending.rpartition(b"\n\n")
                    if complete:
                        for frame in parse_sse(complete + b"\n\n"):
                            yield frame
                assert pending == b"", "the stream ended inside a frame"
                return

    async def job_result(self, message_id: str) -> Any:
        """The arq job's result (what the job returned), waited for."""
        job = Job(message_id, self.pool, _queue_name=self.queue)
        return await job.result(timeout=WAIT, poll_delay=0.02)


def texts(frames: list[Frame]) -> list[str]:
    """The text of each ``data: {"text"}`` frame."""
    return [json.loads(f.data)["text"] for f in frames if f.event is None and f.data is not None]


async def read_reply(stack: Stack, conversation_id: str, **options: Any) -> list[Frame]:
    """Every frame of one reply's stream, with an id each."""
    async with asyncio.timeout(WAIT):
        frames = [frame async for frame in stack.frames(conversation_id, **options)]
    carrying = [f for f in frames if f.data is not None]
    assert carrying and all(f.id for f in carrying)
    assert len({f.id for f in carrying}) == len(carrying), "an id twice"
    return carrying


async def _drop_arq_keys(client: Redis, queue: str, job_ids: list[str]) -> None:
    """The test's own arq keys (the shared Redis is never flushed)."""
    keys = [queue, f"{queue}:health-check"]
    for job_id in job_ids:
        keys += [f"arq:{kind}:{job_id}" for kind in ("job", "in-progress", "result", "retry")]
    await client.delete(*keys)


@contextlib.asynccontextmanager
async def open_stack(tmp_path: Path, database: str = "sqlite") -> AsyncIterator[Stack]:
    """Everything of the test process, with a queue, a prefix and a database of its own; at
    exit every worker still running is stopped and the test's keys and table are dropped."""
    url = redis_url()
    if database == "postgres":
        database_url, table = postgres_url(), unique_table()
    else:
        database_url, table = f"sqlite+aiosqlite:///{tmp_path}/chat.db", ""
    prefix = unique_prefix()
    queue = f"arq:queue:{prefix}"
    fake = testing.FakeAnthropic()
    hub = sinks.RedisBroadcaster(url, prefix=prefix, stale_after=STALE_AFTER)
    flags = cancel.RedisCancelFlags(url, prefix=prefix)
    writer = sinks.DatabaseWriter(database_url, table=table or None)
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
    stack: Stack | None = None
    try:
        await writer.create_all()
        async with (
            fake.serve() as api_url,
            serve(web_app(pool, hub, flags)) as running,
            httpx.AsyncClient(base_url=running.url, timeout=WAIT) as http,
        ):
            env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
            env["PYTHONPATH"] = str(ROOT)
            values = {
                "redis": url,
                "queue": queue,
                "prefix": prefix,
                "stale_after": str(STALE_AFTER),
                "api": api_url,
                "database": database_url,
                "table": table,
            }
            env.update({ENV[role]: value for role, value in values.items()})
            stack = Stack(fake, http, hub, writer, pool, queue, env)
            try:
                yield stack
            finally:
                for worker in stack.workers:
                    await worker.stop()
    finally:
        await _drop_arq_keys(pool, queue, stack.asked if stack is not None else [])
        async for key in pool.scan_iter(f"{prefix}:*"):
            await pool.delete(key)
        await pool.aclose()
        await writer.aclose()
        await flags.aclose()
        await hub.aclose()
        if table:
            engine = create_async_engine(database_url)
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP TABLE IF EXISTS "{table}"'))
            await engine.dispose()


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_a_worker_process_relays_a_reply_to_the_web_and_a_second_until_it_is_stopped(
    tmp_path: Path, database: str
) -> None:
    async with open_stack(tmp_path, database) as stack:
        stack.fake.add_stream(story_reply(), tokens_per_second=300)
        counting = testing.text_reply(*[f"{n}, " for n in range(1, 201)])
        # Three text deltas, then nothing until the client goes away: a model still writing.
        stalled_at = len(testing.sse_bytes(counting.events()[:5]))
        stack.fake.add_stream(counting, tokens_per_second=200, stall_after=stalled_at)
        worker = await stack.start_worker()

        # A reply to its end: the web subscriber gets every event, the row ends finished.
        message_id = await stack.ask("42", "Tell me a very short story.")
        frames = await read_reply(stack, "42")
        assert "".join(texts(frames)) == STORY
        assert frames[-1].event == "done"
        assert json.loads(frames[-1].data or "")["stop_reason"] == "end_turn"
        assert await stack.job_result(message_id) == {"text": STORY, "cancelled": False}
        row = await stack.writer.get(message_id)
        assert row is not None
        assert (row.status, row.text, row.conversation_id) == ("finished", STORY, "42")
        assert row.request_id == "req_fake_0001" and not row.usage_estimated
        stack.fake.assert_sent(model=MODEL, stream=True)

        # A second reply, stopped from the web process after three text deltas.
        message_id = await stack.ask("7", "Count slowly to two hundred.")
        frames = []
        async with asyncio.timeout(WAIT):
            async for frame in stack.frames("7"):
                frames.append(frame)
                if len(texts(frames)) == 3 and frame.event is None and frame.data:
                    await stack.stop("7", message_id)  # the Stop button
        assert "".join(texts(frames)) == "1, 2, 3, "
        assert frames[-1].event == "cancelled"
        assert json.loads(frames[-1].data or "")["usage_estimated"] is True
        assert await stack.job_result(message_id) == {"text": "1, 2, 3, ", "cancelled": True}
        row = await stack.writer.get(message_id)
        assert row is not None
        assert (row.status, row.text, row.usage_estimated) == ("cancelled", "1, 2, 3, ", True)
        # The worker closed its request to the model: no more tokens are paid for.
        await stack.fake.wait_closed(timeout=WAIT)
        assert stack.fake.disconnects == 1 and len(stack.fake.requests) == 2

        assert await worker.stop() == 0, worker.log
    assert "Traceback" not in worker.log, worker.log


async def collect(source: Any) -> tuple[list[sinks.Broadcast], Exception | None]:
    """Every item of a broadcast subscription, and the error it ended with (at most WAIT)."""
    items: list[sinks.Broadcast] = []
    try:
        async with asyncio.timeout(WAIT), arx.to_async_iterator(source) as iterator:
            async for item in iterator:
                items.append(item)
    except Exception as error:
        return items, error
    return items, None


LONG_WORDS = [f"w{i} " for i in range(2000)]  # 20 s at 100 tokens/s: cut long before its end
RECOVER_AFTER = 0.3  # seconds a streaming row must have been left alone for recover


async def test_a_killed_worker_leaves_an_incomplete_reply_and_a_restarted_one_serves_the_next(
    tmp_path: Path,
) -> None:
    async with open_stack(tmp_path) as stack:
        stack.fake.add_stream(testing.text_reply(*LONG_WORDS), tokens_per_second=100)
        stack.fake.add_stream(story_reply(), tokens_per_second=300)
        first = await stack.start_worker()
        message_id = await stack.ask("9", "Count for a long time.")
        frames: list[Frame] = []
        killed_at = 0.0
        second: Worker | None = None
        async with asyncio.timeout(WAIT):
            async for frame in stack.frames("9"):
                frames.append(frame)
                if second is None and len(texts(frames)) == 5:
                    first.kill()
                    killed_at = time.monotonic()
                    # Restarted at once, as a supervisor does.
                    second = await stack.start_worker()
        noticed_after = time.monotonic() - killed_at
        assert await first.wait() == -signal.SIGKILL

        # The web subscriber ended with IncompleteStreamError within stale_after, not hung.
        shown = "".join(texts(frames))
        assert shown.startswith("w0 w1 w2 w3 w4 ")
        assert frames[-1].event == "error"
        assert json.loads(frames[-1].data or "")["type"] == "IncompleteStreamError"
        assert noticed_after < STALE_AFTER + 0.5  # from the kill; the rest is scheduling slack
        # A subscriber of the channel itself gets the typed error, with what was said so far.
        items, error = await collect(stack.hub.subscribe("conversation.9"))
        assert isinstance(error, arx.IncompleteStreamError), error
        assert error.partial_message is not None
        assert items[-1].id == frames[-1].id
        # The dead worker's connection to the model is gone too.
        await stack.fake.wait_closed(timeout=WAIT)
        assert stack.fake.disconnects == 1

        # Its row is left streaming; recover ends it once it has been left alone long enough.
        row = await stack.writer.get(message_id)
        assert row is not None and row.status == "streaming"
        # The row's last checkpoint and the channel's log are each some prefix of the reply.
        assert "".join(LONG_WORDS).startswith(row.text)
        assert await stack.writer.recover(older_than=60) == 0  # too recent to be given up
        # recover measures how long the row was left alone: let that much time pass.
        left_alone = (datetime.now(UTC) - row.updated_at).total_seconds()
        await asyncio.sleep(max(0.0, RECOVER_AFTER - left_alone) + 0.01)
        assert await stack.writer.recover(older_than=RECOVER_AFTER) == 1
        row = await stack.writer.get(message_id)
        assert row is not None
        assert (row.status, row.error_type) == ("incomplete", "IncompleteStreamError")
        assert "".join(LONG_WORDS).startswith(row.text) and row.usage_estimated

        # The restarted worker serves the conversation's next reply on the same channel: the
        # page resumes after the last id it saw, which replays the new reply from its start.
        assert second is not None
        next_id = await stack.ask("9", "Tell me a very short story.")
        resumed = await read_reply(stack, "9", last_event_id=frames[-1].id)
        assert "".join(texts(resumed)) == STORY and resumed[-1].event == "done"
        assert await stack.job_result(next_id) == {"text": STORY, "cancelled": False}
        row = await stack.writer.get(next_id)
        assert row is not None and row.status == "finished" and row.text == STORY
        assert len(stack.fake.requests) == 2
        assert await second.stop() == 0, second.log
    assert "Traceback" not in second.log, second.log
