"""Our response parser against h11 (httpx's default transport) on generated and mutated bytes.

For every input, fed whole and in random pieces, then closed:

- both accept: the same status, reason, headers (names lower-cased, ``Content-Length`` as h11
  keeps it), body bytes and trailers;
- h11 refuses: we refuse, unless the case is in :data:`LENIENT` (checked by what our parser
  saw, not by its result);
- h11 accepts, we refuse: our error must be one of :data:`STRICTER`, where we refuse on
  purpose.

Bytes after the end of a response are no part of it for either (h11 keeps them for a next
cycle; we set ``leftover`` and do not reuse the connection), so they are not compared.
``ANTHROPIC_RX_SOAK=1`` runs fifty times the examples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anthropic_rx._http11 import ResponseParser

SOAK = 50 if os.environ.get("ANTHROPIC_RX_SOAK") == "1" else 1
# httpcore's buffer limit for h11 (``MAX_INCOMPLETE_EVENT_SIZE``).
H11_MAX_INCOMPLETE = 100 * 1024

# Where h11 accepts and we refuse: (a fragment of our error message, why we refuse).
STRICTER: dict[str, tuple[str, str]] = {
    "http-version": (
        "unsupported HTTP version",
        "h11 takes any HTTP/d.d; only HTTP/1.0 and HTTP/1.1 responses are framed by RFC 9112",
    ),
    "te-and-cl": (
        "both transfer-encoding and content-length",
        "RFC 9112 §6.3: such a message ought to be handled as an error (a smuggling vector); "
        "h11 lets chunked win",
    ),
    "obs-fold": (
        "obsolete line folding",
        "RFC 9112 §5.2 lets a recipient refuse obs-fold; h11 unfolds it",
    ),
    "chunk-extension": (
        "invalid chunk extension",
        "a NUL or bare CR in a chunk extension; h11's ``;.*`` takes any byte but LF",
    ),
    "framing-trailer": (
        "in the trailers",
        "Content-Length or Transfer-Encoding as a trailer field (RFC 9110 §6.5.1 forbids "
        "framing fields there); h11 takes well-formed ones",
    ),
    "caps": (
        "too long",
        "heads and trailer sections over 64 KiB, chunk lines over 4 KiB; httpcore lets h11 "
        "buffer 100 KiB",
    ),
}

# Where h11 refuses and we accept: (the parser attribute that shows the case, why).
LENIENT: dict[str, tuple[str, str]] = {
    "bare-lf-chunk-lines": (
        "bare_lf",
        "a bare LF ending a chunk-size line or a chunk's data: RFC 9112 §2.2 lets a recipient "
        "take LF as a line end, the transport always has (as it does in heads, like h11); "
        "h11 requires CRLF there",
    ),
}


@dataclass(frozen=True)
class Outcome:
    """What a parser made of one input: accepted with its parts, or refused with a reason."""

    accepted: bool
    status: int = 0
    reason: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    trailers: tuple[tuple[bytes, bytes], ...] = ()
    error: str = field(default="", compare=False)


def normalized(fields: list[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """Fields as h11 hands them out: names lower-cased, one ``Content-Length``, TE lower-cased."""
    out: list[tuple[bytes, bytes]] = []
    seen_length = False
    for name, value in fields:
        lowered = name.lower()
        if lowered == b"content-length":
            if seen_length:
                continue
            seen_length = True
            value = value.split(b",")[0].strip()
        elif lowered == b"transfer-encoding":
            value = value.lower()
        out.append((lowered, value))
    return tuple(out)


def ours(pieces: list[bytes]) -> tuple[Outcome, ResponseParser]:
    parser = ResponseParser()
    parser.start()
    for piece in pieces:
        parser.feed(piece)
    parser.feed_eof()
    if parser.error is not None or not parser.complete or parser.head is None:
        return Outcome(False, error=str(parser.error)), parser
    head = parser.head
    outcome = Outcome(
        True,
        head.status,
        head.reason,
        normalized(head.headers),
        b"".join(parser.take()),
        normalized(parser.trailers),
    )
    return outcome, parser


def theirs(pieces: list[bytes]) -> Outcome:
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=H11_MAX_INCOMPLETE)
    connection.send(h11.Request(method="GET", target="/", headers=[("Host", "example.test")]))
    connection.send(h11.EndOfMessage())
    response: h11.Response | None = None
    body: list[bytes] = []
    try:
        for piece in [*pieces, b""]:  # the empty piece is the close
            connection.receive_data(piece)
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    break
                if isinstance(event, h11.Response):
                    response = event
                elif isinstance(event, h11.Data):
                    body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    assert response is not None
                    return Outcome(
                        True,
                        response.status_code,
                        bytes(response.reason),
                        tuple((bytes(n), bytes(v)) for n, v in response.headers),
                        b"".join(body),
                        tuple((bytes(n), bytes(v)) for n, v in event.headers),
                    )
                elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                    return Outcome(False, error=f"h11: {event!r} before the end")
                # InformationalResponse: skipped, as we skip it
    except h11.ProtocolError as exc:
        return Outcome(False, error=f"h11: {exc}")
    return Outcome(False, error="h11: no end")


def stricter_case(error: str) -> str | None:
    return next((name for name, (fragment, _) in STRICTER.items() if fragment in error), None)


def lenient_case(parser: ResponseParser) -> str | None:
    return next((name for name, (flag, _) in LENIENT.items() if getattr(parser, flag)), None)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def check(data: bytes, points: list[int]) -> tuple[str, str | None]:
    """Compares both parsers on ``data``, whole and cut at ``points``; the kind of outcome."""
    kinds: set[tuple[str, str | None]] = set()
    for pieces in ([data], cut(data, points)):
        mine, parser = ours(pieces)
        reference = theirs(pieces)
        if mine.accepted and reference.accepted:
            assert mine == reference, (data, mine, reference)
            kinds.add(("both accept", None))
        elif reference.accepted:
            case = stricter_case(mine.error)
            assert case is not None, (data, mine.error, reference)
            kinds.add(("stricter", case))
        elif mine.accepted:
            case = lenient_case(parser)
            assert case is not None, (data, mine, reference.error)
            kinds.add(("lenient", case))
        else:
            kinds.add(("both refuse", None))
    accepted_kinds = {kind for kind, _ in kinds}
    # Whether we accept never depends on how the bytes were cut.
    assert not (
        {"both accept", "lenient"} & accepted_kinds and {"stricter", "both refuse"} & accepted_kinds
    ), (data, points, kinds)
    return min(kinds, key=str)


# --- strategies --------------------------------------------------------------------------------

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"
NAMES = st.sampled_from(
    [b"Content-Type", b"x-request-id", b"Server", b"Cache-Control", b"set-cookie", b"X-A"]
) | st.text(TOKEN, min_size=1, max_size=8).map(str.encode)
VISIBLE = [*range(0x21, 0x7F), 0x80, 0xC3, 0xFF]
VALUES = st.lists(st.sampled_from([*VISIBLE, 0x20, 0x09]), max_size=16).map(
    lambda chars: bytes(chars).strip(b" \t")
)
FRAMINGS = [
    "length",
    "length",
    "chunked",
    "chunked",
    "chunked",
    "close",
    "length-list",
    "length-twice",
    "te-and-cl",
    "no-body-status",
]


@st.composite
def responses(draw: st.DrawFn) -> bytes:
    """A well-formed response: a status line, headers, framing and a matching body."""
    eol = draw(st.sampled_from([b"\r\n"] * 5 + [b"\n"]))  # a bare LF head, as both accept
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    framing = draw(st.sampled_from(FRAMINGS))
    status = draw(st.sampled_from([200, 201, 206, 404, 500, 599, 999]))
    if framing == "no-body-status":
        status = draw(st.sampled_from([204, 304]))
    reason = draw(st.sampled_from([b" OK", b"", b" ", b" Some Reason", b" tab\there"]))
    out = b""
    if draw(st.integers(0, 5)) == 0:
        out += draw(st.sampled_from([b"HTTP/1.1 100 Continue", b"HTTP/1.1 103 Hints"]))
        out += eol + b"Link: </a>" + eol + eol
    out += b"HTTP/" + version + b" %d" % status + reason + eol
    fields = draw(st.lists(st.tuples(NAMES, VALUES), max_size=4))
    fields = [
        (n, v) for n, v in fields if n.lower() not in (b"content-length", b"transfer-encoding")
    ]
    for value in draw(
        st.sampled_from([[], [b"close"], [b"keep-alive"], [b"keep-alive", b"close"]])
    ):
        fields.append((b"Connection", value))
    pieces = draw(st.lists(st.binary(max_size=24), max_size=4))
    content = b"".join(pieces)
    body = b""
    te = draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED", b" chunked\t"]))
    if framing in ("length", "no-body-status"):
        fields.append((b"Content-Length", b"%d" % len(content)))
        body = content
    elif framing == "length-list":
        fields.append((b"Content-Length", b"%d, %d" % (len(content), len(content))))
        body = content
    elif framing == "length-twice":
        fields += [(b"Content-Length", b"%d" % len(content))] * 2
        body = content
    elif framing in ("chunked", "te-and-cl"):
        fields.append((b"Transfer-Encoding", te))
        if framing == "te-and-cl":
            fields.append((b"Content-Length", b"%d" % len(content)))
        for piece in pieces:
            if piece:
                ext = draw(st.sampled_from([b"", b"", b";a=b", b";x", b';q="v v"', b" ", b";"]))
                body += b"%x" % len(piece) + ext + b"\r\n" + piece + b"\r\n"
        body += b"0\r\n"
        trailers = draw(st.lists(st.tuples(NAMES, VALUES), max_size=2))
        for name, value in trailers:
            if name.lower() not in (b"content-length", b"transfer-encoding"):
                body += name + b": " + value + b"\r\n"
        body += b"\r\n"
    else:  # until close
        body = content
    fields = draw(st.permutations(fields))
    separator = draw(st.sampled_from([b": ", b":", b":\t", b":  "]))
    for name, value in fields:
        out += name + separator + value + eol
    return out + eol + body


SPECIAL = [
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"0",
    b"a",
    b"\x0b",
    b"\xff",
    b"HTTP/1.1 ",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"\r\n\r\n",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A well-formed response with one to four byte-level mutations."""
    data = bytearray(draw(responses()))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "insert", "delete", "replace", "duplicate", "swap"]))
        position = draw(st.integers(0, len(data)))
        if op == "insert":
            data[position:position] = draw(
                st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=2)
            )
        elif op == "delete":
            del data[position : position + draw(st.integers(1, 3))]
        elif op == "replace" and position < len(data):
            data[position : position + 1] = draw(
                st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=1)
            )
        elif op == "duplicate":
            lines = bytes(data).split(b"\n")
            index = draw(st.integers(0, len(lines) - 1))
            lines.insert(index, lines[index])
            data = bytearray(b"\n".join(lines))
        elif op == "swap" and len(data) > 1:
            a, b = sorted(draw(st.lists(st.integers(0, len(data) - 1), min_size=2, max_size=2)))
            data[a], data[b] = data[b], data[a]
    return bytes(data)


