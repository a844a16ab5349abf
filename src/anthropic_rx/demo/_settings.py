"""The demo's settings: where it stores, broadcasts and asks, read from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast, get_args

from ..testing import FakeAnthropic
from ._origin import normalize_origin

__all__ = ["DEFAULT_MODEL", "DemoSettings", "JobsMode", "WorkerMode"]

DEFAULT_MODEL = "claude-sonnet-4-5"

JobsMode = Literal["auto", "tasks", "arq"]
"""Where replies run: ``"tasks"`` asyncio tasks of the web process, ``"arq"`` an arq worker
process, ``"auto"`` arq when a Redis URL is set, else tasks."""

WorkerMode = Literal["child", "external"]
"""Who runs the arq worker: ``"child"`` the demo starts one, ``"external"`` you do."""

_PREFIX = re.compile(r"[A-Za-z0-9._:-]{1,100}")


def _default_database_url() -> str:
    return f"sqlite+aiosqlite:///{Path.cwd() / 'anthropic-rx-demo.db'}"


@dataclass(frozen=True)
class DemoSettings:
    """How the demo runs. ``DemoSettings()`` is the embedded default; :meth:`from_env` reads
    the environment.

    Attributes:
        database_url: SQLAlchemy async URL (``ANTHROPIC_RX_DATABASE_URL``; default an SQLite
            file ``anthropic-rx-demo.db`` in the working directory).
        redis_url: Redis for the broadcaster, the stop flags and the job queue
            (``ANTHROPIC_RX_REDIS_URL``); ``None``: in memory, one process.
        api_key: the real Anthropic API's key (``ANTHROPIC_API_KEY``); ``None``: the embedded
            fake API answers, in memory (in the worker process, with arq jobs).
        tokens_per_second: the pace of the embedded fake's reply
            (``ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND``, default 30).
        host: where the server listens (always loopback by default).
        port: its port (``ANTHROPIC_RX_DEMO_PORT``, default 8000).
        model: the model asked (``ANTHROPIC_RX_DEMO_MODEL``, default ``claude-sonnet-4-5``).
        fake: a :class:`~anthropic_rx.testing.FakeAnthropic` used instead of the embedded
            one (tests queue replies and errors on it); when its ``default`` is still the
            library's echo, the demo sets it to the paced ~200-word reply. It lives in this
            process, so it needs ``jobs="tasks"`` when a Redis URL is set.
        max_tokens: ``max_tokens`` of each request.
        max_retries: the client's retries before the first byte.
        jobs: where replies run (``ANTHROPIC_RX_DEMO_JOBS``: ``auto``, ``tasks``, ``arq``;
            default ``auto``: an arq worker process with a Redis URL, else asyncio tasks).
        worker: with arq jobs, whether :func:`~anthropic_rx.demo.run` starts the worker as a
            child process (``ANTHROPIC_RX_DEMO_WORKER``: ``child``, the default) or one is run
            apart (``external``: ``anthropic-rx worker``, or
            ``arq anthropic_rx.demo.WorkerSettings``).
        worker_timeout: seconds a queued reply waits for a worker to start it before it ends
            ``failed`` (``ANTHROPIC_RX_DEMO_WORKER_TIMEOUT``, default 5).
        redis_prefix: the first part of every Redis key and of the job queue's name
            (``ANTHROPIC_RX_DEMO_REDIS_PREFIX``, default ``arx-demo``; ``[A-Za-z0-9._:-]``).
        allowed_origins: origins besides the demo's own from which a browser may POST
            (``ANTHROPIC_RX_DEMO_ALLOWED_ORIGINS``, comma-separated, e.g. the public origin
            behind a proxy); every other cross-origin POST is refused with 403.
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
    jobs: JobsMode = "auto"
    worker: WorkerMode = "child"
    worker_timeout: float = 5.0
    redis_prefix: str = "arx-demo"
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.tokens_per_second > 0:
            raise ValueError("tokens_per_second must be positive")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be within 0-65535")
        if self.jobs not in get_args(JobsMode):
            raise ValueError(f"jobs must be one of {', '.join(get_args(JobsMode))}")
        if self.worker not in get_args(WorkerMode):
            raise ValueError(f"worker must be one of {', '.join(get_args(WorkerMode))}")
        if not self.worker_timeout > 0:
            raise ValueError("worker_timeout must be positive")
        if not isinstance(self.redis_prefix, str) or not _PREFIX.fullmatch(self.redis_prefix):
            raise ValueError("redis_prefix must be 1-100 characters of [A-Za-z0-9._:-]")
        for origin in self.allowed_origins:
            normalize_origin(origin)  # ValueError for one that is not scheme://host[:port]
        if self.jobs == "arq" and self.redis_url is None:
            raise ValueError("jobs='arq' needs a redis_url (the queue's Redis)")
        if self.queued and self.fake is not None:
            raise ValueError(
                "fake= answers in this process, but arq jobs run in a worker process: "
                "give jobs='tasks' (the worker has an embedded fake of its own)"
            )

    @property
    def queued(self) -> bool:
        """Whether replies run as arq jobs in a worker process."""
        return self.jobs == "arq" or (self.jobs == "auto" and self.redis_url is not None)

    @property
    def queue_name(self) -> str:
        """The arq queue the web process enqueues on and the worker reads."""
        return f"{self.redis_prefix}:queue"

    def worker_env(self) -> dict[str, str]:
        """The environment variables that give a worker process these settings (what
        :meth:`from_env` reads there). ``fake``, ``max_tokens`` and the address are not
        among them: the worker has a fake of its own, and a job carries its request."""
        env = {
            "ANTHROPIC_RX_DATABASE_URL": self.database_url,
            "ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND": repr(self.tokens_per_second),
            "ANTHROPIC_RX_DEMO_MODEL": self.model,
            "ANTHROPIC_RX_DEMO_JOBS": self.jobs,
            "ANTHROPIC_RX_DEMO_WORKER": "external",
            "ANTHROPIC_RX_DEMO_WORKER_TIMEOUT": repr(self.worker_timeout),
            "ANTHROPIC_RX_DEMO_REDIS_PREFIX": self.redis_prefix,
        }
        if self.redis_url is not None:
            env["ANTHROPIC_RX_REDIS_URL"] = self.redis_url
        if self.api_key is not None:
            env["ANTHROPIC_API_KEY"] = self.api_key
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DemoSettings:
        """Settings from ``environ`` (default ``os.environ``); empty variables count as unset.

        Raises:
            ValueError: a number variable does not parse, or is out of range; a choice
                variable (``ANTHROPIC_RX_DEMO_JOBS``, ``ANTHROPIC_RX_DEMO_WORKER``) is none of
                its values; ``ANTHROPIC_RX_DEMO_REDIS_PREFIX`` holds another character; an
                entry of ``ANTHROPIC_RX_DEMO_ALLOWED_ORIGINS`` is not an origin.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float) -> float:
            value = get(name)
            if value is None:
                return default
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{name} is not a number: {value!r}") from None

        def choice(name: str, options: tuple[str, ...], default: str) -> str:
            value = (get(name) or default).lower()
            if value not in options:
                raise ValueError(f"{name} must be one of {', '.join(options)}: {value!r}")
            return value

        port = get("ANTHROPIC_RX_DEMO_PORT")
        try:
            port_number = int(port) if port is not None else 8000
        except ValueError:
            raise ValueError(f"ANTHROPIC_RX_DEMO_PORT is not a port number: {port!r}") from None
        return cls(
            database_url=get("ANTHROPIC_RX_DATABASE_URL") or _default_database_url(),
            redis_url=get("ANTHROPIC_RX_REDIS_URL"),
            api_key=get("ANTHROPIC_API_KEY"),
            tokens_per_second=number("ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND", 30.0),
            port=port_number,
            model=get("ANTHROPIC_RX_DEMO_MODEL") or DEFAULT_MODEL,
            jobs=cast(JobsMode, choice("ANTHROPIC_RX_DEMO_JOBS", get_args(JobsMode), "auto")),
            worker=cast(
                WorkerMode, choice("ANTHROPIC_RX_DEMO_WORKER", get_args(WorkerMode), "child")
            ),
            worker_timeout=number("ANTHROPIC_RX_DEMO_WORKER_TIMEOUT", 5.0),
            redis_prefix=get("ANTHROPIC_RX_DEMO_REDIS_PREFIX") or "arx-demo",
            allowed_origins=tuple(
                origin.strip()
                for origin in (get("ANTHROPIC_RX_DEMO_ALLOWED_ORIGINS") or "").split(",")
                if origin.strip()
            ),
        )
