"""The subscribers' process of the Redis benchmark: ``python -m benchmarks._redis_child``.

Reads one JSON command a line on stdin, answers on stdout: ``{"ready": true}`` once every
subscriber of the command has received the reply's first entry (so all of them follow the live
end before the timed part is published), then one line of results. Ends when stdin closes.

Commands (``op``):

- ``rx``: ``subscribers`` subscriptions of ``RedisBroadcaster(url, prefix=...).subscribe(channel)``;
- ``floor``: the hand-written floor over the raw stream ``key``: one ``XREAD BLOCK`` loop per
  subscriber, each on its own connection (``shared: false``), or one ``XREAD BLOCK`` loop whose
  entries are handed to every subscriber in this process (``shared: true``).

Each text delta's text is the ``time.monotonic_ns()`` at which the publisher made it (the
clock is system-wide on Linux: ``CLOCK_MONOTONIC``), so every subscriber records its
publish→receive latency. ``paced: false`` records only the count and the time the last entry
arrived (the unpaced throughput run).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import warnings
from typing import Any

# What a subscriber waits for, at most, before the run is declared broken.
_TIMEOUT = 120.0


def redis_connections() -> int:
    """This process's established TCP connections to a Redis port (6379, or any the URL
    names: counted by the remote port of every socket this process holds)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    parts = line.split()
                    if parts[3] == "01" and parts[9] in inodes:  # ESTABLISHED, ours
                        port = int(parts[2].rsplit(":", 1)[1], 16)
                        ports[port] = ports.get(port, 0) + 1
        except OSError:
            continue
    return sum(ports.values())


