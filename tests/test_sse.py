"""The sans-IO SSE decoder against the WHATWG event-stream interpretation rules."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anthropic_rx import ProtocolError, ServerSentEvent, SSEDecoder
from tests.conftest import FIXTURE_FILES, fixture_bytes

BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes], *, max_line_bytes: int | None = None) -> list[ServerSentEvent]:
    """Every frame of a whole body fed as ``chunks``, flush included."""
    decoder = SSEDecoder() if max_line_bytes is None else SSEDecoder(max_line_bytes=max_line_bytes)
    frames: list[ServerSentEvent] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    frames.extend(decoder.flush())
    return frames


def feed_only(*chunks: bytes) -> list[ServerSentEvent]:
    """The frames ``feed`` returns, without a flush at the end."""
    decoder = SSEDecoder()
    frames: list[ServerSentEvent] = []
    for chunk in chunks:
        frames.extend(decoder.feed(chunk))
    return frames


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def sse(
    data: str, event: str = "message", id: str | None = None, retry: int | None = None
) -> ServerSentEvent:
    return ServerSentEvent(event=event, data=data, id=id, retry=retry)


# --- fields ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "data"),
    [
        (b"data: x\n\n", "x"),
        (b"data:x\n\n", "x"),
        (b"data:  x\n\n", " x"),
        (b"data: x \n\n", "x "),
        (b"data:\tx\n\n", "\tx"),
        (b"data: a:b: c\n\n", "a:b: c"),
        (b"data::\n\n", ":"),
    ],
)
def test_field_value_after_colon_and_one_optional_space(stream: bytes, data: str) -> None:
    assert feed_only(stream) == [sse(data)]


def test_data_lines_join_with_lf() -> None:
    assert feed_only(b"data: a\ndata: b\ndata\n\n") == [sse("a\nb\n")]
    assert feed_only(b"data\ndata\n\n") == [sse("\n")]


@pytest.mark.parametrize("stream", [b"data:\n\n", b"data: \n\n", b"data\n\n"])
def test_empty_data_value_dispatches_empty_string(stream: bytes) -> None:
    assert feed_only(stream) == [sse("")]


def test_field_without_colon_takes_the_whole_line_as_name() -> None:
    # "event" alone sets an empty type, which means "message".
    assert feed_only(b"event: a\nevent\ndata: x\n\n") == [sse("x")]
    # "data " (with a space) is not "data".
    assert feed_only(b"data \ndata :x\n\n") == []


@pytest.mark.parametrize(
    "stream",
    [b"event: a\n\n", b"id: 1\n\n", b"retry: 5\n\n", b"event: a\nid: 1\nretry: 5\n\n", b"\n\n\n"],
)
def test_frame_without_data_is_not_dispatched(stream: bytes) -> None:
    assert feed_only(stream) == []
    assert decode([stream]) == []


def test_event_type_defaults_to_message_and_resets_after_dispatch() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\nevent: b\nevent: c\ndata: 3\n\n"
    assert feed_only(stream) == [sse("1", "a"), sse("2"), sse("3", "c")]


def test_event_type_resets_at_blank_line_even_without_dispatch() -> None:
    assert feed_only(b"event: a\n\ndata: x\n\n") == [sse("x")]


def test_id_persists_across_events() -> None:
    stream = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\nid: 3\n\ndata: d\n\n"
    assert feed_only(stream) == [
        sse("a", id="1"),
        sse("b", id="1"),
        sse("c", id="2"),
        sse("d", id="3"),
    ]


def test_empty_id_resets_the_last_event_id() -> None:
    assert feed_only(b"id: 1\ndata: a\n\nid\ndata: b\n\n") == [sse("a", id="1"), sse("b", id="")]


def test_id_containing_nul_is_ignored() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid: \x00\ndata: c\n\n"
    assert feed_only(stream) == [sse("a", id="1"), sse("b", id="1"), sse("c", id="1")]


def test_retry_with_ascii_digits() -> None:
    assert feed_only(b"retry: 3000\ndata: x\n\n") == [sse("x", retry=3000)]
    assert feed_only(b"retry:0\ndata: x\n\n") == [sse("x", retry=0)]


def test_retry_is_reported_on_its_own_frame_only() -> None:
    assert feed_only(b"retry: 5\ndata: a\n\ndata: b\n\n") == [sse("a", retry=5), sse("b")]


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"-1",
        b"+1",
        b"1.5",
        b"30a",
        b" 5",
        b"5 ",
        b"1e3",
        "\u00b2".encode(),  # superscript two: a digit to str.isdigit, not ASCII
        "\u0661\u0662".encode(),  # Arabic-Indic digits
        "\uff15".encode(),  # fullwidth five
    ],
)
def test_retry_without_only_ascii_digits_is_ignored(value: bytes) -> None:
    assert feed_only(b"retry: " + value + b"\ndata: x\n\n") == [sse("x")]


def test_comments_are_ignored() -> None:
    stream = b": hello\ndata: a\n:\n: data: b\ndata: c\n\n: ping\n\n:\n\n"
    assert feed_only(stream) == [sse("a\nc")]


def test_unknown_fields_are_ignored() -> None:
    stream = b"foo: bar\nDATA: no\nData: no\ndat: no\n\xc3\xa9: no\ndata: x\nbar\n\n"
    assert feed_only(stream) == [sse("x")]


def test_empty_chunk_returns_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: x\n") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n") == [sse("x")]


def test_max_line_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        SSEDecoder(max_line_bytes=0)


# --- line ends -------------------------------------------------------------------------------

LINES = ["event: a", "id: 7", "data: 1", "data: 2", "", ": c", "data: 3", "", "retry: 9", ""]
EXPECTED = [sse("1\n2", "a", "7"), sse("3", id="7")]


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"])
def test_every_line_end_style(end: str) -> None:
    stream = "".join(line + end for line in LINES).encode()
    assert feed_only(stream) == EXPECTED
    assert decode(bytewise(stream)) == EXPECTED


def test_mixed_line_ends() -> None:
    assert feed_only(b"data: a\rdata: b\r\ndata: c\n\r\n") == [sse("a\nb\nc")]
    assert feed_only(b"data: a\n\rdata: b\r\rdata: c\r\n\n") == [sse("a"), sse("b"), sse("c")]


def test_lf_cr_is_two_line_ends() -> None:
    # "\n\r" is a line end then another (a blank line), never a CRLF.
    assert feed_only(b"data: a\n\r") == [sse("a")]


def test_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end() -> None:
    assert feed_only(b"data: x\r", b"\ndata: y\n\n") == [sse("x\ny")]
    assert feed_only(b"data: x\r", b"\n", b"data: y\r", b"\n", b"\r\n") == [sse("x\ny")]


def test_cr_then_lf_alone_then_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n") == []  # only completes the CRLF
    assert decoder.feed(b"\n") == [sse("x")]


def test_cr_ending_a_chunk_and_cr_starting_the_next_are_two_line_ends() -> None:
    assert feed_only(b"data: x\r", b"\r") == [sse("x")]


def test_lf_is_skipped_only_right_after_the_cr() -> None:
    assert feed_only(b"data: x\r", b"data: y\n", b"\n") == [sse("x\ny")]
    assert feed_only(b"data: x\r", b"data: y\r", b"\n\n") == [sse("x\ny")]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1e"])
def test_unicode_line_breaks_are_not_sse_line_ends(separator: str) -> None:
    text = f'{{"text": "a{separator}b{separator}"}}'
    stream = f"data: {text}\nid: {separator}\n\n".encode()
    assert feed_only(stream) == [sse(text, id=separator)]
    assert decode(bytewise(stream)) == [sse(text, id=separator)]


# --- BOM, UTF-8 ------------------------------------------------------------------------------


def test_leading_bom_is_stripped() -> None:
    assert feed_only(BOM + b"data: x\n\n") == [sse("x")]


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
def test_leading_bom_split_across_chunks_is_stripped(cut: int) -> None:
    stream = BOM + b"data: x\n\n"
    assert feed_only(stream[:cut], stream[cut:]) == [sse("x")]
    assert decode(bytewise(stream)) == [sse("x")]


def test_bom_fed_alone_then_stream() -> None:
    assert feed_only(b"\xef", b"\xbb", b"\xbf", b"data: x\n\n") == [sse("x")]
    assert feed_only(BOM, b"data: x\n\n") == [sse("x")]


def test_only_one_bom_is_stripped() -> None:
    # The second BOM becomes part of the field name, which is then unknown.
    assert feed_only(BOM + BOM + b"data: x\n\n") == []
    assert feed_only(BOM + BOM + b"\ndata: x\n\n") == [sse("x")]  # a line of an unknown field
    assert decode(bytewise(BOM + BOM + b"data: x\n\n")) == []


def test_bom_after_the_start_is_not_stripped() -> None:
    assert feed_only(b"data: a\n\n" + BOM + b"data: b\n\n") == [sse("a")]
    assert feed_only(b"data: " + BOM + b"x\n\n") == [sse("\ufeffx")]


def test_short_first_chunks_that_are_not_a_bom_are_kept() -> None:
    assert feed_only(b"d", b"ata: x\n\n") == [sse("x")]
    with pytest.raises(ProtocolError, match=r"offset 0\b"):
        feed_only(b"\xef\xbb", b"x\n")


@pytest.mark.parametrize("text", ["é", "中文", "😀", "\U0001f9d1\u200d\U0001f4bb", "a\u2028é😀z"])
def test_multibyte_characters_split_across_chunks_survive(text: str) -> None:
    stream = f"event: é\ndata: {text}\nid: {text}\n\n".encode()
    expected = [sse(text, "é", text)]
    assert decode(bytewise(stream)) == expected
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]]) == expected


@pytest.mark.parametrize(
    ("chunks", "offset"),
    [
        ([b"id: \xff\n"], 4),
        ([b"foo: \xc3(\n"], 5),
        ([b"data: ok\n\nid: a\xc3(\n"], 15),
        ([b"data: ok\n\n", b"id: a", b"\xc3(\n"], 15),
        ([b"data: ok\n", b"\n", b"id: a\xc3", b"(\n"], 15),
        ([BOM + b"id: \xff\n"], 7),
        ([b"\xef", b"\xbb\xbfid: \xff\n"], 7),
        ([b"id: 1\r", b"\nid: \xff\n"], 11),
        ([b"id: 1\r\nid: \xff\n"], 11),
        ([b"\xff\n"], 0),
        ([b"\n\n\x80\n"], 2),
        ([b"id: \xc3"], 4),  # truncated at the end of the body: found by flush
        ([b"id: \xed\xa0\x80\n"], 4),  # an encoded surrogate is not UTF-8
        ([b"id: \xc0\xaf\n"], 4),  # an overlong encoding is not UTF-8
    ],
)
def test_invalid_utf8_raises_protocol_error_naming_the_byte_offset(
    chunks: list[bytes], offset: int
) -> None:
    with pytest.raises(ProtocolError, match=rf"invalid UTF-8.*\boffset {offset}\b"):
        decode(chunks)


@pytest.mark.parametrize(
    ("stream", "offset"),
    [
        (b"data: \xff\n\n", 6),
        (b"data:\xff\n\n", 5),
        (b"data: ok\n\ndata: a\xff\n\n", 17),
        (b"event: \xff\n\n", 7),
        (b"event: a\ndata: b\n\nevent: c\ndata: \xff\n\n", 33),
    ],
)
def test_invalid_utf8_offset_inside_data_or_event_value(stream: bytes, offset: int) -> None:
    with pytest.raises(ProtocolError, match=rf"\boffset {offset}\b"):
        decode([stream])
    with pytest.raises(ProtocolError, match=rf"\boffset {offset}\b"):
        decode(bytewise(stream))


def test_invalid_utf8_offset_when_an_earlier_line_holds_the_same_bytes() -> None:
    # "data: é" is b"data: \xc3\xa9"; the next line is the lone continuation byte b"\xa9",
    # at offset 9, while b"\xa9" first occurs at offset 7.
    with pytest.raises(ProtocolError, match=r"\boffset 9\b"):
        decode([b"data: \xc3\xa9\n\xa9\n"])


def test_protocol_error_is_a_value_error_from_the_unicode_error() -> None:
    with pytest.raises(ValueError, match="invalid UTF-8") as info:
        decode([b"id: \xff\n"])
    assert isinstance(info.value, ProtocolError)
    assert isinstance(info.value.__cause__, UnicodeDecodeError)


# --- line size cap ---------------------------------------------------------------------------


def test_line_at_the_cap_is_accepted() -> None:
    assert decode([b"data: 12\n\n"], max_line_bytes=8) == [sse("12")]
    assert decode(bytewise(b"data: 12\r\n\r\n"), max_line_bytes=8) == [sse("12")]
    assert decode([b"data: 12"], max_line_bytes=8) == [sse("12")]


@pytest.mark.parametrize("end", [b"\n", b"\r", b"\r\n"])
def test_complete_line_over_the_cap_raises(end: bytes) -> None:
    decoder = SSEDecoder(max_line_bytes=8)
    with pytest.raises(ProtocolError, match="longer than 8 bytes"):
        decoder.feed(b"data: 123" + end)


def test_complete_line_over_the_cap_after_other_lines_names_its_offset() -> None:
    decoder = SSEDecoder(max_line_bytes=8)
    assert decoder.feed(b"data: 1\n\n") == [sse("1")]
    with pytest.raises(ProtocolError, match=r"longer than 8 bytes at byte offset 9\b"):
        decoder.feed(b"data: 1234\n")


def test_unterminated_line_over_the_cap_raises_at_once() -> None:
    decoder = SSEDecoder(max_line_bytes=8)
    with pytest.raises(ProtocolError, match=r"longer than 8 bytes at byte offset 0\b"):
        decoder.feed(b"data: 123")


@pytest.mark.parametrize("cap", [1, 8, 100])
def test_buffer_never_grows_beyond_the_cap(cap: int) -> None:
    decoder = SSEDecoder(max_line_bytes=cap)
    for _ in range(cap):
        assert decoder.feed(b"x") == []
    with pytest.raises(ProtocolError, match=f"longer than {cap} bytes"):
        decoder.feed(b"x")


def test_huge_chunk_without_line_end_raises_instead_of_buffering() -> None:
    decoder = SSEDecoder(max_line_bytes=1024)
    assert decoder.feed(b"data: a\n\ndata: ") == [sse("a")]
    with pytest.raises(ProtocolError, match=r"longer than 1024 bytes at byte offset 9\b"):
        decoder.feed(b"x" * 1_000_000)


# --- flush -----------------------------------------------------------------------------------


def test_flush_on_nothing_returns_nothing() -> None:
    assert SSEDecoder().flush() == []


@pytest.mark.parametrize(
    "stream", [b"data: x\n\n", b"data: x\n\n\n", b": c\n", b": c", b"event: a\n", b"event: a"]
)
def test_flush_after_complete_frames_returns_nothing_more(stream: bytes) -> None:
    decoder = SSEDecoder()
    decoder.feed(stream)
    assert decoder.flush() == []


@pytest.mark.parametrize(
    "stream", [b"data: x\n", b"data: x\r", b"data: x\r\n", b"data: x", b"data: x\r\n: c"]
)
def test_flush_dispatches_event_lacking_its_blank_line(stream: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(stream) == []
    assert decoder.flush() == [sse("x")]


def test_flush_processes_unterminated_last_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: e\nid: 4\ndata: a\ndata: b") == []
    assert decoder.flush() == [sse("a\nb", "e", "4")]


def test_flush_resets_the_decoder_for_a_new_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: e\ndata: a") == []
    assert decoder.flush() == [sse("a", "e")]
    assert decoder.feed(BOM + b"data: b\n\n") == [sse("b")]
    assert decoder.flush() == []


# --- fixtures at every chunking ----------------------------------------------------------------


def _line_ends(data: bytes, end: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", end)


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("name", [path.name for path in FIXTURE_FILES])
def test_fixture_gives_the_same_frames_at_every_split(name: str, end: bytes) -> None:
    data = _line_ends(fixture_bytes(name), end)
    whole = decode([data])
    assert whole
    for frame in whole:
        assert json.loads(frame.data)["type"] == frame.event
    assert decode(bytewise(data)) == whole
    for cut in range(len(data) + 1):
        assert decode([data[:cut], data[cut:]]) == whole, f"split at byte {cut}"


@pytest.mark.parametrize("name", [path.name for path in FIXTURE_FILES])
def test_fixture_line_end_style_does_not_change_frames(name: str) -> None:
    data = fixture_bytes(name)
    whole = decode([data])
    assert decode([_line_ends(data, b"\r\n")]) == whole
    assert decode([_line_ends(data, b"\r")]) == whole
    assert decode([BOM + data]) == whole


# --- properties --------------------------------------------------------------------------------


def reference(stream: bytes) -> list[ServerSentEvent]:
    """The WHATWG interpretation, written plainly on the decoded text, with flush at the end."""
    text = stream.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    frames: list[ServerSentEvent] = []
    event, data = "", list[str]()
    last_id: str | None = None
    retry: int | None = None
    for line in [*re.split("\r\n|\r|\n", text), ""]:
        if line == "":
            if data:
                frames.append(ServerSentEvent(event or "message", "\n".join(data), last_id, retry))
                retry = None
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\x00" not in value:
            last_id = value
        elif name == "retry" and re.fullmatch("[0-9]+", value):
            retry = int(value)
    return frames


_VALUES = st.text(
    st.one_of(
        st.characters(codec="utf-8", exclude_characters="\r\n"),
        st.sampled_from(["\u2028", "\u2029", "\x85", "\x00", "\ufeff", ":", " ", "é", "😀"]),
    ),
    max_size=8,
)
_NAMES = ["data", "data", "data", "event", "id", "", "foo", "dat", "Data", "data "]


@st.composite
def _line(draw: st.DrawFn, *, retry: bool) -> str:
    """One field or comment line, never blank (``retry`` only where the frame has data)."""
    name = draw(st.sampled_from(["retry", *_NAMES] if retry else _NAMES))
    if name == "retry":
        value = draw(st.one_of(st.from_regex(r"\A[0-9]{1,5}\Z"), _VALUES))
    else:
        value = draw(_VALUES)
    separator = draw(st.sampled_from([":", ": ", ":  ", ""]))
    if not name:
        return ":" + value
    return name if not separator else f"{name}{separator}{value}"


@st.composite
def _frame(draw: st.DrawFn) -> list[str]:
    if draw(st.integers(0, 2)) == 0:  # the shape of every Anthropic event
        space = draw(st.sampled_from(["", " "]))
        return [f"event:{space}{draw(_VALUES)}", f"data:{space}{draw(_VALUES)}"]
    has_data = draw(st.booleans())
    lines = draw(st.lists(_line(retry=has_data), max_size=5))
    if has_data:
        lines.insert(draw(st.integers(0, len(lines))), "data:" + draw(_VALUES))
    return lines


@st.composite
def sse_bytes(draw: st.DrawFn) -> bytes:
    """A valid SSE body: frames of random fields, comments and line ends, maybe a BOM."""
    frames = draw(st.lists(_frame(), max_size=6))
    style = draw(st.sampled_from(["\n", "\r", "\r\n", "mixed"]))

    def end() -> str:
        return draw(st.sampled_from(["\n", "\r", "\r\n"])) if style == "mixed" else style

    parts = ["\ufeff"] if draw(st.booleans()) else []
    for lines in frames:
        for line in lines:
            parts.append(line + end())
        parts.append(end())
    match draw(st.sampled_from(["closed", "no blank line", "no line end"])):
        case "no blank line" if parts:
            parts.pop()
        case "no line end" if len(parts) > 1:
            parts.pop()
            parts[-1] = parts[-1].rstrip("\r\n")
    return "".join(parts).encode()


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=16)))
    points = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300)
@given(st.data())
def test_random_chunkings_of_valid_streams_give_the_same_frames(data: st.DataObject) -> None:
    stream = data.draw(sse_bytes())
    whole = decode([stream])
    assert whole == reference(stream)
    assert decode(data.draw(chunkings(stream))) == whole


@settings(max_examples=300)
@given(st.data())
def test_random_bytes_raise_only_protocol_error(data: st.DataObject) -> None:
    token = st.sampled_from(
        [
            *(b"data:", b"data: ", b"event:", b"id:", b"retry:", b":", b"\r", b"\n", b"\r\n"),
            *(BOM, b"\xff", b"\xc3", b"\xa9", b"\xe2\x80", b"\xf0\x9f\x98", b"\x00", b"1", b"x"),
        ]
    )
    stream = data.draw(
        st.one_of(st.binary(max_size=64), st.lists(token, max_size=24).map(b"".join))
    )
    cap = data.draw(st.sampled_from([None, 1, 4, 16]))
    chunks = data.draw(chunkings(stream))
    outcomes = []
    for pieces in (chunks, [stream]):
        try:
            frames: Sequence[ServerSentEvent] | None = decode(pieces, max_line_bytes=cap)
        except ProtocolError:
            frames = None
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            pytest.fail(f"{type(exc).__name__} escaped the decoder: {exc!r}")
        outcomes.append(frames)
    # Whether the body is acceptable does not depend on how it was cut.
    assert outcomes[0] == outcomes[1]
    if cap is None:
        try:
            expected: list[ServerSentEvent] | None = reference(stream)
        except UnicodeDecodeError:
            expected = None
        assert outcomes[0] == expected


def test_a_frame_named_error_is_dispatched_even_without_data() -> None:
    # WHATWG drops frames without data; an error must never be taken for silence.
    decoder = SSEDecoder()
    assert decoder.feed(b"event: error\n\nevent: other\n\n") == [ServerSentEvent("error", "")]
