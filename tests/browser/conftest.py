"""Fixtures of the browser tests: the demo served on 127.0.0.1, and a headless Chromium.

- ``fake``: the :class:`~anthropic_rx.testing.FakeAnthropic` the demo talks to; each test
  queues its own replies and errors on it.
- ``demo``: the demo app (``create_app``) under uvicorn in the tests' event loop, on a free
  loopback port, with an SQLite database in the test's ``tmp_path``; :meth:`Demo.restart`
  stops it and starts a new app on the same database and port.
- ``browser``: Debian's Chromium (``/usr/bin/chromium``) through Playwright, launched once
  for the session. The tests are skipped when Chromium or Playwright is missing, or fail
  when ``ANTHROPIC_RX_REQUIRE_SERVICES=1`` (CI, where a skip would hide a regression).
- ``context`` / ``page``: a fresh browser profile (its own ``arx_owner`` cookie) and a tab in
  it; every Playwright wait is bounded by :data:`WAIT_MS`.

The browser lives on the session's event loop (launching it takes a second or two), so every
async fixture here and every test of this directory runs on that loop
(``loop_scope="session"``): Playwright's objects, the server and the fake must share one loop.
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from anthropic_rx import testing
from anthropic_rx.demo import DemoSettings, create_app

from .._services import services_required
from ..sinks._server import serve

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Every wait of a browser test (Playwright's actions, navigations and expectations), in ms.
WAIT_MS = 5_000

# The demo's own pacing, for replies it makes itself (the tests pace theirs on the fake).
DEMO_TOKENS_PER_SECOND = 200.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Demo:
    """The demo served on ``127.0.0.1:{port}`` while the test runs."""

    fake: testing.FakeAnthropic
    database_url: str
    port: int = field(default_factory=_free_port)
    _running: contextlib.AsyncExitStack | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        """The page's URL (``/``)."""
        return f"http://127.0.0.1:{self.port}/"

    def settings(self) -> DemoSettings:
        return DemoSettings(
            database_url=self.database_url,
            fake=self.fake,
            port=self.port,
            tokens_per_second=DEMO_TOKENS_PER_SECOND,
        )

    async def start(self) -> None:
        """Build a new app and serve it (its lifespan runs: tables, recovery, jobs).

        Raises:
            RuntimeError: uvicorn did not start within 5 s (e.g. the lifespan failed).
        """
        assert self._running is None, "the demo is already running"
        stack = contextlib.AsyncExitStack()
        await stack.enter_async_context(
            serve(create_app(self.settings()), port=self.port, lifespan="on")
        )
        self._running = stack

    async def stop(self) -> None:
        """Shut the server down (lifespan shutdown included), waiting at most 6 s."""
        stack, self._running = self._running, None
        if stack is not None:
            await stack.aclose()

    async def restart(self) -> None:
        """Stop the server, then start a new app on the same database file and port."""
        await self.stop()
        await self.start()


@pytest.fixture
def fake() -> testing.FakeAnthropic:
    """The fake Anthropic API behind the demo; tests queue replies on it."""
    return testing.FakeAnthropic()


@pytest_asyncio.fixture(loop_scope="session")
async def demo(fake: testing.FakeAnthropic, tmp_path: Path) -> AsyncIterator[Demo]:
    """The demo served on a free loopback port, with its SQLite database in ``tmp_path``."""
    server = Demo(fake=fake, database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Chromium's path; skipped (or failed, see the module doc) when it or Playwright is
    missing."""
    if importlib.util.find_spec("playwright") is None:
        if services_required():
            pytest.fail("the playwright package is not installed (ANTHROPIC_RX_REQUIRE_SERVICES=1)")
        pytest.skip(reason="the playwright package is not installed")
    if not CHROMIUM.exists():
        if services_required():
            pytest.fail(
                "Debian's chromium is not at /usr/bin/chromium (ANTHROPIC_RX_REQUIRE_SERVICES=1)"
            )
        pytest.skip(reason="Debian's chromium is not installed at /usr/bin/chromium")
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """Headless Chromium, closed after the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=str(chromium), headless=True, args=LAUNCH_ARGS, timeout=15_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh profile: no cookies, so the demo sees a new owner."""
    profile = await browser.new_context(viewport={"width": 1000, "height": 800})
    profile.set_default_timeout(WAIT_MS)
    profile.set_default_navigation_timeout(WAIT_MS)
    try:
        yield profile
    finally:
        await profile.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> Page:
    """A tab of ``context`` (closed with it)."""
    return await context.new_page()
