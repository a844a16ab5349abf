"""Running ``tests/node/read_ui_stream.mjs``: the real ``ai`` npm package reads our streams.

Without ``node`` or ``tests/node/node_modules`` (``make install`` runs ``npm ci`` there) the
tests that need them are skipped, or fail when ``ANTHROPIC_RX_REQUIRE_SERVICES=1`` (CI, where a
silent skip would hide that nothing was checked).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .._services import services_required

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
SCRIPT = NODE_DIR / "read_ui_stream.mjs"
AI_PACKAGE = NODE_DIR / "node_modules" / "ai" / "package.json"
TIMEOUT = 20.0  # seconds; one read takes about 0.3 s


@dataclass(frozen=True)
class UiStream:
    """What the ``ai`` package read from one stream (see ``read_ui_stream.mjs``)."""

    messages: list[dict[str, Any]]
    chunks: list[dict[str, Any]]
    errors: list[str]
    done: bool
    headers: dict[str, str] | None

    @property
    def message(self) -> dict[str, Any]:
        """The one message of the stream."""
        assert len(self.messages) == 1, f"expected one UIMessage, got {self.messages}"
        return self.messages[0]

    def parts(self, kind: str) -> list[dict[str, Any]]:
        """The parts of :attr:`message` whose type is ``kind`` or starts with ``kind + '-'``."""
        return [
            p
            for p in self.message["parts"]
            if p["type"] == kind or p["type"].startswith(kind + "-")
        ]


def node_command() -> list[str]:
    """``[node, read_ui_stream.mjs]``; skips (or fails, see the module) when either the ``node``
    executable or the installed ``ai`` package is missing."""
    node = shutil.which("node")
    if node is None:
        if services_required():
            pytest.fail("node is not installed (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
        pytest.skip(reason="node is not installed: the ai-sdk stream is not read by the ai package")
    if not AI_PACKAGE.is_file():
        if services_required():
            pytest.fail("tests/node/node_modules is missing (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
        pytest.skip(reason="tests/node/node_modules is missing: run make install")
    assert node is not None
    return [node, str(SCRIPT)]


def run_reader(data: bytes = b"", *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the reader on ``data`` (stdin) or with ``args`` (a URL and a body); within
    :data:`TIMEOUT` seconds, else ``subprocess.TimeoutExpired``."""
    return subprocess.run(
        [*node_command(), *args],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        cwd=NODE_DIR,
        check=False,
    )


def read_ui_stream(data: bytes = b"", *args: str) -> UiStream:
    """What the ``ai`` package reads from ``data`` (or from the URL in ``args``).

    Raises:
        AssertionError: the reader refused the stream (its reason is in the message).
    """
    done = run_reader(data, *args)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = json.loads(done.stdout)
    return UiStream(
        messages=out["messages"],
        chunks=out["chunks"],
        errors=out["errors"],
        done=out["done"],
        headers=out["headers"],
    )
