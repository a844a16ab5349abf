"""A real queue: an arq worker process runs the queued job, the web process streams its reply.

The guide's ``AskClaudeJob`` is the arq job ``ask_claude(ctx, conversation_id, message_id,
prompt)``: one request to the model, through ``sinks.relay``, feeds the Redis broadcaster's
channel ``conversation.{conversation_id}`` and the database row ``message_id``; the flag
``stop-stream-{message_id}`` stops it from any process. Redis is arq's broker too. The web side
is a small Starlette app (``app``):

    POST /conversations/{cid}/messages {"content"}   enqueue the job: 202 {"message_id"}
    GET  /conversations/{cid}/stream                 the channel as SSE (``format="text"``);
                                                     204 until a worker has opened it
    POST /conversations/{cid}/messages/{mid}/stop    the Stop button: 202
    GET  /messages/{mid}                             the stored row: {"status", "text"}

The channel is the conversation's, so until a worker has picked up the next reply it still
holds the previous one: a page that showed that reply sends the id of its last frame
(``Last-Event-ID``) and gets 204 until the next reply's channel is open, then that reply from
its start. (A channel per reply, ``reply.{message_id}``, avoids the question altogether.)

Deployed, each runs on its own, from ``examples/`` (so ``13_arq_worker`` imports), with
``REDIS_URL``, ``DATABASE_URL``, ``ARQ_QUEUE_NAME`` and ``ARX_PREFIX`` in the environment::

    arq 13_arq_worker.WorkerSettings        # as many workers as you like
    uvicorn 13_arq_worker:app               # and web processes

Run as a script it shows both in one go: the fake Anthropic on a loopback port (so the worker
process reaches it), a worker started with ``python -m arq``, the app under uvicorn in this
process; it asks for a reply and prints what the stream and the database hold, asks for a
second one and stops it mid-reply, then stops the worker. Each run has a queue and key prefix
of its own and a SQLite file in a temporary directory. Needs Redis on 127.0.0.1:6379 (or
``REDIS_URL``) and the ``queue``, ``web`` and ``database`` extras.

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
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
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from arq import create_pool, func
from arq.connections import ArqRedis, RedisSettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import cancel, sinks, testing
from anthropic_rx import operators as ops

MODEL = "claude-sonnet-4-5"


@dataclass(frozen=True)
class Settings:
    """What both sides connect to, from the environment."""

    redis_url: str
    database_url: str
    queue_name: str
    prefix: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
            database_url=os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///chat.db"),
            queue_name=os.environ.get("ARQ_QUEUE_NAME", "arq:queue"),
            prefix=os.environ.get("ARX_PREFIX", "arx"),
        )


# --- the worker ------------------------------------------------------------------------------


async def startup(ctx: dict[str, Any]) -> None:
    """Once per worker process: the client, the hub, the flags and the writer every job uses."""
    settings = Settings.from_env()
    ctx["client"] = arx.Client()  # ANTHROPIC_API_KEY, or ANTHROPIC_BASE_URL (the fake)
    ctx["hub"] = sinks.RedisBroadcaster(settings.redis_url, prefix=settings.prefix)
    ctx["flags"] = cancel.RedisCancelFlags(settings.redis_url, prefix=settings.prefix)
    ctx["writer"] = sinks.DatabaseWriter(settings.database_url)
    await ctx["writer"].create_all()
    # Rows a killed worker left "streaming" become "incomplete" (older_than: above the
    # longest silence of a live reply, the client's idle_timeout).
    await ctx["writer"].recover(older_than=120)


async def shutdown(ctx: dict[str, Any]) -> None:
    """After the worker's jobs ended (on SIGTERM arq cancels them: their rows end
    ``incomplete``, their channels with ``IncompleteStreamError``)."""
    for name in ("writer", "flags", "hub", "client"):
        await ctx[name].aclose()


async def ask_claude(
    ctx: dict[str, Any], conversation_id: str, message_id: str, prompt: str
) -> str | None:
    """The queued job: one request to the model, to every subscriber and to the database.

    Returns:
        How the reply ended (``"finished"``, ``"cancelled"``), arq's result of the job;
        ``None`` when it was stopped before the model answered.

    Raises:
        Exception: the stream's error, once the channel and the row recorded it (arq records
            the job as failed).
    """
    client: arx.Client = ctx["client"]
    flags: cancel.RedisCancelFlags = ctx["flags"]
    events = client.stream(
        model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
    ).pipe(ops.take_until_cancel(flags.watch(f"stop-stream-{message_id}")))
    message = await sinks.relay(
        events,
        hub=ctx["hub"],
        channel=f"conversation.{conversation_id}",
        writer=ctx["writer"],
        message_id=message_id,
        conversation_id=conversation_id,
    )
    if message is None:
        return None
    return "cancelled" if message.cancelled else "finished"


class WorkerSettings:
    """What ``arq 13_arq_worker.WorkerSettings`` reads."""

    # Tried once: a reply cut by a dead worker is not asked for again (that would be paid for
    # twice); its row is left ``streaming`` until ``writer.recover()`` ends it ``incomplete``.
    functions = (func(ask_claude, max_tries=1, keep_result=60),)
    # A hard limit: arq cancels the job, which ends the reply at once (the channel with
    # IncompleteStreamError, the row incomplete, the request closed). Above the longest reply.
    job_timeout = 900
    queue_name = Settings.from_env().queue_name
    redis_settings = RedisSettings.from_dsn(Settings.from_env().redis_url)
    on_startup = startup
    on_shutdown = shutdown
    poll_delay = 0.1  # a queued reply starts within 0.1 s (arq's default is 0.5)


# --- the web process -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """The web process's queue, hub, flags and writer (reads only: the worker owns the table)."""
    settings = Settings.from_env()
    pool = await create_pool(
        RedisSettings.from_dsn(settings.redis_url), default_queue_name=settings.queue_name
    )
    hub = sinks.RedisBroadcaster(settings.redis_url, prefix=settings.prefix)
    flags = cancel.RedisCancelFlags(settings.redis_url, prefix=settings.prefix)
    writer = sinks.DatabaseWriter(settings.database_url)
    app.state.pool, app.state.hub, app.state.flags, app.state.writer = pool, hub, flags, writer
    try:
        yield
    finally:
        await writer.aclose()
        await flags.aclose()
        await hub.aclose()
        await pool.aclose()


