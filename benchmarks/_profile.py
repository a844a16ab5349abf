"""Where anthropic-rx spends its time: ``python -m benchmarks._profile [options]``.

Profiles one in-memory path with cProfile and prints the functions with the most own time and
the own time per source file, each as a share of the total. cProfile's per-call overhead
inflates small functions; compare with the benchmark's µs per event, not in absolute terms.

Options: ``--path final|text`` (``final_message`` or text deltas through
``to_async_iterator``), ``--stream NAME`` (default ``text-10000``), ``--repeat N``,
``--top N``, ``--sampler`` (use pyinstrument, a sampling profiler, when it is installed:
``pip install pyinstrument``).

``--ladder`` measures instead, without a profiler, what each layer of the final-message path
adds per event: the SSE decoder alone, then with each frame validated into its event model,
then with each event fed to a ``MessageBuilder``, then the whole ``final_message(from_sse_bytes
(...))``; ``--json`` prints that as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import time
import warnings
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

from ._contenders import Target, make
from ._streams import generate


def _file_label(path: str) -> str:
    parts = Path(path).parts
    for anchor in ("anthropic_rx", "reactivex", "pydantic", "pydantic_core", "asyncio"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) :])
    return path if path.startswith("<") or path == "~" else Path(path).name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._profile")
    parser.add_argument("--path", choices=("final", "text"), default="final")
    parser.add_argument("--stream", default="text-10000")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sampler", action="store_true")
    parser.add_argument("--ladder", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)
    if args.ladder:
        steps = ladder(args.stream, args.repeat)
        if args.json:
            print(json.dumps({"stream": args.stream, "steps": steps}))
        else:
            print(f"final-message path, {args.stream}: CPU µs per event (median of {args.repeat})")
            previous = 0.0
            for name, cost in steps:
                print(f"{cost:7.2f}  (+{cost - previous:5.2f})  {name}")
                previous = cost if name != "floor" else 0.0
        return

    stream = generate(args.stream)
    target = Target("memory")
    run = make("rx" if args.path == "final" else "rx-iter", args.path, target)

    async def work() -> float:
        await run(generate("short"))
        target.chunks(stream)
        start = time.process_time()
        for _ in range(args.repeat):
            await run(stream)
        return time.process_time() - start

    plain = asyncio.run(work())
    events = stream.events * args.repeat
    if args.sampler:
        _sampled(work, plain, events, args)
        return
    profiler = cProfile.Profile()
    profiler.enable()
    profiled = asyncio.run(work())
    profiler.disable()

    print(
        f"{args.path} path, {args.stream} x {args.repeat}: {plain * 1e6 / events:.2f} µs/event "
        f"without the profiler, {profiled * 1e6 / events:.2f} with it"
    )
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tottime for (_, _, tottime, _, _) in entries.values())
    rows = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)
    print(f"\nown time by function (of {total:.3f} s profiled)")
    print(f"{'own %':>6} {'cum %':>6} {'calls/event':>11}  function")
    for (path, line, name), (_, calls, tottime, cumtime, _) in rows[: args.top]:
        print(
            f"{100 * tottime / total:6.1f} {100 * cumtime / total:6.1f} "
            f"{calls / events:11.2f}  {_file_label(path)}:{line} {name}"
        )
    by_file: dict[str, float] = defaultdict(float)
    for (path, _, _), (_, _, tottime, _, _) in entries.items():
        by_file[_file_label(path)] += tottime
    print("\nown time by file")
    for label, tottime in sorted(by_file.items(), key=lambda item: item[1], reverse=True)[:15]:
        print(f"{100 * tottime / total:6.1f}  {label}")


LADDER = (
    "floor",
    "SSE decoder",
    "+ validate each frame into its event model",
    "+ MessageBuilder.feed and .message()",
    "final_message(from_sse_bytes(chunks))",
)


def ladder(name: str, repeat: int) -> list[tuple[str, float]]:
    """CPU µs per event of each layer of the final-message path, cumulatively."""
    import anthropic_rx as arx

    try:
        from anthropic_rx._events import EVENT_VALIDATORS

        validators = {key: v.validate_json for key, v in EVENT_VALIDATORS.items()}
    except ImportError:  # the layout changed: the public parser does the same job
        validators = {}
    parse = arx.parse_event
    stream = generate(name)
    target = Target("memory")
    chunks = target.chunks(stream)
    floor = make("floor", "final", target)

    def decode(validate: bool, build: bool) -> None:
        decoder = arx.SSEDecoder()
        builder = arx.MessageBuilder()
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                if validate:
                    check = validators.get(frame.event)
                    event = check(frame.data) if check else parse(frame.data, frame.event)
                    if build:
                        builder.feed(event)
        decoder.flush()
        if build:
            builder.message()

    async def whole() -> None:
        await arx.final_message(arx.from_sse_bytes(chunks))

    async def steps() -> list[Callable[[], Awaitable[None]]]:
        async def sync(validate: bool, build: bool) -> None:
            decode(validate, build)

        async def floor_run() -> None:
            await floor(stream)

        return [
            floor_run,
            lambda: sync(False, False),
            lambda: sync(True, False),
            lambda: sync(True, True),
            whole,
        ]

    async def measure() -> list[tuple[str, float]]:
        runs = await steps()
        times: list[list[float]] = [[] for _ in runs]
        for _ in range(repeat):
            for i, run in enumerate(runs):  # interleaved, to share the machine's noise
                start = time.process_time()
                await run()
                times[i].append(time.process_time() - start)
        return [
            (label, statistics.median(t) * 1e6 / stream.events)
            for label, t in zip(LADDER, times, strict=True)
        ]

    return asyncio.run(measure())


def _sampled(
    work: Callable[[], Awaitable[float]], plain: float, events: int, args: argparse.Namespace
) -> None:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001)
    profiler.start()
    profiled = asyncio.run(work())
    session = profiler.stop()
    print(
        f"{args.path} path, {args.stream} x {args.repeat}: {plain * 1e6 / events:.2f} µs/event "
        f"without the profiler, {profiled * 1e6 / events:.2f} with it (pyinstrument)"
    )
    own: dict[tuple[str, str, int], float] = defaultdict(float)
    by_file: dict[str, float] = defaultdict(float)
    stack = [session.root_frame()]
    while stack:
        frame = stack.pop()
        if frame is None:
            continue
        stack.extend(frame.children)
        if frame.is_synthetic:  # its time is already in its parent's total_self_time
            continue
        label = _file_label(frame.file_path or "~")
        own[(label, frame.function or "?", frame.line_no or 0)] += frame.total_self_time
        by_file[label] += frame.total_self_time
    total = sum(own.values())
    print(f"\nown time by function (of {total:.3f} s sampled)")
    print(f"{'own %':>6}  function")
    for (label, name, line), seconds in sorted(own.items(), key=lambda i: i[1], reverse=True)[
        : args.top
    ]:
        print(f"{100 * seconds / total:6.1f}  {label}:{line} {name}")
    print("\nown time by file")
    for label, seconds in sorted(by_file.items(), key=lambda item: item[1], reverse=True)[:15]:
        print(f"{100 * seconds / total:6.1f}  {label}")


if __name__ == "__main__":
    main()
