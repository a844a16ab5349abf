"""Stream a reply to the browser as Server-Sent Events, from a FastAPI app.

``POST /chat`` with a JSON body ``{"prompt": "..."}`` answers with
``sinks.sse_response(client.stream(...), format="text")``: one ``data: {"text": ...}`` frame per
text delta, then exactly one terminal frame (``event: done``, ``cancelled`` or ``error``).
``GET /chat?prompt=...`` answers the same for ``EventSource``, which can only send a GET.
``GET /`` is a small page that reads the stream both ways: with ``EventSource`` on the GET
route, and with ``fetch`` and a ``ReadableStream`` reader, parsing the ``data:`` lines, on the
POST route. A browser that leaves (a closed tab, ``source.close()``, an aborted ``fetch``)
closes the request to the model.

Run as is, it starts uvicorn on a free port of 127.0.0.1 in this process, asks itself over HTTP
with httpx, prints the frames it read and exits. With ``--serve`` it serves
http://127.0.0.1:8001 until Ctrl-C, for a browser. Needs FastAPI beside the ``web`` extra
(``pip install fastapi ".[web]"``).

Fake API by default (it answers "You said: ..." word by word); ``--real`` (or
``ANTHROPIC_RX_REAL=1``) uses ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import HTMLResponse, Response

import anthropic_rx as arx
from _cli import arguments
from anthropic_rx import sinks, testing

MODEL = "claude-sonnet-4-5"
SERVE_PORT = 8001

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>anthropic-rx: streaming to the browser</title>
<link rel="icon" href="data:,">
<form id="ask">
  <input id="prompt" value="Tell me a short story." size="50" aria-label="prompt">
  <button value="eventsource">EventSource (GET)</button>
  <button value="fetch">fetch (POST)</button>
</form>
<pre id="output" style="white-space: pre-wrap"></pre>
<p id="state"></p>
<script>
const output = document.getElementById("output");
const state = document.getElementById("state");

function ended(event, data) {
  state.textContent = event === "error" ? "error: " + data.message : event;
}

// GET: EventSource. The server's own `event: error` frame arrives at the same "error"
// listener as a dropped connection: a MessageEvent is the server's.
function withEventSource(prompt) {
  const source = new EventSource("/chat?prompt=" + encodeURIComponent(prompt));
  source.onmessage = (e) => { output.textContent += JSON.parse(e.data).text; };  // text, never HTML
  for (const name of ["done", "cancelled"]) {
    source.addEventListener(name, (e) => { source.close(); ended(name, JSON.parse(e.data)); });
  }
  source.addEventListener("error", (e) => {
    if (e instanceof MessageEvent) { source.close(); ended("error", JSON.parse(e.data)); }
    // Otherwise the connection dropped: EventSource reconnects with Last-Event-ID, which the
    // direct route answers with 204 (no second generation), and that ends it.
  });
}

// POST: fetch and a reader. A frame ends at a blank line; its data is JSON on one line.
async function withFetch(prompt) {
  const response = await fetch("/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt }),
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replaceAll("\\r\\n", "\\n");
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message", data = "";
      for (const line of frame.split("\\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data = line.slice(6);
      }
      if (!data) continue;  // the retry line or a ping comment
      if (event === "message") output.textContent += JSON.parse(data).text;
      else ended(event, JSON.parse(data));  // done, cancelled or error
    }
  }
}

document.getElementById("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  output.textContent = "";
  state.textContent = "streaming...";
  const prompt = document.getElementById("prompt").value;
  if (e.submitter.value === "eventsource") withEventSource(prompt);
  else withFetch(prompt).catch((error) => ended("error", { message: String(error) }));
});
</script>
</html>
"""


class Chat(BaseModel):
    prompt: str


def create_app(client: arx.Client) -> FastAPI:
    """The app: the page, and the same reply for a POST (fetch) and a GET (EventSource)."""
    app = FastAPI()

    def reply(prompt: str) -> Response:
        events = client.stream(
            model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": prompt}]
        )
        # Errors (even an HTTP 529 before the first event) become an `event: error` frame in
        # a 200 response, the only kind an EventSource reads.
        return sinks.sse_response(events, format="text")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/chat")
    async def chat(body: Chat) -> Response:
        return reply(body.prompt)

    @app.get("/chat")
    async def chat_for_event_source(prompt: str = "Hello") -> Response:
        return reply(prompt)

    return app


async def sse_frames(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """``(event, data)`` of each frame with data; the retry line and pings carry none."""
    event, data = "message", ""
    async for line in response.aiter_lines():
        if line == "":  # a blank line ends a frame
            if data:
                yield event, json.loads(data)
            event, data = "message", ""
        elif line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")


async def read_reply(response: httpx.Response) -> tuple[str, list[tuple[str, Any]]]:
    """The text of the reply, and every frame read."""
    frames = [frame async for frame in sse_frames(response)]
    text = "".join(data["text"] for event, data in frames if event == "message")
    return text, frames


async def ask_myself(base_url: str, prompt: str) -> None:
    """What a browser does, over real HTTP: load the page, POST a prompt, GET it again."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        page = await http.get("/")
        reads_both = "new EventSource(" in page.text and ".getReader()" in page.text
        print(f"GET /: {page.status_code} {page.headers['content-type']}")
        print(f"page reads the stream with EventSource and a fetch reader: {reads_both}")

        async with http.stream("POST", "/chat", json={"prompt": prompt}) as response:
            print(f"POST /chat: {response.status_code} {response.headers['content-type']}")
            text, frames = await read_reply(response)
        texts = sum(1 for event, _ in frames if event == "message")
        ends = [event for event, _ in frames if event != "message"]
        print(f"frames: {texts} text frames then {' '.join(ends)}")
        print(f"text: {text}")
        print(f"stop reason: {frames[-1][1]['stop_reason']}")

        async with http.stream("GET", "/chat", params={"prompt": prompt}) as response:
            again, _ = await read_reply(response)
        print(f"GET /chat?prompt=... (EventSource's route), same text: {again == text}")


async def main(real: bool, serve: bool) -> None:
    # The fake answers any prompt with "You said: <prompt>", paced for a browser when serving.
    fake = testing.FakeAnthropic(default=testing.Echo(tokens_per_second=15 if serve else 500))
    client = arx.Client() if real else fake.client()
    async with client:
        app = create_app(client)
        if serve:
            config = uvicorn.Config(app, host="127.0.0.1", port=SERVE_PORT)
            await uvicorn.Server(config).serve()
            return
        # A socket bound to port 0 gets a free port; uvicorn serves on it in this process.
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            serving = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                async with asyncio.timeout(10):
                    while not server.started:
                        if serving.done():  # it failed to start: show why
                            await serving
                        await asyncio.sleep(0.01)
                    await ask_myself(f"http://127.0.0.1:{port}", "Tell me a short story.")
            finally:
                server.should_exit = True
                await serving
    if not real:
        print(f"requests to the model: {len(fake.requests)}")


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument(
        "--serve", action="store_true", help=f"serve http://127.0.0.1:{SERVE_PORT} for a browser"
    )
    options = parser.parse_args()
    asyncio.run(main(options.real, options.serve))
