"""Coverage-guided fuzzing (atheris) of the SSE decoder, the HTTP/1.1 parser and the reducer.

Each target runs in a child process for a bounded number of inputs (a few thousand; with
``ANTHROPIC_RX_SOAK=1``, 200,000), seeded with the recorded streams in ``tests/fixtures``. A
broken oracle fails the test with the crashing input. Without atheris the tests skip, or fail
under ``ANTHROPIC_RX_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._services import services_required
from tests.reliability._common import SOAK

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
RUNS = 200_000 if SOAK else 3_000
TIMEOUT = 1_800 if SOAK else 120


def _need_atheris() -> None:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        if services_required():
            pytest.fail("atheris is required (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
        pytest.skip(reason="atheris is not installed (Linux, CPython < 3.13 only)")


def _fuzz(target: str, tmp_path: Path, runs: int) -> tuple[int, str, dict[str, bytes]]:
    """Runs ``target`` for ``runs`` inputs: exit code, libFuzzer's log, the crash files."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for path in FIXTURES.glob("*.sse"):
        (corpus / path.name).write_bytes(path.read_bytes())
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable,
        "-m",
        "tests.reliability._fuzz_targets",
        target,
        f"-atheris_runs={runs}",
        "-max_len=4096",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/",
        str(corpus),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return done.returncode, done.stderr, {p.name: p.read_bytes() for p in artifacts.iterdir()}


@pytest.mark.parametrize("target", ["sse", "http", "reducer"])
def test_fuzz(target: str, tmp_path: Path) -> None:
    """Fuzzes one target; a crash fails with the input atheris saved."""
    _need_atheris()
    returncode, log, crashes = _fuzz(target, tmp_path, RUNS)
    assert returncode == 0 and not crashes, (
        f"{target}: exit {returncode}, inputs {crashes!r}\n{log[-4000:]}"
    )
    assert f"Done {RUNS} " in log, log[-2000:]


def test_a_crash_is_caught_with_its_input(tmp_path: Path) -> None:
    """The harness sees a failing oracle: non-zero exit and a crash file holding the input."""
    _need_atheris()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "seed").write_bytes(b"xx CANARY xx")
    returncode, log, crashes = _fuzz("canary", tmp_path, 100)
    assert returncode != 0, log[-2000:]
    assert any(b"CANARY" in data for data in crashes.values()), (crashes, log[-2000:])
