"""One bookkeeping for both ways in; the bounded request history; the add_* options."""

from __future__ import annotations

import ast
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from anthropic_rx import testing
from anthropic_rx.testing import _exchange, _server

BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "Hi"}],
}


async def post(http: httpx.AsyncClient, body: object = BODY) -> httpx.Response:
    response = await http.post("/v1/messages", content=json.dumps(body).encode())
    await response.aread()
    return response


# --- one bookkeeping -----------------------------------------------------------------------------


def test_the_server_uses_no_private_member_of_another_object() -> None:
    """``_server.py`` reaches the fake's bookkeeping through :class:`Exchanges`' own API only:
    every underscore attribute it uses is its own (``self._...``)."""
    tree = ast.parse(Path(_server.__file__).read_text(encoding="utf-8"))
    foreign = [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert foreign == []
    assert "FakeAnthropic" not in Path(_server.__file__).read_text(encoding="utf-8")


def test_the_server_is_served_from_the_exchanges() -> None:
    parameter = next(iter(inspect.signature(_server.serve).parameters.values()))
    assert parameter.name == "exchanges"
    assert parameter.annotation == "Exchanges"
    assert "Exchanges" in vars(_exchange)


async def test_both_ways_in_share_one_count_and_history() -> None:
    fake = testing.FakeAnthropic(keep_requests=3)
    async with (
        fake.serve() as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=5.0) as loopback,
        httpx.AsyncClient(transport=fake.transport, base_url="http://fake", timeout=5.0) as memory,
    ):
        for http in (memory, loopback, memory, loopback, memory):
            assert (await post(http)).status_code == 200
    await fake.wait_closed()

    assert fake.request_count == 5
    assert [r.request_id for r in fake.requests] == [
        "req_fake_0003",
        "req_fake_0004",
        "req_fake_0005",
    ]
    assert all(r.response_status == 200 for r in fake.requests)
    assert fake.connections >= 1
    assert fake.open_streams == 0


async def test_a_client_leaving_is_counted_once_whichever_way_in() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(testing.text_reply("a", "b"), stall_after=0)
    fake.add_stream(testing.text_reply("a", "b"), stall_after=0)
    async with (
        fake.serve() as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=5.0) as loopback,
        httpx.AsyncClient(transport=fake.transport, base_url="http://fake", timeout=5.0) as memory,
    ):
        for http in (memory, loopback):
            request = http.build_request("POST", "/v1/messages", json=BODY)
            response = await http.send(request, stream=True)
            assert response.status_code == 200
            await response.aclose()
        await fake.wait_closed()
    assert fake.disconnects == 2


async def test_a_request_whose_default_raises_is_recorded_and_counted() -> None:
    def broken(request: testing.RecordedRequest) -> testing.Reply:
        raise RuntimeError("broken default")

    fake = testing.FakeAnthropic(default=broken)
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake") as http:
        with pytest.raises(RuntimeError, match="broken default"):
            await post(http)
    assert fake.request_count == 1
    (request,) = fake.requests
    assert request.response_status is None


# --- keep_requests -------------------------------------------------------------------------------


async def test_keep_requests_keeps_the_newest_and_counts_every_one() -> None:
    fake = testing.FakeAnthropic(keep_requests=2)
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake") as http:
        for n in range(5):
            body = {**BODY, "messages": [{"role": "user", "content": f"turn {n}"}]}
            assert (await post(http, body)).status_code == 200

    kept = fake.requests
    assert [r.json["messages"][0]["content"] for r in kept] == ["turn 3", "turn 4"]
    assert [r.request_id for r in kept] == ["req_fake_0004", "req_fake_0005"]
    assert fake.request_count == 5
    assert "requests=5" in repr(fake)
    fake.assert_sent(messages=[{"role": "user", "content": "turn 4"}])
    with pytest.raises(AssertionError, match=r"request 5\)"):
        fake.assert_sent(model="claude-other")


async def test_keep_requests_none_keeps_every_request() -> None:
    fake = testing.FakeAnthropic()
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake") as http:
        for _ in range(4):
            await post(http)
    assert len(fake.requests) == fake.request_count == 4


async def test_keep_requests_counts_refused_requests_too() -> None:
    fake = testing.FakeAnthropic(keep_requests=1)
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake") as http:
        assert (await post(http, {"stream": True})).status_code == 400
        assert (await post(http)).status_code == 200
    assert fake.request_count == 2
    assert [r.response_status for r in fake.requests] == [200]


