"""The worker process ``anthropic-rx demo`` starts beside the web server, with arq jobs.

```
run(settings)                                   with settings.queued and worker == "child"
  worker_process(settings):
    Popen([python, -m, anthropic_rx, worker], env = settings.worker_env())
    SIGTERM ─► _Terminated (raised once uvicorn has shut down, which it does first)
  uvicorn.run(...)                              SIGINT / SIGTERM: graceful shutdown
  finally: SIGTERM the worker, wait (10 s), SIGKILL if it is still there; reap it
  a SIGTERM is then delivered again with the default action (exit as uvicorn alone would)
```

The worker shares the terminal's process group, so Ctrl-C reaches it as well; either way the
web process waits for it before it exits, so no worker outlives ``anthropic-rx demo``
(except when the web process itself is killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from types import FrameType

from ._settings import DemoSettings

__all__ = ["STOP_TIMEOUT", "Terminated", "start_worker", "stop_worker", "worker_process"]

_log = logging.getLogger("anthropic_rx.demo")

STOP_TIMEOUT = 10.0
"""Seconds the worker has to end its replies and exit before it is killed."""


class Terminated(BaseException):
    """SIGTERM arrived: the demo is shutting down (a ``BaseException``, as
    ``KeyboardInterrupt``, so no ``except Exception`` holds it up)."""


def start_worker(settings: DemoSettings) -> subprocess.Popen[bytes]:
    """Start ``python -m anthropic_rx worker`` with ``settings`` (through its environment:
    :meth:`DemoSettings.worker_env`). Its output goes to this process's."""
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env.update(settings.worker_env())  # the key again, only when the settings have one
    return subprocess.Popen([sys.executable, "-m", "anthropic_rx", "worker"], env=env)


def stop_worker(process: subprocess.Popen[bytes], *, timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the worker (it cancels its replies and exits), wait at most ``timeout``
    seconds, then SIGKILL it; return its exit status once it is reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _log.warning("the demo's worker did not stop within %.0f s: killed", timeout)
        process.kill()
        return process.wait(timeout=5)


def _watch(process: subprocess.Popen[bytes], stopping: threading.Event) -> None:
    status = process.wait()
    # Status 0: it was asked to stop (Ctrl-C in the terminal reaches it as well).
    if status != 0 and not stopping.is_set():
        _log.warning(
            "the demo's worker exited (status %s): replies fail until one runs "
            "(anthropic-rx worker)",
            status,
        )


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A second SIGTERM while the worker is being stopped: that is under way already."""


@contextlib.contextmanager
def worker_process(settings: DemoSettings) -> Iterator[subprocess.Popen[bytes] | None]:
    """A worker child process for the block, when ``settings`` runs arq jobs and
    ``settings.worker == "child"`` (else ``None``); stopped and reaped at exit, whatever ends
    the block.

    In the main thread, SIGTERM raises :class:`Terminated` for the block (uvicorn handles it
    itself while it serves, then raises it again once it has shut down): the worker is stopped
    before the process exits, and :func:`anthropic_rx.demo.run` then ends the process by
    SIGTERM's default action.
    """
    if not (settings.queued and settings.worker == "child"):
        yield None
        return
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main else None
    process = start_worker(settings)
    stopping = threading.Event()
    threading.Thread(
        target=_watch, args=(process, stopping), name="demo-worker-watch", daemon=True
    ).start()
    try:
        yield process
    finally:
        stopping.set()
        if main:
            signal.signal(signal.SIGTERM, _ignore)
        try:
            stop_worker(process)
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
