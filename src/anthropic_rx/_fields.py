"""What may go into an HTTP header field, for every header the library writes from a caller's
values: the client's request headers and the SSE response's own."""

from __future__ import annotations

import re

__all__ = ["CONTROL", "is_token", "value_problem"]

# RFC 9110 §5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: a field value holds no control character but HTAB (CR, LF, NUL among them).
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def is_token(name: str) -> bool:
    """Whether ``name`` is an RFC 9110 token, as a header name must be."""
    return _TOKEN.fullmatch(name) is not None


def value_problem(value: str) -> str | None:
    """What makes ``value`` unfit for a header (``None`` when it is fit), without quoting it:
    a CR or LF would end the header (and could start another, or a second request), NUL and
    other controls are refused by HTTP parsers, non-ASCII text is not sent the same by all."""
    if "\r" in value or "\n" in value:
        return "contains a line break (CR or LF)"
    if "\x00" in value:
        return "contains a NUL character"
    if CONTROL.search(value):
        return "contains a control character"
    if not value.isascii():
        return "is not ASCII (header values are sent as ASCII: percent-encode or base64 it)"
    return None
