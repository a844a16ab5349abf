"""Generated Anthropic Messages API streams, as the bytes the API sends.

Every stream is deterministic (a fixed seed per name), so each contender, each repeat and the
loopback server all read the same bytes. Names:

- ``short``: a short text reply (30 deltas), the typical chat turn;
- ``text-N``: one text block of N ``text_delta`` events of realistic small words;
- ``tool-N``: a short text block, then a ``tool_use`` block whose input arrives in N
  ``input_json_delta`` fragments;
- ``thinking-N``: a ``thinking`` block of N ``thinking_delta`` events and its signature, then a
  text block of N/10 deltas.

Each stream has one ``ping`` after the first block start, as the API sends.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass

__all__ = ["Stream", "chunked", "frame", "generate", "parse_name"]

_WORD_LIST = (
    "the of and to in is that it for as with was on be by this are at from or an have not "
    "but which one all were can more when there so what about if out would up into has some "
    "time than only its could these two first then may like also after other most new over "
    "stream event reply model token delta message Python function value result server client "
    "however because example between without through during before several important"
)
_WORDS = _WORD_LIST.split()
_ODD = ("é", "—", "…", "“quoted”", "naïve", "日本語", "🙂", '"', "\\", "\t", "ß", "€")
_PUNCT = (",", ".", ";", ":", "!", "?")


@dataclass(frozen=True, slots=True)
class Stream:
    """One generated stream.

    Attributes:
        name: e.g. ``text-10000``.
        body: the SSE bytes of the whole reply.
        events: how many SSE events it holds (pings included).
        deltas: how many ``content_block_delta`` events it holds.
        text: the concatenated text of its text blocks (to check results).
    """

    name: str
    body: bytes
    events: int
    deltas: int
    text: str


def parse_name(name: str) -> tuple[str, int]:
    """``"text-1000"`` → ``("text", 1000)``; ``"short"`` → ``("text", 30)``."""
    if name == "short":
        return "text", 30
    kind, _, size = name.partition("-")
    if kind not in ("text", "tool", "thinking") or not size.isdigit():
        raise ValueError(f"unknown stream {name!r}")
    return kind, int(size)


def frame(payload: dict[str, object]) -> bytes:
    """One SSE event of the API: ``event: <type>`` and its JSON ``data`` line."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {payload['type']}\ndata: {data}\n\n".encode()


def _pieces(rng: random.Random, count: int) -> list[str]:
    """``count`` text pieces of one to three words, as a model's tokens come."""
    pieces = []
    for i in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        piece = " " + " ".join(words)
        roll = rng.random()
        if roll < 0.08:
            piece += rng.choice(_PUNCT)
        elif roll < 0.10:
            piece += "\n\n" if i % 2 else "\n"
        elif roll < 0.12:
            piece += " " + rng.choice(_ODD)
        pieces.append(piece)
    return pieces


def _tool_json(rng: random.Random, fragments: int) -> list[str]:
    """A JSON object cut into ``fragments`` pieces of 3 to 12 characters."""
    target = fragments * 8
    rows = []
    size = 0
    while size < target:
        row = {
            "id": len(rows) + 1,
            "city": rng.choice(("Paris", "Zürich", "Oslo", "Lagos", "Lima", "Kyoto")),
            "note": " ".join(rng.choice(_WORDS) for _ in range(4)),
            "ok": rng.random() < 0.5,
            "score": round(rng.random() * 100, 2),
        }
        rows.append(row)
        size += len(json.dumps(row, ensure_ascii=False)) + 1
    text = json.dumps({"query": "weather report", "rows": rows}, ensure_ascii=False)
    cuts = sorted(rng.sample(range(1, len(text)), fragments - 1))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def _message_start(name: str, rng: random.Random) -> dict[str, object]:
    return {
        "type": "message_start",
        "message": {
            "id": f"msg_bench{rng.getrandbits(64):016x}",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-5-5",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 25,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
                "service_tier": "standard",
            },
        },
    }


@functools.cache
def generate(name: str) -> Stream:
    """The stream called ``name`` (cached: generating 100k deltas takes a moment)."""
    kind, size = parse_name(name)
    rng = random.Random(f"anthropic-rx-bench:{name}")
    frames: list[bytes] = [frame(_message_start(name, rng))]
    text_parts: list[str] = []
    deltas = 0
    index = 0
    stop_reason = "end_turn"

    def block(start: dict[str, object], delta_kind: str, field: str, pieces: list[str]) -> None:
        nonlocal index, deltas
        frames.append(frame({"type": "content_block_start", "index": index, **start}))
        if index == 0:
            frames.append(frame({"type": "ping"}))
        for piece in pieces:
            delta = {"type": delta_kind, field: piece}
            frames.append(frame({"type": "content_block_delta", "index": index, "delta": delta}))
        deltas += len(pieces)

    def stop_block() -> None:
        nonlocal index
        frames.append(frame({"type": "content_block_stop", "index": index}))
        index += 1

    if kind == "thinking":
        block(
            {"content_block": {"type": "thinking", "thinking": "", "signature": ""}},
            "thinking_delta",
            "thinking",
            _pieces(rng, size),
        )
        signature = {"type": "signature_delta", "signature": "Eq" + "A" * 340 + "=="}
        frames.append(frame({"type": "content_block_delta", "index": index, "delta": signature}))
        deltas += 1
        stop_block()
    text_count = {"text": size, "tool": 5, "thinking": max(1, size // 10)}[kind]
    pieces = _pieces(rng, text_count)
    block({"content_block": {"type": "text", "text": ""}}, "text_delta", "text", pieces)
    text_parts.extend(pieces)
    stop_block()
    if kind == "tool":
        block(
            {
                "content_block": {
                    "type": "tool_use",
                    "id": f"toolu_bench{rng.getrandbits(48):012x}",
                    "name": "get_weather",
                    "input": {},
                }
            },
            "input_json_delta",
            "partial_json",
            _tool_json(rng, size),
        )
        stop_block()
        stop_reason = "tool_use"
    frames.append(
        frame(
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": deltas + 1},
            }
        )
    )
    frames.append(frame({"type": "message_stop"}))
    return Stream(name, b"".join(frames), len(frames), deltas, "".join(text_parts))


def chunked(body: bytes, size: int = 4096) -> list[bytes]:
    """``body`` cut into chunks of ``size`` bytes, as a socket hands them over."""
    return [body[i : i + size] for i in range(0, len(body), size)]
