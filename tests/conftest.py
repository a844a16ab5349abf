"""Shared test helpers: the recorded fixture streams."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.sse"))


def fixture_bytes(name: str) -> bytes:
    """The bytes of ``tests/fixtures/{name}`` (``.sse`` appended when missing)."""
    path = FIXTURES / (name if name.endswith(".sse") else f"{name}.sse")
    return path.read_bytes()


@pytest.fixture(params=[p.name for p in FIXTURE_FILES])
def fixture_stream(request: pytest.FixtureRequest) -> bytes:
    """Each recorded fixture stream in turn."""
    return fixture_bytes(str(request.param))
