"""The `kannel` SMS provider against a real Kannel (bearerbox, smsbox, fakesmsc as the SMSC)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import ValidationError
from twisted.internet import defer
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from gateway.sms_provider import (
    CallbackRefused,
    DeliveryReceipt,
    IncomingText,
    MalformedCallback,
    ProviderContext,
    ProviderError,
    TextMessage,
    WebhookAnswer,
    WebhookRequest,
    check_options,
    find_plugin,
)
from outbound.sms.kannel import PLUGIN, KannelOptions, KannelProvider, kannel_config
from tests.kannel_server import Kannel, eventually, start_kannel
from tests.redis_server import free_port

# Characters Kannel's URL handling could mangle: quotes and backslash in kannel.conf, and
# %-codes (%C3, %d, %A) that Kannel would expand in its callback URLs.
PASSWORD = 'pa"ss\\word %d'
SECRET = "secret+/=%C3%d%A&x=1 0123456789abcdefghijklmnopqrstuvwxyz"
SENDER = "Salon"


@dataclass(frozen=True)
class Callback:
    """One call of Kannel to the webhook: what the provider made of it, or its refusal."""

    path: str
    request: WebhookRequest
    result: DeliveryReceipt | IncomingText | Exception


class Webhook(Resource):
    """Stands in for the gateway's webhook: hands /sms/kannel/<path> to the provider and
    answers as the gateway would (the acknowledgement, 403 refused, 400 malformed)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.provider: KannelProvider | None = None
        self.calls: list[Callback] = []
        self.url = ""

    def render_GET(self, request: Request) -> bytes:
        assert self.provider is not None
        path: Literal["status", "incoming"] = (
            "status" if request.path.endswith(b"/status") else "incoming"
        )
        hook = WebhookRequest(
            method="GET",
            url=request.uri.decode(),
            headers={
                k.decode().lower(): v[0].decode()
                for k, v in request.requestHeaders.getAllRawHeaders()
            },
            params={k.decode(): v[0].decode() for k, v in request.args.items()},
        )
        try:
            result: DeliveryReceipt | IncomingText | Exception = (
                self.provider.receipt(hook) if path == "status" else self.provider.incoming(hook)
            )
            answer = self.provider.acknowledgement(path)
        except CallbackRefused as exc:
            result, answer = exc, WebhookAnswer(403)
        except MalformedCallback as exc:
            result, answer = exc, WebhookAnswer(400)
        self.calls.append(Callback(path, hook, result))
        request.setResponseCode(answer.status)
        request.setHeader(b"content-type", answer.content_type.encode())
        return answer.body

    async def receipts(self, reference: str, count: int) -> list[DeliveryReceipt]:
        """The first `count` delivery reports for `reference`."""

        def found() -> list[DeliveryReceipt] | None:
            receipts = [
                c.result
                for c in self.calls
                if isinstance(c.result, DeliveryReceipt) and c.result.provider_id == reference
            ]
            return receipts if len(receipts) >= count else None

        return await eventually(found, f"{count} delivery reports for {reference} never came")

    async def incoming_from(self, sender: str) -> Callback:
        return await eventually(
            lambda: next(
                (
                    c
                    for c in self.calls
                    if c.path == "incoming" and c.request.params.get("from") == sender
                ),
                None,
            ),
            f"no incoming text from {sender} reached the webhook",
        )


@pytest.fixture(scope="module")
async def webhook() -> AsyncIterator[Webhook]:
    from twisted.internet import reactor

    resource = Webhook()
    port = reactor.listenTCP(0, Site(resource), interface="127.0.0.1")
    resource.url = f"http://127.0.0.1:{port.getHost().port}"
    yield resource
    await defer.maybeDeferred(port.stopListening).asFuture(asyncio.get_running_loop())


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("kannel-files")
    (directory / "password").write_text(PASSWORD + "\n")
    (directory / "wrong-password").write_text("not the password\n")
    (directory / "secret").write_text(SECRET + "\n")
    return directory


def options(files: Path, **table: Any) -> KannelOptions:
    return check_options(
        PLUGIN,
        {"password_file": "password", "callback_secret_file": "secret", "sender": SENDER, **table},
        files,
    )


@pytest.fixture(scope="module")
def context(webhook: Webhook, files: Path) -> ProviderContext:
    return ProviderContext("kannel", webhook.url, files)


@pytest.fixture(scope="module")
def kannel(
    tmp_path_factory: pytest.TempPathFactory, files: Path, context: ProviderContext
) -> Iterator[Kannel]:
    """Kannel set up with the groups kannel_config() gives the administrator."""
    server = start_kannel(tmp_path_factory.mktemp("kannel"), kannel_config(options(files), context))
    yield server
    server.stop()


@pytest.fixture(scope="module")
async def provider(
    kannel: Kannel, files: Path, context: ProviderContext, webhook: Webhook
) -> AsyncIterator[KannelProvider]:
    made = KannelProvider(options(files, sendsms_url=kannel.sendsms_url), context)
    webhook.provider = made
    yield made
    await made.close()


