"""Where the cross-process sinks spend their time: ``python -m benchmarks._profile_sinks WHAT``.

- ``redis``: cProfile of the subscribers' process (``_redis_child``) during one paced fan-out
  of the Redis benchmark (1,000 deltas at 200/s to 100 ``RedisBroadcaster`` subscribers);
- ``database``: cProfile of 1,000 concurrent ``DatabaseWriter.save`` of unpaced replies (the
  database benchmark's third measurement), after one warm-up run.

Prints the time by package (own time, so each microsecond is counted once) and the functions
with the most own time. A profiler slows small Python functions more than C code: read the
shares, not the absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import pstats
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _package(filename: str) -> str:
    for marker, name in (
        ("sinks/_redis.py", "anthropic_rx.sinks._redis"),
        ("sinks/_hub.py", "anthropic_rx.sinks._hub"),
        ("sinks/_database.py", "anthropic_rx.sinks._database"),
        ("anthropic_rx", "anthropic_rx (other)"),
        ("sqlalchemy", "sqlalchemy"),
        ("asyncpg", "asyncpg"),
        ("/redis/", "redis-py"),
        ("reactivex", "reactivex"),
        ("asyncio", "asyncio"),
        ("benchmarks", "the benchmark itself"),
    ):
        if marker in filename:
            return name
    return "builtins and C" if filename == "~" else "other"


def summarize(stats: pstats.Stats, per: int, unit: str) -> None:
    totals: collections.Counter[str] = collections.Counter()
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, _, _), (_, _, own, _, _) in raw.items():
        totals[_package(filename)] += own
    whole = sum(totals.values())
    print(f"{'package':32s} {'own s':>8s} {'share':>6s} {'µs per ' + unit:>16s}")
    for name, seconds in totals.most_common():
        print(
            f"{name:32s} {seconds:8.2f} {100 * seconds / whole:5.0f}% {seconds * 1e6 / per:16.1f}"
        )
    print()
    stats.sort_stats("tottime").print_stats(20)


async def profile_redis(path: str) -> None:
    from . import redis as bench

    class ProfiledChild(bench.Child):
        @classmethod
        async def start(cls) -> bench.Child:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                path,
                "-m",
                "benchmarks._redis_child",
                cwd=HERE.parent,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            return cls(process)

    child = await ProfiledChild.start()
    prefix = f"arxbench-{uuid.uuid4().hex[:8]}"
    try:
        result = await bench.run_trial("rx", child, bench.SHARED_URL, prefix, 1000, 100, 200.0)
        print(f"under the profiler: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")
    finally:
        await child.stop()
        await bench.cleanup(prefix)


async def profile_database(path: str) -> int:
    from anthropic_rx import sinks

    from . import database as bench

    table = f"bench_{uuid.uuid4().hex[:10]}"
    writer = sinks.DatabaseWriter(bench.URL, table=table)
    await writer.create_all()
    counter = bench.WriteCounter(writer.engine)
    try:
        await bench.concurrent_saves(bench.QUICK, writer, counter)
        profiler = cProfile.Profile()
        profiler.enable()
        result = await bench.concurrent_saves(bench.QUICK, writer, counter)
        profiler.disable()
        profiler.dump_stats(path)
        print(f"under the profiler: {result['writes']} writes, wall {result['wall_s']:.2f} s")
        return int(result["writes"])
    finally:
        async with writer.engine.begin() as conn:
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        await writer.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("what", choices=("redis", "database"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "profile.out")
        if args.what == "redis":
            asyncio.run(profile_redis(path))
            summarize(pstats.Stats(path), 1000 * 100, "delivery")
        else:
            writes = asyncio.run(profile_database(path))
            summarize(pstats.Stats(path), writes, "write")


if __name__ == "__main__":
    main()
