"""The chat demo in a real browser: streaming, Stop, tabs, reload, errors, restart, escaping.

Each test drives headless Chromium against the demo served on 127.0.0.1 (see ``conftest.py``)
with replies queued on the fake Anthropic API, and reads the page only through the DOM the
demo promises: ``div.message`` with ``data-role``/``data-status``/``data-id`` and its
``div.text``, ``button#stop``, ``div#notice``, ``div.error`` and ``button.retry``,
``details.block.thinking``/``details.block.tool-use``, ``ul#conversations`` and the
conversation id in the URL hash. Every wait is bounded (a few seconds).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anthropic_rx import testing

from .._services import services_required
from .conftest import WAIT_MS, Demo

if importlib.util.find_spec("playwright") is None:  # pragma: no cover - depends on the machine
    if services_required():
        pytest.fail(
            "the playwright package is not installed (ANTHROPIC_RX_REQUIRE_SERVICES=1)",
            pytrace=False,
        )
    pytest.skip(reason="the playwright package is not installed", allow_module_level=True)

from playwright.async_api import Browser, BrowserContext, Page, expect

# The browser is launched once, on the session's loop (see conftest.py).
pytestmark = pytest.mark.asyncio(loop_scope="session")

ARTIFACTS = Path(__file__).parent / "artifacts"

# A reply of `count` words, one text delta each; at 20 deltas a second it streams for
# count / 20 seconds, long enough to act on it while it streams.
PACE = 20.0


def words(count: int) -> list[str]:
    return [f"word{i} " for i in range(count)]


@dataclass(frozen=True)
class Shown:
    """One ``div.message`` as the page shows it."""

    role: str
    status: str
    id: str
    text: str


# The whole list in one evaluation, so a snapshot is never half old, half new. The text is the
# message's div.text outside the thinking and tool-use blocks.
_SNAPSHOT = """() => [...document.querySelectorAll('#messages div.message')].map(m => ({
    role: m.dataset.role ?? '',
    status: m.dataset.status ?? '',
    id: m.dataset.id ?? '',
    text: [...m.querySelectorAll('div.text')]
        .filter(t => !t.closest('details')).map(t => t.textContent).join(''),
}))"""


async def shown(page: Page) -> list[Shown]:
    rows: list[dict[str, str]] = await page.evaluate(_SNAPSHOT)
    return [Shown(**row) for row in rows]


def same(messages: list[Shown]) -> list[tuple[str, str, str, str]]:
    """What two views of one conversation must agree on: role, status and text of every
    message, and the assistant messages' ids (a user message shown live may carry an id of the
    page's own until the conversation is loaded from the server)."""
    return [(m.role, m.status, m.text, m.id if m.role == "assistant" else "") for m in messages]


def assistant(messages: list[Shown]) -> Shown | None:
    """The last assistant message shown, if any."""
    replies = [m for m in messages if m.role == "assistant"]
    return replies[-1] if replies else None


async def until(
    page: Page,
    predicate: Callable[[list[Shown]], bool],
    what: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - a bounded wait with a readable failure
    seen: list[list[Shown]] | None = None,
) -> list[Shown]:
    """Poll the page's messages until ``predicate`` holds; the snapshot where it did.

    Every snapshot is appended to ``seen`` when given. Raises AssertionError naming ``what``
    and the last snapshot after ``timeout`` seconds.
    """
    last: list[Shown] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                last = await shown(page)
                if seen is not None:
                    seen.append(last)
                if predicate(last):
                    return last
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what}; shown: {last}"
        ) from None


def streaming_with_text(messages: list[Shown], longer_than: int = 0) -> bool:
    reply = assistant(messages)
    return reply is not None and reply.status == "streaming" and len(reply.text) > longer_than


def ended(status: str, text: str | None = None) -> Callable[[list[Shown]], bool]:
    def check(messages: list[Shown]) -> bool:
        reply = assistant(messages)
        return reply is not None and reply.status == status and (text is None or reply.text == text)

    return check


async def load(page: Page, url: str) -> None:
    """Open ``url`` and wait until the page's script is ready."""
    await page.goto(url)
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)


async def new_conversation(page: Page, demo: Demo) -> str:
    """Open the page, start a conversation with ``#new-conversation``; its id (the hash)."""
    await load(page, demo.url)
    await page.click("button#new-conversation")
    await page.wait_for_function("location.hash.length > 1", timeout=WAIT_MS)
    hash_: str = await page.evaluate("location.hash")
    return hash_.removeprefix("#")


