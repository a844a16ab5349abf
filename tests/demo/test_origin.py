"""The demo's cross-site request forgery guard (``OriginCheck``): a tiny Starlette app behind
it, then the real demo app, both in memory (``httpx.ASGITransport``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from anthropic_rx import testing
from anthropic_rx.demo import DemoSettings, create_app
from anthropic_rx.demo._origin import REFUSED, OriginCheck, normalize_origin

HOST = "chat.example:8000"
OWN = f"http://{HOST}"
METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


class Counting:
    """The guarded app: answers ``{"ok": true}`` and counts the requests that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def endpoint(self, request: Request) -> Response:
        self.calls += 1
        return JSONResponse({"ok": True, "body": (await request.body()).decode()})

    def app(self, **options: list[str]) -> OriginCheck:
        inner = Starlette(routes=[Route("/thing", self.endpoint, methods=METHODS)])
        return OriginCheck(inner, **options)


@contextlib.asynccontextmanager
async def client(app: OriginCheck) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://chat.example:8000"
    ) as http:
        yield http


async def send(
    app: OriginCheck, method: str = "POST", *, host: str = HOST, **headers: str
) -> httpx.Response:
    async with client(app) as http:
        return await http.request(
            method,
            "/thing",
            content=b"x=1",
            headers={"host": host, **{k.replace("_", "-"): v for k, v in headers.items()}},
        )


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and response.json() == REFUSED


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_same_origin_request_reaches_the_app(method: str) -> None:
    counting = Counting()
    response = await send(counting.app(), method, origin=OWN, sec_fetch_site="same-origin")
    assert response.status_code == 200 and response.json() == {"ok": True, "body": "x=1"}
    assert counting.calls == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://chat.example",  # another port
        "https://chat.example:8000",  # another scheme
        "http://chat.example:8001",
        "http://sub.chat.example:8000",
        "null",
    ],
)
async def test_another_origin_is_refused_before_the_app(method: str, origin: str) -> None:
    counting = Counting()
    response = await send(counting.app(), method, origin=origin)
    assert refused(response)
    assert response.headers["content-type"] == "application/json"
    assert counting.calls == 0


async def test_origin_comparison_ignores_case_and_default_ports() -> None:
    counting = Counting()
    app = counting.app()
    assert (await send(app, origin="HTTP://Chat.Example:8000")).status_code == 200
    assert (await send(app, host="chat.example", origin="http://chat.example:80")).status_code == (
        200
    )
    assert (await send(app, host="chat.example:80", origin="http://chat.example")).status_code == (
        200
    )
    assert counting.calls == 3


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
async def test_safe_methods_are_never_checked(method: str) -> None:
    counting = Counting()
    response = await send(counting.app(), method, origin="http://evil.example")
    assert response.status_code == 200
    assert counting.calls == 1


async def test_the_referer_is_the_fallback_without_an_origin() -> None:
    counting = Counting()
    app = counting.app()
    ok = await send(app, referer=f"{OWN}/some/page?q=1#top")
    assert ok.status_code == 200
    assert refused(await send(app, referer="http://evil.example/page"))
    assert refused(await send(app, referer="http://chat.example:9000/"))
    # The Origin decides when both are sent.
    assert refused(await send(app, origin="http://evil.example", referer=f"{OWN}/"))
    assert (await send(app, origin=OWN, referer="http://evil.example/")).status_code == 200
    assert counting.calls == 2


async def test_sec_fetch_site_same_origin_is_accepted_and_others_need_an_origin() -> None:
    counting = Counting()
    app = counting.app()
    # Behind a proxy that rewrites Host, the browser's verdict still lets the page post.
    assert (
        await send(app, host="10.0.0.5:8080", origin=OWN, sec_fetch_site="same-origin")
    ).status_code == 200
    for site in ("cross-site", "same-site", "none", "bogus"):
        assert refused(await send(app, sec_fetch_site=site)), site
        assert refused(await send(app, sec_fetch_site=site, origin="http://evil.example")), site
    assert counting.calls == 1


async def test_a_request_with_no_browser_headers_is_a_script_and_passes() -> None:
    counting = Counting()
    response = await send(counting.app())  # what curl sends: no Origin, Referer, Sec-Fetch-Site
    assert response.status_code == 200
    assert counting.calls == 1