async def ask(request: Request) -> Response:
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("content"), str):
        return JSONResponse({"error": "content: a string"}, status_code=422)
    message_id = uuid.uuid4().hex
    pool: ArqRedis = request.app.state.pool
    await pool.enqueue_job(
        "ask_claude", request.path_params["cid"], message_id, body["content"], _job_id=message_id
    )
    return JSONResponse({"message_id": message_id}, status_code=202)


async def stream(request: Request) -> Response:
    # An EventSource that reconnects sends Last-Event-ID and resumes after it.
    hub: sinks.RedisBroadcaster = request.app.state.hub
    replay = hub.subscribe(
        f"conversation.{request.path_params['cid']}",
        last_event_id=request.headers.get("last-event-id"),
    )
    return sinks.sse_response(replay, format="text")


async def stop(request: Request) -> Response:
    flags: cancel.RedisCancelFlags = request.app.state.flags
    await flags.request_stop(f"stop-stream-{request.path_params['mid']}")
    return Response(status_code=202)


async def stored(request: Request) -> Response:
    writer: sinks.DatabaseWriter = request.app.state.writer
    row = await writer.get(request.path_params["mid"])
    if row is None:
        return JSONResponse({"error": "no such message"}, status_code=404)
    return JSONResponse({"status": row.status, "text": row.text})


app = Starlette(
    routes=[
        Route("/conversations/{cid}/messages", ask, methods=["POST"]),
        Route("/conversations/{cid}/stream", stream),
        Route("/conversations/{cid}/messages/{mid}/stop", stop, methods=["POST"]),
        Route("/messages/{mid}", stored),
    ],
    lifespan=lifespan,
)


# --- run as a script: everything at once, on loopback ----------------------------------------


async def read_stream(
    http: httpx.AsyncClient, cid: str, *, stop_after: int | None = None, message_id: str = ""
) -> tuple[str, str]:
    """Read the conversation's stream as a page does: the text, and how it ended.

    The job is queued: until a worker has opened the channel the route answers 204, so the
    page looks again (a few seconds at most). With ``stop_after`` it presses Stop after that
    many text frames.
    """
    async with asyncio.timeout(15):
        while True:
            async with http.stream("GET", f"/conversations/{cid}/stream") as response:
                if response.status_code == 204:
                    await asyncio.sleep(0.05)
                    continue
                text, frames, event = "", 0, "message"
                async for line in response.aiter_lines():
                    if not line:  # the end of a frame
                        event = "message"
                    elif line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: ") and event == "message":
                        text += json.loads(line.removeprefix("data: "))["text"]
                        frames += 1
                        if frames == stop_after:
                            stopped = await http.post(
                                f"/conversations/{cid}/messages/{message_id}/stop"
                            )
                            print(f"POST .../stop mid-reply: {stopped.status_code}")
                    elif line.startswith("data: "):
                        return text, event
                raise RuntimeError("the stream ended without a terminal frame")