async def ask(page: Page, question: str) -> None:
    await page.fill("textarea#prompt", question)
    await page.click("button#send")


async def ask_in_new_conversation(
    page: Page, demo: Demo, fake: testing.FakeAnthropic, question: str, *, words_long: int
) -> tuple[str, list[str]]:
    """Queue a paced reply of ``words_long`` words, start a conversation, ask ``question``:
    the conversation's id and the reply's parts."""
    parts = words(words_long)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=PACE)
    cid = await new_conversation(page, demo)
    await ask(page, question)
    return cid, parts


def question_of(request: testing.RecordedRequest) -> str:
    """The text of the last user turn the model was sent."""
    body: dict[str, Any] = request.json
    content = body["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content if isinstance(block, dict))


def model_requests(fake: testing.FakeAnthropic) -> list[testing.RecordedRequest]:
    return [r for r in fake.requests if r.path == "/v1/messages"]


def watch_errors(page: Page) -> list[str]:
    """A list that collects the page's uncaught script errors from now on."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


# --- streaming -------------------------------------------------------------------------------


async def test_a_question_streams_a_reply(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    parts = words(40)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=PACE)
    errors = watch_errors(page)
    cid = await new_conversation(page, demo)
    await ask(page, "What is streaming?")

    first = await until(page, streaming_with_text, "the reply to start streaming")
    assert [(m.role, m.status, m.text) for m in first if m.role == "user"] == [
        ("user", "finished", "What is streaming?")
    ]
    await expect(page.locator("button#stop")).to_be_visible(timeout=WAIT_MS)
    so_far = assistant(first)
    assert so_far is not None
    grown = await until(
        page,
        lambda m: streaming_with_text(m, longer_than=len(so_far.text)),
        "the streaming text to grow",
    )
    later = assistant(grown)
    assert later is not None and later.text.startswith(so_far.text)

    done = await until(page, ended("finished"), "the reply to finish")
    reply = assistant(done)
    assert reply is not None and reply.text == "".join(parts)
    assert reply.id, "the assistant message has no data-id"
    await expect(page.locator("button#stop")).to_be_hidden(timeout=WAIT_MS)
    assert await page.evaluate("location.hash") == f"#{cid}"
    await expect(page.locator(f'ul#conversations li[data-id="{cid}"]')).to_have_count(1)
    requests = model_requests(fake)
    assert len(requests) == 1 and question_of(requests[0]) == "What is streaming?"
    assert errors == []


async def test_stop_ends_the_reply_cancelled_and_keeps_its_text(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    _, parts = await ask_in_new_conversation(
        page, demo, fake, "Tell me a long story", words_long=100
    )
    await until(page, lambda m: streaming_with_text(m, longer_than=20), "some streamed text")

    await page.click("button#stop")
    stopped = await until(page, ended("cancelled"), "the reply to end cancelled", timeout=3.0)
    kept = assistant(stopped)
    assert kept is not None
    full = "".join(parts)
    assert kept.text and full.startswith(kept.text) and len(kept.text) < len(full)
    await expect(page.locator("button#stop")).to_be_hidden(timeout=WAIT_MS)

    await asyncio.sleep(0.5)  # nothing more may arrive after the stop
    assert await shown(page) == stopped

    # The stored message is the one the page showed: same status, same text.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    reloaded = await until(page, ended("cancelled"), "the cancelled reply after a reload")
    assert same(reloaded) == same(stopped)


async def test_two_tabs_show_the_same_streaming_reply(
    demo: Demo, fake: testing.FakeAnthropic, context: BrowserContext, page: Page
) -> None:
    cid, parts = await ask_in_new_conversation(
        page, demo, fake, "Hello from tab one", words_long=60
    )
    await until(page, streaming_with_text, "the reply to stream in the first tab")

    second = await context.new_page()
    await load(second, f"{demo.url}#{cid}")
    seen = await until(second, streaming_with_text, "the reply to stream in the second tab")
    assert [m.text for m in seen if m.role == "user"] == ["Hello from tab one"]

    full = "".join(parts)
    one = await until(page, ended("finished", full), "the whole reply in the first tab")
    two = await until(second, ended("finished", full), "the whole reply in the second tab")
    assert same(one) == same(two)
    assert len(model_requests(fake)) == 1, "the second tab started another generation"


async def test_a_reload_mid_reply_resumes_without_duplicated_text(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    _, parts = await ask_in_new_conversation(page, demo, fake, "Keep talking", words_long=60)
    # A third of the reply: the stored row has a checkpoint of it by then (every 0.5 s), so a
    # page that shows the stored text and then replays the stream would show it twice.
    await until(page, lambda m: streaming_with_text(m, longer_than=150), "some streamed text")

    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    seen: list[list[Shown]] = []
    done = await until(page, ended("finished"), "the reply to finish after the reload", seen=seen)
    reply = assistant(done)
    assert reply is not None and reply.text == "".join(parts)
    assert [m.role for m in done] == ["user", "assistant"]
    assert any(streaming_with_text(m) for m in seen), "the reload did not resume the stream"
    assert len(model_requests(fake)) == 1, "the reload started another generation"


async def test_a_second_question_while_one_streams_shows_a_notice(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    _, parts = await ask_in_new_conversation(page, demo, fake, "First question", words_long=60)
    await until(page, streaming_with_text, "the first reply to stream")

    await ask(page, "Second question")
    notice = page.locator("div#notice")
    await expect(notice).to_be_visible(timeout=WAIT_MS)
    await expect(notice).to_contain_text(re.compile("still answering", re.I), timeout=WAIT_MS)

    await until(page, ended("finished", "".join(parts)), "the first reply to finish")
    assert len(model_requests(fake)) == 1, "the refused question reached the model"
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    stored = await until(page, ended("finished"), "the stored conversation")
    assert [(m.role, m.text) for m in stored if m.role == "user"] == [("user", "First question")]


# --- errors ----------------------------------------------------------------------------------


async def test_an_overloaded_error_is_readable_and_retry_gets_a_reply(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    # x-should-retry: false makes the client give up at once, whatever its retry settings.
    fake.add_error(529, "overloaded_error", "busy", headers={"x-should-retry": "false"})
    fake.add_stream(testing.text_reply("Back ", "again."), tokens_per_second=PACE)
    await new_conversation(page, demo)
    await ask(page, "Are you there?")

    await until(page, ended("failed"), "the reply to fail")
    failed = page.locator("#messages div.message[data-role='assistant']").last
    error = failed.locator("div.error")
    await expect(error).to_be_visible(timeout=WAIT_MS)
    await expect(error).to_contain_text(re.compile("overloaded", re.I), timeout=WAIT_MS)
    message = (await error.text_content()) or ""
    assert "Traceback" not in message and "{" not in message, message
    retry = failed.locator("button.retry")
    await expect(retry).to_be_visible(timeout=WAIT_MS)

    await retry.click()
    done = await until(page, ended("finished", "Back again."), "the retried reply")
    assert [m.text for m in done if m.role == "user"][-1] == "Are you there?"
    requests = model_requests(fake)
    assert len(requests) == 2 and question_of(requests[1]) == "Are you there?"


# --- persistence -----------------------------------------------------------------------------


async def test_a_restarted_server_shows_the_stored_conversation(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    fake.add_stream(testing.text_reply("First ", "answer."), tokens_per_second=PACE)
    parts = words(100)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=PACE)
    cid = await new_conversation(page, demo)
    await ask(page, "One")
    await until(page, ended("finished", "First answer."), "the first reply")
    await ask(page, "Two")
    await until(
        page,
        lambda m: len(m) == 4 and streaming_with_text(m, longer_than=10),
        "the second reply to stream",
    )
    await page.click("button#stop")
    before = await until(page, ended("cancelled"), "the second reply to end cancelled")
    assert [(m.role, m.status) for m in before] == [
        ("user", "finished"),
        ("assistant", "finished"),
        ("user", "finished"),
        ("assistant", "cancelled"),
    ]

    await demo.restart()
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-ready", "true", timeout=WAIT_MS)
    after = await until(page, lambda m: len(m) == 4, "the stored messages after the restart")
    assert same(after) == same(before)
    await expect(page.locator(f'ul#conversations li[data-id="{cid}"]')).to_have_count(1)


async def test_the_conversation_list_opens_a_conversation(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    fake.add_stream(testing.text_reply("About ", "cats."), tokens_per_second=PACE)
    fake.add_stream(testing.text_reply("About ", "dogs."), tokens_per_second=PACE)
    cats = await new_conversation(page, demo)
    await ask(page, "Cats?")
    await until(page, ended("finished", "About cats."), "the first conversation's reply")
    await page.click("button#new-conversation")
    await page.wait_for_function(f"location.hash.length > 1 && location.hash !== '#{cats}'")
    await until(page, lambda m: m == [], "the new conversation to be empty")
    await ask(page, "Dogs?")
    await until(page, ended("finished", "About dogs."), "the second conversation's reply")

    await page.click(f'ul#conversations li[data-id="{cats}"]')
    opened = await until(
        page, lambda m: [x.text for x in m] == ["Cats?", "About cats."], "the first conversation"
    )
    assert [m.status for m in opened] == ["finished", "finished"]
    assert await page.evaluate("location.hash") == f"#{cats}"


async def test_another_browser_profile_cannot_open_the_conversation(
    demo: Demo, fake: testing.FakeAnthropic, browser: Browser, page: Page
) -> None:
    fake.add_stream(testing.text_reply("Private ", "answer."), tokens_per_second=PACE)
    cid = await new_conversation(page, demo)
    await ask(page, "A private question")
    await until(page, ended("finished", "Private answer."), "the reply")

    stranger = await browser.new_context()
    try:
        other = await stranger.new_page()
        await load(other, f"{demo.url}#{cid}")
        await asyncio.sleep(0.5)  # time to fetch (and be refused) the conversation
        assert await shown(other) == []
        await expect(other.locator(f'ul#conversations li[data-id="{cid}"]')).to_have_count(0)
    finally:
        await stranger.close()


# --- rendering -------------------------------------------------------------------------------

HOSTILE = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


async def test_model_text_is_shown_as_text_never_as_markup(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    fake.add_stream(testing.text_reply(HOSTILE[:20], HOSTILE[20:]), tokens_per_second=PACE)
    await new_conversation(page, demo)
    await ask(page, HOSTILE)

    done = await until(page, ended("finished", HOSTILE), "the hostile reply, as text")
    assert [m.text for m in done if m.role == "user"] == [HOSTILE]
    for when in ("live", "after a reload"):
        await asyncio.sleep(0.3)  # an <img onerror> would have fired by now
        assert await page.evaluate("typeof window.__xss") == "undefined", when
        assert await page.locator("#messages img, #conversations img").count() == 0, when
        assert await page.locator("#messages script, #conversations script").count() == 0, when
        if when == "live":
            await page.reload()
            await expect(page.locator("body")).to_have_attribute(
                "data-ready", "true", timeout=WAIT_MS
            )
            stored = await until(page, ended("finished", HOSTILE), "the stored hostile reply")
            assert [m.text for m in stored if m.role == "user"] == [HOSTILE]


async def test_thinking_and_tool_use_render_as_details_blocks(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    reply = (
        testing.Reply()
        .thinking("Let me think", " about the weather.", signature="sig")
        .text("Checking the weather.")
        .tool_use("get_weather", {"city": "Paris"}, fragment_size=5)
        .stop()
    )
    fake.add_stream(reply, tokens_per_second=PACE)
    await new_conversation(page, demo)
    await ask(page, "Weather in Paris?")

    for when in ("live", "after a reload"):
        done = await until(page, ended("finished"), f"the reply to finish ({when})")
        shown_reply = assistant(done)
        assert shown_reply is not None and shown_reply.text == "Checking the weather.", when
        message = page.locator("#messages div.message[data-role='assistant']").last
        thinking = message.locator("details.block.thinking")
        tool = message.locator("details.block.tool-use")
        await expect(thinking).to_have_count(1, timeout=WAIT_MS)
        await expect(tool).to_have_count(1, timeout=WAIT_MS)
        await expect(thinking.locator("summary")).to_have_count(1)
        await expect(tool.locator("summary")).to_have_count(1)
        await expect(thinking).to_contain_text("Let me think about the weather.")
        await expect(tool).to_contain_text("get_weather")
        await expect(tool).to_contain_text("Paris")
        if when == "live":
            await page.reload()
            await expect(page.locator("body")).to_have_attribute(
                "data-ready", "true", timeout=WAIT_MS
            )


async def test_a_screenshot_of_a_finished_chat(
    demo: Demo, fake: testing.FakeAnthropic, page: Page
) -> None:
    parts = words(30)
    fake.add_stream(testing.text_reply(*parts), tokens_per_second=100)
    await new_conversation(page, demo)
    await ask(page, "Show me a finished chat")
    await until(page, ended("finished", "".join(parts)), "the reply to finish")

    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / "finished-chat.png"
    target.unlink(missing_ok=True)
    await page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
