"""The request's headers: every name and value a caller passes checked for the wire, then
merged with the client's own (``accept``, ``anthropic-version``, ``x-api-key``...).

A header that cannot be sent raises at once (``ValueError`` / ``TypeError``), with a message
that names the header, never its value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from ._fields import is_token, value_problem
from ._redact import _shown_name
from ._version import __version__

__all__ = ["request_headers"]

# The framing and routing of the connection, which the transport alone decides: a caller's
# value could make the server read the body, or what follows it, as another request.
_TRANSPORT_HEADERS = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def request_headers(
    *,
    api_key: str | None,
    anthropic_version: str,
    default_headers: Mapping[str, str],
    default_betas: Sequence[str],
    betas: Sequence[str] | None,
    extra_headers: Mapping[str, str] | None,
) -> dict[str, str]:
    """The request's headers, every one of the caller's checked (see ``Client.stream``).

    ``default_headers`` and ``default_betas`` are the client's, already checked.
    """
    secret = api_key
    extra = _checked_headers(extra_headers, "extra_headers", secret)
    per_call = _checked_betas(betas or (), "betas", secret)
    headers = {
        "accept": "text/event-stream",
        "content-type": "application/json",
        "anthropic-version": anthropic_version,
        "user-agent": f"anthropic-rx/{__version__}",
        **default_headers,
    }
    if api_key:
        headers["x-api-key"] = api_key
    merged = list(dict.fromkeys([*default_betas, *per_call]))
    if merged:
        headers["anthropic-beta"] = ",".join(merged)
    headers.update(extra)
    return headers


def _check_value(value: object, label: str) -> None:
    """Refuse a header value the client builds from ``value``; the message quotes only
    ``label``."""
    if not isinstance(value, str):
        raise TypeError(f"{label} must be a str, not {type(value).__name__}")
    problem = value_problem(value)
    if problem is not None:
        raise ValueError(f"{label} {problem}")


def _checked_headers(
    headers: Mapping[str, str] | None, argument: str, secret: str | None
) -> dict[str, str]:
    """``headers`` with lower-case names, once each name and value is fit for the wire.

    Raises:
        ValueError: a name is not an RFC 9110 token or is one the transport sets, or a value
            holds a line break, NUL or control character, or is not ASCII. The value is never
            quoted (it may be a key); the name is, with the API key blanked.
        TypeError: ``headers`` is not a mapping, or a name or value is not a ``str``.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{argument} must be a mapping of str to str")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str):
            raise TypeError(f"{argument}: header names must be str, not {type(name).__name__}")
        if not is_token(name):
            raise ValueError(
                f"{argument}: {_shown_name(name, secret)} is not a valid header name "
                "(RFC 9110 token: ASCII letters, digits and !#$%&'*+-.^_`|~ only)"
            )
        lowered = name.lower()
        if lowered in _TRANSPORT_HEADERS:
            raise ValueError(
                f"{argument}: the {lowered!r} header is set by the HTTP transport and cannot be "
                "overridden"
            )
        if not isinstance(value, str):
            raise TypeError(
                f"{argument}: the value of header {_shown_name(name, secret)} must be str, "
                f"not {type(value).__name__}"
            )
        problem = value_problem(value)
        if problem is not None:
            raise ValueError(
                f"{argument}: the value of header {_shown_name(name, secret)} {problem}"
            )
        checked[lowered] = value
    return checked


def _checked_betas(betas: object, argument: str, secret: str | None) -> tuple[str, ...]:
    """``betas`` as a tuple, once each entry is fit for the ``anthropic-beta`` header."""
    if isinstance(betas, str | bytes):
        raise TypeError(f"{argument} takes a list of beta names, not one string: {argument}=[...]")
    if not isinstance(betas, Iterable):
        raise TypeError(f"{argument} takes a list of beta names, not {type(betas).__name__}")
    checked = tuple(betas)
    for index, beta in enumerate(checked):
        _check_value(beta, f"{argument}[{index}] {_shown_name(str(beta), secret)}")
    return checked
