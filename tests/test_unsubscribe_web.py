"""One-click unsubscribe over real HTTP: only a POST of List-Unsubscribe=One-Click with a
well-formed token unsubscribes; GETs from link scanners never do."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any, cast
from urllib.parse import urlencode

import pytest
import treq
from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.web.client import ResponseNeverReceived
from twisted.web.server import Site

from inbound.unsubscribe_web import MAX_BODY, UnsubscribeResource
from tests.redis_server import free_port

TOKEN = "hq3xw7r2k5mzb4tnc6vd2fy7ga"
EXPIRED = "m2n3b4v5c6x7z2l3k4j5h6g7f2"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
FORM: Any = {"Content-Type": "application/x-www-form-urlencoded"}


class Recorder:
    """The injected unsubscribe: knows TOKEN, can fail, can be held until released."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.error: Exception | None = None
        self.hold: asyncio.Event | None = None

    async def __call__(self, token: str) -> bool:
        self.calls.append(token)
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        return token == TOKEN


class Server:
    def __init__(self, url: str, recorder: Recorder) -> None:
        self.url = url
        self.recorder = recorder

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Any = None,
    ) -> tuple[int, Any, str]:
        response = await _wait(
            treq.request(method, self.url + path, data=body, headers=headers or {})
        )
        return response.code, response.headers, await _wait(response.text("utf-8"))

    async def one_click(self, token: str = TOKEN) -> tuple[int, str]:
        code, _, text = await self.request(
            "POST", f"/unsubscribe/{token}", urlencode(ONE_CLICK).encode(), FORM
        )
        return code, text.strip()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    from twisted.internet import reactor

    recorder = Recorder()
    site = Site(UnsubscribeResource(recorder))  # type: ignore[no-untyped-call]
    port = free_port()
    tcp: Any = reactor
    listening = tcp.listenTCP(port, site, interface="127.0.0.1")
    yield Server(f"http://127.0.0.1:{port}", recorder)
    await _wait(listening.stopListening())


async def _wait(deferred: Deferred[Any]) -> Any:
    return await deferred.asFuture(asyncio.get_running_loop())


class FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.method = ""
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.buttons = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.method = values.get("method") or ""
            self.action = values.get("action")
        elif tag == "input":
            self.fields[values["name"] or ""] = values.get("value") or ""
        elif tag == "button":
            self.buttons += 1


async def test_one_click_post_unsubscribes(server: Server) -> None:
    assert await server.one_click() == (200, "You are unsubscribed from reminders and follow-ups.")
    assert server.recorder.calls == [TOKEN]


