"""The sink benchmarks' result files, and their targets in ``benchmarks/RESULTS.md``.

``python -m benchmarks.sinks``, ``.redis`` and ``.database`` each write their own
``RESULTS-NAME.md``. A full run also writes a marked block into ``RESULTS.md``, so that every
target of the project can be read in one file::

    <!-- targets:NAME -->

    **Title**: `python -m benchmarks.NAME`, 2026-12-03 07:50 UTC.

    | target | goal | this run | status | details |
    |---|---|---|---|---|
    | ... | ≤ 1.5x | 0.14x | met | [RESULTS-NAME.md](RESULTS-NAME.md#section) |

    <!-- /targets:NAME -->

The blocks live in the section ``## Sink targets (their own runs)``, made after the main
report's ``## Targets`` part when missing. Writing a block replaces the block of the same name
and leaves every other character of the file as it was; ``python -m benchmarks``, which
rewrites the rest of ``RESULTS.md``, carries the blocks of the file it replaces (``carry``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SECTION",
    "Target",
    "block",
    "blocks",
    "carry",
    "missed",
    "place",
    "spread",
    "update",
    "write_results",
]

HERE = Path(__file__).resolve().parent
SECTION = "## Sink targets (their own runs)"
INTRO = (
    "Each block below is written by a full run of its own benchmark (`make bench-sinks`, "
    "`make bench-redis`, `make bench-database`), on its own date; `python -m benchmarks` "
    "keeps the blocks as they are. How each figure is measured: the file each row links to."
)
# The blocks' order in the section, whichever benchmark ran last; other names go after these.
ORDER = ("sinks", "redis", "database")
_NAME = r"[\w-]+"
_BLOCK = re.compile(
    rf"^<!-- targets:(?P<name>{_NAME}) -->\n.*?^<!-- /targets:(?P=name) -->$",
    re.MULTILINE | re.DOTALL,
)
_HEADING = re.compile(r"^#{1,2} ", re.MULTILINE)


@dataclass(frozen=True)
class Target:
    """One goal of a benchmark, checked on one run's numbers.

    ``value`` is this run's figure as shown; ``section`` the heading (without its ``#``) of
    the part of ``RESULTS-NAME.md`` the figure comes from.
    """

    name: str
    goal: str
    value: str
    met: bool
    section: str = ""

    @property
    def status(self) -> str:
        return "met" if self.met else "MISSED"

    @property
    def miss(self) -> str:
        """The sentence of the report's ``Missed:`` line."""
        return f"{self.name}: {self.value}, goal {self.goal}"


def missed(targets: Sequence[Target]) -> list[str]:
    """What was missed, one sentence a target not met."""
    return [target.miss for target in targets if not target.met]


def spread(values: Sequence[float], digits: int = 2) -> str:
    """``median [min-max]`` of the repeats (one value alone, ``n/a`` for none)."""
    if not values:
        return "n/a"
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    low, high = min(values), max(values)
    return f"{statistics.median(values):.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def anchor(heading: str) -> str:
    """GitHub's link fragment for a Markdown heading: lower case, punctuation dropped, each
    space a hyphen."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def block(name: str, title: str, targets: Sequence[Target], *, command: str, date: str) -> str:
    """The marked block of one benchmark's targets, from its start marker to its end marker
    (no newline after the end marker)."""
    details = f"RESULTS-{name}.md"
    lines = [
        f"<!-- targets:{name} -->",
        "",
        f"**{title}**: `{command}`, {date}.",
        "",
        "| target | goal | this run | status | details |",
        "|---|---|---|---|---|",
    ]
    for target in targets:
        link = details + (f"#{anchor(target.section)}" if target.section else "")
        cells = [target.name, target.goal, target.value, target.status, f"[{details}]({link})"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    lines += ["", f"<!-- /targets:{name} -->"]
    return "\n".join(lines)


def blocks(text: str) -> list[tuple[str, str]]:
    """Every complete block of ``text``, in order: its name and its text (markers included)."""
    return [(match["name"], match[0]) for match in _BLOCK.finditer(text)]


def _rank(name: str) -> int:
    return ORDER.index(name) if name in ORDER else len(ORDER)


def _next_heading(text: str, start: int) -> int:
    """Where the next ``#`` or ``##`` heading starts at or after ``start`` (or the end)."""
    found = _HEADING.search(text, start)
    return found.start() if found else len(text)


def _insert(text: str, at: int, piece: str) -> str:
    """``piece`` at ``at`` as a paragraph of its own: one blank line each side."""
    before, after = text[:at].rstrip("\n"), text[at:].lstrip("\n")
    head = before + "\n\n" if before else ""
    tail = "\n\n" + after if after else "\n"
    return head + piece + tail


