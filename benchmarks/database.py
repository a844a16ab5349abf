"""The database benchmark: ``python -m benchmarks.database [--quick] [--guard]``.

Measures ``sinks.DatabaseWriter`` on a real PostgreSQL (127.0.0.1:5432, database ``test``),
beside a hand-written asyncpg floor, in one run, in one process:

1. **Writes per reply against checkpoints**: one paced reply of two text blocks lasting N
   seconds, ``checkpoint_every=0.5``, at two delta rates; every ``INSERT``/``UPDATE`` the
   writer's engine sends is counted by a SQLAlchemy ``before_cursor_execute`` listener. The
   goal: at most one write per interval, plus the first (``message_start``), one per block
   stop and the final one — never one per delta.
2. **1,000 concurrent replies through one writer, paced**: 1,000 ``sinks.relay`` jobs at once
   (each a paced reply published on a ``MemoryBroadcaster`` channel read by one subscriber in
   this process), with the writer in every relay and without it, alternating. Each delta's text
   is the monotonic clock when it was made; the subscriber records when it got it. The latency
   the writer adds to the stream is the difference of the two runs' quantiles (goal: p99 ≤ 1 ms).
   The replies start within one second of each other (a seeded random phase each), so their
   deltas and their ends spread as independent replies' do.
3. **1,000 concurrent replies saved, unpaced**: 1,000 ``writer.save`` at once of replies whose
   events come one per turn of the event loop (as fast as the process goes): wall time, CPU
   time and writes; beside the floor: an asyncpg pool of the same size as the writer's
   (SQLAlchemy's default: 5 + 10 overflow) inserting the 1,000 rows and making the same number
   of updates, each a full row of the same text.

Tables are ``bench_<random>`` (and ``..._floor``), dropped at the end. Writes
``benchmarks/RESULTS-database.md`` and the block of its targets in ``benchmarks/RESULTS.md``
(``--quick``: only ``benchmarks/out/RESULTS-database-quick.md``), the raw numbers to
``benchmarks/out/``, and prints the report. ``--guard`` exits 1 when a goal is missed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import _targets_block
from ._targets_block import spread

HERE = Path(__file__).resolve().parent
TITLE = "Database: the writer on PostgreSQL"
URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DSN = "postgresql://postgres@127.0.0.1:5432/test"
CHECKPOINT_EVERY = 0.5
# SQLAlchemy's default pool for an engine made from a URL: 5 connections, 10 more on demand.
POOL = 15
# The 1,000 paced replies start within this many seconds of each other (a random phase each,
# seeded): started in one instant they would also end in one, and the 1,000 terminal entries
# and completions at once would be what the tail measured.
PHASE_SPREAD = 1.0


@dataclass(frozen=True)
class Config:
    name: str
    checkpoint_seconds: float
    checkpoint_rates: tuple[float, ...]
    replies: int
    few_replies: int
    reply_deltas: int
    reply_rate: float
    latency_repeats: int
    unpaced_deltas: int
    unpaced_repeats: int


# 1,000 replies at 5 deltas a second: 5,000 events a second through relay, hub and subscriber
# take about half a core here without the writer, so what the writer adds is not hidden by
# an event loop already saturated.
FULL = Config("full", 6.0, (50.0, 200.0), 1000, 100, 25, 5.0, 3, 50, 3)
QUICK = Config("quick", 3.0, (50.0, 200.0), 1000, 100, 15, 5.0, 1, 50, 1)


# --- the replies ------------------------------------------------------------------------------


def _event(payload: dict[str, Any]) -> Any:
    import anthropic_rx as arx

    return arx.parse_event(json.dumps(payload))


def _start(message_id: str) -> Any:
    return _event(
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        }
    )


def _block_start(index: int) -> Any:
    return _event(
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        }
    )


def _delta(index: int, text: str) -> Any:
    return _event(
        {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "text_delta", "text": text},
        }
    )


def _ending(output_tokens: int) -> list[Any]:
    return [
        _event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
        ),
        _event({"type": "message_stop"}),
    ]


async def two_block_reply(n: int, rate: float) -> AsyncIterator[Any]:
    """A reply of two text blocks of ``n / 2`` deltas each, ``rate`` deltas a second."""
    yield _start("msg_bench")
    start = time.monotonic()
    sent = 0
    for index in (0, 1):
        yield _block_start(index)
        for _ in range(n // 2):
            sent += 1
            delay = start + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield _delta(index, f"w{sent % 100:02d} ")
        yield _event({"type": "content_block_stop", "index": index})
    for event in _ending(n):
        yield event


async def stamped_reply(go: asyncio.Event, n: int, rate: float, phase: float) -> AsyncIterator[Any]:
    """One text block: its start at once, then after ``go`` ``n`` deltas ``rate`` a second
    (shifted by ``phase`` seconds), each delta's text the monotonic clock when it was made."""
    yield _start("msg_bench")
    yield _block_start(0)
    await go.wait()
    start = time.monotonic() + phase
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield _delta(0, str(time.monotonic_ns()))
    yield _event({"type": "content_block_stop", "index": 0})
    for event in _ending(n):
        yield event


