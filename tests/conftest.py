"""Shared test helpers: the recorded fixture streams."""

from __future__ import annotations

from pathlib import Path

import pytest

import anthropic_rx as arx

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.sse"))


def subscribed(data: bytes) -> tuple[list[arx.MessageStreamEvent], Exception | None, bool]:
    """What a plain subscriber to ``from_sse_bytes(data)`` gets: events, error, completed."""
    events: list[arx.MessageStreamEvent] = []
    errors: list[Exception] = []
    completed: list[bool] = []
    arx.from_sse_bytes(data).subscribe(events.append, errors.append, lambda: completed.append(True))
    return events, (errors[0] if errors else None), bool(completed)


def fixture_bytes(name: str) -> bytes:
    """The bytes of ``tests/fixtures/{name}`` (``.sse`` appended when missing)."""
    path = FIXTURES / (name if name.endswith(".sse") else f"{name}.sse")
    return path.read_bytes()


@pytest.fixture(params=[p.name for p in FIXTURE_FILES])
def fixture_stream(request: pytest.FixtureRequest) -> bytes:
    """Each recorded fixture stream in turn."""
    return fixture_bytes(str(request.param))
