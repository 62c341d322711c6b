"""One-click unsubscribe (RFC 8058) at /unsubscribe/<token>, served with Twisted web."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, Literal

from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from gateway.addresses import UNSUBSCRIBE_PATH
from gateway.message_tokens import MESSAGE_TOKEN

log = logging.getLogger(__name__)

PATH: Final = re.compile(f"{UNSUBSCRIBE_PATH}({MESSAGE_TOKEN.pattern})".encode())
# A one-click body is 26 bytes, a browser's post of the page's button as many.
MAX_BODY: Final = 1024
ALLOWED: Final = "GET, HEAD, POST"

Language = Literal["en", "fr"]
Unsubscribe = Callable[[str], Awaitable[bool]]

_TEXTS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "title": "Unsubscribe",
        "question": "Stop the reminders and follow-ups of your appointments? Confirmations "
        "and changes of your appointments will still be sent to you.",
        "button": "Unsubscribe",
        "done": "You are unsubscribed from reminders and follow-ups.",
        "unknown": "This link is unknown or has expired.",
    },
    "fr": {
        "title": "Désabonnement",
        "question": "Ne plus recevoir les rappels et suivis de vos rendez-vous ? Les "
        "confirmations et modifications de vos rendez-vous vous seront toujours envoyées.",
        "button": "Me désabonner",
        "done": "Vous êtes désabonné(e) des rappels et suivis.",
        "unknown": "Ce lien est inconnu ou a expiré.",
    },
}
# The button posts what a mail client posts (RFC 8058 section 3.1) to the page's own URL.
_PAGE: Final = """<!doctype html>
<html lang="{lang}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title></head>
<body><form method="post"><p>{question}</p>
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">{button}</button></form></body>
</html>
"""
_PAGE_HEADERS: Final = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "vary": "accept-language",
}


class UnsubscribeResource(Resource):
    """GET (and HEAD) answer a page whose button unsubscribes: mail clients and link
    scanners fetch links, so only a POST of List-Unsubscribe=One-Click calls `unsubscribe`
    (True: recorded, 200; False: unknown or expired token, 404). 500 when it fails."""

    isLeaf = True

    def __init__(self, unsubscribe: Unsubscribe) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.unsubscribe = unsubscribe

    def render(self, request: Request) -> bytes | int:
        match = PATH.fullmatch(request.path)
        language = _language(request)
        if match is None:
            return _text(request, 404, _TEXTS[language]["unknown"])
        if request.method in (b"GET", b"HEAD"):
            return _page(request, language)
        if request.method != b"POST":
            request.setHeader("allow", ALLOWED)  # type: ignore[no-untyped-call]
            return _text(request, 405, f"method not allowed: {ALLOWED}")
        body = request.content.read(MAX_BODY + 1) if request.content is not None else b""
        if len(body) > MAX_BODY:
            return _text(request, 413, f"request body larger than {MAX_BODY} bytes")
        # Twisted has read the form, URL-encoded or multipart (both allowed by RFC 8058).
        if b"One-Click" not in (request.args or {}).get(b"List-Unsubscribe", []):
            return _text(request, 400, "expected List-Unsubscribe=One-Click")
        # A client that hangs up early must not make finish() fail.
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        done = Deferred.fromFuture(asyncio.ensure_future(self.unsubscribe(match[1].decode())))
        done.addCallbacks(
            lambda recorded: _finish(
                request,
                200 if recorded else 404,
                _TEXTS[language]["done" if recorded else "unknown"],
                gone,
            ),
            lambda failure: _failed(request, failure, gone),
        )
        return NOT_DONE_YET


def _language(request: Request) -> Language:
    """French for browsers that put it first, else English."""
    accepted = request.getHeader("accept-language") or ""
    return "fr" if accepted.strip().lower().startswith("fr") else "en"


def _page(request: Request, language: Language) -> bytes:
    for name, value in _PAGE_HEADERS.items():
        request.setHeader(name, value)  # type: ignore[no-untyped-call]
    request.setHeader("content-type", "text/html; charset=utf-8")  # type: ignore[no-untyped-call]
    texts = _TEXTS[language]
    return _PAGE.format(lang=language, **texts).encode()


def _text(request: Request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader("content-type", "text/plain; charset=utf-8")  # type: ignore[no-untyped-call]
    return f"{text}\n".encode()


def _finish(request: Request, status: int, text: str, gone: list[bool]) -> None:
    if gone:
        return
    request.write(_text(request, status, text))  # type: ignore[no-untyped-call]
    request.finish()  # type: ignore[no-untyped-call]


def _failed(request: Request, failure: Any, gone: list[bool]) -> None:
    log.error("unsubscribe not recorded: %r", failure.value)
    _finish(request, 500, "not recorded, please try again", gone)