async def unpaced_reply(events: list[Any]) -> AsyncIterator[Any]:
    """``events``, one per turn of the event loop."""
    for event in events:
        yield event
        await asyncio.sleep(0)


def unpaced_events(n: int) -> list[Any]:
    return [
        _start("msg_bench"),
        _block_start(0),
        *(_delta(0, f"w{i % 100:02d} ") for i in range(n)),
        _event({"type": "content_block_stop", "index": 0}),
        *_ending(n),
    ]


# --- counting the writer's statements ---------------------------------------------------------


class WriteCounter:
    """Every ``INSERT``/``UPDATE`` an engine sends: its time (monotonic) and its row's id."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.times: list[float] = []
        self.ids: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._on_execute)

    def _on_execute(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        head = statement.lstrip()[:6].upper()
        if head in ("INSERT", "UPDATE"):
            # Rows, not statements: the writer sends a checkpoint batch as one executemany.
            now = time.monotonic()
            for row in parameters if executemany else [parameters]:
                self.times.append(now)
                if isinstance(row, tuple | list) and row:
                    self.ids.append(str(row[0]))

    def reset(self) -> None:
        self.times.clear()
        self.ids.clear()


# --- 1. writes per reply ----------------------------------------------------------------------


async def writes_per_reply(config: Config, table: str) -> list[dict[str, Any]]:
    """One paced reply per rate (all at once, each its own writer and engine)."""
    import anthropic_rx as arx
    from anthropic_rx import sinks

    async def one(rate: float) -> dict[str, Any]:
        writer = sinks.DatabaseWriter(URL, table=table, checkpoint_every=CHECKPOINT_EVERY)
        counter = WriteCounter(writer.engine)
        n = int(rate * config.checkpoint_seconds)
        message_id = f"checkpoints-{rate:g}-{uuid.uuid4().hex[:8]}"
        try:
            began = time.monotonic()
            message = await writer.save(
                arx.from_async_iterable(two_block_reply(n, rate)), message_id=message_id
            )
            seconds = time.monotonic() - began
            row = await writer.get(message_id)
        finally:
            await writer.aclose()
        if message is None or row is None or row.status != "finished":
            raise RuntimeError(f"the reply at {rate:g}/s was not saved finished")
        if len(row.text) != sum(len(f"w{i % 100:02d} ") for i in range(1, n + 1)):
            raise RuntimeError(f"the reply at {rate:g}/s was saved with the wrong text")
        intervals = math.ceil(seconds / CHECKPOINT_EVERY)
        offsets = [t - began for t in counter.times]
        return {
            "rate": rate,
            "deltas": n,
            "seconds": seconds,
            "writes": len(counter.times),
            "bound": 1 + intervals + 2 + 1,
            "intervals": intervals,
            "busiest_interval": max(
                sum(1 for t in offsets if k * CHECKPOINT_EVERY <= t < (k + 1) * CHECKPOINT_EVERY)
                for k in range(intervals + 1)
            ),
            "offsets": offsets,
        }

    return list(await asyncio.gather(*(one(rate) for rate in config.checkpoint_rates)))


# --- 2. 1,000 paced replies, with the writer and without --------------------------------------


async def concurrent_relays(
    config: Config, replies: int, writer: Any, counter: WriteCounter | None, seed: int
) -> dict[str, Any]:
    """``replies`` relays at once; the writer in each when given."""
    import anthropic_rx as arx
    from anthropic_rx import ContentBlockDeltaEvent, sinks

    loop = asyncio.get_running_loop()
    hub = sinks.MemoryBroadcaster()
    go = asyncio.Event()
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:8]
    latencies: list[int] = []
    counts = [0] * replies
    started = [loop.create_future() for _ in range(replies)]
    ended = [loop.create_future() for _ in range(replies)]
    relays = []
    subscriptions = []

    def observer(i: int) -> tuple[Any, Any, Any]:
        def on_next(entry: sinks.Broadcast) -> None:
            event = entry.event
            if type(event) is ContentBlockDeltaEvent:
                latencies.append(time.monotonic_ns() - int(event.delta.text))  # type: ignore[union-attr]
                counts[i] += 1
            elif not started[i].done():
                started[i].set_result(None)

        def on_error(error: Exception) -> None:
            if not ended[i].done():
                ended[i].set_exception(error)

        def on_completed() -> None:
            if not ended[i].done():
                ended[i].set_result(None)

        return on_next, on_error, on_completed

    if counter is not None:
        counter.reset()
    for i in range(replies):
        phase = rng.random() * PHASE_SPREAD
        events = arx.from_async_iterable(
            stamped_reply(go, config.reply_deltas, config.reply_rate, phase)
        )
        channel = f"c{i}"
        if writer is None:
            task = await sinks.start_relay(events, hub=hub, channel=channel)
        else:
            task = await sinks.start_relay(
                events, hub=hub, channel=channel, writer=writer, message_id=f"{run_id}-{i}"
            )
        relays.append(task)
        subscriptions.append(hub.subscribe(channel).subscribe(*observer(i)))
    async with asyncio.timeout(120):
        await asyncio.gather(*started)
    # The setup's objects (1,000 relays, subscriptions, tasks) are frozen out of the collector,
    # as a server does after start-up: a full collection of that heap pauses the loop 100-200 ms
    # here, the same with and without the writer, which would drown the difference measured.
    gc.collect()
    gc.freeze()
    collections = gc.get_stats()[2]["collections"]
    began, cpu = time.monotonic(), time.process_time()
    go.set()
    try:
        async with asyncio.timeout(300):
            await asyncio.gather(*relays)
            relayed = time.monotonic() - began
            await asyncio.gather(*ended)
    finally:
        cpu = time.process_time() - cpu
        full_collections = gc.get_stats()[2]["collections"] - collections
        gc.unfreeze()
    for subscription in subscriptions:
        subscription.dispose()
    await hub.aclose()
    if any(count != config.reply_deltas for count in counts):
        raise RuntimeError("a subscriber missed deltas")
    latencies.sort()
    return {
        "replies": replies,
        "writer": writer is not None,
        "p50_ms": latencies[len(latencies) // 2] / 1e6,
        "p99_ms": latencies[int(len(latencies) * 0.99)] / 1e6,
        "p999_ms": latencies[int(len(latencies) * 0.999)] / 1e6,
        "max_ms": latencies[-1] / 1e6,
        "wall_s": relayed,
        "reply_s": config.reply_deltas / config.reply_rate,
        "spread_s": PHASE_SPREAD,
        "cpu_s": cpu,
        "writes": len(counter.times) if counter is not None else 0,
        "full_collections": full_collections,
    }


# --- 3. 1,000 unpaced replies, and the asyncpg floor ------------------------------------------


async def concurrent_saves(config: Config, writer: Any, counter: WriteCounter) -> dict[str, Any]:
    import anthropic_rx as arx

    events = unpaced_events(config.unpaced_deltas)
    run_id = uuid.uuid4().hex[:8]
    counter.reset()
    began, cpu = time.monotonic(), time.process_time()
    messages = await asyncio.gather(
        *(
            writer.save(arx.from_async_iterable(unpaced_reply(events)), message_id=f"{run_id}-{i}")
            for i in range(config.replies)
        )
    )
    wall, cpu = time.monotonic() - began, time.process_time() - cpu
    if any(message is None or message.stop_reason != "end_turn" for message in messages):
        raise RuntimeError("a reply was not saved")
    row = await writer.get(f"{run_id}-0")
    if row is None or row.status != "finished":
        raise RuntimeError("a reply's row is not finished")
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "writes": len(counter.times),
        "rows": len(set(counter.ids)) or config.replies,
        "text": row.text,
        "content": row.content,
    }


async def concurrent_reads(config: Config) -> dict[str, Any]:
    """The same 1,000 unpaced replies without a writer: each read to its final message (the
    events' own cost, which the writer's run includes)."""
    import anthropic_rx as arx

    events = unpaced_events(config.unpaced_deltas)
    began, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(
        *(
            arx.final_message(arx.from_async_iterable(unpaced_reply(events)))
            for _ in range(config.replies)
        )
    )
    return {"wall_s": time.monotonic() - began, "cpu_s": time.process_time() - cpu}


async def floor_saves(
    pool: Any, table: str, replies: int, writes: int, text: str, content: list[Any]
) -> dict[str, Any]:
    """``replies`` rows inserted and ``writes - replies`` updates, spread evenly, each task
    one row's statements in order, over an asyncpg pool of ``POOL`` connections."""
    run_id = uuid.uuid4().hex[:8]
    updates, extra = divmod(writes - replies, replies)
    content_json = json.dumps(content)
    insert = (
        f"INSERT INTO {table} (id, conversation_id, role, model, status, text, content, "
        "stop_reason, error_type, error_message, input_tokens, output_tokens, usage_estimated, "
        "request_id, created_at, updated_at) VALUES "
        "($1, NULL, 'assistant', 'claude-sonnet-4-5', 'streaming', $2, $3::jsonb, NULL, NULL, "
        "NULL, 10, 1, true, NULL, $4, $4)"
    )
    update = (
        f"UPDATE {table} SET status = $2, text = $3, content = $4::jsonb, output_tokens = $5, "
        "usage_estimated = false, stop_reason = 'end_turn', updated_at = $6 WHERE id = $1"
    )

    async def one(i: int) -> None:
        row_id = f"{run_id}-{i}"
        async with pool.acquire() as conn:
            await conn.execute(insert, row_id, text[:4], content_json, datetime.now(UTC))
        for k in range(updates + (1 if i < extra else 0)):
            async with pool.acquire() as conn:
                await conn.execute(
                    update, row_id, "streaming", text, content_json, k, datetime.now(UTC)
                )

    began, cpu = time.monotonic(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(replies)))
    return {"wall_s": time.monotonic() - began, "cpu_s": time.process_time() - cpu}


