"""The embedded fake's answer: a paced reply of about 200 words that answers the question."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..testing import FakeResponse, RecordedRequest, Reply

__all__ = ["PacedAnswer", "answer_text"]

_WORD = re.compile(r"\S+\s*")

_BODY = (
    "This reply comes from the demo's embedded fake Anthropic API, so no API key is needed "
    "and nothing leaves this machine. It streams one word at a time, at a pace you can set "
    "with ANTHROPIC_RX_DEMO_TOKENS_PER_SECOND, so you can watch what a real reply does on its "
    "way to the page. Each word is an event of the Messages API stream. The server does not "
    "send it to you directly: a job publishes the reply on a broadcaster channel named after "
    "this conversation and saves it to the database at checkpoints, while this page follows "
    "the channel through an EventSource. Open the same conversation in a second tab and both "
    "show the same words at the same time from one request to the model. Reload the page in "
    "the middle of a reply and it replays what was said so far, then follows the rest. Press "
    "Stop and a cancel flag named after this reply ends it cleanly: the text so far is kept "
    "and the message is saved as cancelled, with its usage estimated. Restart the server and "
    "the conversation is still here, read back from the database. Set ANTHROPIC_API_KEY to "
    "talk to a real model instead, and ANTHROPIC_RX_REDIS_URL to share the channel and the "
    "flags through Redis. That is the whole demo: ask another question whenever you like."
)


def answer_text(question: str) -> str:
    """The reply's text for ``question`` (about 200 words)."""
    asked = " ".join(question.split())
    if len(asked) > 80:
        asked = asked[:77].rstrip() + "..."
    opening = f'You asked: "{asked}". ' if asked else ""
    return opening + _BODY


def _question(request: RecordedRequest) -> str:
    body = request.json if isinstance(request.json, dict) else {}
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    str(block.get("text", "")) for block in content if isinstance(block, dict)
                )
    return ""


@dataclass(frozen=True, slots=True)
class PacedAnswer:
    """A ``FakeAnthropic.default``: answers each request with :func:`answer_text`, one text
    delta per word at ``tokens_per_second``, with the request's model."""

    tokens_per_second: float

    def __call__(self, request: RecordedRequest) -> FakeResponse:
        body = request.json if isinstance(request.json, dict) else {}
        model = body.get("model")
        question = _question(request)
        words = _WORD.findall(answer_text(question))
        reply = (
            Reply(
                model=model if isinstance(model, str) else "claude-sonnet-4-5",
                input_tokens=max(len(question.split()), 1),
            )
            .text(*words)
            .stop("end_turn", output_tokens=len(words))
        )
        return FakeResponse.stream(reply, tokens_per_second=self.tokens_per_second)
