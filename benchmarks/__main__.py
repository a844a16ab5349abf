"""Run the benchmarks: ``python -m benchmarks [--quick] [--guard]``.

Everything in one run, side by side: anthropic-rx, the official ``anthropic`` SDK, httpx-sse
and an orjson floor, in memory and over loopback, then 1,000 concurrent streams, then an SSE
relay (upstream → an app streaming the text as SSE → a reader) built on each. Each
measurement runs in a fresh process; the contenders of one comparison run back to back, in an
order that rotates between repeats, so that they share the machine's noise.

Writes ``benchmarks/RESULTS.md`` (with ``--quick``: ``benchmarks/out/RESULTS-quick.md``) and
the raw numbers to ``benchmarks/out/``, and prints the tables; the sink benchmarks' blocks of
targets in ``RESULTS.md`` (``_targets_block``), written by their own runs, are kept. ``--guard``
exits 1 when a target is missed by more than the measured noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _report, _targets_block

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"


@dataclass(frozen=True)
class Config:
    """What one run measures."""

    name: str
    repeats: int
    min_time: float
    max_iterations: int
    final_streams: list[str]
    text_streams: list[str]
    ratio_stream: str
    flat: tuple[str, str]
    concurrency: int
    interval_ms: int
    relay_stream: str = "text-1000"
    relay_rate: int = 200
    relay_unpaced: str = "text-10000"
    relay_min_time: float = 1.0
    concurrent: list[str] = field(default_factory=lambda: ["rx", "sdk", "floor"])
    relays: list[str] = field(default_factory=lambda: ["rx", "sdk", "direct"])


FULL = Config(
    name="full",
    repeats=5,
    min_time=0.2,
    max_iterations=100,
    final_streams=[
        "short",
        "text-1000",
        "text-10000",
        "text-100000",
        "tool-1000",
        "tool-10000",
        "thinking-10000",
    ],
    text_streams=["short", "text-1000", "text-10000", "text-100000"],
    ratio_stream="text-10000",
    flat=("text-1000", "text-100000"),
    concurrency=1000,
    interval_ms=5,
)

QUICK = Config(
    name="quick",
    repeats=3,
    min_time=0.06,
    max_iterations=30,
    final_streams=["short", "text-1000", "text-10000", "tool-1000", "thinking-1000"],
    text_streams=["short", "text-1000", "text-10000"],
    ratio_stream="text-10000",
    flat=("text-1000", "text-10000"),
    concurrency=1000,  # the target is set at 1,000: at 200 the SDK pays less for its pool
    interval_ms=5,
    relay_stream="text-400",
    relay_min_time=0.5,
)

# Each group's contenders run back to back, one fresh process each, in an order that rotates
# from one repeat to the next.
GROUPS: dict[tuple[str, str], list[str]] = {
    ("memory", "final"): ["rx", "sdk", "floor"],
    ("memory", "text"): ["rx-iter", "rx-subscribe", "sdk-text", "sdk-create", "floor"],
    ("loopback", "final"): ["rx", "sdk", "floor"],
    ("loopback", "text"): [
        "rx-iter",
        "rx-subscribe",
        "sdk-text",
        "sdk-create",
        "httpx-sse",
        "floor",
    ],
}


class Server:
    """A server process (by default the loopback server); stops when its stdin closes.

    It prints ``PORT <n>`` once listening.
    """

    def __init__(self, *args: str, what: str = "the loopback server") -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", *(args or ["benchmarks._server"])],
            cwd=HERE.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{what} did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        process = self.process
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run_relay(config: Config, contender: str, base_url: str) -> dict[str, Any]:
    """One relay measurement: start the contender's relay (none for ``direct``), read it."""
    relay = None
    if contender != "direct":
        relay = Server("benchmarks._relay", contender, base_url, what=f"the {contender} relay")
    spec = {
        "kind": "relay",
        "contender": contender,
        "url": base_url if relay is None else relay.base_url,
        "stream": config.relay_stream,
        "rate": config.relay_rate,
        "unpaced_stream": config.relay_unpaced,
        "min_time": config.relay_min_time,
    }
    try:
        return run_child(spec, timeout=300)
    finally:
        if relay is not None:
            relay.stop()


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one measuring process and return what it printed."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks._child", json.dumps(spec)],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def rotated(items: list[Any], by: int) -> list[Any]:
    by %= len(items)
    return items[by:] + items[:by]


