"""From raw measurements to medians, spreads, ratios, targets and the Markdown report."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Report", "environment"]

PACKAGES = (
    "anthropic-rx",
    "anthropic",
    "httpx",
    "httpx2",
    "httpx-sse",
    "orjson",
    "pydantic",
    "pydantic-core",
    "reactivex",
    "h11",
)

LABELS = {
    "rx": "anthropic-rx `final_message`",
    "rx-iter": "anthropic-rx `to_async_iterator`",
    "rx-subscribe": "anthropic-rx `subscribe`",
    "sdk": "SDK `get_final_message`",
    "sdk-text": "SDK `text_stream`",
    "sdk-create": "SDK `create(stream=True)`",
    "httpx-sse": "httpx-sse + json",
    "floor": "floor",
}
ORDER = ("rx", "rx-iter", "rx-subscribe", "sdk", "sdk-text", "sdk-create", "httpx-sse", "floor")
# Regression ceilings for goals not reached yet (see RESULTS.md for the reasons): the level
# reached on this machine, plus a margin for the noise of a shared 2-core box.
CEILINGS: dict[tuple[str, str], float] = {
    # Met by a narrow margin (2.8x): a ratio to a sub-microsecond floor moves by a tenth with
    # the machine's load, and a CI run on a busy box must not fail on that.
    ("final", "floor"): 3.3,
    ("text", "floor"): 4.6,
    # The SDK 2.16 reads a stream in about 0.6 of 2.15's time per event (get_final_message
    # 41 -> 24 us, text_stream 41 -> 24 us here) while anthropic-rx's own cost stayed the
    # same: the ratios to the SDK moved from 0.055-0.066 to 0.11-0.13 (quick runs 0.11-0.145).
    # These ceilings hold anthropic-rx to the level reached, not to the goal.
    ("text", "sdk-text"): 0.16,
    ("final", "sdk"): 0.14,
}
CONCURRENCY_CEILING: float | None = None  # met: the guard is the goal

WHY = {
    "floor": (
        "**≤ 3x the floor, for text in memory.** The floor builds no objects: it splits bytes "
        "and keeps `orjson` dicts. anthropic-rx hands every event to its subscribers as a "
        "validated, frozen pydantic model; pydantic-core's `validate_json` alone costs "
        "1.3-1.5x the whole floor per event (see *Where anthropic-rx's time goes*: the decoder "
        "is below the floor's cost, validation is the largest layer; other model "
        "configurations and union shapes moved it by less than 5 %). The final-message path, "
        "which needs no per-delta call downstream, is under 3x; the text paths add two "
        "reactivex observer layers per event (each `subscribe` wraps its observer) and, "
        "through `to_async_iterator`, a coroutine step per item. Over loopback, where the "
        "socket's cost is shared, every path is under 3x."
    ),
    "sdk": (
        "**≤ 1/10 of the SDK.** The SDK 2.16 streams at about 0.6 of the cost per event of "
        "2.15 (its `get_final_message` and `text_stream`: about 41 to 24 µs per event on "
        "text-10000 in memory), while anthropic-rx's own cost is what it was (its ratios to "
        "the floor are unchanged): the ratios moved from 0.05-0.07 to 0.11-0.13. The next "
        "step is anthropic-rx's own cost: validation is half of it (see *Where anthropic-rx's "
        "time goes*)."
    ),
    "concurrency": (
        "**1,000 streams in ≤ 1/4 of the SDK's wall time.** Both run on httpcore, whose pool "
        "places each request with work proportional to its open connections. anthropic-rx "
        "splits its pool as streams pile up (32 streams per pool), which takes it below the "
        "httpx floor's wall time and its p99 time to first token below the SDK's; what remains "
        "is httpcore's and h11's per-request cost, the same for every httpx-based client (the "
        "httpx floor itself takes more than half of the SDK's time)."
    ),
    "relay": (
        "**≤ 2 ms p99 added by the relay.** Three processes (server, relay, reader) share two "
        "cores; the p99 of a few hundred deltas is set by a handful of scheduling delays of "
        "the relay process, as the spread between repeats shows, not by its work per delta "
        "(see the relay's CPU µs per delta, and its p50)."
    ),
}


def _why_kind(name: str) -> str:
    if name.startswith("SSE relay"):
        return "relay"
    if "concurrent" in name:
        return "concurrency"
    if "/ floor" in name:
        return "floor"
    return "sdk"


PAIRS = {
    "final": (("rx", "sdk"), ("rx", "floor")),
    "text": (
        ("rx-iter", "sdk-text"),
        ("rx-iter", "floor"),
        ("rx-subscribe", "sdk-text"),
        ("rx-subscribe", "floor"),
    ),
}
SHORT = {"rx-iter": "rx-iter", "rx-subscribe": "rx-sub", "sdk-text": "SDK", "sdk": "SDK"}


def environment(command: str, config: str) -> dict[str, Any]:
    """Versions, machine and work tree of this run."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "command": command,
        "config": config,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "versions": versions,
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