def place(text: str, name: str, new: str) -> str:
    """``text`` with the block ``new`` of benchmark ``name`` in it.

    The block of that name is replaced where it stands; else it goes into the sink targets
    section (in ``ORDER`` among the blocks there), the section made after the ``## Targets``
    part (before the next ``##`` heading; at the end without one) when missing. Nothing
    else changes. Raises ``ValueError`` when ``text`` holds a start marker of ``name`` that no
    end marker closes (replacing it would leave a second one).
    """
    for match in _BLOCK.finditer(text):
        if match["name"] == name:
            return text[: match.start()] + new + text[match.end() :]
    if f"<!-- targets:{name} -->" in text:
        raise ValueError(f"RESULTS.md holds a `targets:{name}` block without its end marker")
    heading = re.search(rf"^{re.escape(SECTION)}[ \t]*$", text, re.MULTILINE)
    if heading is None:
        targets = re.search(r"^## Targets[ \t]*$", text, re.MULTILINE)
        at = _next_heading(text, targets.end()) if targets else len(text)
        return _insert(text, at, f"{SECTION}\n\n{INTRO}\n\n{new}")
    end = _next_heading(text, heading.end())
    there = list(_BLOCK.finditer(text, heading.end(), end))
    later = [match.start() for match in there if _rank(match["name"]) > _rank(name)]
    if later:
        at = later[0]
    elif there:
        at = there[-1].end()
    else:
        at = end
    return _insert(text, at, new)


def carry(old: str, new: str) -> str:
    """``new`` with every block of ``old`` placed in it, as ``place`` does (where ``new`` holds
    a block of the same name, ``old``'s replaces it)."""
    for name, text in blocks(old):
        new = place(new, name, text)
    return new


def update(path: Path, name: str, new: str) -> None:
    """Place the block ``new`` into the file at ``path`` (made when missing).

    The file is replaced in one step (a temporary file renamed over it), so that an
    interrupted write leaves the old file whole. Raises ``ValueError`` as ``place`` does,
    and ``OSError`` when the file cannot be read or written; the file is then unchanged.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    placed = place(text, name, new)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(placed, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_results(
    name: str,
    title: str,
    text: str,
    targets: Sequence[Target],
    *,
    quick: bool,
    guard: bool = False,
    raw: Mapping[str, Any] | None = None,
    here: Path = HERE,
    date: str | None = None,
) -> Path:
    """Write one benchmark's results; return the report's path.

    The report goes to ``here/RESULTS-NAME.md`` (quick runs: ``here/out/RESULTS-NAME-quick.md``),
    ``raw`` to ``here/out/NAME-full.json`` (``-quick.json``). A full run then writes its
    block of ``targets`` into ``here/RESULTS.md``; a quick run leaves that file alone.
    Raises ``OSError`` when a file cannot be written, and ``ValueError`` as ``place`` does
    (the report and the raw numbers are written by then).
    """
    out = here / "out"
    out.mkdir(exist_ok=True)
    if raw is not None:
        kind = "quick" if quick else "full"
        (out / f"{name}-{kind}.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
    path = out / f"RESULTS-{name}-quick.md" if quick else here / f"RESULTS-{name}.md"
    path.write_text(text, encoding="utf-8")
    if not quick:
        when = date or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        command = f"python -m benchmarks.{name}" + " --guard" * guard
        update(here / "RESULTS.md", name, block(name, title, targets, command=command, date=when))
    return path


def run_benchmark(
    name: str,
    title: str,
    description: str | None,
    configs: tuple[Any, Any],
    run: Callable[[Any], Coroutine[Any, Any, dict[str, Any]]],
    report: Callable[[Any, dict[str, Any]], tuple[str, Sequence[Target]]],
    *,
    keep_raw: bool = True,
) -> None:
    """The command line of one sink benchmark: ``[--quick] [--guard]``.

    Runs ``run`` with the full or quick config of ``configs`` (full, quick), writes the report
    (:func:`write_results`, the raw numbers too when ``keep_raw``), prints it, and exits 1 with
    ``--guard`` when a target is missed.
    """
    parser = argparse.ArgumentParser(description=(description or "").split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="the short run")
    parser.add_argument("--guard", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    full, quick = configs
    config = quick if args.quick else full
    results = asyncio.run(run(config))
    text, targets = report(config, results)
    raw = results if keep_raw else None
    write_results(name, title, text, targets, quick=args.quick, guard=args.guard, raw=raw)
    print(text)
    if args.guard and missed(targets):
        sys.exit(1)
