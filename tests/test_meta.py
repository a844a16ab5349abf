"""Response meta: request id, rate-limit families and retry hints."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from anthropic_rx import RateLimit, ResponseMeta
from anthropic_rx._meta import parse_retry_after

NOW = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


# --- retry-after -----------------------------------------------------------------------------


def test_no_retry_headers() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"x-should-retry": "true"}) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("1500", 1.5), ("0", 0.0), ("250.5", 0.2505), (" 100 ", 0.1), ("86400000", 86400.0)],
)
def test_retry_after_ms(value: str, seconds: float) -> None:
    assert parse_retry_after({"retry-after-ms": value}) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "seconds"), [("3", 3.0), ("0", 0.0), ("1.5", 1.5), (" 20 ", 20.0), ("86400", 86400.0)]
)
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after({"retry-after": value}) == seconds


def test_retry_after_ms_comes_first() -> None:
    assert parse_retry_after({"retry-after": "30", "retry-after-ms": "500"}) == 0.5


def test_unparsable_retry_after_ms_falls_back_to_retry_after() -> None:
    assert parse_retry_after({"retry-after": "30", "retry-after-ms": "soon"}) == 30.0


def test_retry_after_http_date_is_relative_to_now() -> None:
    header = {"retry-after": http_date(NOW + timedelta(seconds=90))}
    assert parse_retry_after(header, now=NOW.timestamp()) == 90.0
    assert parse_retry_after(header, now=NOW.timestamp() + 30) == 60.0


def test_retry_after_http_date_in_another_zone() -> None:
    moment = (NOW + timedelta(seconds=45)).astimezone(timezone(timedelta(hours=-5)))
    header = {"retry-after": email.utils.format_datetime(moment)}
    assert "-0500" in header["retry-after"]
    assert parse_retry_after(header, now=NOW.timestamp()) == 45.0


def test_retry_after_http_date_in_the_past_means_now() -> None:
    header = {"retry-after": http_date(NOW - timedelta(hours=1))}
    assert parse_retry_after(header, now=NOW.timestamp()) == 0.0


def test_retry_after_http_date_more_than_a_day_ahead_is_ignored() -> None:
    header = {"retry-after": http_date(NOW + timedelta(days=2))}
    assert parse_retry_after(header, now=NOW.timestamp()) is None


def test_retry_after_http_date_uses_the_clock_without_now() -> None:
    header = {"retry-after": http_date(datetime.now(UTC) + timedelta(hours=1))}
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 3500 < seconds <= 3600


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        "-0.5",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "Infinity",
        "1e400",
        "86401",
        "1e9",
        "",
        " ",
        "soon",
        "3s",
        "0x10",
        "Wed, 32 Foo 2015 07:28:00 GMT",
    ],
)
@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
def test_insane_retry_after_is_none(value: str, header: str) -> None:
    # For the ms header, a value over a day in ms is spelled differently.
    if header == "retry-after-ms" and value in ("86401", "1e9"):
        value = str(float(value) * 1000)
    assert parse_retry_after({header: value}, now=NOW.timestamp()) is None


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 99999999999 07:28:00 GMT",
        "Wed, 99999999999 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 99999999999:28:00 GMT",
    ],
)
def test_retry_after_date_with_huge_numbers_is_none(value: str) -> None:
    assert parse_retry_after({"retry-after": value}, now=NOW.timestamp()) is None
    assert ResponseMeta.from_headers(503, {"retry-after": value}).retry_after is None


@given(st.text(max_size=40))
def test_retry_after_text_never_raises(value: str) -> None:
    for header in ("retry-after", "retry-after-ms"):
        seconds = parse_retry_after({header: value}, now=NOW.timestamp())
        assert seconds is None or 0.0 <= seconds <= 86400.0


# --- from_headers ----------------------------------------------------------------------------

HEADERS = {
    "Request-Id": "req_011CUZ",
    "Content-Type": "text/event-stream; charset=utf-8",
    "Anthropic-RateLimit-Requests-Limit": "50",
    "anthropic-ratelimit-requests-remaining": "49",
    "ANTHROPIC-RATELIMIT-REQUESTS-RESET": "2025-05-01T12:00:30Z",
    "anthropic-ratelimit-tokens-limit": "100000",
    "anthropic-ratelimit-tokens-remaining": "99000",
    "anthropic-ratelimit-tokens-reset": "2025-05-01T12:00:01+00:00",
    "anthropic-ratelimit-input-tokens-limit": "80000",
    "anthropic-ratelimit-input-tokens-remaining": "79000",
    "anthropic-ratelimit-input-tokens-reset": "2025-05-01T14:00:02+02:00",
    "anthropic-ratelimit-output-tokens-limit": "20000",
    "anthropic-ratelimit-output-tokens-remaining": "20000",
    "anthropic-ratelimit-output-tokens-reset": "2025-05-01T12:00:03Z",
    "Retry-After": "7",
}


def test_from_headers() -> None:
    meta = ResponseMeta.from_headers(429, HEADERS)
    assert meta.status_code == 429
    assert meta.request_id == "req_011CUZ"
    assert meta.retry_after == 7.0
    assert meta.rate_limits == {
        "requests": RateLimit(50, 49, NOW + timedelta(seconds=30)),
        "tokens": RateLimit(100_000, 99_000, NOW + timedelta(seconds=1)),
        "input-tokens": RateLimit(80_000, 79_000, NOW + timedelta(seconds=2)),
        "output-tokens": RateLimit(20_000, 20_000, NOW + timedelta(seconds=3)),
    }
    reset = meta.rate_limits["requests"].reset
    assert reset is not None
    assert reset.utcoffset() == timedelta(0)


def test_header_names_are_lower_cased() -> None:
    meta = ResponseMeta.from_headers(200, HEADERS)
    assert meta.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert meta.headers["request-id"] == "req_011CUZ"
    assert all(name == name.lower() for name in meta.headers)
    assert len(meta.headers) == len(HEADERS)


def test_from_httpx_headers() -> None:
    headers = httpx.Headers([("REQUEST-ID", "req_2"), ("retry-after-ms", "250"), ("X-Other", "a")])
    meta = ResponseMeta.from_headers(529, headers)
    assert meta.request_id == "req_2"
    assert meta.retry_after == 0.25
    assert meta.headers["x-other"] == "a"


def test_x_request_id_is_the_fallback() -> None:
    assert ResponseMeta.from_headers(200, {"X-Request-Id": "r"}).request_id == "r"
    both = {"x-request-id": "second", "request-id": "first"}
    assert ResponseMeta.from_headers(200, both).request_id == "first"


def test_no_headers() -> None:
    meta = ResponseMeta.from_headers(500, {})
    assert meta == ResponseMeta(status_code=500)
    assert (meta.request_id, meta.retry_after, dict(meta.rate_limits)) == (None, None, {})


def test_partial_rate_limit_family() -> None:
    meta = ResponseMeta.from_headers(200, {"anthropic-ratelimit-requests-remaining": "3"})
    assert meta.rate_limits == {"requests": RateLimit(remaining=3)}


@pytest.mark.parametrize(
    ("limit", "remaining", "reset"),
    [
        ("many", "1.5", "tomorrow"),
        ("", " ", ""),
        ("1e3", "0x10", "2025-13-01T00:00:00Z"),
        ("NaN", "inf", "12:00"),
    ],
)
def test_bad_rate_limit_values_are_none(limit: str, remaining: str, reset: str) -> None:
    meta = ResponseMeta.from_headers(
        200,
        {
            "anthropic-ratelimit-tokens-limit": limit,
            "anthropic-ratelimit-tokens-remaining": remaining,
            "anthropic-ratelimit-tokens-reset": reset,
        },
    )
    assert meta.rate_limits == {"tokens": RateLimit(None, None, None)}


def test_unrelated_ratelimit_headers_are_not_families() -> None:
    meta = ResponseMeta.from_headers(
        200,
        {
            "anthropic-ratelimit-tokens-other": "1",
            "anthropic-ratelimit-limit": "1",
            "x-ratelimit-requests-limit": "1",
        },
    )
    assert meta.rate_limits == {}


def test_meta_is_immutable() -> None:
    meta = ResponseMeta.from_headers(200, HEADERS)
    with pytest.raises(AttributeError):
        setattr(meta, "request_id", "other")  # noqa: B010
    limit = meta.rate_limits["tokens"]
    with pytest.raises(AttributeError):
        setattr(limit, "remaining", 0)  # noqa: B010
