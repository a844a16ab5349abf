"""The sans-IO HTTP/1.1 response parser, on bytes alone: every rule of its module's list."""

from __future__ import annotations

import time

import httpx
import pytest

from anthropic_rx._http11 import MAX_HEAD_BYTES, ResponseParser

OK = b"HTTP/1.1 200 OK\r\n"


def parse(
    data: bytes, *, step: int = 0, head_only: bool = False, eof: bool = False
) -> ResponseParser:
    """A parser fed ``data`` whole (``step=0``) or ``step`` bytes at a time."""
    parser = ResponseParser()
    parser.start(head_only=head_only)
    if step:
        for start in range(0, len(data), step):
            parser.feed(data[start : start + step])
    else:
        parser.feed(data)
    if eof:
        parser.feed_eof()
    return parser


def body_of(parser: ResponseParser) -> bytes:
    return b"".join(parser.take())


def refused(data: bytes, match: str, *, eof: bool = False) -> None:
    for step in (0, 1, 7):
        parser = parse(data, step=step, eof=eof)
        assert isinstance(parser.error, httpx.RemoteProtocolError), (step, data[:80])
        assert match in str(parser.error)
        assert not parser.complete
        assert not parser.keep_alive


def accepted(data: bytes, body: bytes, *, eof: bool = False) -> ResponseParser:
    for step in (0, 1, 5):
        parser = parse(data, step=step, eof=eof)
        assert parser.error is None, (step, parser.error)
        assert parser.complete
        assert body_of(parser) == body
    return parser


# --- framing (RFC 9112 §6.1, §6.3) -------------------------------------------------------------


def test_content_length_and_chunked_bodies() -> None:
    parser = accepted(OK + b"Content-Length: 5\r\n\r\nhello", b"hello")
    assert parser.head is not None
    assert parser.head.status == 200
    assert parser.head.reason == b"OK"
    assert parser.head.version == b"HTTP/1.1"
    assert parser.head.headers == [(b"Content-Length", b"5")]
    assert parser.keep_alive
    chunked = (
        OK + b"Transfer-Encoding: chunked\r\n\r\n3;a=b\r\nhel\r\n2\r\nlo\r\n0\r\nx-t: 1\r\n\r\n"
    )
    parser = accepted(chunked, b"hello")
    assert parser.trailers == [(b"x-t", b"1")]


@pytest.mark.parametrize(
    "codings",
    [
        [b"gzip, chunked"],
        [b"chunked, gzip"],
        [b"chunked", b"identity"],
        [b"identity"],
        [b"chunked", b"chunked"],
        [b"chunked,"],
        [b""],
    ],
)
def test_only_exactly_one_chunked_transfer_coding_is_accepted(codings: list[bytes]) -> None:
    headers = b"".join(b"Transfer-Encoding: %s\r\n" % coding for coding in codings)
    refused(OK + headers + b"\r\n5\r\nhello\r\n0\r\n\r\n", "transfer-encoding")
    refused(OK + headers + b"Content-Length: 5\r\n\r\nhello", "transfer-encoding")


def test_chunked_is_case_and_whitespace_tolerant() -> None:
    for value in (b"Chunked", b"CHUNKED  ", b"\tchunked"):
        accepted(OK + b"Transfer-Encoding: " + value + b"\r\n\r\n2\r\nok\r\n0\r\n\r\n", b"ok")


def test_transfer_encoding_with_content_length_is_refused() -> None:
    refused(
        OK + b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "both transfer-encoding and content-length",
    )


def test_content_length_values() -> None:
    accepted(OK + b"Content-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok", b"ok")
    refused(OK + b"Content-Length: 2, 3\r\n\r\nok", "conflicting content-length")
    refused(OK + b"Content-Length: 2\r\nContent-Length: 02\r\n\r\nok", "conflicting")
    refused(OK + b"Content-Length: -2\r\n\r\nok", "invalid content-length")
    refused(OK + b"Content-Length: 2,\r\n\r\nok", "conflicting content-length")
    parser = parse(OK + b"Content-Length: " + b"9" * 20 + b"\r\n\r\n")
    assert parser.error is None
    assert parser.head is not None


def test_no_body_for_204_304_and_head_and_until_close_otherwise() -> None:
    for status in (b"204 No Content", b"304 Not Modified"):
        parser = parse(b"HTTP/1.1 " + status + b"\r\nContent-Length: 3\r\n\r\n")
        assert parser.complete
        assert parser.keep_alive
    assert parse(OK + b"Content-Length: 100\r\n\r\n", head_only=True).complete
    parser = parse(OK + b"\r\nall of it")
    assert not parser.complete
    assert body_of(parser) == b"all of it"
    parser.feed_eof()
    assert parser.complete
    assert parser.error is None
    assert not parser.keep_alive


