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

``{"kind": "relay", "contender", "url", "stream", "rate", "unpaced_stream", "min_time"}``
    Read a relayed reply's text as a browser would, over one connection: from the relay
    process at ``url`` (``POST /relay``), or, for ``direct``, from the loopback server itself.
    Paced: the server sends ``stream`` at ``rate`` events per second with its send time in
    each text delta; the latency of each delta is its arrival time here minus that send time.
    Unpaced: ``unpaced_stream`` as fast as it goes, repeated for ``min_time``; text deltas per
    second (wall), and the relay's own CPU time per delta (``GET /cpu`` before and after).
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
from collections.abc import Callable
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


async def _relay(spec: dict[str, Any]) -> dict[str, Any]:
    import httpx
    import orjson

    direct = spec["contender"] == "direct"
    body = {"model": "bench", "max_tokens": 64000, "messages": [], "stream": True}
    path = "/v1/messages" if direct else "/relay"
    async with httpx.AsyncClient(base_url=spec["url"], timeout=120.0) as http:

        async def read(route: str, on_text: Callable[[str, int], None]) -> None:
            headers = {"x-bench-route": route}
            async with http.stream("POST", path, json=body, headers=headers) as response:
                response.raise_for_status()
                tail = b""
                async for chunk in response.aiter_raw():
                    now = time.monotonic_ns()
                    frames = (tail + chunk).split(b"\n\n")
                    tail = frames.pop()
                    for frame in frames:
                        start = frame.find(b"data: ")
                        if start < 0:
                            continue
                        data = orjson.loads(frame[start + 6 :])
                        if direct:
                            if data.get("type") != "content_block_delta":
                                continue
                            data = data["delta"]
                        if "text" in data:
                            on_text(data["text"], now)

        async def relay_cpu() -> float:
            return 0.0 if direct else float((await http.get("/cpu")).text)

        ignore: Callable[[str, int], None] = lambda text, now: None  # noqa: E731
        for _ in range(3):  # warm: imports, connections, code paths on both sides
            await read("s/short", ignore)
        latencies_ms: list[float] = []

        def stamped(text: str, now: int) -> None:
            latencies_ms.append((now - int(text)) / 1e6)

        await read(f"t/{spec['stream']}/{spec['rate']}", stamped)
        unpaced = generate(spec["unpaced_stream"])
        pieces: list[str] = []
        walls: list[float] = []
        cpus: list[float] = []
        counts: list[int] = []
        while not walls or (sum(walls) < float(spec["min_time"]) and len(walls) < 50):
            pieces.clear()
            cpu0 = await relay_cpu()
            wall0 = time.perf_counter()
            await read(f"s/{unpaced.name}", lambda text, now: pieces.append(text))
            walls.append(time.perf_counter() - wall0)
            cpus.append(await relay_cpu() - cpu0)
            counts.append(len(pieces))
    return {
        "contender": spec["contender"],
        "rate": spec["rate"],
        "latencies_ms": sorted(latencies_ms),
        "unpaced_stream": unpaced.name,
        "unpaced_deltas": counts[-1],
        "unpaced_wall_s": walls,
        "unpaced_relay_cpu_s": cpus,
        "ok": "".join(pieces) == unpaced.text and len(latencies_ms) > 0,
    }


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
    runners = {"streams": _streams, "concurrency": _concurrency, "relay": _relay}
    runner = runners[spec["kind"]]
    result = asyncio.run(runner(spec))
    result["memory"] = memory()
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
