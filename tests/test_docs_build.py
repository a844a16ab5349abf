"""The documentation site builds with ``mkdocs build --strict``, API reference included.

Strict mode turns every warning into a failure: a broken link, a page missing from the nav, or
a docstring that mkdocstrings cannot parse. Skipped only when mkdocs is not installed (the
``docs`` dependency group).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (the docs dependency group)")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    for page in sorted((ROOT / "docs").glob("*.md")):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"{page.name} was not built"
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for name in ("Client", "AnthropicRxError", "take_until_cancel", "MemoryCancelFlags"):
        assert name in reference, f"the API reference does not document {name}"
    assert "FakeAnthropic" in reference, "the API reference does not document anthropic_rx.testing"
