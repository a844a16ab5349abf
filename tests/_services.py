"""Local services for tests: the shared Redis, and private Redis servers to kill and restart.

``redis_url()`` skips the calling test when the shared Redis (127.0.0.1:6379) does not answer
PING, or fails it when ``ANTHROPIC_RX_REQUIRE_SERVICES=1`` (CI, where a skip would hide a
regression). Mark such tests with ``pytest.mark.services``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379


def services_required() -> bool:
    """Whether a missing service fails the test instead of skipping it (CI sets this)."""
    return os.environ.get("ANTHROPIC_RX_REQUIRE_SERVICES") == "1"


def _answers_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """The shared Redis's URL; skips (or fails, see the module doc) when it is not running."""
    if not _answers_ping(REDIS_HOST, REDIS_PORT):
        if services_required():
            pytest.fail("Redis is not running on 127.0.0.1:6379 (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
        pytest.skip(reason="Redis is not running on 127.0.0.1:6379")
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def unique_prefix() -> str:
    """A key prefix no other test uses (the shared Redis is never flushed)."""
    return f"arxtest-{uuid.uuid4().hex[:8]}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((REDIS_HOST, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free loopback port, for tests that kill it.

    ``persistent=True`` keeps its data across :meth:`restart` (append-only file, fsync on
    every write), so a restart loses nothing; otherwise it keeps nothing on disk.

    Use as a context manager; it is killed and its directory removed at exit.
    """

    def __init__(self, *, persistent: bool = False) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            if services_required():
                pytest.fail("redis-server is not installed (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
            pytest.skip(reason="redis-server is not installed")
        self.binary = binary
        self.persistent = persistent
        self.port = _free_port()
        self.url = f"redis://{REDIS_HOST}:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="arx-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait until it answers PING (at most 5 s)."""
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                REDIS_HOST,
                "--save",
                "",
                "--dir",
                self._dir,
                *persistence,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5.0
        while not _answers_ping(REDIS_HOST, self.port, timeout=0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """Kill the server (SIGKILL: no shutdown, no save) and wait for it to go."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        """Kill the server and start it again on the same port."""
        self.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)
