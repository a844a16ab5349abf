"""Cross-site request forgery guard for the demo: unsafe requests must come from its own origin.

The owner cookie is ``SameSite=Lax``, so a modern browser does not send it on another site's
POST. :class:`OriginCheck` is the second layer, for browsers that do not honor ``SameSite`` and
for sibling sites (``SameSite`` counts ``a.example.com`` and ``b.example.com`` as the same
site; an origin does not): every request whose method is not safe (anything but ``GET``,
``HEAD``, ``OPTIONS``, ``TRACE``; so ``POST``, ``PUT``, ``PATCH``, ``DELETE``) is let through
only when

1. ``Sec-Fetch-Site: same-origin`` (the browser's own verdict, which a page cannot forge), or
2. its ``Origin`` header, or when there is none the origin of its ``Referer``, is the request's
   own origin (``scope["scheme"]`` and the ``Host`` header) or one of ``allowed_origins``.

Anything else is refused with ``403 {"error": "cross-origin request refused"}`` before the
app sees it: another origin, ``Origin: null`` (sandboxed frames, ``data:`` pages, some
redirects), a ``Sec-Fetch-Site`` other than ``same-origin`` with no origin to check, and every
header that does not parse (two ``Origin`` headers, a path in ``Origin``, a bad port, an
unbracketed IPv6 address...): a malformed header is a refusal, never a 500.

A request with none of ``Origin``, ``Referer`` and ``Sec-Fetch-Site`` is let through. Every
browser that sends ``Sec-Fetch-Site`` also sends ``Origin`` on a POST, and browsers have sent
``Origin`` on every cross-origin POST (form posts included) for years, so such a request comes
from a non-browser client: curl, a script, a test. Such a client holds no victim's cookie to
ride, which is what a forged request needs; refusing it would only break scripts. The gap is an
old browser that sends no ``Origin``, whose user also turned the ``Referer`` off, and that
ignores ``SameSite``: the check accepts that.

Behind a proxy that terminates TLS or rewrites ``Host``, the request's own origin is not what
the browser saw: run uvicorn with ``--proxy-headers`` (it sets the scheme) and list the public
origin in ``allowed_origins``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["REFUSED", "SAFE_METHODS", "OriginCheck", "normalize_origin"]

REFUSED = {"error": "cross-origin request refused"}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A DNS name or IPv4 address as a browser serializes it (ASCII, punycode for IDNs).
_HOSTNAME = re.compile(r"[a-z0-9](?:[a-z0-9_.-]{0,251}[a-z0-9_])?", re.ASCII)
_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)
_MAX_HEADER = 4096

# (scheme, host without brackets, port) with the default port filled in.
Origin = tuple[str, str, int]


def _host_port(authority: str, scheme: str) -> tuple[str, int] | None:
    """``host[:port]`` or ``[v6][:port]`` to a lowercase host and a port, or ``None`` when it
    does not parse."""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return None
        host, rest = authority[1:end], authority[end + 1 :]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    else:
        host, sep, port_text = authority.partition(":")
        rest = sep + port_text
        host = host.lower()
        if not _HOSTNAME.fullmatch(host):
            return None
    if not rest:
        return host, _DEFAULT_PORTS[scheme]
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]):
        return None
    port = int(rest[1:])
    if not 0 < port <= 65535:
        return None
    return host, port


def _parse_origin(value: str) -> Origin | None:
    """A serialized origin (``scheme://host[:port]``, nothing after) or ``None``."""
    scheme, sep, authority = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not authority:
        return None
    parsed = _host_port(authority, scheme)
    return None if parsed is None else (scheme, *parsed)


def _referer_origin(value: str) -> Origin | None:
    """The origin of an absolute ``http(s)`` ``Referer`` URL, or ``None``."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        return None
    # The authority without user info: the host and port are what the origin is made of.
    authority = parts.netloc.rpartition("@")[2]
    parsed = _host_port(authority, scheme)
    return None if parsed is None else (scheme, *parsed)


def normalize_origin(value: str) -> str:
    """``value`` (``"https://Example.com:443"``) as the origin a browser sends
    (``"https://example.com"``).

    Raises:
        ValueError: ``value`` is not ``http(s)://host[:port]`` with nothing after.
    """
    parsed = _parse_origin(value.strip())
    if parsed is None:
        raise ValueError(f"not an origin (scheme://host[:port]): {value!r}")
    return _serialize(parsed)


def _serialize(origin: Origin) -> str:
    scheme, host, port = origin
    shown = f"[{host}]" if ":" in host else host
    if port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{shown}"
    return f"{scheme}://{shown}:{port}"


class OriginCheck:
    """ASGI middleware refusing unsafe requests from other origins (see the module doc).

    Args:
        app: the application it guards.
        allowed_origins: origins accepted besides the request's own, e.g.
            ``["https://chat.example.com"]`` (normalized as :func:`normalize_origin` does).

    Raises:
        ValueError: an allowed origin does not parse.

    A refused request is answered ``403`` with :data:`REFUSED` as JSON and never reaches
    ``app``; its body is not read. Safe methods, and scopes other than ``http`` (lifespan),
    pass through untouched.
    """

    def __init__(self, app: ASGIApp, *, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        allowed: set[Origin] = set()
        for value in allowed_origins:
            parsed = _parse_origin(value.strip())
            if parsed is None:
                raise ValueError(f"not an origin (scheme://host[:port]): {value!r}")
            allowed.add(parsed)
        self.allowed_origins = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS or self._accepts(scope):
            await self.app(scope, receive, send)
            return
        await JSONResponse(REFUSED, status_code=403)(scope, receive, send)

    def _accepts(self, scope: Scope) -> bool:
        headers: dict[bytes, list[str]] = {}
        for name, raw in scope.get("headers", []):
            if name in (b"origin", b"referer", b"sec-fetch-site", b"host"):
                if len(raw) > _MAX_HEADER:
                    return False
                headers.setdefault(name, []).append(raw.decode("latin-1").strip())
        # A header a browser sends once, sent twice, is not a browser's request: refuse.
        if any(len(values) > 1 for values in headers.values()):
            return False
        fetch_site = headers.get(b"sec-fetch-site", [None])[0]
        if fetch_site is not None and fetch_site.lower() == "same-origin":
            return True
        if b"origin" in headers:
            claimed = _parse_origin(headers[b"origin"][0])
        elif b"referer" in headers:
            claimed = _referer_origin(headers[b"referer"][0])
        else:
            # No Origin, no Referer: a non-browser client, unless Sec-Fetch-Site (which only
            # browsers send) says the browser found it cross-origin.
            return fetch_site is None
        if claimed is None:  # "null", or a value that does not parse
            return False
        return claimed in self.allowed_origins or claimed == self._own(scope)

    @staticmethod
    def _own(scope: Scope) -> Origin | None:
        """The request's own origin: its scheme and ``Host`` header (``None`` without one)."""
        scheme = str(scope.get("scheme", "http")).lower()
        if scheme not in _DEFAULT_PORTS:
            return None
        for name, raw in scope.get("headers", []):
            if name == b"host":
                parsed = _host_port(raw.decode("latin-1").strip(), scheme)
                return None if parsed is None else (scheme, *parsed)
        return None
