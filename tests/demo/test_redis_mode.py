"""The demo with ``ANTHROPIC_RX_REDIS_URL``: replies run as arq jobs in a real worker process
(``python -m anthropic_rx worker``, or arq's own command line), the web app in this process
serves them over loopback HTTP, the shared Redis (a key prefix and queue of each test's own)
carries the queue, the channel and the flags, and one SQLite file is shared by all.

The worker's replies come from its own embedded fake (the paced ~200-word answer, at the
``ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND`` its environment gives). A worker process takes seconds
to import the library, so the module starts two at once and shares them: ``fast`` (1,000 words
a second) and ``slow`` (20), each with a key prefix and queue of its own; each test asks in
conversations of its own. Tests that need a worker of their own (or none) make one."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from anthropic_rx import sinks
from anthropic_rx.demo import DemoSettings, create_app
from anthropic_rx.demo._fake_reply import answer_text
from anthropic_rx.demo._queue import NO_WORKER

from .._services import redis_url, unique_prefix
from ..sinks._server import serve
from ._client import DemoClient, terminal, text_of
from ._process import answer, clean_env, demo_process, free_port
from .test_postgres import fresh_database

pytestmark = pytest.mark.services

WAIT = 10.0
READY = b"Starting worker for"  # arq's line once the worker has connected


def demo_settings(tmp_path: Path, prefix: str, **options: Any) -> DemoSettings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/demo.db",
        "redis_url": redis_url(),
        "redis_prefix": prefix,
        "worker": "external",
        "tokens_per_second": 1000,
    }
    values.update(options)
    return DemoSettings(**values)


@dataclasses.dataclass
class Worker:
    """A worker process, and what it wrote on stderr (read by a thread, so it never blocks)."""

    process: subprocess.Popen[bytes]
    stderr: bytearray
    ready: threading.Event
    drainer: threading.Thread = dataclasses.field(init=False)

    @property
    def log(self) -> str:
        return self.stderr.decode(errors="replace")

    def drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr += line
            if READY in line:
                self.ready.set()


def start_worker(settings: DemoSettings, *, arq_cli: bool = False) -> Worker:
    """A worker process for ``settings``: ``python -m anthropic_rx worker``, or arq's own
    command line (``arq anthropic_rx.demo.WorkerSettings``)."""
    command = ["-m", "arq", "anthropic_rx.demo.WorkerSettings"] if arq_cli else None
    process = subprocess.Popen(
        [sys.executable, *(command or ["-m", "anthropic_rx", "worker"])],
        env=clean_env(**settings.worker_env()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    running = Worker(process, bytearray(), threading.Event())
    running.drainer = threading.Thread(target=running.drain, daemon=True)
    running.drainer.start()
    return running


def stop_worker(running: Worker) -> None:
    """SIGTERM it and reap it (SIGKILL after ``WAIT`` seconds)."""
    process = running.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=WAIT)
    running.drainer.join(timeout=WAIT)
    if process.stderr is not None:
        process.stderr.close()


@contextlib.contextmanager
def workers(*started: Worker) -> Iterator[list[Worker]]:
    """The ``started`` workers, once each reads its queue. At exit each is stopped, and must
    have answered SIGTERM by exiting 0 without a traceback."""
    try:
        for one in started:
            assert one.ready.wait(timeout=WAIT * 2), one.log
        yield list(started)
    finally:
        for one in started:
            stop_worker(one)  # every one, before any check can fail
    for one in started:
        assert one.process.returncode == 0, one.log
        assert "Traceback" not in one.log, one.log


@dataclasses.dataclass(frozen=True)
class Pool:
    fast: DemoSettings
    slow: DemoSettings


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    """The module's two workers (their settings: a web app with the same ones talks to it)."""
    tmp = tmp_path_factory.mktemp("redis-demo")
    fast = demo_settings(tmp, unique_prefix(), tokens_per_second=1000)
    slow = demo_settings(tmp, unique_prefix(), tokens_per_second=20)
    # Both at once (their imports overlap); the slow one through arq's own command line.
    with workers(start_worker(fast), start_worker(slow, arq_cli=True)):
        yield Pool(fast, slow)


@contextlib.asynccontextmanager
async def web(settings: DemoSettings) -> AsyncIterator[DemoClient]:
    """The demo app served in this process on loopback, and a browser-like client of it."""
    app = create_app(settings)
    async with serve(app, lifespan="on") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=WAIT) as http:
            yield DemoClient(http, wait=WAIT)


