"""The Redis benchmark: ``python -m benchmarks.redis [--quick] [--guard]``.

Measures ``sinks.RedisBroadcaster`` and ``cancel.RedisCancelFlags`` beside hand-written
redis-py floors, in one run: the publisher in this process, the subscribers in another
(``_redis_child.py``), over loopback to a real Redis.

1. **Paced fan-out**: one reply at 200 text deltas a second to 100 subscribers in the other
   process. Each delta's text is the ``time.monotonic_ns()`` at which it was made (Linux's
   ``CLOCK_MONOTONIC`` is system-wide), so every subscriber records publish→receive; p50, p99,
   max over every subscriber's every delta (goal: p99 ≤ 5 ms). Floors, same pacing: one raw
   ``XADD`` per delta, read by one ``XREAD BLOCK`` loop per subscriber (each its own
   connection) and by one shared ``XREAD BLOCK`` loop handing each entry to every subscriber.
2. **Unpaced throughput**: a reply published as fast as it goes, to one subscriber in the other
   process: deltas a second from the first publish to the subscriber's receipt of the last
   entry, against pipelined ``XADD`` (100 a round trip) read by ``XREAD BLOCK COUNT 1000``
   (goal: ≥ 0.5x the floor; the ratio is taken per repeat, both measured back to back).
3. **Redis commands per streamed event**, counted by ``INFO commandstats`` (before and after,
   never reset) on a private ``redis-server`` that serves nothing else: a stream watched by a
   ``RedisCancelFlags`` token (goal: 0 per event), and the broadcaster's publisher with 0, 1
   and 100 subscribers, beside the floor's ``XADD`` + ``XREAD`` per subscriber. Commands run
   inside a Lua script are counted too (``commandstats`` counts them); the client's commands
   (round trips) are shown apart.

The shared Redis (127.0.0.1:6379) gets a unique key prefix per run; every key under it is
deleted at the end. Writes ``benchmarks/RESULTS-redis.md`` and the block of its targets in
``benchmarks/RESULTS.md`` (``--quick``: only ``benchmarks/out/RESULTS-redis-quick.md``), the raw
numbers to ``benchmarks/out/``, and prints the report. ``--guard`` exits 1 when a goal is missed.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import _targets_block
from ._redis_server import PrivateRedis, answers_ping
from ._targets_block import spread

HERE = Path(__file__).resolve().parent
TITLE = "Redis: the broadcaster and the cancel flags"
SHARED_URL = "redis://127.0.0.1:6379/0"
# Commands the broadcaster's and the flags' Lua scripts run inside the server (commandstats
# counts them beside the script's own EVALSHA).
_IN_SCRIPTS = frozenset(
    {
        "hmget",
        "hset",
        "hget",
        "xadd",
        "pexpire",
        "publish",
        "get",
        "set",
        "del",
        "exists",
        "xrange",
        "xrevrange",
        "xtrim",
    }
)
# The measurement's own commands.
_OURS = frozenset({"info", "scan", "ping", "client", "hello"})


@dataclass(frozen=True)
class Config:
    name: str
    paced_repeats: int
    paced_deltas: int
    subscribers: int
    rate: float
    unpaced_repeats: int
    unpaced_deltas: int
    count_deltas: int
    flag_deltas: tuple[int, int]


FULL = Config("full", 3, 2000, 100, 200.0, 5, 20_000, 400, (200, 2000))
QUICK = Config("quick", 2, 1000, 100, 200.0, 3, 5_000, 200, (100, 1000))


# --- the reply --------------------------------------------------------------------------------


def _wire(kind: str) -> bytes:
    return {
        "start": (
            b'{"type":"message_start","message":{"id":"msg_bench","type":"message",'
            b'"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,'
            b'"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}'
        ),
        "block_start": (
            b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
        ),
        "block_stop": b'{"type":"content_block_stop","index":0}',
        "message_delta": (
            b'{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
            b'"usage":{"output_tokens":5}}'
        ),
        "message_stop": b'{"type":"message_stop"}',
    }[kind]


def delta_wire(text: str) -> bytes:
    """A text delta's wire JSON (the floor's entry, and what the broadcaster stores)."""
    return (
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"%s"}}'
        % text.encode()
    )


async def reply(go: asyncio.Event, n: int, rate: float | None) -> AsyncIterator[Any]:
    """A text reply of ``n`` deltas: its start at once, the deltas after ``go``.

    Paced (``rate`` deltas a second, on a fixed schedule, so a late one does not delay the
    next): each delta's text is the monotonic clock when it was made. Unpaced: the deltas of a
    network chunk (100) at once, then a turn of the event loop, as a fast source hands them.
    """
    import anthropic_rx as arx

    yield arx.parse_event(_wire("start"))
    yield arx.parse_event(_wire("block_start"))
    await go.wait()
    if rate is None:
        pieces = [arx.parse_event(delta_wire(f"w{i % 100:02d} ")) for i in range(n)]
        for i, event in enumerate(pieces):
            yield event
            if i % 100 == 99:
                await asyncio.sleep(0)
    else:
        start = time.monotonic()
        for i in range(n):
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield arx.parse_event(delta_wire(str(time.monotonic_ns())))
    for kind in ("block_stop", "message_delta", "message_stop"):
        yield arx.parse_event(_wire(kind))


# --- the subscribers' process -------------------------------------------------------------------


class Child:
    """The subscribers' process (``_redis_child``); it ends when its stdin closes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._redis_child",
            cwd=HERE.parent,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def send(self, cmd: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.process.stdin.drain()

    async def line(self, within: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            raw = await self.process.stdout.readline()
        if not raw:
            raise RuntimeError("the subscribers' process ended")
        answer: dict[str, Any] = json.loads(raw)
        return answer

    async def ready(self) -> None:
        answer = await self.line(60)
        if not answer.get("ready"):
            raise RuntimeError(f"the subscribers did not start: {answer}")

    async def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# --- one trial --------------------------------------------------------------------------------


async def trial_rx(
    child: Child | None, url: str, prefix: str, n: int, subscribers: int, rate: float | None
) -> dict[str, Any]:
    """One reply through ``RedisBroadcaster.publish`` to ``subscribers`` in the child."""
    import anthropic_rx as arx
    from anthropic_rx import sinks

    hub = sinks.RedisBroadcaster(url, prefix=prefix)
    channel = f"bench.{uuid.uuid4().hex[:12]}"
    go = asyncio.Event()
    try:
        task = await hub.start(channel, arx.from_async_iterable(reply(go, n, rate)))
        if child is not None and subscribers:
            await child.send(
                {
                    "op": "rx",
                    "url": url,
                    "prefix": prefix,
                    "channel": channel,
                    "subscribers": subscribers,
                    "n": n,
                    "paced": rate is not None,
                }
            )
            await child.ready()
        began, cpu = time.monotonic_ns(), time.process_time()
        go.set()
        await task
        published, cpu = time.monotonic_ns(), time.process_time() - cpu
        result = await child.line(60) if child is not None and subscribers else {"ok": True}
    finally:
        await hub.aclose()
    return _timed(result, began, published, cpu, n)


async def trial_floor(
    child: Child | None,
    url: str,
    prefix: str,
    n: int,
    subscribers: int,
    rate: float | None,
    *,
    shared: bool,
) -> dict[str, Any]:
    """The same reply as raw ``XADD`` (paced: one per delta; unpaced: pipelined, 100 a round
    trip), read by raw ``XREAD BLOCK`` in the child."""
    import redis.asyncio as aioredis

    key = f"{prefix}:floor:{uuid.uuid4().hex[:12]}"
    client = aioredis.Redis.from_url(url)
    try:
        await client.xadd(key, {"e": b'{"type":"start"}'}, maxlen=100_000, approximate=True)
        if child is not None and subscribers:
            await child.send(
                {
                    "op": "floor",
                    "url": url,
                    "key": key,
                    "shared": shared,
                    "subscribers": subscribers,
                    "n": n,
                    "paced": rate is not None,
                }
            )
            await child.ready()
        began, cpu = time.monotonic_ns(), time.process_time()
        if rate is None:
            payloads = [delta_wire(f"w{i % 100:02d} ") for i in range(n)]
            for offset in range(0, n, 100):
                pipe = client.pipeline(transaction=False)
                for payload in payloads[offset : offset + 100]:
                    pipe.xadd(key, {"e": payload}, maxlen=100_000, approximate=True)
                await pipe.execute()
        else:
            start = time.monotonic()
            for i in range(n):
                delay = start + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                payload = delta_wire(str(time.monotonic_ns()))
                await client.xadd(key, {"e": payload}, maxlen=100_000, approximate=True)
        await client.xadd(key, {"e": b'{"type":"end"}'}, maxlen=100_000, approximate=True)
        published, cpu = time.monotonic_ns(), time.process_time() - cpu
        result = await child.line(60) if child is not None and subscribers else {"ok": True}
        await client.delete(key)
    finally:
        await client.aclose()
    return _timed(result, began, published, cpu, n)


def _timed(
    result: dict[str, Any], began: int, published: int, cpu: float, n: int
) -> dict[str, Any]:
    result["publish_s"] = (published - began) / 1e9
    result["publisher_cpu_us_per_delta"] = cpu * 1e6 / n
    if "last_ns" in result:
        result["wall_s"] = (result["last_ns"] - began) / 1e9
        result["deltas_per_s"] = n / result["wall_s"]
    if not result.get("ok", False):
        raise RuntimeError(f"a trial failed: {result.get('problems')}")
    return result


# --- the measurements -------------------------------------------------------------------------

PACED = ("rx", "floor", "floor-shared")
UNPACED = ("rx", "floor")


async def run_trial(
    contender: str,
    child: Child | None,
    url: str,
    prefix: str,
    n: int,
    subscribers: int,
    rate: float | None,
) -> dict[str, Any]:
    if contender == "rx":
        return await trial_rx(child, url, prefix, n, subscribers, rate)
    shared = contender == "floor-shared"
    return await trial_floor(child, url, prefix, n, subscribers, rate, shared=shared)


async def commandstats(client: Any) -> dict[str, int]:
    info = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stats["calls"]) for name, stats in info.items()}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {}
    for name, calls in after.items():
        delta = calls - before.get(name, 0)
        if delta and name not in _OURS:
            out[name] = delta
    return out


