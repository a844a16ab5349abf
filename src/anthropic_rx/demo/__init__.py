"""The chat demo: a Starlette app streaming replies to a browser page, stopped, resumed and
saved with the library's sinks (``make demo``; see ``docs/demo.md``).

```python
from anthropic_rx.demo import DemoSettings, create_app, run

run(DemoSettings.from_env())           # blocking: http://127.0.0.1:8000/
app = create_app(DemoSettings(fake=testing.FakeAnthropic()))   # an ASGI app for tests
```

Needs the ``web`` and ``database`` extras (``redis`` for ``ANTHROPIC_RX_REDIS_URL``).
"""

from __future__ import annotations

from ._app import create_app
from ._settings import DemoSettings

__all__ = ["DemoSettings", "create_app", "run"]


def run(settings: DemoSettings | None = None) -> None:
    """Serve the demo with uvicorn until interrupted (blocking).

    ``settings`` default :meth:`DemoSettings.from_env`. Ctrl-C shuts down cleanly: replies
    still running are cancelled and their rows end ``incomplete``.
    """
    import uvicorn

    settings = settings if settings is not None else DemoSettings.from_env()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=3,
    )
