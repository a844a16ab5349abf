"""One measuring process: ``python -m benchmarks._child '<json spec>'``.

The parent starts one of these per measurement and repeat, so each gets a fresh interpreter,
and reads the JSON printed on the last line of stdout. Two kinds of spec:

``{"kind": "streams", "cases": [{"mode", "task", "contender", "streams"}...], "base_url",
"min_time", "max_iterations"}``
    For each case and stream (smallest first): run once untimed on ``short`` to warm the code
    path, then time iterations until ``min_time`` has passed (at least one). Per iteration the
    wall time and the process's CPU time are kept; per stream the peak RSS (``VmHWM``, reset
    before the stream) and whether the result matched the stream's text.

``{"kind": "concurrency", "contender", "streams", "interval_ms", "base_url", "timeout"}``
    Open ``streams`` replies at once on the gated route: each sends its first delta, then waits.
    When every reader has its first token, sample RSS (memory per open stream), release the
    gate, and read the rest, ``interval_ms`` apart. Wall time, CPU time and the time to first
    token of each stream.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import sys
import time
import warnings
from typing import Any

from ._contenders import Target, make, make_concurrent
from ._streams import generate

_STATUS = re.compile(rb"^(VmRSS|VmHWM):\s+(\d+) kB", re.MULTILINE)


def memory() -> dict[str, int]:
    """``{"VmRSS": KiB, "VmHWM": KiB}`` of this process."""
    with open("/proc/self/status", "rb") as status:
        return {name.decode(): int(value) for name, value in _STATUS.findall(status.read())}


def reset_peak() -> None:
    """Make ``VmHWM`` start again from the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        pass


async def _streams(spec: dict[str, Any]) -> dict[str, Any]:
    results = []
    min_time = float(spec["min_time"])
    max_iterations = int(spec["max_iterations"])
    warm = generate("short")
    for case in spec["cases"]:
        target = Target(case["mode"], base_url=spec.get("base_url", ""))
        run = make(case["contender"], case["task"], target)
        try:
            await run(warm)
            await run(warm)
            for name in case["streams"]:
                stream = generate(name)
                target.chunks(stream)
                gc.collect()
                reset_peak()
                before = memory()["VmRSS"]
                walls: list[float] = []
                cpus: list[float] = []
                ok = True
                spent = 0.0
                while not walls or (spent < min_time and len(walls) < max_iterations):
                    wall0, cpu0 = time.perf_counter(), time.process_time()
                    text = await run(stream)
                    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                    walls.append(wall)
                    cpus.append(cpu)
                    spent += wall
                    ok = ok and text == stream.text
                results.append(
                    {
                        **{key: case[key] for key in ("mode", "task", "contender")},
                        "stream": name,
                        "events": stream.events,
                        "deltas": stream.deltas,
                        "wall_s": walls,
                        "cpu_s": cpus,
                        "rss_before_kib": before,
                        "peak_rss_kib": memory()["VmHWM"],
                        "ok": ok,
                    }
                )
        finally:
            await target.aclose()
    return {"results": results}


async def _concurrency(spec: dict[str, Any]) -> dict[str, Any]:
    count = int(spec["streams"])
    gate = f"{spec['contender']}-{os.getpid()}-{time.monotonic_ns()}"
    interval = int(spec["interval_ms"])
    target = Target("loopback", base_url=spec["base_url"])
    run = make_concurrent(spec["contender"], target)
    stream = generate("short")
    try:
        for _ in range(3):  # warm: imports, first connection, code paths
            await run(stream, lambda: None)
        target.route = lambda s: f"g/{s.name}/{gate}/{interval}"
        gc.collect()
        reset_peak()
        base = memory()["VmRSS"]
        loop = asyncio.get_running_loop()
        firsts: list[float] = []
        all_open = asyncio.Event()
        wall0, cpu0 = time.perf_counter(), time.process_time()

        async def one() -> str:
            start = time.perf_counter()

            def first() -> None:
                firsts.append(time.perf_counter() - start)
                if len(firsts) == count:
                    all_open.set()

            return await run(stream, first)

        async with asyncio.timeout(float(spec["timeout"])):
            tasks = [loop.create_task(one()) for _ in range(count)]
            await all_open.wait()
            opened = time.perf_counter() - wall0
            open_rss = memory()["VmRSS"]
            await _release(spec["base_url"], gate)
            texts = await asyncio.gather(*tasks)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return {
            "contender": spec["contender"],
            "streams": count,
            "events_per_stream": stream.events,
            "wall_s": wall,
            "cpu_s": cpu,
            "all_open_s": opened,
            "ttft_s": sorted(firsts),
            "base_rss_kib": base,
            "open_rss_kib": open_rss,
            "peak_rss_kib": memory()["VmHWM"],
            "ok": all(text == stream.text for text in texts),
        }
    finally:
        await target.aclose()


async def _release(base_url: str, gate: str) -> None:
    host, _, port = base_url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /release/{gate} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\n"
        "connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.read()
    writer.close()
    await writer.wait_closed()


def main() -> None:
    warnings.simplefilter("ignore", DeprecationWarning)
    spec = json.loads(sys.argv[1])
    runner = _streams if spec["kind"] == "streams" else _concurrency
    result = asyncio.run(runner(spec))
    result["memory"] = memory()
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