async def start_worker(directory: str) -> asyncio.subprocess.Process:
    """``python -m arq 13_arq_worker.WorkerSettings``, importing this file from its folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")])
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ beside the examples
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arq",
        f"{Path(__file__).stem}.WorkerSettings",
        cwd=directory,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


async def stop_worker(worker: asyncio.subprocess.Process) -> bytes:
    """SIGTERM, arq's graceful shutdown (running jobs are cancelled, ``on_shutdown`` runs);
    killed if it has not ended within 10 s. Its output (arq's log)."""
    if worker.returncode is None:
        worker.send_signal(signal.SIGTERM)
    try:
        output, _ = await asyncio.wait_for(worker.communicate(), 10)
    except TimeoutError:
        worker.kill()
        output, _ = await worker.communicate()
    return output


@contextlib.asynccontextmanager
async def web_server() -> AsyncIterator[str]:
    """``app`` under uvicorn on a free port of 127.0.0.1, in this process; its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="none")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if serving.done():  # it failed to start: show why
                    await serving
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def forget_run(settings: Settings, job_ids: list[str]) -> None:
    """Delete this run's keys from Redis: its queue, its jobs, its channels and flags."""
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    try:
        keys = [settings.queue_name, f"{settings.queue_name}:health-check"]
        for job_id in job_ids:
            keys += [f"arq:{kind}:{job_id}" for kind in ("job", "in-progress", "result", "retry")]
        keys += [key async for key in pool.scan_iter(f"{settings.prefix}:*")]
        await pool.delete(*keys)
    finally:
        await pool.aclose()


async def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    story = "Once upon a time, a small robot learned to stream its thoughts, one word at a time."
    fake.add_stream(testing.text_reply(*re.findall(r"\S+\s*", story)), tokens_per_second=100)
    counting = testing.text_reply(*[f"{n}, " for n in range(1, 201)])
    # Three text deltas, then nothing until the client goes away: a model still writing.
    fake.add_stream(
        counting, tokens_per_second=200, stall_after=len(testing.sse_bytes(counting.events()[:5]))
    )
    run = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory() as directory:
        os.environ.update(
            DATABASE_URL=f"sqlite+aiosqlite:///{directory}/chat.db",
            ARQ_QUEUE_NAME=f"arq:queue:example-{run}",  # this run's own queue and keys
            ARX_PREFIX=f"example-{run}",
        )
        settings = Settings.from_env()
        job_ids: list[str] = []
        async with contextlib.AsyncExitStack() as stack:
            if not real:
                # The worker process reaches the fake over loopback HTTP.
                os.environ["ANTHROPIC_BASE_URL"] = await stack.enter_async_context(fake.serve())
            worker = await start_worker(directory)
            try:
                base_url = await stack.enter_async_context(web_server())
                http = await stack.enter_async_context(
                    httpx.AsyncClient(base_url=base_url, timeout=15)
                )
                asked = await http.post("/conversations/42/messages", json={"content": "A story?"})
                message_id = asked.json()["message_id"]
                job_ids.append(message_id)
                print(f"POST /conversations/42/messages: {asked.status_code}, job queued")
                text, ended = await read_stream(http, "42")
                print(f"streamed from the worker: {text} (ended {ended})")
                row = (await http.get(f"/messages/{message_id}")).json()
                print(f"stored: {row['status']} {row['text']!r}")

                asked = await http.post("/conversations/7/messages", json={"content": "Count."})
                message_id = asked.json()["message_id"]
                job_ids.append(message_id)
                text, ended = await read_stream(http, "7", stop_after=3, message_id=message_id)
                print(f"stopped reply streamed: {text.strip()} (ended {ended})")
                row = (await http.get(f"/messages/{message_id}")).json()
                print(f"stopped reply stored: {row['status']} {row['text']!r}")
            finally:
                output = await stop_worker(worker)
            if worker.returncode != 0:
                sys.stderr.write(output.decode(errors="replace"))
            print(f"worker stopped: exit {worker.returncode}")
        await forget_run(settings, job_ids)
    if not real:
        await fake.wait_closed()
        print(f"requests: {len(fake.requests)}, closed by the worker: {fake.disconnects}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