def test_a_pending_error_wins_over_a_complete_body() -> None:
    parser = parse(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nnot a field\r\n\r\n")
    assert body_of(parser) == b"ok"  # what came before the fault is delivered
    assert parser.error is not None
    assert "invalid trailer line" in str(parser.error)
    assert not parser.complete
    parser.feed_eof()
    assert not parser.complete
    assert "invalid trailer line" in str(parser.error)  # the first error stays


def test_bytes_after_the_end_are_leftover_not_body() -> None:
    parser = parse(OK + b"Content-Length: 2\r\n\r\nokEXTRA")
    assert parser.complete
    assert parser.error is None
    assert body_of(parser) == b"ok"
    assert parser.leftover
    assert not parser.keep_alive
    idle = ResponseParser()
    idle.feed(b"unasked")
    assert idle.leftover


def test_disconnects() -> None:
    refused(b"", "without sending a response", eof=True)
    refused(b"HTTP/1.1 200 OK\r\n", "without sending a response", eof=True)
    refused(OK + b"Content-Length: 9\r\n\r\nhalf", "before the response ended", eof=True)
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n", "before the response", eof=True)


# --- unbounded work ----------------------------------------------------------------------------


def test_a_trailer_section_that_never_ends_is_refused_at_64_kib() -> None:
    parser = parse(OK + b"Transfer-Encoding: chunked\r\n\r\n0\r\n")
    line = b"x-t: " + b"a" * 1000 + b"\r\n"
    for _ in range(80):
        parser.feed(line)
        if parser.error is not None:
            break
    assert parser.error is not None
    assert "trailers too long" in str(parser.error)
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n0\r\n" + line * 70, "trailers too long")


def test_a_head_fed_one_byte_at_a_time_is_scanned_once() -> None:
    head = OK + b"x-h: " + b"a" * 62_000 + b"\r\n\r\n"
    parser = ResponseParser()
    parser.start()
    started = time.process_time()
    for index in range(len(head)):
        parser.feed(head[index : index + 1])
    spent = time.process_time() - started
    assert parser.error is None
    assert parser.head is not None
    assert spent < 2.0  # rescanning the whole head each time took tens of seconds


def test_heads_and_chunk_lines_over_their_caps_are_refused() -> None:
    refused(OK + b"x: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", "headers too long")
    refused(OK + b"x: " + b"a" * MAX_HEAD_BYTES, "headers too long")
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n1" + b";" * 5000, "line too long")
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n1" + b";" * 5000 + b"\r\n", "line too long")


def test_thousands_of_digits_are_protocol_errors_not_value_errors() -> None:
    refused(b"HTTP/1.1 " + b"2" * 5000 + b" OK\r\n\r\n", "invalid status line")
    refused(OK + b"Content-Length: " + b"1" * 5000 + b"\r\n\r\n", "invalid content-length")
    refused(OK + b"Content-Length: " + b"1" * 21 + b"\r\n\r\n", "invalid content-length")
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 21 + b"\r\n", "chunk size")


# --- strictness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (OK + b"x: a\x00b\r\n", "invalid header line"),
        (OK + b"x: a\rb\r\n", "invalid header line"),
        (OK + b"x: a\x0bb\r\n", "invalid header line"),
        (OK + b"bad name: v\r\n", "invalid header line"),
        (OK + b"x(y): v\r\n", "invalid header line"),
        (OK + b"x : v\r\n", "invalid header line"),
        (OK + b": v\r\n", "invalid header line"),
        (OK + b"novalue\r\n", "invalid header line"),
        (OK + b"x: a\r\n continued\r\n", "obsolete line folding"),
        (OK + b"x: a\r\n\tcontinued\r\n", "obsolete line folding"),
        (b"HTTP/1.1 099 Low\r\n", "invalid status code"),
        (b"HTTP/1.1 1000 High\r\n", "invalid status line"),
        (b"HTTP/1.1 20 Short\r\n", "invalid status line"),
        (b"HTTP/1.1  200 OK\r\n", "invalid status line"),
        (b"HTTP/1.1 200 O\x00K\r\n", "invalid status line"),
        (b"HTTP/1.2 200 OK\r\n", "unsupported HTTP version"),
        (b"HTTP/2.0 200 OK\r\n", "unsupported HTTP version"),
        (b"HTTP/0.9 200 OK\r\n", "unsupported HTTP version"),
        (b"http/1.1 200 OK\r\n", "invalid status line"),
        (b"ICY 200 OK\r\n", "invalid status line"),
        (b"\r\n" + OK, "no status line"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n", "101 Switching Protocols"),
        (b"HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\n" + OK, "invalid content-length"),
    ],
)
def test_malformed_heads_are_refused(head: bytes, message: str) -> None:
    refused(head + b"\r\n", message)