@dataclass(frozen=True)
class Spread:
    """The median of several repeats and their range."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def low(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def high(self) -> float:
        return max(self.values) if self.values else float("nan")

    @property
    def half_range(self) -> float:
        return (self.high - self.low) / 2 if self.values else 0.0

    def __bool__(self) -> bool:
        return bool(self.values)

    def show(self, digits: int = 2, *, spread: bool = True) -> str:
        if not self.values:
            return "n/a"
        if not spread or len(self.values) < 2:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}-{self.high:.{digits}f}]"


@dataclass(frozen=True)
class Target:
    """One target of the issue, checked on this run's numbers."""

    name: str
    goal: str
    limit: float
    value: Spread
    unit: str = "x"
    # Where the goal is not reached yet, the guard holds the line at the level reached
    # (a regression ceiling), so that CI catches a step back without calling a miss a pass.
    ceiling: float | None = None
    # A latency quantile of a few hundred samples measures the machine's scheduling as much as
    # the code: reported, not guarded (the code's own cost on that path is guarded by the
    # per-event ratios of the same pipeline).
    guarded: bool = True

    @property
    def status(self) -> str:
        if not self.value:
            return "not measured"
        if self.value.median <= self.limit:
            return "met"
        if self.value.median - self.limit <= self.value.half_range:
            return "missed, within noise"
        return "MISSED"

    @property
    def guarded_at(self) -> float:
        return self.limit if self.ceiling is None else max(self.limit, self.ceiling)

    @property
    def regressed(self) -> bool:
        """Past what the guard holds by more than the noise of the repeats."""
        if not self.value or not self.guarded:
            return False
        return self.value.median - self.guarded_at > self.value.half_range


