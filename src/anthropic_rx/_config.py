"""The client's configuration: the API key and base URL from arguments or the environment,
checked before anything reaches the wire, and the defaults.

A value that cannot be used raises at once (``ValueError`` / ``TypeError``), with a message that
names the option and never shows the API key.
"""

from __future__ import annotations

import os
import re

import httpx

from ._fields import CONTROL, value_problem
from ._redact import _redacted

__all__ = [
    "DEFAULT_ANTHROPIC_VERSION",
    "DEFAULT_BASE_URL",
    "configured_api_key",
    "configured_base_url",
]

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f\s]")
_USERINFO = re.compile(r"//[^/?#]*@")
_SCHEMES = ("http", "https")


def configured_api_key(api_key: str | None) -> str | None:
    """``api_key``, else ``ANTHROPIC_API_KEY``, once it is fit for the ``x-api-key`` header.

    Raises:
        ValueError, TypeError: see :func:`_check_api_key`.
    """
    key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
    if key is not None:
        _check_api_key(key, "api_key" if api_key is not None else "ANTHROPIC_API_KEY")
    return key


def configured_base_url(base_url: str | None, secret: str | None) -> str:
    """``base_url``, else ``ANTHROPIC_BASE_URL`` (an empty variable counts as unset), else the
    API's own, once it is an absolute http(s) URL with a host.

    Raises:
        ValueError, TypeError: see :func:`_checked_base_url`.
    """
    if base_url is not None:
        return _checked_base_url(base_url, "base_url", secret)
    if os.environ.get("ANTHROPIC_BASE_URL"):
        return _checked_base_url(os.environ["ANTHROPIC_BASE_URL"], "ANTHROPIC_BASE_URL", secret)
    return DEFAULT_BASE_URL


def _check_api_key(key: object, label: str) -> None:
    """Refuse a key that cannot be sent as a header; the message never quotes the key."""
    if not isinstance(key, str):
        raise TypeError(f"{label} must be a str, not {type(key).__name__}")
    problem = value_problem(key)
    if problem is None:
        return
    if not key.isascii() and not CONTROL.search(key):
        problem = "is not ASCII (an API key is; was something else pasted with it?)"
    elif "line break" in problem:
        problem += "; a key read from a file often ends with a newline"
    raise ValueError(f"{label} {problem}")


def _checked_base_url(url: object, label: str, secret: str | None) -> str:
    """``url`` without its trailing slashes, once it is an absolute http(s) URL with a host.

    Raises:
        ValueError: it is not (the message shows it with its user info and the key blanked).
        TypeError: it is not a ``str``.
    """
    if not isinstance(url, str):
        raise TypeError(f"{label} must be a str, not {type(url).__name__}")
    shown = repr(_USERINFO.sub("//[redacted]@", _redacted(url, secret)))
    if not url:
        raise ValueError(f"{label} is empty: pass an http:// or https:// URL")
    if _SPACE_OR_CONTROL.search(url):
        raise ValueError(f"{label} contains whitespace or a control character: {shown}")
    if "://" not in url:
        guess = "http://" + _USERINFO.sub("//[redacted]@", "//" + _redacted(url, secret))[2:]
        raise ValueError(
            f"{label} must start with http:// or https://, got {shown} (did you mean {guess!r}?)"
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        reason = _USERINFO.sub("//[redacted]@", _redacted(str(exc), secret))
        raise ValueError(f"{label} is not a valid URL: {shown} ({reason})") from None
    if parsed.scheme not in _SCHEMES:
        raise ValueError(f"{label} must be an http:// or https:// URL, got {shown}")
    if not parsed.host:
        raise ValueError(f"{label} has no host: {shown}")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ValueError(f"{label} has a port outside 1-65535: {shown}")
    if parsed.query or parsed.fragment or "?" in url or "#" in url:
        raise ValueError(
            f"{label} must not have a query or fragment (/v1/messages is appended): {shown}"
        )
    return url.rstrip("/")
