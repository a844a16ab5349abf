"""A private ``redis-server`` on a free loopback port, for measurements that need Redis alone.

The shared Redis (127.0.0.1:6379) may be serving other programs while a benchmark runs, so a
count of the commands it processed (``INFO commandstats``) would include theirs; a private
server processes only the benchmark's. It keeps nothing on disk and is killed at exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["PrivateRedis", "answers_ping"]

HOST = "127.0.0.1"


def answers_ping(port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis on ``127.0.0.1:port`` answers ``PING``."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """``redis-server`` on a free port of 127.0.0.1, started on enter (at most 5 s to answer
    ``PING``) and killed on exit, its directory removed.

    Raises:
        RuntimeError: ``redis-server`` is not installed, or did not start.
    """

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = _free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._dir = tempfile.mkdtemp(prefix="arx-bench-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateRedis:
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5.0
        while not answers_ping(self.port, timeout=0.1):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        shutil.rmtree(Path(self._dir), ignore_errors=True)
