"""The Redis broadcaster and flags across OS processes: publisher, subscribers and stop apart.

```
test process                                  child processes (tests/sinks/_redis_child.py)
  FakeAnthropic.serve() ◄── HTTP/1.1 loopback ── publish:   hub.start(channel, client.stream(...)
                                                               .pipe(take_until_cancel(watch)))
  RedisBroadcaster (reads the log) ◄─ Redis ──► subscribe: hub.subscribe(channel, last_event_id)
  RedisCancelFlags (a second watch)  ◄─ Redis ──► stop:      flags.request_stop(name)
```

A child takes longer to start (its imports) than a reply lasts, so every child is started
ahead, says ``ready``, and acts on the orders the test writes: the order of events is the
test's, not the scheduler's. Every wait has a timeout; the ``children`` fixture kills and reaps
whatever is still running when a test ends, passed or failed. Each test has a key prefix of its
own on the shared Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeAlias

import pytest

import anthropic_rx as arx
from anthropic_rx import cancel, sinks, testing
from anthropic_rx import operators as ops
from tests._services import redis_url, unique_prefix
from tests.sinks.test_broadcast import collect, id_key, words

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "conversation.1"
READY_WAIT = 20.0  # a child's start-up (imports) on a loaded machine
WAIT = 10.0  # any other single wait in this file
DEADLINE = 40.0  # a child ends by itself after this many seconds, whatever happens

Line: TypeAlias = dict[str, Any]


# --- the child processes ---------------------------------------------------------------------


class Child:
    """One child process: its stdout read line by line (JSON) as it prints them."""

    def __init__(self, role: str, process: asyncio.subprocess.Process) -> None:
        self.role = role
        self.process = process
        self.lines: list[Line] = []
        self.eof = False
        self._stderr = bytearray()
        self._changed = asyncio.Event()
        self._readers = [
            asyncio.create_task(self._read_stdout()),
            asyncio.create_task(self._read_stderr()),
        ]

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        try:
            while True:
                raw = await self.process.stdout.readline()
                if not raw.endswith(b"\n"):  # the end; or a line a kill cut: never printed
                    return
                self.lines.append(json.loads(raw))
                self._changed.set()
        finally:
            self.eof = True
            self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self._stderr += chunk

    def _report(self, what: str) -> str:
        stderr = self._stderr.decode(errors="replace")[-2000:]
        return (
            f"{self.role} (status {self.process.returncode}) {what}; "
            f"last lines {self.lines[-3:]}; stderr:\n{stderr}"
        )

    def has(self, key: str) -> bool:
        """Whether a line with ``key`` was printed."""
        return any(key in line for line in self.lines)

    async def until(self, condition: Callable[[list[Line]], bool], *, within: float = WAIT) -> None:
        """Wait until the lines printed so far satisfy ``condition`` (at most ``within`` s).

        Raises:
            AssertionError: the child ended, or the time ran out, first.
        """
        try:
            async with asyncio.timeout(within):
                while not condition(self.lines):
                    if self.eof:
                        raise AssertionError(self._report("ended before the awaited line"))
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(self._report(f"did not print it within {within:g} s")) from None

    async def go(self, **params: Any) -> None:
        """Write an order on the child's stdin: it acts now."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(params).encode() + b"\n")
        await self.process.stdin.drain()

    async def subscription(self, **params: Any) -> list[Line]:
        """Order one more subscription of a subscriber; its lines, up to how it ended."""
        mark = len(self.lines)
        await self.go(**params)
        await self.until(lambda lines: any(ended(line) for line in lines[mark:]))
        return self.lines[mark:]

    async def _reaped(self) -> None:
        """Wait for the exit and the end of both pipes (at most WAIT)."""
        try:
            async with asyncio.timeout(WAIT):
                await self.process.wait()
                await asyncio.gather(*self._readers)
        except TimeoutError:
            raise AssertionError(self._report(f"did not end within {WAIT:g} s")) from None

    async def finish(self) -> list[Line]:
        """Close its stdin (no more orders), wait for it to end by itself, successfully; every
        line it printed."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        await self._reaped()
        assert self.process.returncode == 0, self._report("failed")
        return self.lines

    async def kill(self) -> list[Line]:
        """SIGKILL (no cleanup, as a crashed process); every line it printed whole."""
        self.process.kill()
        await self._reaped()
        assert self.process.returncode == -signal.SIGKILL, self._report("was not killed")
        return self.lines

    async def aclose(self) -> None:
        """Kill the child if it still runs, and reap it (the fixture's finalizer)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        try:
            async with asyncio.timeout(WAIT):
                await self.process.wait()
        finally:
            for reader in self._readers:
                reader.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            if self.process.stdin is not None:
                self.process.stdin.close()


class Children:
    """The children of one test, all under the test's key prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.started: list[Child] = []

    async def ready(self, *specs: tuple[str, ...]) -> list[Child]:
        """Start one child per ``(role, *options)``, all at once; return when each is ready
        (its imports done, its broadcaster or flags made, waiting for its line)."""
        made = []
        for role, *options in specs:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.sinks._redis_child",
                role,
                "--redis",
                self.url,
                "--prefix",
                self.prefix,
                "--channel",
                CHANNEL,
                "--deadline",
                str(DEADLINE),
                *options,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
            )
            child = Child(role, process)
            self.started.append(child)
            made.append(child)
        for child in made:
            await child.until(lambda lines: lines[:1] == [{"ready": True}], within=READY_WAIT)
        return made

    async def aclose(self) -> None:
        for child in self.started:
            await child.aclose()
        orphans = [child.role for child in self.started if child.process.returncode is None]
        assert not orphans, f"children still running: {orphans}"


@pytest.fixture
async def children() -> AsyncIterator[Children]:
    made = Children(redis_url(), unique_prefix())
    try:
        yield made
    finally:
        await made.aclose()


@pytest.fixture
async def hub(children: Children) -> AsyncIterator[sinks.RedisBroadcaster]:
    """The test process's own view of the children's channel (the log, read at the end)."""
    made = sinks.RedisBroadcaster(children.url, prefix=children.prefix)
    yield made
    await made.aclose()


# --- helpers ---------------------------------------------------------------------------------


def reply_of(count: int) -> tuple[testing.Reply, str]:
    """A reply of ``count`` words and its text."""
    return words(count), "".join(f"w{i} " for i in range(count))


def entries(lines: list[Line]) -> list[Line]:
    """The broadcast items a subscriber printed (each has an ``id``)."""
    return [line for line in lines if "id" in line]


def ended(line: Line) -> bool:
    """Whether a subscriber's line is the last of a subscription."""
    return "completed" in line or "error" in line


def joined(items: list[Line]) -> str:
    return "".join(item["text"] for item in items if item["text"] is not None)


def deltas(count: int) -> Callable[[list[Line]], bool]:
    def enough(lines: list[Line]) -> bool:
        return len([line for line in lines if line.get("type") == "content_block_delta"]) >= count

    return enough


def printed(key: str) -> Callable[[list[Line]], bool]:
    return lambda lines: any(key in line for line in lines)


def strictly_increasing(ids: list[str]) -> bool:
    keys = [id_key(entry_id) for entry_id in ids]
    return all(a < b for a, b in itertools.pairwise(keys))


async def start_publishing(publisher: Child) -> None:
    """Let the publisher act and wait until its channel is open (subscribers find it)."""
    await publisher.go()
    await publisher.until(printed("opened"))


# --- fan-out ---------------------------------------------------------------------------------


async def test_two_subscriber_processes_get_every_event_of_a_publisher_process_in_order(
    children: Children, hub: sinks.RedisBroadcaster
) -> None:
    fake = testing.FakeAnthropic()
    reply, text = reply_of(40)
    fake.add_stream(reply, tokens_per_second=50)  # about 0.8 s: the subscribers follow it live
    async with fake.serve() as api:
        publisher, first, second = await children.ready(
            ("publish", "--api", api), ("subscribe",), ("subscribe",)
        )
        await start_publishing(publisher)
        await asyncio.gather(first.go(), second.go())
        published, *runs = await asyncio.gather(publisher.finish(), first.finish(), second.finish())
        await fake.wait_closed()
    log, error = await collect(hub.subscribe(CHANNEL))
    assert error is None and log[-1].end == "done"
    assert published[-1] == {"result": "done", "text": text}
    for lines in runs:
        items = entries(lines)
        assert [item["id"] for item in items] == [entry.id for entry in log]
        assert strictly_increasing([item["id"] for item in items])
        assert joined(items) == text
        assert items[-1]["end"] == "done" and lines[-1] == {"completed": True}
    assert fake.disconnects == 0 and len(fake.requests) == 1


# --- resuming in a new process ----------------------------------------------------------------


async def test_a_subscriber_killed_mid_reply_resumes_in_a_new_process_from_its_last_id(
    children: Children, hub: sinks.RedisBroadcaster
) -> None:
    fake = testing.FakeAnthropic()
    reply, text = reply_of(50)
    fake.add_stream(reply, tokens_per_second=40)  # 1.25 s: killed and resumed while it lasts
    async with fake.serve() as api:
        # The restarted subscriber is a new process, started ahead: it resumes while the reply
        # is still live, not after it.
        publisher, killed, restarted = await children.ready(
            ("publish", "--api", api), ("subscribe",), ("subscribe",)
        )
        await start_publishing(publisher)
        await killed.go()
        await killed.until(deltas(3))
        before = entries(await killed.kill())
        assert before and all(item["end"] is None for item in before)  # killed mid-reply
        assert not publisher.has("result")  # the reply is live as the new process resumes
        await restarted.go(last_event_id=before[-1]["id"])
        after_lines, published = await asyncio.gather(restarted.finish(), publisher.finish())
    after = entries(after_lines)
    log, error = await collect(hub.subscribe(CHANNEL))
    assert error is None
    # The union of the two runs is the whole log: no duplicate, no gap, in order.
    assert [item["id"] for item in before + after] == [entry.id for entry in log]
    assert id_key(before[-1]["id"]) < id_key(after[0]["id"])
    assert joined(before + after) == text and after[-1]["end"] == "done"
    assert after_lines[-1] == {"completed": True} and published[-1]["result"] == "done"


# --- history and expiry -----------------------------------------------------------------------

TTL = 1.0


async def test_a_subscriber_after_the_end_gets_the_whole_reply_then_after_the_ttl_none(
    children: Children,
) -> None:
    fake = testing.FakeAnthropic()
    reply, text = reply_of(20)
    fake.add_stream(reply, tokens_per_second=200)
    async with fake.serve() as api:
        publisher, subscriber = await children.ready(
            ("publish", "--api", api, "--ttl", str(TTL)), ("subscribe",)
        )
        await publisher.go()
        published = await publisher.finish()
        ended_at = time.monotonic()  # the terminal entry was written before the process ended
    assert published[-1] == {"result": "done", "text": text}
    late = await subscriber.subscription()
    assert time.monotonic() - ended_at < TTL  # within the ttl: the whole log was still there
    items = entries(late)
    assert strictly_increasing([item["id"] for item in items])
    assert items[0]["type"] == "message_start" and items[-1]["end"] == "done"
    assert joined(items) == text and late[-1] == {"completed": True}
    # The ttl runs from the terminal entry: no event marks its expiry, only time does.
    await asyncio.sleep(max(0.0, ended_at + TTL + 0.1 - time.monotonic()))
    expired = await subscriber.subscription()
    assert [line.get("error") for line in expired] == ["ChannelNotFound"]
    await subscriber.finish()


# --- a stop from a third process ---------------------------------------------------------------

STOP = "stop-stream-m1"


@pytest.mark.parametrize("order", ["before", "after"])
async def test_a_stop_from_a_third_process_ends_the_publishers_request_and_its_subscribers(
    children: Children, hub: sinks.RedisBroadcaster, order: str
) -> None:
    fake = testing.FakeAnthropic()
    reply, text = reply_of(100)
    fake.add_stream(reply, tokens_per_second=20)  # 5 s unless stopped
    async with fake.serve() as api:
        publisher, subscriber, stopper = await children.ready(
            ("publish", "--api", api, "--stop", STOP), ("subscribe",), ("stop", "--name", STOP)
        )
        if order == "before":
            # Requested before the publisher's watch starts: kept as a pending stop.
            await stopper.go()
            assert (await stopper.finish())[-1] == {"stopped": True}
            await start_publishing(publisher)
            await subscriber.go()
        else:
            await start_publishing(publisher)
            await subscriber.go()
            await subscriber.until(deltas(2))  # the publisher's watch is live by now
            await stopper.go()
            assert (await stopper.finish())[-1] == {"stopped": True}
        published, received = await asyncio.gather(publisher.finish(), subscriber.finish())
        await fake.wait_closed()
    # Every request the fake got was closed by the client before the reply's end (a stop
    # found pending may win the race with the request: then none was made at all).
    assert fake.open_streams == 0 and fake.disconnects == len(fake.requests)
    items = entries(received)
    assert items[-1]["end"] == "cancelled" and received[-1] == {"completed": True}
    got = joined(items)
    assert text.startswith(got) and len(got) < len(text)
    log, error = await collect(hub.subscribe(CHANNEL))
    assert error is None and [item["id"] for item in items] == [entry.id for entry in log]
    result = published[-1]
    if order == "before":
        # Stopped as the watch started: at most the first delta got through.
        assert sum(item["type"] == "content_block_delta" for item in items) <= 1
        assert result["result"] in ("none", "cancelled") and len(fake.requests) <= 1
    else:
        assert result["result"] == "cancelled" and len(fake.requests) == 1
    assert result["text"] == got
    await assert_a_second_watch_runs_to_the_end(children)


async def assert_a_second_watch_runs_to_the_end(children: Children) -> None:
    """The stop was consumed once: a new watch of the same name (here, in the test process)
    is not stopped by it."""
    flags = cancel.RedisCancelFlags(children.url, prefix=children.prefix)
    fake = testing.FakeAnthropic()
    # Paced: the watch looks for a pending stop long before the last delta.
    fake.add_stream(testing.text_reply("a ", "b ", "c "), tokens_per_second=20)
    second = flags.watch(STOP)
    chunks: list[str] = []
    try:
        async with fake.client() as client, asyncio.timeout(WAIT):
            events = client.stream(
                model="claude-sonnet-4-5",
                max_tokens=64,
                messages=[{"role": "user", "content": "Hi"}],
            ).pipe(ops.take_until_cancel(second), ops.text_deltas())
            async for chunk in arx.to_async_iterator(events):
                chunks.append(chunk)
    finally:
        await flags.aclose()
    assert chunks == ["a ", "b ", "c "] and not second.cancelled
