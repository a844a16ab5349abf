"""The retry policy: which responses are retried, and how long to wait before the next try."""

from __future__ import annotations

import random

import httpx

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_INITIAL_RETRY_DELAY = 0.5
_MAX_RETRY_DELAY = 8.0
# Like the official SDKs: a longer retry-after is not waited for inside one call.
_MAX_HONOURED_RETRY_AFTER = 60.0


def _should_retry(response: httpx.Response) -> bool:
    should = response.headers.get("x-should-retry")
    if should == "true":
        return True
    if should == "false":
        return False
    status = response.status_code
    return status in _RETRYABLE_STATUS or status >= 500


def _retry_delay(attempt: int, retry_after: float | None) -> float:
    if retry_after is not None and 0 <= retry_after <= _MAX_HONOURED_RETRY_AFTER:
        return retry_after
    delay = min(_INITIAL_RETRY_DELAY * 2**attempt, _MAX_RETRY_DELAY)
    jitter = 1 - 0.25 * random.random()  # spreads a crowd of clients retrying at once
    return float(delay * jitter)