def text(
    to: str, body: str, reference: str, encoding: Literal["gsm7", "ucs2"] = "gsm7"
) -> TextMessage:
    return TextMessage(to=to, text=body, reference=reference, encoding=encoding, parts=1)


# --- against Kannel ---


async def test_a_text_reaches_the_phone_and_its_reports_come_back(
    provider: KannelProvider, kannel: Kannel, webhook: Webhook
) -> None:
    body = "Rendez-vous chez Élise le 3 mai à 10h, 20 € ^{}"
    # the reference travels in the dlr-url: characters that need escaping must survive
    reference = "job-1:+33612340001/é %d"
    accepted = await provider.send(text("+33612340001", body, reference))
    assert accepted.provider_id == reference
    sms = await kannel.smsc.text_to("+33612340001")
    assert (sms.sender, sms.text, sms.parts) == (SENDER, body, 1)
    # dlr-mask 31: the SMSC's acceptance (8), then the handset's delivery (1), in either order
    receipts = await webhook.receipts(reference, 2)
    assert sorted(receipts, key=lambda r: r.detail) == [
        DeliveryReceipt(reference, True, "1 delivered to the phone"),
        DeliveryReceipt(reference, None, "8 accepted by the SMSC: ACK/"),
    ]


async def test_a_ucs2_text_arrives_whole(provider: KannelProvider, kannel: Kannel) -> None:
    body = "Запись подтверждена ✓ 予約 🙂"
    await provider.send(text("+33612340002", body, "job-2", "ucs2"))
    assert (await kannel.smsc.text_to("+33612340002")).text == body


async def test_a_long_text_goes_in_parts(provider: KannelProvider, kannel: Kannel) -> None:
    body = "Rappel : " + "votre rendez-vous est confirmé. " * 8
    await provider.send(text("+33612340003", body, "job-3"))
    sms = await kannel.smsc.text_to("+33612340003")
    assert (sms.text, sms.parts) == (body, 2)


async def test_kannel_takes_a_text_with_the_validity_of_its_deadline(
    provider: KannelProvider, kannel: Kannel
) -> None:
    # Ten minutes left: Kannel takes `validity` (minutes) and passes the text on within it.
    message = replace(text("+33612340005", "Rappel", "job-5"), valid_for=600)
    await provider.send(message)
    assert (await kannel.smsc.text_to("+33612340005")).text == "Rappel"


async def test_a_text_from_a_phone_reaches_the_webhook(
    provider: KannelProvider, kannel: Kannel, webhook: Webhook
) -> None:
    await kannel.smsc.send("+33698760001", "12345", "Stop  merci")
    await kannel.smsc.send("+33698760002", "12345", "Отмена, спасибо")
    first = await webhook.incoming_from("+33698760001")
    second = await webhook.incoming_from("+33698760002")
    assert first.result == IncomingText("+33698760001", "Stop  merci")
    assert second.result == IncomingText("+33698760002", "Отмена, спасибо")
    # max-messages = 0: Kannel answered nothing of its own to the phone
    await asyncio.sleep(1)
    assert not [s for s in kannel.smsc.received if s.receiver.startswith("+3369876")]


async def test_a_wrong_password_is_a_temporary_refusal(
    kannel: Kannel, files: Path, context: ProviderContext
) -> None:
    wrong = KannelProvider(
        options(files, sendsms_url=kannel.sendsms_url, password_file="wrong-password"), context
    )
    try:
        with pytest.raises(ProviderError) as refused:
            await wrong.send(text("+33612340004", "Bonjour", "job-4"))
    finally:
        await wrong.close()
    assert refused.value.code == "403"
    assert refused.value.temporary
    assert "Authorization failed for sendsms" in str(refused.value)


async def test_a_malformed_request_is_a_permanent_refusal(provider: KannelProvider) -> None:
    with pytest.raises(ProviderError) as refused:
        await provider.send(text("+336123400x5", "Bonjour", "job-5"))
    assert refused.value.code == "400"
    assert not refused.value.temporary
    assert "denied" in refused.value.detail


# --- without Kannel ---


async def test_an_unreachable_kannel_is_a_temporary_failure(
    files: Path, context: ProviderContext
) -> None:
    url = f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms"
    down = KannelProvider(options(files, sendsms_url=url), context)
    with pytest.raises(ProviderError) as failed:
        await down.send(text("+33612340006", "Bonjour", "job-6"))
    await down.close()
    assert failed.value.temporary
    assert f"cannot reach Kannel at {url}" in str(failed.value)
    assert PASSWORD not in str(failed.value)


async def test_a_silent_kannel_times_out(files: Path, context: ProviderContext) -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = KannelProvider(
        options(files, sendsms_url=f"http://127.0.0.1:{port}/cgi-bin/sendsms", timeout=0.2),
        context,
    )
    with pytest.raises(ProviderError, match=r"did not answer within 0\.2s") as failed:
        await silent.send(text("+33612340007", "Bonjour", "job-7"))
    await silent.close()
    server.close()
    assert failed.value.temporary


def hook(**params: str) -> WebhookRequest:
    return WebhookRequest("GET", "http://127.0.0.1/sms/kannel/status", {}, params)


