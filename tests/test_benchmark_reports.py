"""The benchmarks' result files: the sink benchmarks' blocks of targets in ``RESULTS.md``.

No benchmark runs here: the reports are made from made-up numbers, in temporary directories.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from benchmarks import _targets_block as tb
from benchmarks import database, redis, sinks
from benchmarks.__main__ import write_markdown

ROOT = Path(__file__).resolve().parent.parent
MAIN = """# Benchmarks

Command: `python -m benchmarks`.

## Targets

| target | goal | guard | this run: median [min-max] | status |
|---|---|---|---|---|
| a / b | ≤ 3 | ≤ 3.3 | 2.782 | met |

### Targets not met, and why

- **≤ 3x the floor.** Why.

## Per-event cost, CPU µs per event

| contender | text-1000 |
|---|---|
| floor | 0.50 |

## Method

- Streams.
"""
TARGETS = [
    tb.Target("`sse_response` / floor", "≤ 1.5x", "0.14x", True, "CPU per delta (10,000 deltas)"),
    tb.Target("fan-out p99", "≤ 50 ms", "60.7 ms", False, "One reply to 1,000 subscribers"),
]
DATE = "2026-12-03 07:50 UTC"
ROUTES = ("floor", "sse", "floor-paced", "sse-paced", "sse-bytes")


def make(name: str, value: str = "0.14x", *, met: bool = True) -> str:
    targets = [tb.Target("a goal | with a bar", "≤ 1.5x", value, met, "Some section")]
    return tb.block(name, f"Title of {name}", targets, command=f"python -m {name}", date=DATE)


def without_section(text: str) -> str:
    """``text`` with the sink targets section (up to the next ``##`` heading) taken out."""
    start = text.index(tb.SECTION)
    end = text.index("\n## ", start) + 1
    return text[:start] + text[end:]


def test_the_block_format() -> None:
    text = tb.block("sinks", "Sinks", TARGETS, command="python -m benchmarks.sinks", date=DATE)
    assert text == (
        "<!-- targets:sinks -->\n"
        "\n"
        f"**Sinks**: `python -m benchmarks.sinks`, {DATE}.\n"
        "\n"
        "| target | goal | this run | status | details |\n"
        "|---|---|---|---|---|\n"
        "| `sse_response` / floor | ≤ 1.5x | 0.14x | met | "
        "[RESULTS-sinks.md](RESULTS-sinks.md#cpu-per-delta-10000-deltas) |\n"
        "| fan-out p99 | ≤ 50 ms | 60.7 ms | MISSED | "
        "[RESULTS-sinks.md](RESULTS-sinks.md#one-reply-to-1000-subscribers) |\n"
        "\n"
        "<!-- /targets:sinks -->"
    )
    # A bar in a cell would split it: escaped.
    assert "| a goal \\| with a bar |" in make("x")


def test_inserted_after_the_targets_part_and_nothing_else_changes() -> None:
    new = make("sinks")
    text = tb.place(MAIN, "sinks", new)
    assert without_section(text) == MAIN
    part = text[text.index("### Targets not met") : text.index("## Per-event cost")]
    assert part.endswith(f"{tb.SECTION}\n\n{tb.INTRO}\n\n{new}\n\n")
    assert text.count("<!-- targets:sinks -->") == 1


def test_replaced_where_it_stands_and_idempotent() -> None:
    once = tb.place(MAIN, "sinks", make("sinks"))
    assert tb.place(once, "sinks", make("sinks")) == once
    again = tb.place(once, "sinks", make("sinks", "9.99x", met=False))
    assert again.count("<!-- targets:sinks -->") == 1
    assert again.count("<!-- /targets:sinks -->") == 1
    assert "9.99x" in again and "0.14x" not in again
    assert again.replace("9.99x | MISSED", "0.14x | met") == once


def test_the_blocks_keep_their_order_whichever_runs_first() -> None:
    text = MAIN
    for name in ("database", "sinks", "other", "redis"):
        text = tb.place(text, name, make(name))
    assert [name for name, _ in tb.blocks(text)] == ["sinks", "redis", "database", "other"]
    assert text.count(tb.SECTION) == 1
    assert without_section(text) == MAIN
    # Each block a paragraph of its own: one blank line between them.
    assert f"{make('sinks')}\n\n{make('redis')}\n\n{make('database')}" in text


def test_the_real_results_file_gets_the_section_before_its_next_part() -> None:
    main = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    if tb.SECTION in main:  # the file as committed, once the sink benchmarks have run
        main = without_section(main)
    text = tb.place(main, "redis", make("redis"))
    assert without_section(text) == main
    section = text.index(tb.SECTION)
    assert text.index("## Targets\n") < section < text.index("## Per-event cost")


def test_without_a_targets_part_the_section_goes_at_the_end() -> None:
    text = tb.place("# Benchmarks\n\nNothing yet.\n", "redis", make("redis"))
    assert (
        text == f"# Benchmarks\n\nNothing yet.\n\n{tb.SECTION}\n\n{tb.INTRO}\n\n{make('redis')}\n"
    )


def test_a_start_marker_without_its_end_is_refused() -> None:
    broken = MAIN + "\n<!-- targets:sinks -->\n| half a block |\n"
    with pytest.raises(ValueError, match="without its end marker"):
        tb.place(broken, "sinks", make("sinks"))
    # Another benchmark's block still goes in; the broken one is left as it was.
    assert "| half a block |" in tb.place(broken, "redis", make("redis"))


def test_the_main_report_rewrite_keeps_the_blocks(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(MAIN, encoding="utf-8")
    tb.update(results, "redis", make("redis"))
    tb.update(results, "sinks", make("sinks", "1.20x"))
    before = tb.blocks(results.read_text(encoding="utf-8"))
    rewritten = MAIN.replace("2.782", "2.501").replace("0.50", "0.44")
    write_markdown(results, rewritten)
    text = results.read_text(encoding="utf-8")
    assert tb.blocks(text) == before
    assert without_section(text) == rewritten
    part = text[text.index("### Targets not met") : text.index("## Per-event cost")]
    assert tb.SECTION in part
    # Twice: still one of each.
    write_markdown(results, rewritten)
    assert results.read_text(encoding="utf-8") == text


def test_the_main_report_without_an_old_file(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    write_markdown(results, MAIN)
    assert results.read_text(encoding="utf-8") == MAIN


def test_a_full_run_writes_its_files_and_its_block(tmp_path: Path) -> None:
    (tmp_path / "RESULTS.md").write_text(MAIN, encoding="utf-8")
    raw = {"numbers": [1, 2]}
    path = tb.write_results(
        "redis",
        "Redis",
        "# Redis report\n",
        TARGETS,
        quick=False,
        raw=raw,
        here=tmp_path,
        date=DATE,
    )
    assert path == tmp_path / "RESULTS-redis.md"
    assert path.read_text(encoding="utf-8") == "# Redis report\n"
    assert json.loads((tmp_path / "out" / "redis-full.json").read_text()) == raw
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    expected = tb.block("redis", "Redis", TARGETS, command="python -m benchmarks.redis", date=DATE)
    assert tb.blocks(text) == [("redis", expected)]
    assert without_section(text) == MAIN
    tb.write_results(
        "redis", "Redis", "# Again\n", TARGETS[:1], quick=False, guard=True, here=tmp_path
    )
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    [(_, again)] = tb.blocks(text)
    assert "`python -m benchmarks.redis --guard`" in again and "fan-out" not in again
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_quick_run_leaves_the_results_file_alone(tmp_path: Path) -> None:
    (tmp_path / "RESULTS.md").write_text(MAIN, encoding="utf-8")
    path = tb.write_results("sinks", "Sinks", "# quick\n", TARGETS, quick=True, here=tmp_path)
    assert path == tmp_path / "out" / "RESULTS-sinks-quick.md"
    assert path.read_text(encoding="utf-8") == "# quick\n"
    assert not (tmp_path / "RESULTS-sinks.md").exists()
    assert (tmp_path / "RESULTS.md").read_text(encoding="utf-8") == MAIN


def test_a_full_run_without_a_results_file_makes_one(tmp_path: Path) -> None:
    tb.write_results("database", "Database", "# db\n", TARGETS, quick=False, here=tmp_path)
    text = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert text.startswith(f"# Benchmarks\n\n{tb.SECTION}\n")
    assert [name for name, _ in tb.blocks(text)] == ["database"]


def test_spread() -> None:
    assert tb.spread([]) == "n/a"
    assert tb.spread([1.234]) == "1.23"
    assert tb.spread([3.0, 1.0, 2.0], 1) == "2.0 [1.0-3.0]"


# --- each benchmark's targets, from its own report ----------------------------------------------


def links_resolve(text: str, name: str, targets: list[tb.Target]) -> None:
    """Every target's details link points at a heading of the report."""
    anchors = {tb.anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    block = tb.block(name, "t", targets, command="c", date=DATE)
    links = re.findall(rf"\(RESULTS-{name}\.md#([^)]+)\)", block)
    assert len(links) == len(targets)
    assert set(links) <= anchors


def missed_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("Missed: ")]
    return lines[0] if lines else ""


def test_the_sinks_targets() -> None:
    fan = {"p50_ms": 3.0, "p99_ms": 60.7, "max_ms": 200.0, "kib_per_subscriber": 40.0}
    results: dict[str, object] = {
        "cpu": {
            "floor": 15.0,
            "sse": 2.0,
            "floor-paced": 16.0,
            "sse-paced": 24.2,
            "sse-bytes": 7.0,
        },
        "cpu_spread": dict.fromkeys(ROUTES, (1.0, 2.0)),
        "fan_out": fan,
        "fan_out_frozen": {**fan, "p99_ms": 12.5},
        "stalled": {"reader_only_mib": 1.0, "with_stalled_mib": 1.5, "stalled_cost_mib": 0.5},
    }
    text, targets = sinks.report(sinks.FULL, results)
    assert [(t.value, t.status) for t in targets] == [
        ("0.13x", "met"),
        ("1.51x", "MISSED"),
        ("60.7 ms (after `gc.freeze()`: 12.5 ms)", "MISSED"),
    ]
    assert missed_line(text) == "Missed: " + "; ".join(tb.missed(targets))
    assert "the source paced: 1.51x, goal ≤ 1.5x" in missed_line(text)
    links_resolve(text, "sinks", targets)


def test_the_redis_targets() -> None:
    paced_row = {
        "p50_ms": 1.0,
        "p99_ms": 4.0,
        "p999_ms": 6.0,
        "max_ms": 9.0,
        "cpu_us_per_delivery": 20.0,
        "cpu_s": 1.0,
        "wall_s": 10.0,
        "connections": 1,
    }
    unpaced_row = {"deltas_per_s": 1000.0, "publish_s": 0.5, "publisher_cpu_us_per_delta": 30.0}
    commands = {"xadd": 400, "evalsha": 10}
    results: dict[str, Any] = {
        "paced": {
            "rx": [{**paced_row, "p99_ms": v} for v in (4.0, 6.0, 4.5)],
            "floor": [paced_row],
            "floor-shared": [paced_row],
        },
        "unpaced": {
            "rx": [{**unpaced_row, "deltas_per_s": v} for v in (400.0, 600.0)],
            "floor": [unpaced_row, unpaced_row],
        },
        "commands": {
            "flags": {
                "runs": [{"events": 205, "commands": {"subscribe": 1}}] * 2,
                "per_event": 0.0,
            },
            "broadcaster": [
                {
                    "contender": "rx",
                    "subscribers": 1,
                    "deltas": 400,
                    "commands": commands,
                    "per_delta": 1.0,
                    "round_trips_per_delta": 0.1,
                }
            ],
        },
        "keys_deleted": 3,
        "prefix": "arxbench-test",
    }
    text, targets = redis.report(redis.FULL, results)
    assert [(t.value, t.status) for t in targets] == [
        ("4.50 [4.00-6.00] ms", "met"),
        ("0.50 [0.40-0.60]x", "met"),
        ("0.000", "met"),
    ]
    assert missed_line(text) == ""
    links_resolve(text, "redis", targets)
    results["commands"]["flags"]["per_event"] = 0.5
    text, targets = redis.report(redis.FULL, results)
    assert [t.status for t in targets] == ["met", "met", "MISSED"]
    assert "Redis commands per streamed event: 0.500, goal 0" in missed_line(text)


def test_the_database_targets() -> None:
    def relay(replies: int, writer: bool, p99: float) -> dict[str, Any]:
        return {
            "replies": replies,
            "writer": writer,
            "p50_ms": 1.0,
            "p99_ms": p99,
            "p999_ms": p99 + 1,
            "max_ms": p99 + 5,
            "wall_s": 5.0,
            "cpu_s": 2.0,
            "writes": 7 * replies if writer else 0,
            "reply_s": 5.0,
            "spread_s": 1.0,
        }

    results: dict[str, Any] = {
        "checkpoints": [
            {
                "rate": 50.0,
                "deltas": 300,
                "seconds": 6.1,
                "writes": 17,
                "bound": 17,
                "busiest_interval": 1,
            },
            {
                "rate": 200.0,
                "deltas": 1200,
                "seconds": 6.0,
                "writes": 18,
                "bound": 16,
                "busiest_interval": 2,
            },
        ],
        "relays": [
            relay(1000, False, 3.0),
            relay(1000, True, 3.4),
            relay(100, False, 1.0),
            relay(100, True, 1.1),
        ],
        "saves": [{"wall_s": 2.0, "cpu_s": 1.5, "writes": 2000}],
        "floors": [{"wall_s": 0.5, "cpu_s": 0.4}],
        "reads": [{"wall_s": 0.3, "cpu_s": 0.3}],
    }
    text, targets = database.report(database.FULL, results)
    assert [(t.goal, t.value, t.status) for t in targets] == [
        ("≤ 1 per 0.5 s interval: ≤ 17 in all", "17 (at most 1 in one interval)", "met"),
        ("≤ 1 per 0.5 s interval: ≤ 16 in all", "18 (at most 2 in one interval)", "MISSED"),
        ("≤ 1 ms", "0.40 ms", "met"),
    ]
    assert missed_line(text) == "Missed: " + tb.missed(targets)[0]
    links_resolve(text, "database", targets)