async def count_commands(config: Config, child: Child, prefix: str) -> dict[str, Any]:
    """Commands per event on a private redis-server (nothing else talks to it)."""
    import redis.asyncio as aioredis

    import anthropic_rx as arx
    from anthropic_rx import cancel
    from anthropic_rx import operators as ops

    out: dict[str, Any] = {}
    with PrivateRedis() as server:
        client = aioredis.Redis.from_url(server.url)
        try:
            flags = cancel.RedisCancelFlags(server.url, prefix=prefix)
            runs: list[dict[str, Any]] = []
            for n in config.flag_deltas:
                before = await commandstats(client)
                go = asyncio.Event()
                go.set()
                name = f"stop-stream-{uuid.uuid4().hex[:8]}"
                events = arx.from_async_iterable(reply(go, n, 2000.0)).pipe(
                    ops.take_until_cancel(flags.watch(name))
                )
                message = await arx.final_message(events)
                if message.stop_reason != "end_turn":
                    raise RuntimeError("the watched stream did not end normally")
                # The token's UNSUBSCRIBE is sent by the flags' listener task after the stream
                # ends: let it go out before counting.
                await asyncio.sleep(0.3)
                runs.append(
                    {"events": n + 5, "commands": _diff(await commandstats(client), before)}
                )
            await flags.aclose()
            small, large = runs
            extra = sum(large["commands"].values()) - sum(small["commands"].values())
            out["flags"] = {
                "runs": runs,
                "per_event": extra / (large["events"] - small["events"]),
            }
            broadcaster = []
            for contender, subscribers in (("rx", 0), ("rx", 1), ("rx", 100), ("floor", 100)):
                before = await commandstats(client)
                await run_trial(
                    contender,
                    child,
                    server.url,
                    prefix,
                    config.count_deltas,
                    subscribers,
                    config.rate,
                )
                commands = _diff(await commandstats(client), before)
                total = sum(commands.values())
                client_side = (
                    sum(c for name, c in commands.items() if name not in _IN_SCRIPTS)
                    if contender == "rx"
                    else total
                )
                broadcaster.append(
                    {
                        "contender": contender,
                        "subscribers": subscribers,
                        "deltas": config.count_deltas,
                        "commands": commands,
                        "per_delta": total / config.count_deltas,
                        "round_trips_per_delta": client_side / config.count_deltas,
                    }
                )
            out["broadcaster"] = broadcaster
        finally:
            await client.aclose()
    return out