async def test_allowed_origins_are_accepted_besides_the_own_one() -> None:
    counting = Counting()
    app = counting.app(allowed_origins=["https://Front.example", "http://[::1]:3000"])
    assert (await send(app, origin="https://front.example:443")).status_code == 200
    assert (
        await send(app, origin="http://[0:0::1]:3000", sec_fetch_site="cross-site")
    ).status_code == 200
    assert (await send(app, referer="https://front.example/app")).status_code == 200
    assert (await send(app, origin=OWN)).status_code == 200
    assert refused(await send(app, origin="https://front.example:8443"))
    assert refused(await send(app, origin="http://front.example"))
    assert counting.calls == 4


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("[::1]:8000", "http://[::1]:8000"),
        ("[::1]", "http://[::1]"),
        ("[::1]", "http://[::1]:80"),
        ("[0:0:0:0:0:0:0:1]:8000", "http://[::1]:8000"),
        ("[2001:DB8::1]:8000", "http://[2001:db8::1]:8000"),
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("localhost:8000", "http://localhost:8000"),
    ],
)
async def test_ipv6_and_port_host_forms_match(host: str, origin: str) -> None:
    counting = Counting()
    assert (await send(counting.app(), host=host, origin=origin)).status_code == 200
    assert counting.calls == 1


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("[::1]:8000", "http://[::2]:8000"),
        ("[::1]:8000", "http://[::1]:8001"),
        ("[::1]:8000", "http://127.0.0.1:8000"),
        ("127.0.0.1:8000", "http://localhost:8000"),
    ],
)
async def test_ipv6_and_port_host_forms_differ(host: str, origin: str) -> None:
    counting = Counting()
    assert refused(await send(counting.app(), host=host, origin=origin))
    assert counting.calls == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": f"{OWN}/"},  # an origin has no path
        {"origin": f"{OWN}/path"},
        {"origin": f"{OWN} http://evil.example"},
        {"origin": "chat.example:8000"},
        {"origin": "ftp://chat.example:8000"},
        {"origin": "http://"},
        {"origin": ""},
        {"origin": "http://chat.example:80000"},
        {"origin": "http://chat.example:0"},
        {"origin": "http://chat.example:-1"},
        {"origin": "http://chat.example:8000:8000"},
        {"origin": "http://chat.example:"},
        {"origin": "http://::1:8000"},
        {"origin": "http://[::1"},
        {"origin": "http://[not-v6]:8000"},
        {"origin": "http://user@chat.example:8000"},
        {"origin": "http://ch\u00e4t.example:8000"},
        {"origin": "http://" + "a" * 5000},
        {"referer": "/relative/page"},
        {"referer": "http://[::1/page"},
        {"referer": "http://chat.example:99999/"},
        {"referer": "javascript:alert(1)"},
        {"referer": ""},
    ],
)
async def test_malformed_headers_are_refused_never_a_500(headers: dict[str, str]) -> None:
    counting = Counting()
    async with client(counting.app()) as http:
        encoded = {b"host": HOST.encode()}
        encoded.update({k.encode(): v.encode("utf-8") for k, v in headers.items()})
        response = await http.post("/thing", headers=encoded)
    assert refused(response)
    assert counting.calls == 0


async def test_duplicate_headers_and_a_bad_host_are_refused() -> None:
    counting = Counting()
    app = counting.app()
    async with client(app) as http:
        twice = await http.post(
            "/thing", headers=[("host", HOST), ("origin", OWN), ("origin", OWN)]
        )
        assert refused(twice)
        bad_host = await http.post("/thing", headers={"host": "chat.example:x", "origin": OWN})
        assert refused(bad_host)
    # Without a Host header the own origin is unknown: only an allowed origin passes.
    scope_app = counting.app(allowed_origins=["http://front.example"])
    assert await status_without_host(scope_app, OWN) == 403
    assert await status_without_host(scope_app, "http://front.example") == 200
    assert counting.calls == 1