async def test_a_question_streams_through_the_worker(pool: Pool) -> None:
    async with web(pool.fast) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "What does the worker do?")
        # Asked right after the 202, as the page does: the reply, not 204.
        frames = await demo.read_reply(cid, answer_text("What does the worker do?"))
        assert all("-" in (f.id or "") for f in frames if f.data)  # Redis stream ids
        rows = await demo.settled(cid)
        assert [(r["role"], r["status"]) for r in rows] == [
            ("user", "finished"),
            ("assistant", "finished"),
        ]
        assert rows[-1]["id"] == mid and rows[-1]["content"] == text_of(frames)
        # The next question gets its own reply, not the last one's (still on the channel).
        await demo.ask(cid, "And then?")
        _, again = await demo.read_stream(cid)
        assert text_of(again) == answer_text("And then?")
        assert [r["status"] for r in await demo.settled(cid)] == ["finished"] * 4


async def test_stop_from_the_web_process_cancels_the_reply(pool: Pool) -> None:
    async with web(pool.slow) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "Talk slowly")
        _, first = await demo.read_stream(cid, stop_after=3)
        seen = [f for f in first if f.data and f.event is None][:3]
        assert (await demo.http.post(f"/api/conversations/{cid}/stop")).status_code == 202
        _, rest = await demo.read_stream(cid, last_event_id=seen[-1].id)
        assert terminal(rest).event == "cancelled"
        rows = await demo.settled(cid)
        assert rows[-1]["id"] == mid and rows[-1]["status"] == "cancelled"
        shown = text_of(seen) + text_of(rest)
        assert rows[-1]["content"] == shown
        assert answer_text("Talk slowly").startswith(shown) and len(shown.split()) < 100


async def test_a_second_question_while_one_streams_is_409(pool: Pool) -> None:
    async with web(pool.slow) as demo:
        cid = await demo.conversation()
        await demo.ask(cid, "First")
        await demo.refused(cid, "Second")
        await demo.http.post(f"/api/conversations/{cid}/stop")
        rows = await demo.settled(cid)
        assert [r["content"] for r in rows if r["role"] == "user"] == ["First"]
        assert rows[-1]["status"] == "cancelled"
        # Another conversation is not busy.
        other = await demo.conversation()
        await demo.ask(other, "Elsewhere")
        await demo.http.post(f"/api/conversations/{other}/stop")
        assert (await demo.settled(other))[-1]["status"] == "cancelled"


async def test_two_web_processes_share_the_conversation(pool: Pool) -> None:
    async with web(pool.fast) as one, web(pool.fast) as other:
        cid = await one.conversation()
        other.http.cookies.update(one.http.cookies)
        # Posted through one, streamed from the other (which never saw the question).
        mid = await one.ask(cid, "Shared?")
        frames = await other.read_reply(cid, answer_text("Shared?"))
        rows = await other.settled(cid)
        assert rows[-1]["id"] == mid and rows[-1]["content"] == text_of(frames)
        assert [r["id"] for r in (await one.http.get("/api/conversations")).json()] == [cid]


