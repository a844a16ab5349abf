"""Coverage-guided fuzz targets run by ``test_fuzz_atheris.py`` in a child process.

``python -m tests.reliability._fuzz_targets TARGET [libFuzzer flags] CORPUS_DIR`` fuzzes one
target; a broken oracle raises, atheris writes the input to ``<artifact_prefix>crash-*`` and the
process exits non-zero. Targets: ``sse`` (decoder), ``http`` (response parser against h11),
``reducer`` (MessageBuilder against folding ``apply_event``, and ``parse_event``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Third-party code first, uninstrumented: coverage is wanted in the library only, and
# instrumenting pydantic, httpx and reactivex costs seconds at every start.
import aiostream  # noqa: F401
import atheris  # type: ignore[import-untyped]
import h11  # noqa: F401
import httpx  # noqa: F401
import pydantic  # noqa: F401
import reactivex  # noqa: F401

with atheris.instrument_imports():
    from anthropic_rx._events import parse_event
    from anthropic_rx._exceptions import ProtocolError
    from anthropic_rx._snapshot import MessageBuilder, apply_event
    from anthropic_rx._sse import SSEDecoder

from tests.test_http11_differential import check

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MAX_LINE = 64  # small, so the line limit is reached by short inputs


def _points(fdp: atheris.FuzzedDataProvider, size: int) -> list[int]:
    return [fdp.ConsumeIntInRange(0, size) for _ in range(fdp.ConsumeIntInRange(0, 8))]


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    cuts = sorted({p for p in points if 0 < p < len(data)})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _decode(pieces: list[bytes]) -> tuple[list[object], str | None]:
    decoder = SSEDecoder(max_line_bytes=MAX_LINE)
    frames: list[object] = []
    try:
        for piece in pieces:
            frames.extend(decoder.feed(piece))
        frames.extend(decoder.flush())
    except ProtocolError:
        return [], "ProtocolError"
    return frames, None


def sse(data: bytes) -> None:
    """Only ProtocolError; the same frames (or the same refusal) however the bytes are cut."""
    fdp = atheris.FuzzedDataProvider(data)
    points = _points(fdp, 4096)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = _decode([body])
    split = _decode(_cut(body, points))
    if whole != split:
        raise AssertionError(f"split changes the outcome: {body!r} cut at {points}")
    # Bounded: no frame holds more data than the input carried.
    for frame in whole[0]:
        if len(frame.data) > len(body):  # type: ignore[attr-defined]
            raise AssertionError(f"a frame larger than its input: {body!r}")


def http(data: bytes) -> None:
    """Only RemoteProtocolError, split-invariant, agreeing with h11 (the differential rules)."""
    fdp = atheris.FuzzedDataProvider(data)
    points = _points(fdp, 4096)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    check(body, points)  # raises AssertionError on a disagreement


def _events() -> list[bytes]:
    out: list[bytes] = []
    for path in sorted(FIXTURES.glob("*.sse")):
        out.extend(frame.data.encode() for frame in SSEDecoder().feed(path.read_bytes() + b"\n\n"))
    return out


POOL = _events()


def reducer(data: bytes) -> None:
    """MessageBuilder and a fold of apply_event: the same message or both a ProtocolError."""
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeBool():
        text = fdp.ConsumeBytes(fdp.remaining_bytes())
        with contextlib.suppress(ProtocolError):  # the one documented refusal
            parse_event(text)
        return
    events: list[Any] = []
    for _ in range(fdp.ConsumeIntInRange(0, 24)):
        raw = POOL[fdp.ConsumeIntInRange(0, len(POOL) - 1)]
        if fdp.ConsumeIntInRange(0, 7) == 0:  # an odd delta: a fuzzed field in a real event
            raw = raw.replace(b'"index":0', b'"index":%d' % fdp.ConsumeIntInRange(-2, 5))
            raw = raw.replace(b'"text":"', b'"text":"' + fdp.ConsumeBytes(4).hex().encode())
        try:
            events.append(parse_event(raw))
        except ProtocolError:
            continue
    builder = MessageBuilder()
    built: object
    try:
        for event in events:
            builder.feed(event)
        built = builder.message()
    except ProtocolError:
        built = ProtocolError
    folded: Any = None
    try:
        for event in events:
            folded = apply_event(folded, event)
    except ProtocolError:
        folded = ProtocolError
    if built != folded:
        raise AssertionError(f"builder {built!r} != fold {folded!r} for {events!r}")


def canary(data: bytes) -> None:
    """Fails on any input holding ``CANARY``: proves a crash reaches the test with its bytes."""
    if b"CANARY" in data:
        raise AssertionError("canary")


TARGETS: dict[str, Callable[[bytes], None]] = {
    "sse": sse,
    "http": http,
    "reducer": reducer,
    "canary": canary,
}

if __name__ == "__main__":
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
