"""The demo's settings: where it stores, broadcasts and asks, read from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..testing import FakeAnthropic

__all__ = ["DEFAULT_MODEL", "DemoSettings"]

DEFAULT_MODEL = "claude-sonnet-4-5"


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.cwd() / 'anthropic-rx-demo.db'}"


@dataclass(frozen=True)
class DemoSettings:
    """How the demo runs. ``DemoSettings()`` is the embedded default; :meth:`from_env` reads
    the environment.

    Attributes:
        database_url: SQLAlchemy async URL (``ANTHROPIC_RX_DATABASE_URL``; default an SQLite
            file ``anthropic-rx-demo.db`` in the working directory).
        redis_url: Redis for the broadcaster and the stop flags (``ANTHROPIC_RX_REDIS_URL``);
            ``None``: in memory, one process.
        api_key: the real Anthropic API's key (``ANTHROPIC_API_KEY``); ``None``: the embedded
            fake API answers, in memory.
        tokens_per_second: the pace of the embedded fake's reply
            (``ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND``, default 30).
        host: where the server listens (always loopback by default).
        port: its port (``ANTHROPIC_RX_DEMO_PORT``, default 8000).
        model: the model asked (``ANTHROPIC_RX_DEMO_MODEL``, default ``claude-sonnet-4-5``).
        fake: a :class:`~anthropic_rx.testing.FakeAnthropic` used instead of the embedded
            one (tests queue replies and errors on it); when its ``default`` is still the
            library's echo, the demo sets it to the paced ~200-word reply.
        max_tokens: ``max_tokens`` of each request.
        max_retries: the client's retries before the first byte.
    """

    database_url: str = field(default_factory=_default_database_url)
    redis_url: str | None = None
    api_key: str | None = None
    tokens_per_second: float = 30.0
    host: str = "127.0.0.1"
    port: int = 8000
    model: str = DEFAULT_MODEL
    fake: FakeAnthropic | None = None
    max_tokens: int = 1024
    max_retries: int = 2

    def __post_init__(self) -> None:
        if not self.tokens_per_second > 0:
            raise ValueError("tokens_per_second must be positive")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be within 0-65535")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DemoSettings:
        """Settings from ``environ`` (default ``os.environ``); empty variables count as unset.

        Raises:
            ValueError: a number variable does not parse, or is out of range.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        tokens = get("ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND")
        port = get("ANTHROPIC_RX_DEMO_PORT")
        return cls(
            database_url=get("ANTHROPIC_RX_DATABASE_URL") or _default_database_url(),
            redis_url=get("ANTHROPIC_RX_REDIS_URL"),
            api_key=get("ANTHROPIC_API_KEY"),
            tokens_per_second=float(tokens) if tokens is not None else 30.0,
            port=int(port) if port is not None else 8000,
            model=get("ANTHROPIC_RX_DEMO_MODEL") or DEFAULT_MODEL,
        )