async def test_one_question_at_a_time_across_web_processes(pool: Pool) -> None:
    async with web(pool.slow) as one, web(pool.slow) as other:
        cid = await one.conversation()
        other.http.cookies.update(one.http.cookies)
        # A question posted to both at once: each process's own lock does not see the other's;
        # the database's compare-and-set takes exactly one, every round.
        for round_ in range(3):
            answers = await asyncio.gather(
                *(
                    demo.http.post(
                        f"/api/conversations/{cid}/messages", json={"content": f"Race {round_}"}
                    )
                    for demo in (one, other)
                )
            )
            assert sorted(r.status_code for r in answers) == [202, 409], round_
            assert (await other.http.post(f"/api/conversations/{cid}/stop")).status_code == 202
            assert (await one.settled(cid))[-1]["status"] == "cancelled"
        users = [r["content"] for r in await one.messages(cid) if r["role"] == "user"]
        assert users == ["Race 0", "Race 1", "Race 2"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_simultaneous_questions_in_two_web_processes_take_one(
    tmp_path: Path, database: str
) -> None:
    # No worker: what is tested is the compare-and-set alone, on both databases.
    async with contextlib.AsyncExitStack() as stack:
        options: dict[str, Any] = {}
        if database == "postgresql":
            options["database_url"] = await stack.enter_async_context(fresh_database())
        settings = demo_settings(tmp_path, unique_prefix(), worker_timeout=60, **options)
        one = await stack.enter_async_context(web(settings))
        other = await stack.enter_async_context(web(settings))
        cids = [await one.conversation() for _ in range(4)]
        other.http.cookies.update(one.http.cookies)
        answers = await asyncio.gather(
            *(
                demo.http.post(f"/api/conversations/{cid}/messages", json={"content": "Me"})
                for cid in cids
                for demo in (one, other)
            )
        )
        codes = [r.status_code for r in answers]
        assert [sorted(codes[i : i + 2]) for i in range(0, len(codes), 2)] == [[202, 409]] * 4
        for cid in cids:
            rows = await one.messages(cid)
            assert [(r["role"], r["status"]) for r in rows] == [
                ("user", "finished"),
                ("assistant", "streaming"),
            ]


async def test_a_reply_no_worker_starts_ends_readable(tmp_path: Path) -> None:
    from anthropic_rx.demo._jobs import connect_queue
    from anthropic_rx.demo._worker import DemoWorker

    settings = demo_settings(tmp_path, unique_prefix(), worker_timeout=0.5)
    async with web(settings) as demo:
        cid = await demo.conversation()
        mid = await demo.ask(cid, "Anyone there?")
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, frames = await demo.read_stream(cid)
        assert loop.time() - started < 2 * settings.worker_timeout + 1
        assert status == 200
        end = terminal(frames)
        assert end.event == "error"
        assert json.loads(end.data or "") == {"type": NO_WORKER[0], "message": NO_WORKER[1]}
        rows = await demo.messages(cid)
        assert rows[-1]["id"] == mid and rows[-1]["status"] == "failed"
        assert rows[-1]["error"] == {"type": NO_WORKER[0], "message": NO_WORKER[1]}
        # A worker that takes the job now finds it abandoned: nothing is asked.
        redis = await connect_queue(settings)
        late = DemoWorker(settings, redis)
        try:
            await late.open()
            outcome = await late.reply(
                conversation_id=cid,
                reply_id=mid,
                messages=[{"role": "user", "content": "Anyone there?"}],
                model=settings.model,
                max_tokens=64,
            )
        finally:
            await late.aclose()
            await redis.aclose()
        assert outcome == "abandoned"
        assert late.fake is not None and late.fake.requests == []
        assert (await demo.messages(cid))[-1]["status"] == "failed"
        # The conversation is not left busy.
        await demo.ask(cid, "Now?")
        assert (await demo.messages(cid))[-1]["status"] == "streaming"


async def test_an_unfollowed_unstarted_reply_does_not_keep_the_conversation_busy(
    tmp_path: Path,
) -> None:
    settings = demo_settings(tmp_path, unique_prefix(), worker_timeout=0.3)
    async with web(settings) as demo:
        cid = await demo.conversation()
        first = await demo.ask(cid, "Lost")
        assert (
            await demo.http.post(f"/api/conversations/{cid}/messages", json={"content": "x"})
        ).status_code == 409
        # Nobody follows it (the tab was closed): once it is older than worker_timeout, the
        # next question abandons it instead of answering 409 for ever. What is waited for is
        # the reply's age: no event marks it.
        await asyncio.sleep(settings.worker_timeout)
        await demo.ask(cid, "Again")
        by_id = {r["id"]: r for r in await demo.messages(cid)}
        assert by_id[first]["status"] == "failed"
        assert by_id[first]["error"]["type"] == NO_WORKER[0]


async def test_the_demo_with_redis_runs_its_worker_and_leaves_none(tmp_path: Path) -> None:
    port = free_port()
    settings = demo_settings(tmp_path, unique_prefix(), port=port, worker="child")
    env = clean_env(**settings.worker_env(), ANTHROPIC_RX_DEMO_PORT=str(port))
    env["ANTHROPIC_RX_DEMO_WORKER"] = "child"
    async with demo_process(
        "anthropic_rx.demo", port=port, cwd=tmp_path, env=env, stop=signal.SIGINT, wait=WAIT
    ) as demo:
        demo.children = child_pids(demo.process.pid)
        assert len(demo.children) == 1  # the worker
        text = await answer(demo.http, "via the child", wait=WAIT)
        assert text == answer_text("via the child")
    assert demo.process.returncode == 0, demo.stderr.decode()
    assert b"Traceback" not in demo.stderr, demo.stderr.decode()
    for pid in demo.children:
        assert gone(pid), f"worker {pid} outlived the demo"


async def test_sigterm_stops_the_demo_and_its_worker_mid_reply(tmp_path: Path) -> None:
    port = free_port()
    settings = demo_settings(
        tmp_path, unique_prefix(), port=port, worker="child", tokens_per_second=20
    )
    env = clean_env(**settings.worker_env(), ANTHROPIC_RX_DEMO_PORT=str(port))
    env["ANTHROPIC_RX_DEMO_WORKER"] = "child"
    # Its stderr is the worker's too: the child shares the demo's.
    async with demo_process(
        "anthropic_rx", "demo", port=port, cwd=tmp_path, env=env, stop=signal.SIGTERM, wait=WAIT
    ) as demo:
        demo.children = child_pids(demo.process.pid)
        assert len(demo.children) == 1
        cid = (await demo.http.post("/api/conversations")).json()["id"]
        mid = (
            await demo.http.post(f"/api/conversations/{cid}/messages", json={"content": "Long"})
        ).json()["message_id"]
        _, frames = await DemoClient(demo.http, wait=WAIT).read_stream(cid, stop_after=2)
        assert text_of(frames)
    # Ended by SIGTERM's default action once both were down, as uvicorn alone ends.
    assert demo.process.returncode == -signal.SIGTERM, demo.stderr.decode()
    assert b"Traceback" not in demo.stderr, demo.stderr.decode()
    for pid in demo.children:
        assert gone(pid), f"worker {pid} outlived the demo"
    # The worker cancelled the reply it was streaming: its row says so.
    assert reply_status(tmp_path / "demo.db", mid) == "incomplete"


def reply_status(database: Path, reply_id: str) -> str:
    with contextlib.closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT status FROM arx_messages WHERE id = ?", (reply_id,)).fetchone()
    assert row is not None
    return str(row[0])


def gone(pid: int) -> bool:
    """Whether no process ``pid`` exists (not even a zombie: the demo reaped its worker)."""
    return not Path(f"/proc/{pid}").exists()


def child_pids(pid: int) -> list[int]:
    """The live children of ``pid`` (Linux ``/proc``)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found.extend(int(child) for child in children)
    return found


# --- settings ----------------------------------------------------------------------------


def test_from_env_reads_the_worker_variables() -> None:
    settings = DemoSettings.from_env(
        {
            "ANTHROPIC_RX_REDIS_URL": "redis://127.0.0.1:6379/3",
            "ANTHROPIC_RX_DEMO_WORKER": "External",
            "ANTHROPIC_RX_DEMO_WORKER_TIMEOUT": "2.5",
            "ANTHROPIC_RX_DEMO_REDIS_PREFIX": "my-demo",
        }
    )
    assert settings.queued and settings.jobs == "auto"
    assert settings.worker == "external" and settings.worker_timeout == 2.5
    assert settings.queue_name == "my-demo:queue"
    back = DemoSettings.from_env(settings.worker_env())
    assert dataclasses.replace(back, worker="external") == dataclasses.replace(
        settings, worker="external"
    )
    tasks = DemoSettings.from_env(
        {"ANTHROPIC_RX_REDIS_URL": "redis://x:1/0", "ANTHROPIC_RX_DEMO_JOBS": "tasks"}
    )
    assert not tasks.queued
    assert not DemoSettings().queued


@pytest.mark.parametrize(
    ("environ", "match"),
    [
        ({"ANTHROPIC_RX_DEMO_WORKER": "thread"}, "ANTHROPIC_RX_DEMO_WORKER must be one of"),
        ({"ANTHROPIC_RX_DEMO_JOBS": "celery"}, "ANTHROPIC_RX_DEMO_JOBS must be one of"),
        ({"ANTHROPIC_RX_DEMO_JOBS": "arq"}, "needs a redis_url"),
        ({"ANTHROPIC_RX_DEMO_WORKER_TIMEOUT": "soon"}, "not a number"),
        ({"ANTHROPIC_RX_DEMO_WORKER_TIMEOUT": "0"}, "must be positive"),
        ({"ANTHROPIC_RX_DEMO_REDIS_PREFIX": "a{b}"}, "redis_prefix"),
        ({"ANTHROPIC_RX_DEMO_PORT": "eighty"}, "not a port number"),
    ],
)
def test_bad_worker_settings_are_refused(environ: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DemoSettings.from_env(environ)


def test_a_fake_of_this_process_cannot_answer_in_a_worker() -> None:
    from anthropic_rx import testing

    with pytest.raises(ValueError, match="jobs='tasks'"):
        DemoSettings(redis_url="redis://127.0.0.1:6379/0", fake=testing.FakeAnthropic())
    assert not DemoSettings(
        redis_url="redis://127.0.0.1:6379/0", fake=testing.FakeAnthropic(), jobs="tasks"
    ).queued


def test_the_worker_environment_carries_no_key_it_was_not_given() -> None:
    env = DemoSettings(redis_url="redis://127.0.0.1:6379/0").worker_env()
    assert "ANTHROPIC_API_KEY" not in env and env["ANTHROPIC_RX_DEMO_WORKER"] == "external"
    keyed = DemoSettings(redis_url="redis://127.0.0.1:6379/0", api_key="sk-ant-x").worker_env()
    assert keyed["ANTHROPIC_API_KEY"] == "sk-ant-x"


async def test_the_web_process_in_redis_mode_asks_no_model(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path, unique_prefix())
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        jobs = app.state.jobs
        assert jobs.queued and jobs.client is None and jobs.fake is None
        assert isinstance(jobs.hub, sinks.RedisBroadcaster)
