"""The names a caller gives channels and stop flags: one rule for every backend."""

from __future__ import annotations

import re

__all__ = ["check_name"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,200}")


def check_name(name: str, what: str = "name") -> str:
    """``name`` when it may be part of a Redis key (``[A-Za-z0-9._:-]{1,200}``).

    The memory backends keep the same rule, so an application that works on them works
    unchanged on Redis.

    Raises:
        ValueError: it holds any other character (braces, whitespace, control characters)
            or is empty or too long: a name can never reach into another key.
    """
    if not isinstance(name, str) or _SAFE_NAME.fullmatch(name) is None:
        raise ValueError(f"{what} must match [A-Za-z0-9._:-]{{1,200}}, not {name!r}")
    return name