@pytest.fixture
def parser(files: Path, context: ProviderContext) -> KannelProvider:
    """A provider whose callbacks are parsed without sending anything (no connection)."""
    return KannelProvider(options(files), context)


@pytest.mark.parametrize(
    ("status", "delivered", "detail"),
    [
        ("1", True, "1 delivered to the phone"),
        ("2", False, "2 not delivered to the phone: NACK/0x0b/Invalid Destination"),
        ("4", None, "4 queued at the SMSC"),
        ("8", None, "8 accepted by the SMSC"),
        ("16", False, "16 refused by the SMSC: NACK/0x0b/Invalid Destination"),
    ],
)
def test_delivery_report_types(
    parser: KannelProvider, status: str, delivered: bool | None, detail: str
) -> None:
    answer = "NACK/0x0b/Invalid Destination" if delivered is False else ""
    receipt = parser.receipt(hook(reference="r1", status=status, answer=answer, secret=SECRET))
    assert receipt == DeliveryReceipt("r1", delivered, detail)


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"status": "1"}, "without reference"),
        ({"reference": "r1"}, "without status"),
        ({"reference": "r1", "status": "3"}, "unknown status '3'"),
        ({"reference": "r1", "status": "%d"}, "unknown status '%d'"),
    ],
)
def test_malformed_delivery_reports(
    parser: KannelProvider, params: dict[str, str], error: str
) -> None:
    with pytest.raises(MalformedCallback, match=error):
        parser.receipt(hook(secret=SECRET, **params))


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"data": "41", "charset": "UTF-8"}, "without from"),
        ({"from": "+33698760003", "data": "41"}, "without charset"),
        ({"from": "+33698760003", "data": "4x", "charset": "UTF-8"}, "not hexadecimal"),
        ({"from": "+33698760003", "data": "41", "charset": "8-BIT"}, "not a text encoding"),
        ({"from": "+33698760003", "data": "C3", "charset": "UTF-8"}, "not valid UTF-8"),
    ],
)
def test_malformed_incoming_texts(
    parser: KannelProvider, params: dict[str, str], error: str
) -> None:
    with pytest.raises(MalformedCallback, match=error):
        parser.incoming(hook(secret=SECRET, **params))


def test_an_empty_incoming_text(parser: KannelProvider) -> None:
    incoming = parser.incoming(hook(secret=SECRET, charset="UTF-8", **{"from": "+33698760004"}))
    assert incoming == IncomingText("+33698760004", "")


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], SECRET + "x"])
def test_callbacks_without_the_secret_are_refused(
    parser: KannelProvider, secret: str | None
) -> None:
    given = {} if secret is None else {"secret": secret}
    with pytest.raises(CallbackRefused, match="secret"):
        parser.receipt(hook(reference="r1", status="1", **given))
    with pytest.raises(CallbackRefused, match="secret"):
        parser.incoming(hook(data="41", charset="UTF-8", **{"from": "+33698760005"}, **given))


def test_without_a_secret_file_callbacks_need_none(files: Path, context: ProviderContext) -> None:
    open_provider = KannelProvider(options(files, callback_secret_file=None), context)
    assert open_provider.receipt(hook(reference="r1", status="1")).delivered is True


def test_acknowledgements_are_empty_200s(parser: KannelProvider) -> None:
    # Kannel's smsbox counts only 200 and 202 as success
    assert parser.acknowledgement("status") == WebhookAnswer(200)
    assert parser.acknowledgement("incoming") == WebhookAnswer(200)


# --- options ---


def test_the_plugin_is_registered() -> None:
    assert find_plugin("kannel") is PLUGIN


def test_options_defaults_and_paths(files: Path) -> None:
    checked = check_options(PLUGIN, {"password_file": "password"}, files)
    assert checked.sendsms_url == "http://127.0.0.1:13013/cgi-bin/sendsms"
    assert checked.username == "mailgw"
    assert checked.password_file == files / "password"
    assert (checked.sender, checked.smsc, checked.callback_secret_file) == (None, None, None)
    assert checked.dlr_mask == 31
    assert checked.timeout.total_seconds() == 30


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({}, "password_file"),
        ({"password_file": "missing"}, "file not found"),
        ({"password_file": "password", "callback_secret_file": "wrong-password"}, "32 bytes"),
        ({"password_file": "password", "sendsms_url": "ftp://host/"}, "http"),
        ({"password_file": "password", "sendsms_url": "http://h/s?user=a"}, "without query"),
        ({"password_file": "password", "dlr_mask": 32}, "dlr_mask"),
        ({"password_file": "password", "dlr_mask": "31"}, "dlr_mask"),
        ({"password_file": "password", "password": "inline"}, "password"),
    ],
)
def test_bad_options_are_refused(files: Path, table: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        check_options(PLUGIN, table, files)


def test_the_config_snippet(files: Path, context: ProviderContext) -> None:
    snippet = kannel_config(options(files), context)
    assert 'password = "pa\\"ss\\\\word %d"' in snippet
    assert "max-messages = 24" in snippet
    assert f'get-url = "{context.callback_url("incoming")}?secret=secret%%2B' in snippet
    assert "&from=%q&data=%e&charset=%C" in snippet
