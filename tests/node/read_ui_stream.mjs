// Reads a Vercel AI SDK UI message stream the way a `useChat` front end does, with the `ai`
// package's own code: `parseJsonEventStream` + `uiMessageChunkSchema` (what DefaultChatTransport
// runs on a response body), then `readUIMessageStream` (the message state machine of useChat).
//
// Usage:
//   node read_ui_stream.mjs < stream.sse          the SSE bytes on stdin
//   node read_ui_stream.mjs URL [JSON_BODY]        GET URL, or POST JSON_BODY to it
//
// Prints one JSON object on stdout:
//   {"messages": [UIMessage...], "chunks": [chunk...], "errors": [errorText...],
//    "done": bool, "headers": {...} | null}
// `messages` holds the last snapshot of each message id, in order; `errors` the errorText of each
// "error" chunk (the stream's own errors, which a front end shows); `done` whether the stream
// ended with `data: [DONE]`.
//
// Exits 1 (the reason on stderr) when a chunk is not JSON or fails the schema, when the message
// state machine refuses a chunk (a delta of a part never started...), or on an HTTP failure.

import { readFileSync } from "node:fs";
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

function fail(reason) {
  process.stderr.write(`read_ui_stream: ${reason}\n`);
  process.exit(1);
}

async function openBody() {
  const [url, body] = process.argv.slice(2);
  if (url === undefined) {
    const bytes = readFileSync(0);
    return { headers: null, body: new Blob([bytes]).stream() };
  }
  const response = await fetch(url, {
    method: body === undefined ? "GET" : "POST",
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body,
  });
  if (!response.ok || response.body === null) {
    fail(`HTTP ${response.status} from ${url}`);
  }
  return { headers: Object.fromEntries(response.headers), body: response.body };
}

// The raw frames, to know whether the stream ended with [DONE] (the parser drops it).
function watchDone(stream, state) {
  const decoder = new TextDecoder();
  let tail = "";
  return stream.pipeThrough(
    new TransformStream({
      transform(bytes, controller) {
        tail = (tail + decoder.decode(bytes, { stream: true })).slice(-64);
        controller.enqueue(bytes);
      },
      flush() {
        state.done = /(^|\n)data: ?\[DONE\]\r?\n\r?\n?$/.test(tail);
      },
    }),
  );
}

async function main() {
  const { headers, body } = await openBody();
  const state = { done: false };
  const chunks = [];
  const errors = [];
  let pendingErrorText = null;
  let failure = null;

  const chunkStream = parseJsonEventStream({
    stream: watchDone(body, state),
    schema: uiMessageChunkSchema,
  }).pipeThrough(
    new TransformStream({
      transform(result, controller) {
        if (!result.success) {
          throw result.error;
        }
        chunks.push(result.value);
        if (result.value.type === "error") {
          pendingErrorText = result.value.errorText;
        }
        controller.enqueue(result.value);
      },
    }),
  );

  const last = new Map();
  for await (const message of readUIMessageStream({
    stream: chunkStream,
    onError(error) {
      // An "error" chunk reaches onError as a plain Error with its text; anything else is a
      // failure to read the stream.
      if (pendingErrorText !== null && error?.message === pendingErrorText) {
        errors.push(pendingErrorText);
        pendingErrorText = null;
      } else if (failure === null) {
        failure = error;
      }
    },
  })) {
    last.set(message.id, message);
  }
  if (failure !== null) {
    fail(`${failure?.name ?? "Error"}: ${failure?.message ?? String(failure)}`);
  }
  const out = { messages: [...last.values()], chunks, errors, done: state.done, headers };
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((error) => fail(`${error?.name ?? "Error"}: ${error?.message ?? String(error)}`));