async def status_without_host(app: OriginCheck, origin: str) -> object:
    """The status an HTTP/1.0 POST with no ``Host`` header, from ``origin``, is answered."""
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def collect(message: object) -> None:
        assert isinstance(message, dict)
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.0",
        "method": "POST",
        "scheme": "http",
        "path": "/thing",
        "raw_path": b"/thing",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"origin", origin.encode())],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }
    await app(scope, receive, collect)
    return sent[0]["status"]


def test_allowed_origins_must_parse() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        OriginCheck(Starlette(), allowed_origins=["https://front.example/"])
    with pytest.raises(ValueError, match="not an origin"):
        OriginCheck(Starlette(), allowed_origins=["front.example"])
    assert normalize_origin(" HTTPS://Front.Example:443 ") == "https://front.example"
    assert normalize_origin("http://[0::1]:8000") == "http://[::1]:8000"
    with pytest.raises(ValueError, match="not an origin"):
        normalize_origin("null")


# --- the demo app behind the guard -----------------------------------------------------------


@contextlib.asynccontextmanager
async def guarded_demo(
    tmp_path: Path, fake: testing.FakeAnthropic, *, allowed_origins: tuple[str, ...] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app as ``create_app`` makes it (``OriginCheck`` outermost), lifespan run, and
    a browser-like client of it."""
    app = create_app(
        DemoSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path}/demo.db",
            fake=fake,
            tokens_per_second=500,
            allowed_origins=allowed_origins,
        )
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as http:
            yield http


async def test_the_demo_refuses_forged_posts_and_serves_its_own_page(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    own = {"origin": "http://demo", "sec-fetch-site": "same-origin"}
    evil = {"origin": "http://evil.example", "sec-fetch-site": "cross-site"}
    async with guarded_demo(tmp_path, fake) as http:
        assert refused(await http.post("/api/conversations", headers=evil))
        assert (await http.get("/api/conversations", headers=evil)).json() == []

        created = await http.post("/api/conversations", headers=own)
        assert created.status_code == 201
        cid = created.json()["id"]

        forged = await http.post(
            f"/api/conversations/{cid}/messages", json={"content": "hi"}, headers=evil
        )
        assert refused(forged)
        assert refused(await http.post(f"/api/conversations/{cid}/stop", headers=evil))
        assert refused(
            await http.post(
                f"/api/conversations/{cid}/messages",
                json={"content": "hi"},
                headers={"origin": "null"},
            )
        )
        # Reads are not checked: the page, the list and the messages load from anywhere
        # the cookie is sent (the owner check still applies).
        assert (await http.get("/", headers=evil)).status_code == 200
        assert (await http.get(f"/api/conversations/{cid}/messages", headers=evil)).json() == []
        assert (await http.get(f"/api/conversations/{cid}/stream", headers=evil)).status_code == (
            204
        )
        # The page's own posts, and a script's (no browser headers), go through.
        fake.add_stream(testing.text_reply("Fine."), tokens_per_second=500)
        asked = await http.post(
            f"/api/conversations/{cid}/messages",
            json={"content": "hi"},
            headers={"referer": "http://demo/"},
        )
        assert asked.status_code == 202, asked.text
        assert (await http.post(f"/api/conversations/{cid}/stop")).status_code == 202
    assert len(fake.requests) == 1


async def test_the_demos_allowed_origins_come_from_its_settings(tmp_path: Path) -> None:
    fake = testing.FakeAnthropic()
    front = {"origin": "https://front.example", "sec-fetch-site": "cross-site"}
    async with guarded_demo(tmp_path, fake, allowed_origins=("https://front.example",)) as http:
        assert (await http.post("/api/conversations", headers=front)).status_code == 201
        other = {"origin": "https://other.example", "sec-fetch-site": "cross-site"}
        assert refused(await http.post("/api/conversations", headers=other))


def test_allowed_origins_are_read_from_the_environment_and_checked() -> None:
    settings = DemoSettings.from_env(
        {"ANTHROPIC_RX_DEMO_ALLOWED_ORIGINS": " https://a.example , http://b.example:8080 ,"}
    )
    assert settings.allowed_origins == ("https://a.example", "http://b.example:8080")
    with pytest.raises(ValueError, match="not an origin"):
        DemoSettings.from_env({"ANTHROPIC_RX_DEMO_ALLOWED_ORIGINS": "a.example/path"})
