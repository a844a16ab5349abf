"""Every script in ``examples/`` runs offline, against the fake API, and prints what it promises.

Each runs as a user would run it (``python examples/NN_name.py``) in a fresh process with no
``ANTHROPIC_*`` variable set and warnings turned into errors; the lines asserted below are the
ones that show the example did its job (text arrived whole, Stop closed the connection, one
request fed several consumers...).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._services import redis_url

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# The lines each example must print; each is one whole line of its output.
EXPECTED: dict[str, list[str]] = {
    "01_print_text.py": [
        "Once upon a time, a small robot learned to stream its thoughts, one word at a time.",
        "-- 17 text deltas",
    ],
    "02_stop_button.py": ["cancelled: True", "stopped early: True"],
    "03_fan_out.py": [
        "tab 1 showed: Streams are sequences of events over time.",
        "tab 2 showed: Streams are sequences of events over time.",
        "saved (finished): Streams are sequences of events over time.",
        "requests sent: 1",
    ],
    "04_save_message.py": [
        "c-1 finished                       tokens=2 estimated=False 'Hello!'",
        "c-3 failed: OverloadedError        tokens=1 estimated=False 'Overload happens when '",
    ],
    "05_tool_input.py": [
        "get_weather input complete: {'city': 'Paris', 'unit': 'celsius'}",
        "answer: It is 18 degrees and sunny in Paris.",
    ],
    "06_sync_script.py": ["-- stop reason: end_turn, output tokens: 13"],
    "07_errors_and_retries.py": [
        "IncompleteStreamError, kept 'Hello there friend'",
        "APITimeoutError kind=total",
        "open responses left: 0",
    ],
    "08_coalesce_and_smooth.py": ["coalesce lost nothing: True", "smooth: 7 words in …"],
    "09_aiostream.py": ["YOU SAID: ONE TWO THREE", "requests: 1, closed early: True"],
    "10_record_and_replay.py": [
        "replayed from bytes, same message: True",
        "replayed by the fake over HTTP, same message: True",
    ],
    "11_fastapi_sse.py": [
        "POST /chat: 200 text/event-stream; charset=utf-8",
        "page reads the stream with EventSource and a fetch reader: True",
        "frames: 7 text frames then done",
        "text: You said: Tell me a short story.",
        "GET /chat?prompt=... (EventSource's route), same text: True",
    ],
    "12_queued_job_broadcast.py": [
        "tab 1 saw: Once upon a time, a small robot learned to stream its thoughts, one word"
        " at a time. (23 entries, ended done)",
        "tab 2 saw: Once upon a time, a small robot learned to stream its thoughts, one word"
        " at a time. (23 entries, ended done)",
        "late tab resumed after id 6: a small robot learned to stream its thoughts, one word"
        " at a time.",
        "late tab: no duplicate, no gap: True",
        "stored: finished 'Once upon a time, a small robot learned to stream its thoughts, one"
        " word at a time.'",
        "stopped reply stored: cancelled",
        "stored text: '1, 2, 3, ', usage estimated: True",
        "requests: 2, closed by the client: 1",
    ],
    "13_arq_worker.py": [
        "POST /conversations/42/messages: 202, job queued",
        "streamed from the worker: Once upon a time, a small robot learned to stream its"
        " thoughts, one word at a time. (ended done)",
        "stored: finished 'Once upon a time, a small robot learned to stream its thoughts, one"
        " word at a time.'",
        "POST .../stop mid-reply: 202",
        "stopped reply streamed: 1, 2, 3, (ended cancelled)",
        "stopped reply stored: cancelled '1, 2, 3, '",
        "worker stopped: exit 0",
        "requests: 2, closed by the worker: 1",
    ],
}

# Examples that need the local Redis (skipped without it, failed under
# ANTHROPIC_RX_REQUIRE_SERVICES=1).
NEEDS_REDIS = {"13_arq_worker.py"}


def test_every_example_is_listed() -> None:
    assert sorted(EXPECTED) == sorted(path.name for path in EXAMPLES.glob("[0-9]*.py"))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.services) if name in NEEDS_REDIS else name
        for name in sorted(EXPECTED)
    ],
)
def test_example_runs_offline_and_prints_its_result(name: str, tmp_path: Path) -> None:
    if name in NEEDS_REDIS:
        redis_url()
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANTHROPIC_")}
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    for expected in EXPECTED[name]:
        prefix, _, _ = expected.partition("…")
        if "…" in expected:
            assert any(line.startswith(prefix) for line in lines), (expected, result.stdout)
        else:
            assert expected in lines, (expected, result.stdout)
    assert list(tmp_path.iterdir()) == [], "examples leave no files behind"