CUTS = st.lists(st.integers(1, 400), max_size=8)


def examples(count: int) -> settings:
    return settings(
        max_examples=count * SOAK,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@examples(500)
@given(responses(), CUTS)
def test_well_formed_responses_agree_with_h11(data: bytes, points: list[int]) -> None:
    kind, case = check(data, points)
    assert kind in ("both accept", "stricter"), (data, kind)
    assert kind == "both accept" or case == "te-and-cl"


@examples(1500)
@given(mutated(), CUTS)
def test_mutated_responses_agree_with_h11(data: bytes, points: list[int]) -> None:
    check(data, points)


@examples(200)
@given(responses())
def test_responses_fed_one_byte_at_a_time_agree_with_h11(data: bytes) -> None:
    check(data, list(range(1, len(data))))


def test_the_documented_cases_happen() -> None:
    # Each exception is real: an input of its kind gets the documented outcome.
    ok = b"HTTP/1.1 200 OK\r\n"
    assert check(b"HTTP/1.2 200 OK\r\ncontent-length: 0\r\n\r\n", []) == (
        "stricter",
        "http-version",
    )
    te_cl = ok + b"transfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n0\r\n\r\n"
    assert check(te_cl, []) == ("stricter", "te-and-cl")
    assert check(ok + b"x: a\r\n b\r\ncontent-length: 0\r\n\r\n", []) == ("stricter", "obs-fold")
    chunked = ok + b"transfer-encoding: chunked\r\n\r\n"
    assert check(chunked + b"2;a\x00\r\nok\r\n0\r\n\r\n", []) == ("stricter", "chunk-extension")
    framing_trailer = chunked + b"0\r\ncontent-length: 5\r\n\r\n"
    assert check(framing_trailer, []) == ("stricter", "framing-trailer")
    big = ok + b"x: " + b"a" * 70_000 + b"\r\ncontent-length: 0\r\n\r\n"
    assert check(big, []) == ("stricter", "caps")
    assert check(chunked + b"2\nok\n0\r\n\r\n", []) == ("lenient", "bare-lf-chunk-lines")
    assert check(ok + b"content-length: 2\r\n\r\nok", [5, 9]) == ("both accept", None)
    assert check(ok + b"x : y\r\n\r\n", []) == ("both refuse", None)