async def cleanup(prefix: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(SHARED_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


async def run(config: Config) -> dict[str, Any]:
    if not answers_ping(6379):
        raise SystemExit("Redis is not running on 127.0.0.1:6379")
    prefix = f"arxbench-{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {"config": asdict(config), "prefix": prefix}
    child = await Child.start()
    try:
        # Warm up: imports, script loading, connections, on both sides.
        for contender in PACED:
            await run_trial(contender, child, SHARED_URL, prefix, 50, 10, 500.0)
        paced: dict[str, list[dict[str, Any]]] = {c: [] for c in PACED}
        for repeat in range(config.paced_repeats):
            shift = repeat % len(PACED)
            for contender in PACED[shift:] + PACED[:shift]:
                paced[contender].append(
                    await run_trial(
                        contender,
                        child,
                        SHARED_URL,
                        prefix,
                        config.paced_deltas,
                        config.subscribers,
                        config.rate,
                    )
                )
        results["paced"] = paced
        unpaced: dict[str, list[dict[str, Any]]] = {c: [] for c in UNPACED}
        for repeat in range(config.unpaced_repeats):
            order = UNPACED if repeat % 2 == 0 else UNPACED[::-1]
            for contender in order:
                unpaced[contender].append(
                    await run_trial(
                        contender, child, SHARED_URL, prefix, config.unpaced_deltas, 1, None
                    )
                )
        results["unpaced"] = unpaced
        results["commands"] = await count_commands(config, child, prefix)
    finally:
        await child.stop()
        results["keys_deleted"] = await cleanup(prefix)
    return results


# --- the report -------------------------------------------------------------------------------


def _top(commands: dict[str, int], per: int, limit: int = 8) -> str:
    ordered = sorted(commands.items(), key=lambda item: -item[1])[:limit]
    return ", ".join(f"{name.upper()} {calls / per:.2f}" for name, calls in ordered)


def report(config: Config, results: dict[str, Any]) -> tuple[str, list[_targets_block.Target]]:
    """The Markdown report of one run, and its targets checked on the run's numbers."""
    paced = results["paced"]
    unpaced = results["unpaced"]
    commands = results["commands"]
    names = {
        "rx": "`RedisBroadcaster`: `hub.publish` → `hub.subscribe`",
        "floor": "floor: `XADD` per delta, `XREAD BLOCK` per subscriber",
        "floor-shared": "floor: `XADD` per delta, one shared `XREAD BLOCK`",
    }
    p99 = [row["p99_ms"] for row in paced["rx"]]
    rx_rate = [row["deltas_per_s"] for row in unpaced["rx"]]
    floor_rate = [row["deltas_per_s"] for row in unpaced["floor"]]
    ratios = [a / b for a, b in zip(rx_rate, floor_rate, strict=True)]
    flags_per_event = commands["flags"]["per_event"]
    paced_section = (
        f"{config.rate:g} deltas/s to {config.subscribers} subscribers in another process"
    )
    unpaced_section = (
        f"Unpaced throughput ({config.unpaced_deltas:,} deltas, one subscriber in another process)"
    )
    commands_section = (
        "Redis commands per streamed event (private `redis-server`, `INFO commandstats`)"
    )
    targets = [
        _targets_block.Target(
            f"`RedisBroadcaster`, {config.rate:g} deltas/s to {config.subscribers} subscribers: "
            "p99 publish→receive",
            "≤ 5 ms",
            f"{spread(p99)} ms",
            statistics.median(p99) <= 5.0,
            paced_section,
        ),
        _targets_block.Target(
            "`RedisBroadcaster`, unpaced: deltas/s / the floor's",
            "≥ 0.5x",
            f"{spread(ratios)}x",
            statistics.median(ratios) >= 0.5,
            unpaced_section,
        ),
        _targets_block.Target(
            "`RedisCancelFlags.watch`: Redis commands per streamed event",
            "0",
            f"{flags_per_event:.3f}",
            flags_per_event <= 0.01,
            commands_section,
        ),
    ]
    misses = _targets_block.missed(targets)
    suffix = " --quick" if config.name == "quick" else ""
    lines = [
        f"# Redis benchmark ({config.name} run)",
        "",
        f"`python -m benchmarks.redis{suffix}`, {time.strftime('%Y-%m-%d %H:%M')}, Redis "
        "7 on 127.0.0.1:6379 (shared with other programs while it ran), publisher in this "
        "process, subscribers in a second one; 2 cores.",
        "",
        f"## {paced_section}",
        "",
        f"{config.paced_deltas:,} deltas per reply, {config.paced_repeats} repeats per "
        "contender (rotating order); latency from the delta's making in the publisher to its "
        "subscriber's `on_next` in the other process, over every subscriber's every delta "
        "(each got every delta, in order). Cells: median of the repeats [min-max].",
        "",
        "| contender | p50 ms | p99 ms | p99.9 ms | max ms | subscriber CPU µs per delivery "
        "| subscribers' process CPU, % of a core | Redis connections of the subscribers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for contender in PACED:
        rows = paced[contender]
        lines.append(
            f"| {names[contender]} | {spread([r['p50_ms'] for r in rows])} | "
            f"{spread([r['p99_ms'] for r in rows])} | {spread([r['p999_ms'] for r in rows])} | "
            f"{spread([r['max_ms'] for r in rows], 1)} | "
            f"{spread([r['cpu_us_per_delivery'] for r in rows], 1)} | "
            f"{spread([100 * r['cpu_s'] / r['wall_s'] for r in rows], 0)} | "
            f"{rows[0]['connections']} |"
        )
    lines += [
        "",
        f"Goal: p99 ≤ 5 ms: **{statistics.median(p99):.2f} ms**.",
        "",
        f"## {unpaced_section}",
        "",
        f"{config.unpaced_repeats} repeats, alternating; deltas/s from the first publish to "
        "the subscriber's receipt of the last entry.",
        "",
        "| contender | deltas/s | publisher done after s | publisher CPU µs/delta |",
        "|---|---|---|---|",
    ]
    unpaced_names = {
        "rx": "`RedisBroadcaster` (appends batched while the publisher is ahead)",
        "floor": "floor: pipelined `XADD` (100 a round trip), `XREAD BLOCK COUNT 1000`",
    }
    for contender in UNPACED:
        rows = unpaced[contender]
        lines.append(
            f"| {unpaced_names[contender]} | {spread([r['deltas_per_s'] for r in rows], 0)} | "
            f"{spread([r['publish_s'] for r in rows], 3)} | "
            f"{spread([r['publisher_cpu_us_per_delta'] for r in rows], 1)} |"
        )
    lines += [
        "",
        f"Goal: ≥ 0.5x the floor: **{spread(ratios)}x** (per repeat, back to back).",
        "",
        f"## {commands_section}",
        "",
        "`RedisCancelFlags.watch` on a stream (`ops.take_until_cancel`), consumed to its end:",
        "",
        "| events | commands (all of them) |",
        "|---|---|",
    ]
    for run_ in commands["flags"]["runs"]:
        listed = ", ".join(f"{k.upper()} {v}" for k, v in sorted(run_["commands"].items()))
        lines.append(f"| {run_['events']:,} | {listed or 'none'} |")
    lines += [
        "",
        f"Per event (difference of the two, over the difference of their events): "
        f"**{flags_per_event:.3f}** (goal 0).",
        "",
        f"The broadcaster, one paced reply of {config.count_deltas} deltas at {config.rate:g}/s "
        "(per delta, its constant cost — opening, heartbeat, terminal — included):",
        "",
        "| publisher and subscribers | commands per delta (script inner calls included) | "
        "round trips per delta (client commands) | largest, per delta |",
        "|---|---|---|---|",
    ]
    for row in commands["broadcaster"]:
        who = (
            f"`RedisBroadcaster`, {row['subscribers']} subscribers"
            if row["contender"] == "rx"
            else f"floor, {row['subscribers']} subscribers (`XADD` + `XREAD` each)"
        )
        lines.append(
            f"| {who} | {row['per_delta']:.2f} | {row['round_trips_per_delta']:.2f} | "
            f"{_top(row['commands'], row['deltas'])} |"
        )
    lines += [
        "",
        f"Keys deleted from the shared Redis at the end: {results['keys_deleted']} "
        f"(prefix `{results['prefix']}`).",
    ]
    if misses:
        lines += ["", "Missed: " + "; ".join(misses)]
    return "\n".join(lines) + "\n", targets


def main() -> None:
    _targets_block.run_benchmark("redis", TITLE, __doc__, (FULL, QUICK), run, report)


if __name__ == "__main__":
    main()