class Report:
    """Aggregates one run's raw results."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self.config = raw["config"]
        self.meta = raw["meta"]
        self.rows: dict[tuple[str, str, str, str], dict[int, dict[str, Any]]] = {}
        for row in raw["runs"]:
            key = (row["mode"], row["task"], row["contender"], row["stream"])
            self.rows.setdefault(key, {})[row["repeat"]] = row
        self.concurrency: dict[str, dict[int, dict[str, Any]]] = {}
        for row in raw["concurrency"]:
            self.concurrency.setdefault(row["contender"], {})[row["repeat"]] = row
        self.relays: dict[str, dict[int, dict[str, Any]]] = {}
        for row in raw.get("relays", []):
            self.relays.setdefault(row["contender"], {})[row["repeat"]] = row

    # --- numbers ---------------------------------------------------------------------------

    def per_repeat(
        self, mode: str, task: str, contender: str, stream: str, metric: str = "cpu"
    ) -> dict[int, float]:
        """µs per event of each repeat (the median of its iterations)."""
        out = {}
        for repeat, row in self.rows.get((mode, task, contender, stream), {}).items():
            seconds = statistics.median(row[f"{metric}_s"])
            out[repeat] = seconds * 1e6 / row["events"]
        return out

    def cost(
        self, mode: str, task: str, contender: str, stream: str, metric: str = "cpu"
    ) -> Spread:
        return Spread(list(self.per_repeat(mode, task, contender, stream, metric).values()))

    def ratio(
        self, mode: str, task: str, a: str, b: str, stream: str, metric: str = "cpu"
    ) -> Spread:
        """``a / b`` per repeat: both measured in the same window of the machine's noise."""
        first = self.per_repeat(mode, task, a, stream, metric)
        second = self.per_repeat(mode, task, b, stream, metric)
        return Spread([first[r] / second[r] for r in first if second.get(r)])

    def growth(self, mode: str, task: str, contender: str, metric: str = "cpu") -> Spread:
        """µs per event at the largest text stream over the same at 1k, per repeat."""
        small, large = self.config["flat"]
        first = self.per_repeat(mode, task, contender, small, metric)
        second = self.per_repeat(mode, task, contender, large, metric)
        return Spread([second[r] / first[r] for r in second if first.get(r)])

    def peak_mib(self, mode: str, task: str, contender: str, stream: str) -> Spread:
        rows = self.rows.get((mode, task, contender, stream), {}).values()
        return Spread([row["peak_rss_kib"] / 1024 for row in rows])

    def added_mib(self, mode: str, task: str, contender: str, stream: str) -> Spread:
        """Peak RSS while reading the stream over RSS just before it."""
        rows = self.rows.get((mode, task, contender, stream), {}).values()
        return Spread([(row["peak_rss_kib"] - row["rss_before_kib"]) / 1024 for row in rows])

    def conc(self, contender: str, key: str) -> Spread:
        rows = self.concurrency.get(contender, {}).values()
        if key == "per_stream_kib":
            values = [(r["open_rss_kib"] - r["base_rss_kib"]) / r["streams"] for r in rows]
        elif key in ("ttft_p50_ms", "ttft_p99_ms"):
            q = 0.5 if key == "ttft_p50_ms" else 0.99
            values = [_quantile(r["ttft_s"], q) * 1000 for r in rows]
        elif key.endswith("_mib"):
            values = [r[key.removesuffix("_mib") + "_kib"] / 1024 for r in rows]
        else:
            values = [float(r[key]) for r in rows]
        return Spread(values)

    def conc_ratio(self, a: str, b: str, key: str = "wall_s") -> Spread:
        first = self.concurrency.get(a, {})
        second = self.concurrency.get(b, {})
        return Spread([first[r][key] / second[r][key] for r in first if r in second])

    def memory_gap(self, a: str, b: str) -> Spread:
        """Per open stream, ``a`` minus ``b``, KiB, per repeat."""
        first = self.concurrency.get(a, {})
        second = self.concurrency.get(b, {})

        def per(row: dict[str, Any]) -> float:
            return float((row["open_rss_kib"] - row["base_rss_kib"]) / row["streams"])

        return Spread([per(first[r]) - per(second[r]) for r in first if r in second])

    def relay_latency(self, contender: str, q: float) -> dict[int, float]:
        """The ``q`` quantile of the paced relay's per-delta latency, ms, per repeat."""
        rows = self.relays.get(contender, {})
        return {r: _quantile(row["latencies_ms"], q) for r, row in rows.items()}

    def relay_added(self, contender: str, q: float) -> Spread:
        """Latency quantile through the relay minus the same read directly, ms, per repeat."""
        relayed = self.relay_latency(contender, q)
        direct = self.relay_latency("direct", q)
        return Spread([relayed[r] - direct[r] for r in relayed if r in direct])

    def relay_rate(self, contender: str) -> Spread:
        """Unpaced relay: text deltas per second reaching the reader (best of each repeat)."""
        rows = self.relays.get(contender, {}).values()
        return Spread([row["unpaced_deltas"] / min(row["unpaced_wall_s"]) for row in rows])

    def relay_cpu(self, contender: str) -> Spread:
        """Unpaced relay: the relay process's CPU µs per text delta (median of each repeat)."""
        rows = self.relays.get(contender, {}).values()
        return Spread(
            [
                statistics.median(row["unpaced_relay_cpu_s"]) * 1e6 / row["unpaced_deltas"]
                for row in rows
            ]
        )

    def relay_table(self) -> str:
        if not self.relays:
            return "Not measured in this run."
        names = {
            "rx": "anthropic-rx relay",
            "sdk": "SDK relay",
            "direct": "direct read, no relay (baseline)",
        }
        lines = [
            "| reader of | latency p50 ms | p99 ms | max ms | added p50 ms | added p99 ms "
            "| unpaced deltas/s | relay CPU µs/delta |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for contender in ("rx", "sdk", "direct"):
            if contender not in self.relays:
                continue
            relayed = contender != "direct"
            cells = [
                names[contender],
                Spread(list(self.relay_latency(contender, 0.5).values())).show(2),
                Spread(list(self.relay_latency(contender, 0.99).values())).show(2),
                Spread(list(self.relay_latency(contender, 1.0).values())).show(1),
                self.relay_added(contender, 0.5).show(2) if relayed else "",
                self.relay_added(contender, 0.99).show(2) if relayed else "",
                f"{self.relay_rate(contender).median:,.0f}",
                self.relay_cpu(contender).show(1) if relayed else "",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        rx, sdk = self.relay_rate("rx"), self.relay_rate("sdk")
        if rx and sdk:
            lines += [
                "",
                "Unpaced throughput anthropic-rx relay / SDK relay: "
                f"{rx.median / sdk.median:.1f}x; "
                f"relay CPU per delta anthropic-rx / SDK: "
                f"{self.relay_cpu('rx').median / self.relay_cpu('sdk').median:.3f}.",
            ]
        return "\n".join(lines)

    def failures(self) -> list[str]:
        """Measurements whose result did not match the stream's text."""
        bad = sorted(
            {
                f"{row['mode']}/{row['task']}/{row['contender']}/{row['stream']}"
                for row in self.raw["runs"]
                if not row["ok"]
            }
        )
        bad += [
            f"concurrency/{row['contender']}" for row in self.raw["concurrency"] if not row["ok"]
        ]
        return bad + [
            f"relay/{row['contender']}" for row in self.raw.get("relays", []) if not row["ok"]
        ]

    # --- targets ---------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        stream = self.config["ratio_stream"]
        small, large = self.config["flat"]
        out = []
        for mode in ("memory", "loopback"):
            for task, pairs in PAIRS.items():
                what = "bytes → final message" if task == "final" else "bytes → text"
                for a, b in pairs:
                    limit = 0.10 if b.startswith("sdk") else 3.0
                    out.append(
                        Target(
                            f"{what}, {mode}, {stream}: {LABELS[a]} / {LABELS[b]}",
                            f"≤ {limit:g}",
                            limit,
                            self.ratio(mode, task, a, b, stream),
                            ceiling=CEILINGS.get((task, b)),
                        )
                    )
        for mode in ("memory", "loopback"):
            for task, contender in (("final", "rx"), ("text", "rx-iter")):
                out.append(
                    Target(
                        f"flat cost, {mode}, {LABELS[contender]}: µs/event {large} / {small}",
                        "≤ 1.5",
                        1.5,
                        self.growth(mode, task, contender),
                    )
                )
        count = self.config["concurrency"]
        out.append(
            Target(
                f"{count} concurrent streams: wall time anthropic-rx / SDK",
                "≤ 0.25",
                0.25,
                self.conc_ratio("rx", "sdk"),
                ceiling=CONCURRENCY_CEILING,
            )
        )
        out.append(
            Target(
                f"{count} concurrent streams: memory per open stream, anthropic-rx - floor",
                "≤ 20 KiB",
                20.0,
                self.memory_gap("rx", "floor"),
                unit="KiB",
            )
        )
        out.append(
            Target(
                f"SSE relay: added latency p99 at {self.config.get('relay_rate', 200)} events/s, "
                "anthropic-rx relay - direct read",
                "≤ 2 ms",
                2.0,
                self.relay_added("rx", 0.99),
                unit="ms",
                guarded=False,
            )
        )
        return out

    def missed(self) -> list[str]:
        return [
            f"{t.name}: {t.value.show(3)} {t.unit}, target {t.goal}"
            for t in self.targets()
            if t.status == "MISSED"
        ]

    def regressed(self) -> list[str]:
        return [
            f"{t.name}: {t.value.show(3)} {t.unit}, guarded at {t.guarded_at:g}"
            for t in self.targets()
            if t.regressed
        ]

    # --- output ----------------------------------------------------------------------------

    def target_table(self) -> str:
        lines = [
            "| target | goal | guard | this run: median [min-max] | status |",
            "|---|---|---|---|---|",
        ]
        for t in self.targets():
            value = t.value.show(3) + (f" {t.unit}" if t.value and t.unit != "x" else "")
            guard = f"≤ {t.guarded_at:g}" if t.guarded else "reported only"
            lines.append(f"| {t.name} | {t.goal} | {guard} | {value} | {t.status} |")
        return "\n".join(lines)

    def cost_table(self, mode: str, task: str, metric: str = "cpu", spread: bool = True) -> str:
        contenders = [c for c in ORDER if any(k[:3] == (mode, task, c) for k in self.rows)]
        streams = self.config["final_streams" if task == "final" else "text_streams"]
        pairs = [p for p in PAIRS[task] if p[0] in contenders and p[1] in contenders]
        head = ["stream (events)", *(LABELS[c] for c in contenders)]
        head += [f"{SHORT.get(a, a)} / {SHORT.get(b, b)}" for a, b in pairs]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for stream in streams:
            events = next(
                (
                    row["events"]
                    for k, v in self.rows.items()
                    if k[3] == stream
                    for row in v.values()
                ),
                0,
            )
            cells = [f"{stream} ({events})"]
            cells += [
                self.cost(mode, task, c, stream, metric).show(2, spread=spread) for c in contenders
            ]
            cells += [
                self.ratio(mode, task, a, b, stream, metric).show(3, spread=spread)
                for a, b in pairs
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def throughput_table(self) -> str:
        streams = [self.config["ratio_stream"], self.config["flat"][1]]
        streams = list(dict.fromkeys(streams))
        lines = [
            "| mode | task | contender | stream | events/s (CPU) | events/s (wall) "
            "| peak RSS MiB | added while reading MiB |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for mode in ("memory", "loopback"):
            for task in ("final", "text"):
                for contender in ORDER:
                    for stream in streams:
                        cpu = self.cost(mode, task, contender, stream)
                        if not cpu:
                            continue
                        wall = self.cost(mode, task, contender, stream, "wall")
                        lines.append(
                            f"| {mode} | {task} | {LABELS[contender]} | {stream} "
                            f"| {1e6 / cpu.median:,.0f} | {1e6 / wall.median:,.0f} "
                            f"| {self.peak_mib(mode, task, contender, stream).show(1)} "
                            f"| {self.added_mib(mode, task, contender, stream).show(1)} |"
                        )
        return "\n".join(lines)

    def growth_table(self) -> str:
        small, large = self.config["flat"]
        lines = [
            f"| mode | task | contender | µs/event {large} ÷ {small} (CPU) | same, wall |",
            "|---|---|---|---|---|",
        ]
        for mode in ("memory", "loopback"):
            for task in ("final", "text"):
                for contender in ORDER:
                    g = self.growth(mode, task, contender)
                    if g:
                        wall = self.growth(mode, task, contender, "wall")
                        lines.append(
                            f"| {mode} | {task} | {LABELS[contender]} | {g.show(2)} "
                            f"| {wall.show(2)} |"
                        )
        return "\n".join(lines)

    def concurrency_table(self) -> str:
        head = (
            "| contender | wall s | CPU s | all open after s | TTFT p50 ms | TTFT p99 ms "
            "| RSS before MiB | RSS all open MiB | KiB per open stream | peak RSS MiB |"
        )
        lines = [head, "|" + "---|" * 10]
        names = {"rx": "anthropic-rx", "sdk": "SDK `messages.stream`", "floor": "floor (httpx)"}
        for contender in ("rx", "sdk", "floor"):
            if contender not in self.concurrency:
                continue
            cells = [
                names[contender],
                self.conc(contender, "wall_s").show(2),
                self.conc(contender, "cpu_s").show(2),
                self.conc(contender, "all_open_s").show(2),
                self.conc(contender, "ttft_p50_ms").show(0),
                self.conc(contender, "ttft_p99_ms").show(0),
                self.conc(contender, "base_rss_mib").show(1),
                self.conc(contender, "open_rss_mib").show(1),
                self.conc(contender, "per_stream_kib").show(1),
                self.conc(contender, "peak_rss_mib").show(1),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            f"Wall time anthropic-rx / SDK: {self.conc_ratio('rx', 'sdk').show(3)}; "
            f"anthropic-rx / floor: {self.conc_ratio('rx', 'floor').show(3)}; "
            f"floor / SDK: {self.conc_ratio('floor', 'sdk').show(3)}. "
            f"CPU time anthropic-rx / SDK: {self.conc_ratio('rx', 'sdk', 'cpu_s').show(3)}. "
            f"Memory per open stream, anthropic-rx - floor: "
            f"{self.memory_gap('rx', 'floor').show(1)} KiB; SDK - floor: "
            f"{self.memory_gap('sdk', 'floor').show(1)} KiB."
        )
        return "\n".join(lines)

    def ladder_table(self) -> str:
        ladder = self.raw.get("ladder") or {}
        steps = ladder.get("steps")
        if not steps:
            return "Not measured in this run."
        total = steps[-1][1]
        lines = [
            f"The final-message path on `{ladder['stream']}` in memory, built up one layer at a "
            "time in one process (`python -m benchmarks._profile --ladder`), CPU µs per event, "
            "no profiler attached. Share: of the whole path.",
            "",
            "| layer | cumulative µs/event | added µs/event | share |",
            "|---|---|---|---|",
        ]
        previous = 0.0
        for name, cost in steps:
            if name == "floor":
                lines.append(f"| floor, for scale | {cost:.2f} | | |")
                continue
            added = cost - previous
            lines.append(f"| {name} | {cost:.2f} | {added:.2f} | {100 * added / total:.0f} % |")
            previous = cost
        return "\n".join(lines)

    def why_missed(self) -> list[str]:
        """For each kind of target not met in this run, what stands in the way."""
        kinds = {
            _why_kind(t.name) for t in self.targets() if t.status not in ("met", "not measured")
        }
        kinds |= {_why_kind(t.name) for t in self.targets() if t.status == "not measured"}
        lines = ["### Targets not met, and why", ""] if kinds else []
        for kind in ("floor", "sdk", "concurrency", "relay"):
            if kind in kinds:
                lines += [f"- {WHY[kind]}", ""]
        return lines

    def markdown(self) -> str:
        meta, config = self.meta, self.config
        versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        small, large = config["flat"]
        parts = [
            "# Benchmarks",
            "",
            f"Command: `{meta['command']}` (from the repository root; `make bench` runs it). "
            f"{config['repeats']} repeats, {self.raw['elapsed_s']:.0f} s in all, "
            f"{meta['date']}.",
            "",
            f"- Machine: {meta['cpu']}, {meta['cores']} cores, {meta['platform']}, "
            f"Python {meta['python']}. Load average before/after: "
            f"{_load(meta['load_before'])} / {_load(meta['load_after'])} "
            "(the machine is shared; see Method).",
            f"- Versions: {versions}.",
            f"- Work tree: {meta['commit'] or 'unknown'}"
            + (" with uncommitted changes" if meta["dirty"] else "")
            + ".",
            "",
            "## Targets",
            "",
            "Ratios are taken per repeat (the contenders of one repeat run back to back) and "
            "summarised as median [min-max]. *missed, within noise*: past the target by no more "
            "than half the range of the repeats. `make bench-quick` fails when a value passes "
            "its guard by more than that noise: the guard is the goal where the goal is met, "
            "and a regression ceiling at the level reached where it is not yet. The relay's "
            "latency is reported, not guarded: its p99 follows the shared machine's scheduling; "
            "the relay runs the pipeline whose per-event cost the text ratios guard.",
            "",
            self.target_table(),
            "",
            *self.why_missed(),
            "## Per-event cost, CPU µs per event",
            "",
            "CPU time of the reading process (`time.process_time`) over the events of the "
            "stream (every SSE event, pings included), median [min-max] over the repeats; each "
            "repeat is the median of as many iterations as fit in "
            f"{config['min_time']} s (at least one). Ratio columns: per-repeat ratios.",
        ]
        for mode in ("memory", "loopback"):
            for task in ("final", "text"):
                what = "bytes → final message" if task == "final" else "bytes → text"
                parts += ["", f"### {what}, {mode}", "", self.cost_table(mode, task)]
        parts += [
            "",
            "## Per-event cost, wall-clock µs per event (medians)",
            "",
            "Over loopback this includes waiting for the server process.",
        ]
        for mode in ("memory", "loopback"):
            for task in ("final", "text"):
                what = "bytes → final message" if task == "final" else "bytes → text"
                parts += [
                    "",
                    f"### {what}, {mode} (wall)",
                    "",
                    self.cost_table(mode, task, "wall", spread=False),
                ]
        parts += [
            "",
            "## Throughput and peak memory",
            "",
            "Peak RSS is the process's `VmHWM` while it reads the stream (reset before each "
            "stream; each process reads one contender's streams, smallest first), so it "
            "includes the interpreter, the imported libraries and the stream's bytes (in "
            "memory: the body and its chunks, about twice the body's size). *Added while "
            "reading*: that peak over the RSS just before the stream.",
            "",
            self.throughput_table(),
            "",
            f"## Growth of the per-event cost from {small} to {large}",
            "",
            self.growth_table(),
            "",
            f"## {config['concurrency']} concurrent streams in one process",
            "",
            f"Each process opens {config['concurrency']} replies (`short`, "
            f"{self._conc_events()} events) at once against the loopback server. The server "
            "sends each reply up to its first text delta, then holds it; when every reader has "
            "its first token, the process's RSS is sampled (memory per open stream = (RSS all "
            "open - RSS before) / streams), the replies are released and the rest of each "
            f"arrives one event per write, {config['interval_ms']} ms apart. Wall time is from "
            "the first request to the last reply read; TTFT from a stream's request to its "
            "first text piece.",
            "",
            self.concurrency_table(),
            "",
            "## Where anthropic-rx's time goes",
            "",
            self.ladder_table(),
            "",
            "## SSE relay",
            "",
            "client → relay → SSE response → reader, each in its own process: the loopback "
            "server sends a reply, the relay (`benchmarks/_relay.py`: a Starlette app under "
            "uvicorn, the same app around each contender) reads it with anthropic-rx "
            "(`client.stream(...)` + `raise_on_error()` + `text_deltas()` + "
            "`to_async_iterator`) or with the SDK (`messages.stream(...).text_stream`) and "
            'writes each text delta as `data: {"text": ...}`; the reader reads that response '
            "with httpx. Paced: "
            f"`{self.config.get('relay_stream', '')}` at {self.config.get('relay_rate', '')} "
            "events/s, the server's send time in each delta; latency = arrival at the reader - "
            "send time (one machine, one monotonic clock). *Added*: minus the same quantile of "
            "the reader reading the server directly, per repeat. Unpaced: "
            f"`{self.config.get('relay_unpaced', '')}` as fast as it goes; the relay's CPU "
            "time per delta from its own `time.process_time()`.",
            "",
            self.relay_table(),
        ]
        failures = self.failures()
        if failures or self.raw["errors"]:
            parts += ["", "## Problems in this run", ""]
            parts += [f"- wrong result: {f}" for f in failures]
            parts += [f"- {e}" for e in self.raw["errors"]]
        parts += ["", METHOD.rstrip()]
        return "\n".join(parts) + "\n"

    def _conc_events(self) -> int:
        rows = [r for v in self.concurrency.values() for r in v.values()]
        return int(rows[0]["events_per_stream"]) if rows else 0

    def terminal(self) -> str:
        parts = ["", "Targets", "", self.target_table()]
        for mode in ("memory", "loopback"):
            for task in ("final", "text"):
                what = "bytes → final message" if task == "final" else "bytes → text"
                parts += ["", f"{what}, {mode}: CPU µs per event", "", self.cost_table(mode, task)]
        parts += ["", "Concurrency", "", self.concurrency_table()]
        parts += ["", "Where anthropic-rx's time goes", "", self.ladder_table()]
        problems = [f"wrong result: {f}" for f in self.failures()] + self.raw["errors"]
        if problems:
            parts += ["", "Problems", "", *problems]
        return "\n".join(parts)


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _load(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


METHOD = """## Method

- **Streams** (`benchmarks/_streams.py`): generated, deterministic Anthropic streams:
  `message_start`, a `ping`, content blocks, `message_delta`, `message_stop`. `short` is a
  30-delta reply; `text-N` one text block of N `text_delta` events of one to three words;
  `tool-N` a short text block and a `tool_use` block whose input JSON arrives in N
  `input_json_delta` fragments; `thinking-N` N `thinking_delta`, a `signature_delta`, then a
  text block of N/10 deltas. In memory the bytes are cut into 4 KiB chunks.
- **Contenders** (`benchmarks/_contenders.py`): anthropic-rx
  (`arx.final_message(arx.from_sse_bytes(chunks))`; text via `ops.text_deltas()` read with
  `arx.to_async_iterator` or a plain `subscribe`; over loopback `arx.Client(...).stream(...)`);
  the official SDK (`messages.stream(...)` + `get_final_message()`, `messages.stream(...)` +
  `text_stream`, `messages.create(stream=True)` iterated raw; in memory through
  `httpx2.MockTransport` serving the same chunks); httpx-sse (`aconnect_sse` + `json.loads`,
  loopback only); the floor: split on `b"\\n\\n"`, `orjson.loads` of each data line, pieces
  appended to lists and joined once at the end (tool input parsed once); over loopback read
  with a plain `httpx.AsyncClient`. Each result is checked against the stream's text.
- **Loopback** (`benchmarks/_server.py`): a minimal HTTP/1.1 server (h11 on asyncio) in its own
  process, serving the same generated bytes to every contender in 4 KiB chunked writes; each
  contender keeps one client (one connection pool) for all its requests. It is not the
  library's fake server (`anthropic_rx.testing.FakeAnthropic`), which records every request
  for tests: the benchmark server does the least work per byte, so that what is measured is
  the reading side.
- **Processes**: one fresh process per contender, comparison and repeat
  (`benchmarks/_child.py`); the contenders of one comparison run back to back, in an order
  that rotates between repeats; each warms its code path on `short` before measuring.
  CPU time is the main measure because this 2-core machine is shared with other work, which
  inflates wall time unevenly; wall time is reported too.
- **Targets** are checked only here, never in unit tests. `python -m benchmarks --quick
  --guard` (`make bench-quick`) runs a smaller set (streams up to 10k deltas, 3 repeats, the same
  1,000 concurrent streams, a 400-delta paced relay) and exits 1 when a value passes its guard by
  more than the spread of its repeats.
"""
