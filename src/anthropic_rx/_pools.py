"""The connection pools of one client, and the choice of transport behind them.

Without a caller's ``httpx.AsyncClient`` or transport, streams go through the library's own
HTTP/1.1 transport, or through httpx's own, split into more pools as streams pile up, when the
environment names a proxy for the base URL.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import httpx

from ._transport import StreamingTransport

__all__ = ["open_pools"]

_STREAMS_PER_POOL = 32
_MAX_POOLS = 64


def open_pools(
    base_url: str,
    *,
    http_client: httpx.AsyncClient | None,
    transport: httpx.AsyncBaseTransport | None,
    connect_timeout: float,
) -> _Pools:
    """The pools for streams to ``base_url``: over ``http_client`` when given (never grown),
    else over an ``httpx.AsyncClient`` of the library's own (on ``transport`` when given)."""
    if http_client is not None:
        return _Pools(http_client)
    # No read timeout in httpx: the wait for the response is bounded in ``Client._send`` and
    # the body by the stream's watchdog, both by the per-call idle and total values.
    timeouts = httpx.Timeout(connect=connect_timeout, read=None, write=30.0, pool=None)
    if transport is not None:  # one transport: one pool, whatever the load
        return _Pools(httpx.AsyncClient(transport=transport, timeout=timeouts))
    if not _proxied(base_url):
        return _Pools(
            httpx.AsyncClient(
                transport=StreamingTransport(ssl_context=httpx.create_ssl_context()),
                timeout=timeouts,
            )
        )
    ssl_context = httpx.create_ssl_context()  # built once: it costs ~20 ms

    def new_pool() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=ssl_context,
            timeout=timeouts,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )

    return _Pools(new_pool(), grow=new_pool)


class _Pools:
    """The connection pools of one client: one, split into more as streams pile up.

    httpcore's pool does work in proportion to its connections for every request it places,
    so a thousand streams in one pool cost time quadratic in their number. A new stream goes
    to the least busy pool; a new pool opens only when every pool has ``_STREAMS_PER_POOL``
    open streams. One stream at a time always uses the first pool, and so its connection.
    """

    __slots__ = ("_active", "_grow", "_pools")

    def __init__(
        self, first: httpx.AsyncClient, *, grow: Callable[[], httpx.AsyncClient] | None = None
    ) -> None:
        self._pools = [first]
        self._active = [0]
        self._grow = grow

    def acquire(self) -> httpx.AsyncClient:
        active = self._active
        index = min(range(len(active)), key=active.__getitem__)
        if (
            active[index] >= _STREAMS_PER_POOL
            and self._grow is not None
            and len(active) < _MAX_POOLS
        ):
            self._pools.append(self._grow())
            active.append(0)
            index = len(active) - 1
        active[index] += 1
        return self._pools[index]

    def release(self, pool: httpx.AsyncClient) -> None:
        self._active[self._pools.index(pool)] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def _proxied(url: str) -> bool:
    """Whether the environment names a proxy for ``url`` (``*_PROXY``, ``NO_PROXY``), as httpx
    reads it."""
    proxies = urllib.request.getproxies_environment()
    parsed = httpx.URL(url)
    if not (proxies.get(parsed.scheme) or proxies.get("all")):
        return False
    return not proxy_bypass_environment(parsed.host, proxies)
