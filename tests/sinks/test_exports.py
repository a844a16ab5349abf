"""The public names of ``anthropic_rx.sinks``: each resolves, and the optional extras are
imported only when a name that needs one is asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anthropic_rx import sinks


def test_every_public_name_resolves_and_all_is_sorted() -> None:
    assert sinks.__all__ == sorted(sinks.__all__)
    for name in sinks.__all__:
        assert getattr(sinks, name) is not None, name
    assert set(sinks.__all__) >= {
        "sse_response",
        "MemoryBroadcaster",
        "RedisBroadcaster",
        "Broadcast",
        "ChannelBusyError",
        "ChannelNotFound",
        "ResumeError",
        "DatabaseWriter",
        "StoredMessage",
        "relay",
    }


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_sink"):
        _ = sinks.no_such_sink


def test_importing_the_sinks_imports_no_optional_extra() -> None:
    # A job worker that only publishes needs neither a web framework nor SQLAlchemy.
    code = (
        "import sys; import anthropic_rx.sinks, anthropic_rx.cancel; "
        "print(sorted(m for m in ('starlette', 'sse_starlette', 'sqlalchemy', 'redis') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
