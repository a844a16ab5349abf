"""What the operators rely on from the event source (rule 1: nothing swallows a failure)."""

from __future__ import annotations

import pytest
import reactivex

import anthropic_rx as arx
from tests.conftest import fixture_bytes


def _broken_on_completed() -> None:
    raise RuntimeError("subscriber broke in on_completed")


def test_reactivex_surfaces_an_on_completed_failure() -> None:
    with pytest.raises(RuntimeError, match="on_completed"):
        reactivex.from_iterable([1]).subscribe(on_completed=_broken_on_completed)


def test_from_sse_bytes_surfaces_an_on_completed_failure() -> None:
    events = arx.from_sse_bytes(fixture_bytes("docs_basic_text"))
    with pytest.raises(RuntimeError, match="on_completed"):
        events.subscribe(on_completed=_broken_on_completed)