class Recorder:
    """One subscriber's record: latencies (ns), deltas seen, whether it started and ended."""

    __slots__ = (
        "count",
        "done",
        "error",
        "last_ns",
        "last_stamp",
        "latencies",
        "stamps_ordered",
        "started",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.latencies: list[int] = []
        self.count = 0
        self.last_ns = 0
        self.last_stamp = 0
        self.stamps_ordered = True
        self.started: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()
        self.error: str | None = None

    def start(self) -> None:
        if not self.started.done():
            self.started.set_result(None)

    def delta(self, text: str, paced: bool) -> None:
        now = time.monotonic_ns()
        self.count += 1
        self.last_ns = now
        if paced:
            stamp = int(text)
            if stamp < self.last_stamp:
                self.stamps_ordered = False
            self.last_stamp = stamp
            self.latencies.append(now - stamp)

    def end(self, error: str | None = None) -> None:
        self.start()
        self.error = error
        self.last_ns = time.monotonic_ns()
        if not self.done.done():
            self.done.set_result(None)


def _quantile(ordered: list[int], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] / 1e6


async def run_rx(cmd: dict[str, Any], ready: asyncio.Event, recorders: list[Recorder]) -> None:
    from anthropic_rx import ContentBlockDeltaEvent, sinks

    hub = sinks.RedisBroadcaster(cmd["url"], prefix=cmd["prefix"])
    paced = bool(cmd["paced"])
    subscriptions = []

    def observer(rec: Recorder) -> tuple[Any, Any, Any]:
        def on_next(entry: sinks.Broadcast) -> None:
            event = entry.event
            if type(event) is ContentBlockDeltaEvent:
                rec.delta(event.delta.text, paced)  # type: ignore[union-attr]
            else:
                rec.start()

        def on_error(error: Exception) -> None:
            rec.end(f"{type(error).__name__}: {error}")

        def on_completed() -> None:
            rec.end()

        return on_next, on_error, on_completed

    for rec in recorders:
        subscriptions.append(hub.subscribe(cmd["channel"]).subscribe(*observer(rec)))
    try:
        await wait_and_report(cmd, ready, recorders)
    finally:
        for subscription in subscriptions:
            subscription.dispose()
        await hub.aclose()


async def run_floor(cmd: dict[str, Any], ready: asyncio.Event, recorders: list[Recorder]) -> None:
    import orjson
    import redis.asyncio as aioredis

    paced = bool(cmd["paced"])
    key = cmd["key"]
    client = aioredis.Redis.from_url(cmd["url"], max_connections=len(recorders) + 4)

    def take(entries: list[Any], targets: list[Recorder]) -> bool:
        """Hand each entry to ``targets``; whether the end entry came."""
        for _, fields in entries:
            event = orjson.loads(fields[b"e"])
            kind = event["type"]
            if kind == "content_block_delta":
                text = event["delta"]["text"]
                for rec in targets:
                    rec.delta(text, paced)
            elif kind == "end":
                for rec in targets:
                    rec.end()
                return True
            else:
                for rec in targets:
                    rec.start()
        return False

    async def loop(targets: list[Recorder]) -> None:
        last = "0-0"
        while True:
            reply = await client.xread({key: last}, count=1000, block=2000)
            for _, entries in reply:
                if take(entries, targets):
                    return
                last = entries[-1][0]

    if cmd["shared"]:
        loops = [asyncio.ensure_future(loop(recorders))]
    else:
        loops = [asyncio.ensure_future(loop([rec])) for rec in recorders]
    try:
        await wait_and_report(cmd, ready, recorders)
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await client.aclose()
        await client.connection_pool.disconnect()


async def wait_and_report(
    cmd: dict[str, Any], ready: asyncio.Event, recorders: list[Recorder]
) -> None:
    async with asyncio.timeout(_TIMEOUT):
        await asyncio.gather(*(rec.started for rec in recorders))
    cmd["connections"] = redis_connections()
    cmd["cpu_start"] = time.process_time()
    ready.set()
    async with asyncio.timeout(_TIMEOUT):
        await asyncio.gather(*(rec.done for rec in recorders))
    cmd["cpu_end"] = time.process_time()
    # Pools open connections as they are needed: the most seen, while following or at the end.
    cmd["connections"] = max(cmd["connections"], redis_connections())


def summary(cmd: dict[str, Any], recorders: list[Recorder]) -> dict[str, Any]:
    n = cmd["n"]
    problems = []
    missing = sum(1 for rec in recorders if rec.count != n)
    if missing:
        problems.append(f"{missing} of {len(recorders)} subscribers did not get {n} deltas")
    errors = sorted({rec.error for rec in recorders if rec.error})
    problems += errors
    if not all(rec.stamps_ordered for rec in recorders):
        problems.append("a subscriber received deltas out of order")
    latencies = sorted(lat for rec in recorders for lat in rec.latencies)
    received = sum(rec.count for rec in recorders)
    return {
        "ok": not problems,
        "problems": problems,
        "samples": len(latencies),
        "p50_ms": _quantile(latencies, 0.5),
        "p99_ms": _quantile(latencies, 0.99),
        "p999_ms": _quantile(latencies, 0.999),
        "max_ms": latencies[-1] / 1e6 if latencies else float("nan"),
        "last_ns": max(rec.last_ns for rec in recorders),
        "cpu_s": cmd["cpu_end"] - cmd["cpu_start"],
        "cpu_us_per_delivery": (cmd["cpu_end"] - cmd["cpu_start"]) * 1e6 / max(1, received),
        "connections": cmd["connections"],
    }


def say(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        recorders = [Recorder(loop) for _ in range(int(cmd["subscribers"]))]
        ready = asyncio.Event()
        run = run_rx if cmd["op"] == "rx" else run_floor
        task = loop.create_task(run(cmd, ready, recorders))
        waiting = loop.create_task(ready.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            say({"ready": True})
        try:
            await task
        except Exception as error:
            if not ready.is_set():
                say({"ready": True})
            say({"ok": False, "problems": [f"{type(error).__name__}: {error}"]})
            continue
        finally:
            waiting.cancel()
        say(summary(cmd, recorders))


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
