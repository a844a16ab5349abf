"""The chat demo: a Starlette app streaming replies to a browser page, stopped, resumed and
saved with the library's sinks (``make demo``; see ``docs/demo.md``).

```python
from anthropic_rx.demo import DemoSettings, create_app, run

run(DemoSettings.from_env())           # blocking: http://127.0.0.1:8000/
app = create_app(DemoSettings(fake=testing.FakeAnthropic()))   # an ASGI app for tests
run_worker()                           # the arq worker of ANTHROPIC_RX_REDIS_URL (blocking)
```

Needs the ``web`` and ``database`` extras (``redis`` and ``queue`` for
``ANTHROPIC_RX_REDIS_URL``). ``WorkerSettings`` (``arq anthropic_rx.demo.WorkerSettings``) and
``run_worker`` import arq when first used.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any

from ._app import create_app
from ._process import Terminated, worker_process
from ._settings import DemoSettings

if TYPE_CHECKING:
    from ._worker import WorkerSettings, run_worker

__all__ = ["DemoSettings", "WorkerSettings", "create_app", "run", "run_worker"]


def __getattr__(name: str) -> Any:
    # The worker's names import arq: only when asked for (the demo in memory needs no arq).
    if name in ("WorkerSettings", "run_worker"):
        from . import _worker

        return getattr(_worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(settings: DemoSettings | None = None) -> None:
    """Serve the demo with uvicorn until interrupted (blocking).

    ``settings`` default :meth:`DemoSettings.from_env`. With arq jobs (a Redis URL) and
    ``settings.worker == "child"`` an arq worker runs beside it as a child process
    (``python -m anthropic_rx worker``), stopped and reaped before this returns.

    Ctrl-C (SIGINT) shuts down cleanly and returns: replies still running in this process are
    cancelled and their rows end ``incomplete``; the child worker cancels its own the same way.
    SIGTERM shuts down the same way, then ends the process by SIGTERM's default action, as
    uvicorn does.
    """
    import uvicorn

    settings = settings if settings is not None else DemoSettings.from_env()
    try:
        with worker_process(settings):
            uvicorn.run(
                create_app(settings),
                host=settings.host,
                port=settings.port,
                log_level="info",
                timeout_graceful_shutdown=3,
            )
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
        raise  # not reached: SIGTERM's default action ends the process
