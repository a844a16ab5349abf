"""Coverage-guided fuzzing (atheris) of the SSE decoder, the HTTP/1.1 parser and the reducer.

Each target runs in a child process for a bounded number of inputs (a few thousand; with
``ANTHROPIC_RX_SOAK=1``, 200,000). The ``sse`` and ``reducer`` targets are seeded with the
recorded streams in ``tests/fixtures``, the ``http`` target with the raw HTTP/1.1 responses in
``tests/fixtures/http`` (each whole, and cut in three places). A broken oracle fails the test
with the crashing input. Without atheris the tests skip, or fail
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
HTTP_FIXTURES = FIXTURES / "http"
RUNS = 200_000 if SOAK else 3_000
TIMEOUT = 1_800 if SOAK else 120


def _need_atheris() -> None:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        if services_required():
            pytest.fail("atheris is required (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
        pytest.skip(reason="atheris is not installed (Linux, CPython < 3.13 only)")


def http_seed(response: bytes, points: list[int]) -> bytes:
    """An input of the ``http`` target: ``response`` cut at ``points`` (at most 8, each at
    most 4096).

    The target's ``FuzzedDataProvider`` takes its integers from the input's end: first the
    number of cut points (one byte), then each point (two bytes, little-endian), and the rest
    is the response. So the seed is the response, then the points backwards, then their count.
    """
    assert len(points) <= 8 and all(0 <= point <= 4096 for point in points)
    encoded = b"".join(point.to_bytes(2, "little") for point in reversed(points))
    return response + encoded + bytes([len(points)])


def _seed(target: str, corpus: Path) -> None:
    """The recorded streams for ``sse`` and ``reducer``; raw responses for ``http``."""
    if target == "http":
        for path in sorted(HTTP_FIXTURES.glob("*.http")):
            response = path.read_bytes()
            size = len(response)
            (corpus / f"{path.stem}-whole").write_bytes(http_seed(response, []))
            cut = http_seed(response, [min(5, size - 1), size // 2, max(size - 3, 1)])
            (corpus / f"{path.stem}-cut").write_bytes(cut)
    else:
        for path in FIXTURES.glob("*.sse"):
            (corpus / path.name).write_bytes(path.read_bytes())


def _fuzz(target: str, tmp_path: Path, runs: int) -> tuple[int, str, dict[str, bytes]]:
    """Runs ``target`` for ``runs`` inputs: exit code, libFuzzer's log, the crash files."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    _seed(target, corpus)
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


def test_the_http_seeds_are_responses_the_target_reads_whole_and_cut() -> None:
    """Each seed decodes, as the target reads it, to its response and the cut points chosen
    (no fuzzing: atheris only for its data provider), and the parsers' comparison holds."""
    _need_atheris()
    import atheris

    from tests.test_http11_differential import check

    paths = sorted(HTTP_FIXTURES.glob("*.http"))
    assert 10 <= len(paths) <= 20
    for path in paths:
        response = path.read_bytes()
        assert response.startswith(b"HTTP/1."), path.name
        for points in ([], [5, len(response) // 2, len(response) - 3]):
            fdp = atheris.FuzzedDataProvider(http_seed(response, points))
            read = [fdp.ConsumeIntInRange(0, 4096) for _ in range(fdp.ConsumeIntInRange(0, 8))]
            assert read == points, path.name
            assert fdp.ConsumeBytes(fdp.remaining_bytes()) == response, path.name
            check(response, points)


def test_a_crash_is_caught_with_its_input(tmp_path: Path) -> None:
    """The harness sees a failing oracle: non-zero exit and a crash file holding the input."""
    _need_atheris()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "seed").write_bytes(b"xx CANARY xx")
    returncode, log, crashes = _fuzz("canary", tmp_path, 100)
    assert returncode != 0, log[-2000:]
    assert any(b"CANARY" in data for data in crashes.values()), (crashes, log[-2000:])