@pytest.mark.parametrize("value", ["3", 2.0, True, [1]])
def test_keep_requests_must_be_an_int(value: object) -> None:
    with pytest.raises(TypeError, match="keep_requests must be an int or None"):
        testing.FakeAnthropic(keep_requests=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1])
def test_keep_requests_must_be_positive(value: int) -> None:
    with pytest.raises(ValueError, match=f"keep_requests must be at least 1, not {value}"):
        testing.FakeAnthropic(keep_requests=value)


async def test_the_demos_embedded_fake_keeps_a_bounded_history() -> None:
    from anthropic_rx.demo import DemoSettings
    from anthropic_rx.demo._jobs import demo_client

    client, fake = demo_client(DemoSettings())
    await client.aclose()
    assert fake is not None
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake") as http:
        # Refused at once (no reply is paced), and recorded like any request.
        for _ in range(101):
            assert (await post(http, {"stream": True})).status_code == 400
    assert fake.request_count == 101
    assert len(fake.requests) == 100
    assert fake.requests[0].request_id == "req_fake_0002"


# --- add_* take FakeResponse's options -----------------------------------------------------------

Adder = Callable[..., testing.FakeAnthropic]
Factory = Callable[..., testing.FakeResponse]

PAIRS: list[tuple[str, str, type]] = [
    ("add_stream", "stream", testing.StreamOptions),
    ("add_response", "raw", testing.RawOptions),
    ("add_error", "error", testing.ErrorOptions),
]


@pytest.mark.parametrize(("adder", "factory", "options"), PAIRS)
def test_add_takes_the_keywords_of_its_fake_response(
    adder: str, factory: str, options: type
) -> None:
    add: Adder = getattr(testing.FakeAnthropic, adder)
    make: Factory = getattr(testing.FakeResponse, factory)
    made = inspect.signature(make).parameters.values()
    keywords = {p.name for p in made if p.kind is inspect.Parameter.KEYWORD_ONLY}
    hints = typing.get_type_hints(make)
    declared = typing.get_type_hints(options)

    # The option set names every keyword of the factory, with the same type.
    assert set(declared) == keywords
    assert declared == {name: hints[name] for name in keywords}
    # The adder takes the factory's positional parameters, then the option set.
    added = list(inspect.signature(add).parameters.values())
    assert added[0].name == "self"
    assert added[-1].kind is inspect.Parameter.VAR_KEYWORD
    positional = [p for p in made if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    assert [(p.name, p.default, p.kind) for p in added[1:-1]] == [
        (p.name, p.default, p.kind) for p in positional
    ]
    add_hints = typing.get_type_hints(add)
    assert {p.name: add_hints[p.name] for p in added[1:-1]} == {
        p.name: hints[p.name] for p in positional
    }
    assert add_hints[added[-1].name] == typing.Unpack[options]
    # Its help names the options and where they are described.
    doc = inspect.getdoc(add) or ""
    assert f"FakeResponse.{factory}" in doc
    assert all(f"``{name}``" in doc for name in keywords)


def test_add_refuses_a_keyword_its_fake_response_does_not_take() -> None:
    fake = testing.FakeAnthropic()
    with pytest.raises(TypeError, match="unexpected keyword argument 'tokens_per_second'"):
        fake.add_response(200, b"{}", tokens_per_second=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        fake.add_stream(testing.text_reply("a"), bogus=1)  # type: ignore[call-arg]
    assert fake.pending == 0


async def test_add_passes_every_option_on() -> None:
    fake = testing.FakeAnthropic()
    fake.add_stream(
        testing.text_reply("Hello", " world"),
        status=201,
        headers={"x-extra": "1"},
        chunk_size=7,
        truncate_after=30,
    )
    fake.add_response(413, b"<html>too large</html>", content_type="text/plain", chunk_size=4)
    fake.add_error(529, headers={"retry-after": "3"})
    async with httpx.AsyncClient(transport=fake.transport, base_url="http://fake") as http:
        first = await post(http)
        second = await post(http)
        third = await post(http)
    assert first.status_code == 201
    assert first.headers["x-extra"] == "1"
    assert len(first.content) == 30
    assert (second.status_code, second.headers["content-type"]) == (413, "text/plain")
    assert second.content == b"<html>too large</html>"
    assert third.status_code == 529
    assert third.headers["retry-after"] == "3"
    assert third.json()["error"]["type"] == "overloaded_error"