async def test_multipart_one_click_post(server: Server) -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\r\n--XyZ--\r\n"
    )
    code, _, _ = await server.request(
        "POST",
        f"/unsubscribe/{TOKEN}",
        body,
        {"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert code == 200
    assert server.recorder.calls == [TOKEN]


async def test_unknown_or_expired_token(server: Server) -> None:
    assert await server.one_click(EXPIRED) == (404, "This link is unknown or has expired.")
    assert server.recorder.calls == [EXPIRED]


async def test_get_shows_a_button_and_unsubscribes_no_one(server: Server) -> None:
    code, headers, page = await server.request("GET", f"/unsubscribe/{TOKEN}")
    assert code == 200
    assert headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    assert headers.getRawHeaders("referrer-policy") == ["no-referrer"]
    assert "frame-ancestors 'none'" in headers.getRawHeaders("content-security-policy")[0]
    form = FormFields()
    form.feed(page)
    # It posts back to its own URL what a mail client posts.
    assert (form.method, form.action, form.fields, form.buttons) == ("post", None, ONE_CLICK, 1)
    assert server.recorder.calls == []
    code, _, _ = await server.request("HEAD", f"/unsubscribe/{TOKEN}")
    assert code == 200
    assert server.recorder.calls == []


async def test_the_page_s_button_works(server: Server) -> None:
    _, _, page = await server.request("GET", f"/unsubscribe/{TOKEN}")
    form = FormFields()
    form.feed(page)
    code, _, _ = await server.request(
        "POST", f"/unsubscribe/{TOKEN}", urlencode(form.fields).encode(), FORM
    )
    assert code == 200
    assert server.recorder.calls == [TOKEN]


async def test_page_in_french(server: Server) -> None:
    french = {"Accept-Language": "fr-FR,fr;q=0.9,en;q=0.5"}
    _, _, page = await server.request("GET", f"/unsubscribe/{TOKEN}", headers=french)
    assert '<html lang="fr">' in page and "Me désabonner" in page
    code, _, text = await server.request(
        "POST", f"/unsubscribe/{TOKEN}", urlencode(ONE_CLICK).encode(), {**FORM, **french}
    )
    assert (code, text.strip()) == (200, "Vous êtes désabonné(e) des rappels et suivis.")
    _, _, page = await server.request(
        "GET", f"/unsubscribe/{TOKEN}", headers={"Accept-Language": "en-GB,fr;q=0.8"}
    )
    assert '<html lang="en">' in page


@pytest.mark.parametrize(
    "path",
    [
        f"/unsubscribe/{TOKEN.upper()}",
        f"/unsubscribe/{TOKEN[:-1]}",
        f"/unsubscribe/{TOKEN}a",
        f"/unsubscribe/{TOKEN[:-1]}8",
        f"/unsubscribe/{TOKEN}/",
        f"/unsubscribe/{TOKEN}/more",
        f"/unsubscribe//{TOKEN}",
        "/unsubscribe/",
        "/unsubscribe",
        f"/{TOKEN}",
        "/",
    ],
)
async def test_malformed_token_is_not_found(server: Server, path: str) -> None:
    for method in ("GET", "POST"):
        code, _, _ = await server.request(method, path, urlencode(ONE_CLICK).encode(), FORM)
        assert code == 404, method
    assert server.recorder.calls == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
async def test_other_methods(server: Server, method: str) -> None:
    code, headers, _ = await server.request(
        method, f"/unsubscribe/{TOKEN}", urlencode(ONE_CLICK).encode(), FORM
    )
    assert code == 405
    assert headers.getRawHeaders("allow") == ["GET, HEAD, POST"]
    assert server.recorder.calls == []


async def test_body_too_large(server: Server) -> None:
    body = urlencode({**ONE_CLICK, "padding": "x" * MAX_BODY}).encode()
    code, _, _ = await server.request("POST", f"/unsubscribe/{TOKEN}", body, FORM)
    assert code == 413
    assert server.recorder.calls == []


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"", FORM),
        (b"List-Unsubscribe=Two-Clicks", FORM),
        (b"list-unsubscribe=one-click", FORM),
        (b"List-Unsubscribe=One-Click", {"Content-Type": "text/plain"}),
    ],
)
async def test_post_without_one_click(server: Server, body: bytes, headers: dict[str, str]) -> None:
    code, _, text = await server.request("POST", f"/unsubscribe/{TOKEN}", body, headers)
    assert (code, text.strip()) == (400, "expected List-Unsubscribe=One-Click")
    assert server.recorder.calls == []


async def test_failure_to_record_is_a_server_error(server: Server) -> None:
    server.recorder.error = ConnectionError("Redis is down")
    assert await server.one_click() == (500, "not recorded, please try again")
    server.recorder.error = None
    assert (await server.one_click())[0] == 200


async def test_client_hanging_up_before_the_answer(server: Server) -> None:
    failures: list[dict[str, Any]] = []
    observer = cast(ILogObserver, failures.append)
    globalLogPublisher.addObserver(observer)
    try:
        server.recorder.hold = asyncio.Event()
        pending = treq.post(
            f"{server.url}/unsubscribe/{TOKEN}", data=urlencode(ONE_CLICK).encode(), headers=FORM
        )
        while not server.recorder.calls:
            await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(ResponseNeverReceived):
            await _wait(pending)
        # Time for the server to see the connection closed before it answers.
        await asyncio.sleep(0.1)
        server.recorder.hold.set()
        await asyncio.sleep(0.05)
        gc.collect()  # Deferreds that failed unhandled say so when collected.
    finally:
        globalLogPublisher.removeObserver(observer)
    assert [e for e in failures if "log_failure" in e] == []
    server.recorder.hold = None
    assert await server.one_click() == (200, "You are unsubscribed from reminders and follow-ups.")
    assert server.recorder.calls == [TOKEN, TOKEN]
