"""Watch a tool call's input grow as it streams, then run the tool and send its result back.

``ops.tool_inputs()`` emits a ``ToolInput`` at the start of each tool call, at every JSON
fragment (parsed leniently: partial JSON never fails) and at its end (``complete=True``, parsed
strictly). The final message's content blocks are sent back as they are: pydantic models among
the parameters are sent as the API's JSON.

Fake API by default; ``--real`` (or ``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from reactivex import operators as rx_ops

import anthropic_rx as arx
from _cli import use_real_api
from anthropic_rx import operators as ops
from anthropic_rx import testing

MODEL = "claude-sonnet-4-5"
TOOLS = [
    {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "input_schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    }
]


def get_weather(city: str, unit: str = "celsius") -> str:
    return f"18 degrees {unit}, sunny in {city}"


def progress(call: ops.ToolInput) -> tuple[str, bool]:
    """What a new value must change to be shown (a fragment may end inside a string)."""
    return repr(call.input), call.complete


def plan(fake: testing.FakeAnthropic) -> None:
    first = (
        testing.Reply()
        .text("Let me look that up.")
        .tool_use("get_weather", {"city": "Paris", "unit": "celsius"}, fragment_size=5)
    )
    fake.add_stream(first, tokens_per_second=50)
    fake.add_stream(testing.text_reply("It is 18 degrees ", "and sunny in Paris."))


async def main(real: bool) -> None:
    fake = testing.FakeAnthropic()
    plan(fake)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What's the weather in Paris, in celsius?"}
    ]
    async with arx.Client() if real else fake.client() as client:
        events = client.stream(model=MODEL, max_tokens=1024, tools=TOOLS, messages=messages)
        shared = events.pipe(ops.raise_on_error(), rx_ops.share())
        calls = shared.pipe(ops.tool_inputs(), rx_ops.distinct_until_changed(progress))

        async def show_calls() -> None:
            async for call in arx.to_async_iterator(calls):
                state = "complete" if call.complete else "so far"
                print(f"{call.name} input {state}: {call.input}")

        _, message = await asyncio.gather(show_calls(), arx.final_message(shared))

        results = []
        for block in message.content:
            if isinstance(block, arx.ToolUseBlock) and block.name == "get_weather":
                result = get_weather(**block.input)
                print(f"ran get_weather -> {result}")
                results.append({"type": "tool_result", "tool_use_id": block.id, "content": result})
        if not results:
            print("no tool call in this reply")
            return
        messages += [
            {"role": "assistant", "content": message.content},  # sent as the API's JSON
            {"role": "user", "content": results},
        ]
        answer = await arx.final_message(
            client.stream(model=MODEL, max_tokens=1024, tools=TOOLS, messages=messages)
        )
        text = "".join(b.text for b in answer.content if isinstance(b, arx.TextBlock))
        print(f"answer: {text}")
    if not real:
        sent = fake.requests[-1].json["messages"][1]["content"][1]
        print(f"sent back: {sent['type']} {sent['input']}")


if __name__ == "__main__":
    asyncio.run(main(use_real_api(__doc__)))