# --- the run ------------------------------------------------------------------------------------


async def run(config: Config) -> dict[str, Any]:
    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.ext.asyncio import create_async_engine

    from anthropic_rx import sinks

    table = f"bench_{uuid.uuid4().hex[:10]}"
    floor_table = f"{table}_floor"
    results: dict[str, Any] = {"config": asdict(config), "table": table}
    try:
        conn = await asyncpg.connect(DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        raise SystemExit(f"PostgreSQL is not reachable at {DSN}: {error}") from error
    await conn.close()
    setup = sinks.DatabaseWriter(URL, table=table)
    await setup.create_all()
    floor_writer = sinks.DatabaseWriter(URL, table=floor_table)
    await floor_writer.create_all()
    await floor_writer.aclose()
    await setup.aclose()
    pool = await asyncpg.create_pool(DSN, min_size=1, max_size=POOL)
    try:
        results["checkpoints"] = await writes_per_reply(config, table)
        # The writer as an app makes it: from a URL, SQLAlchemy's default pool.
        writer = sinks.DatabaseWriter(URL, table=table, checkpoint_every=CHECKPOINT_EVERY)
        counter = WriteCounter(writer.engine)
        engine = create_async_engine(URL)  # warms asyncpg's and SQLAlchemy's caches
        await engine.dispose()
        try:
            relays: list[dict[str, Any]] = []
            for repeat in range(config.latency_repeats):
                order = (False, True) if repeat % 2 == 0 else (True, False)
                for replies in (config.replies, config.few_replies):
                    for with_writer in order:
                        relays.append(
                            await concurrent_relays(
                                config,
                                replies,
                                writer if with_writer else None,
                                counter,
                                seed=repeat,
                            )
                        )
            results["relays"] = relays
            saves: list[dict[str, Any]] = []
            floors: list[dict[str, Any]] = []
            reads: list[dict[str, Any]] = []
            for _ in range(config.unpaced_repeats):
                reads.append(await concurrent_reads(config))
                saved = await concurrent_saves(config, writer, counter)
                saves.append({k: v for k, v in saved.items() if k not in ("text", "content")})
                floors.append(
                    await floor_saves(
                        pool,
                        floor_table,
                        config.replies,
                        saved["writes"],
                        saved["text"],
                        saved["content"],
                    )
                )
            results["saves"] = saves
            results["floors"] = floors
            results["reads"] = reads
        finally:
            await writer.aclose()
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
            await conn.execute(f"DROP TABLE IF EXISTS {floor_table}")
        await pool.close()
    return results


# --- the report -------------------------------------------------------------------------------


def report(config: Config, results: dict[str, Any]) -> tuple[str, list[_targets_block.Target]]:
    """The Markdown report of one run, and its targets checked on the run's numbers."""
    checkpoints = results["checkpoints"]
    relays = results["relays"]
    saves = results["saves"]
    floors = results["floors"]
    reads = results["reads"]
    levels = sorted({r["replies"] for r in relays}, reverse=True)
    pairs: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
        level: (
            [r for r in relays if r["replies"] == level and not r["writer"]],
            [r for r in relays if r["replies"] == level and r["writer"]],
        )
        for level in levels
    }
    added = {
        level: {
            q: [a[q] - b[q] for a, b in zip(with_, without, strict=True)]
            for q in ("p50_ms", "p99_ms", "p999_ms", "max_ms")
        }
        for level, (without, with_) in pairs.items()
    }
    wall_ratio = [s["wall_s"] / f["wall_s"] for s, f in zip(saves, floors, strict=True)]
    floor_per_statement = [
        f["cpu_s"] * 1e6 / s["writes"] for s, f in zip(saves, floors, strict=True)
    ]
    writer_per_statement = [
        (s["cpu_s"] - r["cpu_s"]) * 1e6 / s["writes"] for s, r in zip(saves, reads, strict=True)
    ]
    cpu_ratio = [w / f for w, f in zip(writer_per_statement, floor_per_statement, strict=True)]
    checkpoints_section = f"Writes per reply (`checkpoint_every={CHECKPOINT_EVERY}`)"
    relays_section = (
        f"{config.replies:,} (and {config.few_replies:,}) concurrent paced replies through "
        "one writer"
    )
    targets = [
        _targets_block.Target(
            f"`DatabaseWriter` writes for a reply at {row['rate']:g} deltas/s "
            f"({row['seconds']:.1f} s)",
            f"≤ 1 per {CHECKPOINT_EVERY:g} s interval: ≤ {row['bound']} in all",
            f"{row['writes']} (at most {row['busiest_interval']} in one interval)",
            row["writes"] <= row["bound"],
            checkpoints_section,
        )
        for row in checkpoints
    ]
    main_added = added[config.replies]["p99_ms"]
    targets.append(
        _targets_block.Target(
            f"`DatabaseWriter` in each of {config.replies:,} concurrent relays: p99 latency added",
            "≤ 1 ms",
            f"{spread(main_added)} ms",
            statistics.median(main_added) <= 1.0,
            relays_section,
        )
    )
    misses = _targets_block.missed(targets)
    suffix = " --quick" if config.name == "quick" else ""
    lines = [
        f"# Database benchmark ({config.name} run)",
        "",
        f"`python -m benchmarks.database{suffix}`, {time.strftime('%Y-%m-%d %H:%M')}, "
        "PostgreSQL 15 on 127.0.0.1 (shared with other programs while it ran), SQLAlchemy 2 + "
        "asyncpg, one process; 2 cores.",
        "",
        f"## {checkpoints_section}",
        "",
        f"One paced reply of two text blocks, {config.checkpoint_seconds:g} s, per rate (the "
        "rates at once, each its own writer); `INSERT`/`UPDATE` statements counted on the "
        "writer's engine. Bound: the first write (`message_start`) + one per interval + one "
        "per block stop (2) + the final one.",
        "",
        "| deltas/s | deltas | seconds | writes | bound | most writes in one 0.5 s interval "
        "| one write per delta would be |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in checkpoints:
        lines.append(
            f"| {row['rate']:g} | {row['deltas']:,} | {row['seconds']:.2f} | {row['writes']} | "
            f"{row['bound']} | {row['busiest_interval']} | {row['deltas']:,} |"
        )
    lines += [
        "",
        f"## {relays_section}",
        "",
        f"{config.replies:,} (then {config.few_replies:,}) `sinks.relay` jobs at once in one "
        "process, each a reply of "
        f"{config.reply_deltas} deltas at {config.reply_rate:g}/s (starts spread over "
        f"{PHASE_SPREAD:g} s) published on a "
        "`MemoryBroadcaster` channel with one subscriber, the writer (one `DatabaseWriter`, "
        "PostgreSQL, default pool) in every relay or in none; "
        f"{config.latency_repeats} repeats each, alternating. Latency: the delta's making to "
        "its subscriber's `on_next`. Wall: `go` to every relay done. The setup's objects are "
        "frozen out of the garbage collector at `go` (`gc.freeze()`, as a server does after "
        "start-up): without it, full collections of the 1,000 replies' heap pause the loop "
        "100-200 ms, with or without the writer.",
        "",
        "| relay | p50 ms | p99 ms | p99.9 ms | max ms | wall s | CPU s | writes per reply |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, (without, with_) in pairs.items():
        for label, rows in (("hub only", without), ("hub + writer", with_)):
            lines.append(
                f"| {level:,} replies, {label} | {spread([r['p50_ms'] for r in rows])} | "
                f"{spread([r['p99_ms'] for r in rows])} | "
                f"{spread([r['p999_ms'] for r in rows])} | "
                f"{spread([r['max_ms'] for r in rows], 1)} | "
                f"{spread([r['wall_s'] for r in rows])} | {spread([r['cpu_s'] for r in rows])} | "
                + (spread([r["writes"] / level for r in rows], 1) if rows[0]["writer"] else "")
                + " |"
            )
    lines.append("")
    for level in levels:
        gained = added[level]
        lines.append(
            f"Added by the writer to {level:,} replies (with minus without, per repeat pair): "
            f"p50 {spread(gained['p50_ms'])} ms, **p99 {spread(gained['p99_ms'])} ms**, "
            f"p99.9 {spread(gained['p999_ms'])} ms."
        )
        lines.append("")
    reply_s = relays[0]["reply_s"]
    lines += [
        f"Goal: p99 ≤ 1 ms at {config.replies:,} replies. Each reply lasts {reply_s:.1f} s "
        f"(all within {reply_s + relays[0]['spread_s']:.1f} s); unloaded, a reply that long "
        f"is written about {2 + math.ceil(reply_s / CHECKPOINT_EVERY)} times "
        "(first, interval checkpoints, block stop, final); fewer per reply means checkpoints "
        "merged while writes waited for the database (one write in flight per reply).",
        "",
        f"## {config.replies:,} concurrent replies saved, unpaced, beside an asyncpg floor",
        "",
        f"{config.replies:,} `writer.save` at once, {config.unpaced_deltas} deltas each, one "
        f"event per loop turn; the floor: {POOL} asyncpg connections, the same rows inserted "
        f"and the same number of updates (full row text and JSONB content); "
        f"{config.unpaced_repeats} repeats.",
        "",
        "| contender | wall s | CPU s | statements | CPU µs per statement |",
        "|---|---|---|---|---|",
        f"| no writer: `arx.final_message` of the same replies (their own cost) | "
        f"{spread([r['wall_s'] for r in reads])} | {spread([r['cpu_s'] for r in reads])} "
        "| 0 | |",
        f"| `DatabaseWriter.save`, {config.replies:,} at once | "
        f"{spread([s['wall_s'] for s in saves])} | {spread([s['cpu_s'] for s in saves])} | "
        f"{spread([float(s['writes']) for s in saves], 0)} | "
        f"{spread(writer_per_statement, 0)} (above no writer) |",
        f"| floor: asyncpg `INSERT` + `UPDATE`s | {spread([f['wall_s'] for f in floors])} | "
        f"{spread([f['cpu_s'] for f in floors])} | "
        f"{spread([float(s['writes']) for s in saves], 0)} | "
        f"{spread(floor_per_statement, 0)} |",
        "",
        f"Writer wall / floor wall: **{spread(wall_ratio)}x**; the writer's CPU per statement "
        f"(above the no-writer run) / the floor's: **{spread(cpu_ratio, 1)}x**.",
    ]
    if misses:
        lines += ["", "Missed: " + "; ".join(misses)]
    return "\n".join(lines) + "\n", targets


def main() -> None:
    _targets_block.run_benchmark("database", TITLE, __doc__, (FULL, QUICK), run, report)


if __name__ == "__main__":
    main()