def measure(config: Config, base_url: str) -> dict[str, Any]:
    """Every repeat of every comparison and of the concurrency run; raw results."""
    runs: list[dict[str, Any]] = []
    concurrency: list[dict[str, Any]] = []
    relays: list[dict[str, Any]] = []
    errors: list[str] = []
    started = time.monotonic()
    groups = list(GROUPS)
    for repeat in range(config.repeats):
        for mode, task in rotated(groups, repeat):
            streams = config.final_streams if task == "final" else config.text_streams
            for contender in rotated(GROUPS[mode, task], repeat):
                case = {"mode": mode, "task": task, "contender": contender, "streams": streams}
                spec = {
                    "kind": "streams",
                    "cases": [case],
                    "base_url": base_url,
                    "min_time": config.min_time,
                    "max_iterations": config.max_iterations,
                }
                result = run_child(spec, timeout=600)
                what = f"{mode} {task} {contender}"
                _progress(started, f"repeat {repeat + 1}/{config.repeats}: {what}", result)
                if "error" in result:
                    errors.append(f"{what} (repeat {repeat + 1}): {result['error']}")
                    continue
                for row in result["results"]:
                    runs.append({**row, "repeat": repeat})
        for contender in rotated(config.concurrent, repeat):
            spec = {
                "kind": "concurrency",
                "contender": contender,
                "streams": config.concurrency,
                "interval_ms": config.interval_ms,
                "base_url": base_url,
                "timeout": 240,
            }
            result = run_child(spec, timeout=300)
            _progress(
                started, f"repeat {repeat + 1}/{config.repeats}: concurrency {contender}", result
            )
            if "error" in result:
                errors.append(f"concurrency {contender} (repeat {repeat + 1}): {result['error']}")
                continue
            concurrency.append({**result, "repeat": repeat})
        for contender in rotated(config.relays, repeat):
            result = run_relay(config, contender, base_url)
            _progress(started, f"repeat {repeat + 1}/{config.repeats}: relay {contender}", result)
            if "error" in result:
                errors.append(f"relay {contender} (repeat {repeat + 1}): {result['error']}")
                continue
            relays.append({**result, "repeat": repeat})
    ladder = run_ladder(config)
    _progress(started, "cost per layer of anthropic-rx", ladder)
    if "error" in ladder:
        errors.append(f"cost per layer: {ladder['error']}")
    return {
        "runs": runs,
        "concurrency": concurrency,
        "relays": relays,
        "ladder": ladder,
        "errors": errors,
        "elapsed_s": time.monotonic() - started,
    }


def run_ladder(config: Config) -> dict[str, Any]:
    """What each layer of anthropic-rx's final-message path costs (``_profile --ladder``)."""
    repeat = "15" if config.name == "full" else "5"
    command = [sys.executable, "-m", "benchmarks._profile", "--ladder", "--json"]
    command += ["--stream", config.ratio_stream, "--repeat", repeat]
    try:
        done = subprocess.run(command, cwd=HERE.parent, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    if done.returncode != 0:
        return {"error": " | ".join(done.stderr.strip().splitlines()[-3:])}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _progress(started: float, what: str, result: dict[str, Any]) -> None:
    status = f"FAILED: {result['error']}" if "error" in result else "ok"
    print(f"[{time.monotonic() - started:6.1f} s] {what}: {status}", file=sys.stderr, flush=True)


def write_markdown(destination: Path, markdown: str) -> None:
    """Write the report to ``destination``, keeping the blocks of targets the sink benchmarks
    wrote into the file it replaces (their runs are separate; this one must not erase them).

    Raises ``OSError`` when the file cannot be read or written.
    """
    old = destination.read_text(encoding="utf-8") if destination.exists() else ""
    destination.write_text(_targets_block.carry(old, markdown), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the one-minute subset")
    parser.add_argument(
        "--guard", action="store_true", help="exit 1 when a target is missed beyond the noise"
    )
    parser.add_argument("--repeats", type=int, help="override the number of repeats")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.repeats:
        config = Config(**{**asdict(config), "repeats": args.repeats})
    command = "python -m benchmarks" + " --quick" * args.quick + " --guard" * args.guard
    meta = _report.environment(command, config.name)
    meta["load_before"] = os.getloadavg()
    server = Server()
    try:
        raw = measure(config, server.base_url)
    finally:
        server.stop()
    meta["load_after"] = os.getloadavg()
    raw["config"] = asdict(config)
    raw["meta"] = meta
    OUT.mkdir(exist_ok=True)
    (OUT / f"results-{config.name}.json").write_text(json.dumps(raw, indent=1))
    report = _report.Report(raw)
    markdown = report.markdown()
    destination = HERE / "RESULTS.md" if config.name == "full" else OUT / "RESULTS-quick.md"
    write_markdown(destination, markdown)
    print(report.terminal())
    print(f"\nwritten: {destination.relative_to(HERE.parent)}", file=sys.stderr)
    for line in report.missed():
        print(f"target missed: {line}", file=sys.stderr)
    if args.guard:
        regressed = report.regressed()
        if regressed or raw["errors"]:
            for line in [*raw["errors"], *regressed]:
                print(f"GUARD: {line}", file=sys.stderr)
            return 1
        print("GUARD: every measured value within its guard", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
