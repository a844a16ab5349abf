"""Response meta: request id, typed rate-limit headers and retry hints of one HTTP response."""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["RateLimit", "ResponseMeta", "parse_retry_after"]

_RATELIMIT_PREFIX = "anthropic-ratelimit-"
# The API caps honoured waits well below this; a larger value is a broken header, not a plan.
_MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One ``anthropic-ratelimit-{name}-*`` family: ``limit``, ``remaining`` and ``reset``."""

    limit: int | None = None
    remaining: int | None = None
    reset: datetime | None = None


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What the HTTP response said besides its body.

    Attributes:
        status_code: the HTTP status.
        headers: every response header, lower-cased names (the API key is a request header and is
            never here).
        request_id: the ``request-id`` header, when present.
        rate_limits: the ``anthropic-ratelimit-*`` families by name (``"requests"``, ``"tokens"``,
            ``"input-tokens"``, ``"output-tokens"``...).
        retry_after: seconds to wait, from ``retry-after-ms`` or ``retry-after`` (seconds or an
            HTTP date), when present and sane.
    """

    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    request_id: str | None = None
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    retry_after: float | None = None

    @classmethod
    def from_headers(cls, status_code: int, headers: Mapping[str, str]) -> ResponseMeta:
        """Build the meta of a response from its status and headers."""
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(
            status_code=status_code,
            headers=lowered,
            request_id=lowered.get("request-id") or lowered.get("x-request-id"),
            rate_limits=_rate_limits(lowered),
            retry_after=parse_retry_after(lowered),
        )


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``retry-after`` (seconds or HTTP date).

    Returns ``None`` when neither header is present or parses to a finite, non-negative value
    under a day.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        seconds = _number(raw_ms)
        if seconds is not None:
            return _sane(seconds / 1000.0)
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _number(raw)
    if seconds is not None:
        return _sane(seconds)
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
        stamp = parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    current = time.time() if now is None else now
    return _sane(max(0.0, stamp - current))


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _sane(seconds: float) -> float | None:
    return seconds if 0.0 <= seconds <= _MAX_RETRY_AFTER else None


def _rate_limits(headers: Mapping[str, str]) -> dict[str, RateLimit]:
    families: dict[str, dict[str, str]] = {}
    for name, value in headers.items():
        if not name.startswith(_RATELIMIT_PREFIX):
            continue
        family, _, attribute = name[len(_RATELIMIT_PREFIX) :].rpartition("-")
        if family and attribute in ("limit", "remaining", "reset"):
            families.setdefault(family, {})[attribute] = value
    return {
        family: RateLimit(
            limit=_int(values.get("limit")),
            remaining=_int(values.get("remaining")),
            reset=_datetime(values.get("reset")),
        )
        for family, values in families.items()
    }


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _datetime(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