def test_lenient_where_the_rfc_and_h11_are() -> None:
    parser = accepted(
        b"HTTP/1.1 200\r\nX-Empty:\r\nX-Tab:\ta\tb \r\nContent-Length: 0\r\n\r\n", b""
    )
    assert parser.head is not None
    assert parser.head.reason == b""
    assert parser.head.headers[:2] == [(b"X-Empty", b""), (b"X-Tab", b"a\tb")]
    parser = accepted(b"HTTP/1.1 200 \xff\x01ok\r\nX: \x80\xfe\r\nContent-Length: 0\r\n\r\n", b"")
    assert parser.head is not None
    assert parser.head.reason == b"\xff\x01ok"
    accepted(b"HTTP/1.1 200 OK\nTransfer-Encoding: chunked\n\n2\nok\n0\n\n", b"ok")  # bare LF


def test_informational_responses_are_skipped_and_101_refused() -> None:
    parser = accepted(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        + OK
        + b"Content-Length: 2\r\n\r\nok",
        b"ok",
    )
    assert parser.head is not None
    assert parser.head.status == 200
    refused(b"HTTP/1.1 101 Switching Protocols\r\n\r\n" + OK + b"\r\n", "101")


@pytest.mark.parametrize(
    ("chunk_line", "ok"),
    [
        (b"2", True),
        (b"0002", True),
        (b"2;name=value;flag", True),
        (b"2 \t", True),
        (b"2;x=\x80", True),
        (b" 2", False),
        (b"2 ;x", False),
        (b"+2", False),
        (b"0x2", False),
        (b"2;a\x00b", False),
        (b"2;a\rb", False),
        (b"", False),
    ],
)
def test_chunk_size_lines(chunk_line: bytes, ok: bool) -> None:
    response = OK + b"Transfer-Encoding: chunked\r\n\r\n" + chunk_line + b"\r\nok\r\n0\r\n\r\n"
    if ok:
        accepted(response, b"ok")
    else:
        refused(response, "invalid chunk")


def test_chunk_data_must_end_at_its_size() -> None:
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nokay\r\n0\r\n\r\n", "longer than")
    refused(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\r\n0\r\n\r\n", "longer than")


@pytest.mark.parametrize(
    "trailer",
    [b"garbage\r\n", b"x y: 1\r\n", b" folded\r\n", b"Content-Length: 5\r\n", b"x: a\x00\r\n"],
)
def test_garbage_trailer_lines_are_refused(trailer: bytes) -> None:
    parser = parse(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n" + trailer + b"\r\n")
    assert parser.error is not None
    assert not parser.complete


@pytest.mark.parametrize(
    ("version", "connection_headers", "keep_alive"),
    [
        (b"1.1", [], True),
        (b"1.1", [b"keep-alive"], True),
        (b"1.1", [b"keep-alive", b"Close"], False),
        (b"1.1", [b"upgrade, close"], False),
        (b"1.1", [b"closed"], True),
        (b"1.0", [], False),
        (b"1.0", [b"Keep-Alive"], True),
        (b"1.0", [b"keep-alive", b"close"], False),
    ],
)
def test_connection_headers_are_combined(
    version: bytes, connection_headers: list[bytes], keep_alive: bool
) -> None:
    headers = b"".join(b"Connection: %s\r\n" % value for value in connection_headers)
    parser = parse(b"HTTP/%s 200 OK\r\n%sContent-Length: 0\r\n\r\n" % (version, headers))
    assert parser.error is None
    assert parser.keep_alive is keep_alive


def test_http_1_0_with_transfer_encoding_is_not_kept_alive() -> None:
    parser = parse(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    assert parser.complete
    assert not parser.keep_alive


def test_one_parser_for_successive_responses() -> None:
    parser = parse(OK + b"Content-Length: 2\r\n\r\nok")
    assert body_of(parser) == b"ok"
    parser.start()
    parser.feed(OK + b"Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
    assert parser.complete
    assert body_of(parser) == b"hi"
    unfinished = parse(OK + b"Content-Length: 9\r\n\r\n")
    with pytest.raises(RuntimeError, match="not ended"):
        unfinished.start()


class _Broken(ResponseParser):
    """A parser whose parsing step fails the way a bug would."""

    __slots__ = ()

    def _parse(self, buf: bytes) -> None:
        raise LookupError("a bug")


def test_any_failure_inside_feed_becomes_a_protocol_error_not_an_exception() -> None:
    parser = _Broken()
    parser.start()
    parser.feed(OK)  # does not raise
    assert isinstance(parser.error, httpx.RemoteProtocolError)
    assert "LookupError: a bug" in str(parser.error)
    parser.feed(b"more")  # ignored once failed
    assert not parser.complete
