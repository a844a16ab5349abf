"""The shared PostgreSQL for tests: its URL, unique table names, and sessions to end.

``postgres_url()`` skips the calling test when the server on 127.0.0.1:5432 does not answer,
or fails it when ``ANTHROPIC_RX_REQUIRE_SERVICES=1`` (CI, where a skip would hide a
regression). Mark such tests with ``pytest.mark.services``. The server is shared: each test
uses a table of its own (:func:`unique_table`) and drops only that.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from .._services import services_required

POSTGRES_HOST = "127.0.0.1"
POSTGRES_PORT = 5432
POSTGRES_URL = f"postgresql+asyncpg://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/test"

# The startup packet of protocol 3.0 asking for SSL: any PostgreSQL answers with one byte.
_SSL_REQUEST = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_SSL_REQUEST)
            return sock.recv(1) in (b"S", b"N")
    except OSError:
        return False


def postgres_url() -> str:
    """The shared PostgreSQL's SQLAlchemy URL; skips (or fails, see the module doc) when it
    does not answer."""
    if not _answers(POSTGRES_HOST, POSTGRES_PORT):
        if services_required():
            pytest.fail(
                "PostgreSQL is not running on 127.0.0.1:5432 (ANTHROPIC_RX_REQUIRE_SERVICES=1)"
            )
        pytest.skip(reason="PostgreSQL is not running on 127.0.0.1:5432")
    return POSTGRES_URL


def unique_table() -> str:
    """A table name no other test uses."""
    return f"arx_test_{uuid.uuid4().hex[:8]}"


def unique_application_name() -> str:
    """An ``application_name`` that singles out one engine's sessions on the server."""
    return f"arx-test-{uuid.uuid4().hex[:12]}"
