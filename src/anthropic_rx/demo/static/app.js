// The chat page of the anthropic-rx demo. Plain DOM, no build step. Every text of a message
// (the user's or the model's) is set with textContent, never parsed as markup.
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  const list = $("#conversations");
  const messages = $("#messages");
  const form = $("#composer");
  const prompt = $("#prompt");
  const stopButton = $("#stop");
  const notice = $("#notice");
  const newButton = $("#new-conversation");

  let current = null; // the open conversation's id
  let source = null; // the EventSource of its streaming reply
  let generation = 0; // bumped when another conversation opens: late answers are dropped
  let localIds = 0;

  const READABLE = {
    overloaded_error: "The model is overloaded. Try again in a moment.",
    rate_limit_error: "Too many requests for now. Wait a moment and try again.",
    api_error: "The model's service had an internal error. Try again.",
    timeout_error: "The model's service timed out. Try again.",
    authentication_error: "The API key was refused. Check ANTHROPIC_API_KEY.",
    permission_error: "The API key may not use this model.",
    billing_error: "The account behind the API key has a billing problem.",
    invalid_request_error: "The model refused the request as invalid.",
    request_too_large: "The conversation is too large for the model.",
    APIConnectionError: "Could not reach the model. Check the connection and try again.",
    APITimeoutError: "The model took too long to answer. Try again.",
    IncompleteStreamError: "The reply was cut off before it ended. Try again.",
    resume_error: "The reply could not be resumed. Reload the page to see what was saved.",
    internal_error: "Something went wrong on the server. Try again.",
    worker_unavailable: "No worker picked up the reply. Start one (anthropic-rx worker), then try again.",
    queue_error: "The reply could not be queued. Try again.",
    conversation_busy: "Another reply was still streaming in this conversation. Try again.",
  };

  function readable(error) {
    if (!error || !error.type) return "The reply failed. Try again.";
    return READABLE[error.type] || "The reply failed (" + error.type + "). Try again.";
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  function hideNotice() {
    notice.hidden = true;
    notice.textContent = "";
  }

  function setStreaming(on) {
    stopButton.hidden = !on;
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  // --- rendering ------------------------------------------------------------------------

  function block(kind, summary, body) {
    const details = element("details", "block " + kind);
    details.append(element("summary", null, summary), element("pre", "block-body", body));
    return details;
  }

  function fill(node, message) {
    node.replaceChildren();
    node.dataset.status = message.status;
    const blocks =
      message.blocks && message.blocks.length
        ? message.blocks
        : [{ type: "text", text: message.content || "" }];
    let text = null;
    for (const part of blocks) {
      if (part.type === "text") {
        if (!text) {
          text = element("div", "text", "");
          node.append(text);
        }
        text.textContent += part.text || "";
      } else if (part.type === "thinking") {
        node.append(block("thinking", "Thinking", part.thinking || ""));
      } else if (part.type === "redacted_thinking") {
        node.append(block("thinking", "Thinking (redacted)", ""));
      } else if (part.type === "tool_use" || part.type === "server_tool_use") {
        const input = JSON.stringify(part.input === undefined ? {} : part.input, null, 2);
        node.append(block("tool-use", "Tool: " + (part.name || "?"), input));
      }
    }
    if (!text) node.append(element("div", "text", ""));
    if (message.role === "assistant" && (message.status === "failed" || message.status === "incomplete")) {
      const box = element("div", "error");
      const retry = element("button", "retry", "Retry");
      retry.type = "button";
      retry.addEventListener("click", () => send(lastQuestion()));
      box.append(element("span", "error-text", readable(message.error) + " "), retry);
      node.append(box);
    }
  }

  function messageNode(message) {
    const node = element("div", "message");
    node.dataset.role = message.role;
    node.dataset.id = message.id;
    fill(node, message);
    return node;
  }

  function lastQuestion() {
    const users = messages.querySelectorAll('div.message[data-role="user"] > div.text');
    return users.length ? users[users.length - 1].textContent : "";
  }

  function streamingReply() {
    const replies = messages.querySelectorAll('div.message[data-role="assistant"]');
    const last = replies.length ? replies[replies.length - 1] : null;
    return last && last.dataset.status === "streaming" ? last : null;
  }

  // --- the server -----------------------------------------------------------------------

  const base = (id) => "/api/conversations/" + encodeURIComponent(id);

  async function refreshList() {
    let rows;
    try {
      const response = await fetch("/api/conversations");
      if (!response.ok) return;
      rows = await response.json();
    } catch (_) {
      return;
    }
    list.replaceChildren(
      ...rows.map((row) => {
        const item = element("li", row.id === current ? "active" : null, row.title || "New conversation");
        item.dataset.id = row.id;
        item.addEventListener("click", () => go(row.id));
        return item;
      }),
    );
  }

  function go(id) {
    if (location.hash === "#" + id) open(id);
    else location.hash = id; // hashchange opens it
  }

  function markActive() {
    for (const item of list.querySelectorAll("li")) {
      item.classList.toggle("active", item.dataset.id === current);
    }
  }

  // The stored messages, shown; null when the conversation is gone or another one opened.
  async function loadMessages(id, gen) {
    let response;
    try {
      response = await fetch(base(id) + "/messages");
    } catch (_) {
      if (gen === generation) showNotice("Could not reach the server. Reload to try again.");
      return null;
    }
    if (gen !== generation) return null;
    if (!response.ok) {
      messages.replaceChildren();
      if (response.status === 404) {
        current = null;
        showNotice("This conversation does not exist here.");
      }
      return null;
    }
    const rows = await response.json();
    if (gen !== generation) return null;
    messages.replaceChildren(...rows.map(messageNode));
    scrollDown();
    return rows;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // After a reply's end the row takes its final status a moment later: wait for it.
  async function loadSettled(id, gen) {
    for (let attempt = 0; attempt < 40; attempt++) {
      let rows;
      try {
        const response = await fetch(base(id) + "/messages");
        if (gen !== generation) return;
        if (!response.ok) return loadMessages(id, gen);
        rows = await response.json();
      } catch (_) {
        await sleep(250);
        continue;
      }
      if (gen !== generation) return;
      const last = rows[rows.length - 1];
      if (!last || last.role !== "assistant" || last.status !== "streaming" || attempt === 39) {
        messages.replaceChildren(...rows.map(messageNode));
        scrollDown();
        return;
      }
      await sleep(150);
    }
  }

  function closeStream() {
    if (source) source.close();
    source = null;
    setStreaming(false);
  }

  // Follow the conversation's reply. A new EventSource replays the reply from its start (so
  // the text shown is replaced by it); its own reconnects resume after the last id.
  function connect(id, gen) {
    closeStream();
    const events = new EventSource(base(id) + "/stream");
    source = events;
    setStreaming(true);
    let fresh = true;
    let ended = false;

    const finish = () => {
      if (ended) return;
      ended = true;
      events.close();
      if (source === events) {
        source = null;
        setStreaming(false);
      }
      if (gen === generation) {
        loadSettled(id, gen);
        refreshList();
      }
    };

    events.addEventListener("message", (event) => {
      if (gen !== generation) return events.close();
      let node = streamingReply();
      if (!node) {
        node = messageNode({ id: "", role: "assistant", status: "streaming", content: "", blocks: [] });
        messages.append(node);
      }
      const text = node.querySelector(":scope > div.text");
      const data = JSON.parse(event.data);
      if (fresh) {
        text.textContent = "";
        fresh = false;
      }
      text.textContent += data.text;
      scrollDown();
    });
    events.addEventListener("done", finish);
    events.addEventListener("cancelled", finish);
    events.addEventListener("error", (event) => {
      // The server's own `event: error` frame (a MessageEvent): the reply failed, and its
      // row says how. Otherwise the connection: CLOSED is a 204 (nothing to follow), else
      // the EventSource reconnects by itself with Last-Event-ID.
      if (event instanceof MessageEvent || events.readyState === EventSource.CLOSED) finish();
    });
  }

  async function open(id) {
    const gen = ++generation;
    closeStream();
    hideNotice();
    current = id;
    markActive();
    messages.replaceChildren();
    const rows = await loadMessages(id, gen);
    if (!rows) return;
    const last = rows[rows.length - 1];
    if (last && last.role === "assistant" && last.status === "streaming") connect(id, gen);
  }

  async function newConversation() {
    const response = await fetch("/api/conversations", { method: "POST" });
    if (!response.ok) {
      showNotice("Could not start a conversation. Try again.");
      return null;
    }
    const { id } = await response.json();
    return id;
  }

  async function send(text) {
    if (!text || !text.trim()) return false;
    hideNotice();
    if (!current) {
      const id = await newConversation();
      if (!id) return false;
      generation++;
      current = id;
      history.replaceState(null, "", "#" + id); // no hashchange: nothing to load
    }
    const id = current;
    const gen = generation;
    let response;
    try {
      response = await fetch(base(id) + "/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ content: text }),
      });
    } catch (_) {
      showNotice("Could not reach the server. Try again.");
      return false;
    }
    let body = {};
    try {
      body = await response.json();
    } catch (_) {
      body = {};
    }
    if (response.status === 409) {
      showNotice(body.error || "The assistant is still answering: wait for it, or press Stop.");
      return false;
    }
    if (!response.ok) {
      showNotice(body.error ? "Not sent: " + body.error + "." : "Not sent (HTTP " + response.status + "). Try again.");
      return false;
    }
    if (gen !== generation) return true;
    localIds += 1;
    messages.append(
      messageNode({ id: "local-" + localIds, role: "user", status: "finished", content: text, blocks: [] }),
      messageNode({ id: body.message_id, role: "assistant", status: "streaming", content: "", blocks: [] }),
    );
    scrollDown();
    connect(id, gen);
    refreshList();
    return true;
  }

  // --- handlers -------------------------------------------------------------------------

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value;
    if (await send(text)) prompt.value = "";
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stopButton.addEventListener("click", async () => {
    if (!current) return;
    try {
      await fetch(base(current) + "/stop", { method: "POST" });
    } catch (_) {
      showNotice("Could not reach the server to stop the reply.");
    }
  });
  newButton.addEventListener("click", async () => {
    const id = await newConversation();
    if (!id) return;
    await refreshList();
    go(id);
  });
  window.addEventListener("hashchange", () => {
    const id = location.hash.slice(1);
    if (id && id !== current) open(id);
  });

  document.body.dataset.ready = "true";
  refreshList();
  const initial = location.hash.slice(1);
  if (initial) open(initial);
})();
