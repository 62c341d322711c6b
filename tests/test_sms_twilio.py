"""The twilio provider: sending through treq to a loopback Twilio API, errors, signed webhooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from twilio.request_validator import RequestValidator, get_signature_algorithm

from gateway.sms_provider import (
    CallbackRefused,
    DeliveryReceipt,
    IncomingText,
    MalformedCallback,
    ProviderContext,
    ProviderError,
    TextMessage,
    WebhookRequest,
    check_options,
    find_plugin,
)
from outbound.sms.twilio import PLUGIN, TwilioProvider
from tests.redis_server import free_port
from tests.twilio_api import TwilioApi

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "f3a1c0ffee0ddba11c0ffee0ddba11f3"
FROM = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
WEBHOOK = "https://gw.example.com"
STATUS_URL = f"{WEBHOOK}/sms/twilio/status"
INCOMING_URL = f"{WEBHOOK}/sms/twilio/incoming"

MakeProvider = Callable[..., Awaitable[TwilioProvider]]


def text(
    to: str = "+33612345678", body: str = "Bonjour", callback: str | None = None
) -> TextMessage:
    return TextMessage(
        to=to, text=body, reference="job-1:0", encoding="ucs2", parts=1, status_callback=callback
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "twilio-token").write_text(TOKEN + "\n")
    return tmp_path


def options(folder: Path, **table: Any) -> Any:
    """The [sms.twilio] table checked as the configuration loader does (paths from `folder`)."""
    table = {"account_sid": SID, "auth_token_file": "twilio-token", "from_number": FROM, **table}
    return check_options(PLUGIN, {k: v for k, v in table.items() if v is not None}, folder)


@pytest.fixture
async def api() -> AsyncIterator[TwilioApi]:
    async with TwilioApi(SID, TOKEN) as server:
        yield server


@pytest.fixture
async def make_provider(folder: Path, api: TwilioApi) -> AsyncIterator[MakeProvider]:
    """Providers on `api` (or another base_url), closed after the test."""
    made: list[TwilioProvider] = []

    async def make(**table: Any) -> TwilioProvider:
        table.setdefault("base_url", api.url)
        context = ProviderContext(name="twilio", webhook_url=WEBHOOK, state_dir=folder)
        provider = PLUGIN.create(options(folder, **table), context)
        assert isinstance(provider, TwilioProvider)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


def test_registered_under_its_entry_point() -> None:
    assert find_plugin("twilio") is PLUGIN


# --- sending ---


async def test_sends_form_fields_with_basic_auth(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider()
    body = "Rendez-vous confirmé à 14h30 chez Élodie 💇"
    accepted = await provider.send(text(body=body))
    [request] = api.requests
    assert request.form == {
        "To": "+33612345678",
        "From": FROM,
        "Body": body,
        "StatusCallback": STATUS_URL,
    }
    assert (request.user, request.password) == (SID, TOKEN)
    assert request.content_type == "application/x-www-form-urlencoded"
    assert accepted.provider_id == request.sid
    assert accepted.provider_id.startswith("SM") and len(accepted.provider_id) == 34


async def test_the_time_left_before_the_deadline_is_the_validity_period(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    # Twilio's queue drops a text past it; beyond its 10-hour maximum (and without a
    # deadline) its own default, 36,000 seconds, applies.
    provider = await make_provider()
    for valid_for in (0, 600, 35_999, 36_000, 86_400, None):
        await provider.send(replace(text(), valid_for=valid_for))
    periods = [request.form.get("ValidityPeriod") for request in api.requests]
    assert periods == ["1", "600", "35999", None, None, None]


async def test_connections_are_reused_and_sends_run_concurrently(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider()
    results = await asyncio.gather(*(provider.send(text(body=f"n°{i}")) for i in range(20)))
    assert {r.provider_id for r in results} == {r.sid for r in api.requests}
    assert len(api.requests) == 20


async def test_messaging_service_and_message_callback(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider(from_number=None, messaging_service_sid=SERVICE)
    await provider.send(text(callback="https://elsewhere.example/cb"))
    assert api.requests[0].form == {
        "To": "+33612345678",
        "MessagingServiceSid": SERVICE,
        "Body": "Bonjour",
        "StatusCallback": "https://elsewhere.example/cb",
    }


async def test_no_status_callback_when_turned_off(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider(status_callbacks=False)
    await provider.send(text(callback="https://elsewhere.example/cb"))
    assert "StatusCallback" not in api.requests[0].form


# --- refusals ---


async def refusal(provider: TwilioProvider, message: TextMessage | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.send(message or text())
    return caught.value


async def test_invalid_number_is_permanent(make_provider: MakeProvider) -> None:
    # the stand-in checks To itself, as Twilio does
    error = await refusal(await make_provider(), text(to="+0612"))
    assert (error.code, error.temporary, error.opted_out) == ("21211", False, False)
    assert "The 'To' number +0612 is not a valid phone number." in error.detail
    assert "HTTP 400" in error.detail and "https://www.twilio.com/docs/errors/21211" in error.detail


async def test_unsubscribed_recipient_is_permanent_and_opted_out(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    api.fail_next(400, 21610, "Attempt to send to unsubscribed recipient")
    error = await refusal(await make_provider())
    assert (error.code, error.temporary, error.opted_out) == ("21610", False, True)
    assert "unsubscribed recipient" in error.detail


async def test_throttling_is_temporary_with_retry_after(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    api.fail_next(429, 20429, "Too Many Requests", {"Retry-After": "7"})
    error = await refusal(await make_provider())
    assert (error.code, error.temporary, error.retry_after) == ("20429", True, 7.0)


async def test_retry_after_as_a_date(make_provider: MakeProvider, api: TwilioApi) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    api.fail_next(503, 20503, "Service Unavailable", {"Retry-After": when})
    error = await refusal(await make_provider())
    assert error.temporary and error.retry_after is not None
    assert 110 < error.retry_after <= 120


async def test_server_error_is_temporary(make_provider: MakeProvider, api: TwilioApi) -> None:
    api.fail_next(503, 20503, "Service Unavailable")
    error = await refusal(await make_provider())
    assert (error.code, error.temporary, error.retry_after) == ("20503", True, None)
    assert "Service Unavailable (HTTP 503" in error.detail


async def test_wrong_credentials_are_temporary(folder: Path, make_provider: MakeProvider) -> None:
    (folder / "other-token").write_text("0" * 32)
    error = await refusal(await make_provider(auth_token_file="other-token"))
    assert (error.code, error.temporary) == ("20003", True)
    assert "Authenticate (HTTP 401" in error.detail


async def test_refused_connection_is_temporary(make_provider: MakeProvider) -> None:
    error = await refusal(await make_provider(base_url=f"http://127.0.0.1:{free_port()}"))
    assert (error.code, error.temporary) == ("", True)
    assert "cannot reach Twilio at http://127.0.0.1:" in error.detail
    assert "refused" in error.detail


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """A server that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(
        lambda _reader, writer: writers.append(writer), "127.0.0.1", 0
    )
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_timeout_is_temporary(make_provider: MakeProvider, silent_server: str) -> None:
    error = await refusal(await make_provider(base_url=silent_server, timeout="0.3s"))
    assert (error.code, error.temporary) == ("", True)
    assert "did not answer within 0.3s" in error.detail


# --- options ---


def problems(folder: Path, **table: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        options(folder, **table)
    return str(caught.value)


def test_options_defaults(folder: Path) -> None:
    checked = options(folder)
    assert checked.auth_token_file == folder / "twilio-token"
    assert checked.base_url == "https://api.twilio.com"
    assert checked.timeout.total_seconds() == 10
    assert checked.status_callbacks is True


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"account_sid": "AC123"}, "account_sid", "should match pattern"),
        ({"account_sid": "SK" + "0" * 32}, "account_sid", "should match pattern"),
        ({"messaging_service_sid": SERVICE}, "from_number", "exactly one of"),
        ({"from_number": None}, "from_number", "exactly one of"),
        ({"from_number": "0612345678"}, "from_number", "should match pattern"),
        (
            {"messaging_service_sid": "MG12", "from_number": None},
            "messaging_service_sid",
            "pattern",
        ),
        ({"auth_token_file": "missing"}, "auth_token_file", "file not found"),
        ({"base_url": "http://api.twilio.com"}, "base_url", "only allowed to a loopback"),
        ({"base_url": "https://api.twilio.com/2010-04-01"}, "base_url", "bare origin"),
        ({"timeout": "0s"}, "timeout", ""),
        ({"region": "ie1"}, "region", "Extra inputs are not permitted"),
    ],
)
def test_options_refused(folder: Path, table: dict[str, Any], key: str, words: str) -> None:
    message = problems(folder, **table)
    assert key in message and words in message


def test_empty_token_file_is_refused(folder: Path) -> None:
    (folder / "empty").write_text("\n")
    assert "is empty: put the auth token in it" in problems(folder, auth_token_file="empty")


def test_shared_keys_are_checked(folder: Path) -> None:
    (folder / "key.secret").write_text("c2VjcmV0\n")
    (folder / "empty").write_text("")
    key = {"id": "webhooks_sharedkey_1", "secret_file": "key.secret"}
    assert options(folder, shared_keys=[key]).shared_keys[0].secret_file == folder / "key.secret"
    assert "same id as shared_keys[0]" in problems(folder, shared_keys=[key, key])
    assert "is empty: put its secret in it" in problems(
        folder, shared_keys=[{**key, "secret_file": "empty"}]
    )
    assert "should match pattern" in problems(folder, shared_keys=[{**key, "id": "a,b=c"}])
    assert "file not found" in problems(folder, shared_keys=[{**key, "secret_file": "nope"}])


def test_http_to_loopback_is_allowed(folder: Path) -> None:
    assert options(folder, base_url="http://127.0.0.1:8080/").base_url == "http://127.0.0.1:8080"


# --- webhooks ---

STATUS = {
    "AccountSid": SID,
    "ApiVersion": "2010-04-01",
    "From": FROM,
    "MessageSid": "SM" + "a" * 32,
    "MessageStatus": "delivered",
    "SmsSid": "SM" + "a" * 32,
    "SmsStatus": "delivered",
    "To": "+33612345678",
}
INCOMING = {
    "AccountSid": SID,
    "Body": "STOP, merci d'arrêter 🙏",
    "From": "+33612345678",
    "MessageSid": "SM" + "b" * 32,
    "NumMedia": "0",
    "To": FROM,
}


def signed(
    url: str, params: dict[str, str], token: str = TOKEN, signed_url: str | None = None
) -> WebhookRequest:
    """A callback signed by the official twilio library's validator."""
    signature = RequestValidator(token).compute_signature(signed_url or url, params)
    return WebhookRequest("POST", url, {"x-twilio-signature": signature}, params)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, DeliveryReceipt("SM" + "a" * 32, True, "delivered")),
        ({"MessageStatus": "sent"}, DeliveryReceipt("SM" + "a" * 32, None, "sent")),
        (
            {"MessageStatus": "undelivered", "ErrorCode": "30003"},
            DeliveryReceipt("SM" + "a" * 32, False, "undelivered (30003)"),
        ),
        (
            {"MessageStatus": "failed", "ErrorCode": "30008"},
            DeliveryReceipt("SM" + "a" * 32, False, "failed (30008)"),
        ),
    ],
)
async def test_signed_status_callback(
    make_provider: MakeProvider, fields: dict[str, str], expected: DeliveryReceipt
) -> None:
    provider = await make_provider()
    assert provider.receipt(signed(STATUS_URL, {**STATUS, **fields})) == expected


async def test_signed_incoming_text(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    incoming = provider.incoming(signed(INCOMING_URL, INCOMING))
    assert incoming == IncomingText(sender="+33612345678", text="STOP, merci d'arrêter 🙏")


async def test_signature_with_default_port_written(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    request = signed(
        INCOMING_URL, INCOMING, signed_url="https://gw.example.com:443/sms/twilio/incoming"
    )
    assert provider.incoming(request).sender == "+33612345678"


async def test_unsigned_callbacks_are_refused(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    with pytest.raises(CallbackRefused, match=r"^unsigned Twilio status callback"):
        provider.receipt(WebhookRequest("POST", STATUS_URL, {}, STATUS))
    with pytest.raises(CallbackRefused, match=r"^unsigned Twilio incoming message"):
        provider.incoming(WebhookRequest("POST", INCOMING_URL, {}, INCOMING))


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(signed(STATUS_URL, STATUS, token="0" * 32), id="another token"),
        pytest.param(signed(STATUS_URL, STATUS, signed_url=INCOMING_URL), id="another url"),
        pytest.param(
            WebhookRequest(
                "POST",
                STATUS_URL,
                signed(STATUS_URL, STATUS).headers,
                {**STATUS, "MessageStatus": "failed"},
            ),
            id="altered field",
        ),
        pytest.param(
            WebhookRequest("POST", STATUS_URL, {"x-twilio-signature": "nonsense"}, STATUS),
            id="garbage",
        ),
    ],
)
async def test_forged_callbacks_are_refused(
    make_provider: MakeProvider, request_: WebhookRequest
) -> None:
    provider = await make_provider()
    with pytest.raises(CallbackRefused, match=r"^forged Twilio status callback"):
        provider.receipt(request_)


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
async def test_malformed_status_callback(make_provider: MakeProvider, missing: str) -> None:
    provider = await make_provider()
    fields = {k: v for k, v in STATUS.items() if k != missing}
    with pytest.raises(MalformedCallback, match=f"status callback without {missing}"):
        provider.receipt(signed(STATUS_URL, fields))


@pytest.mark.parametrize("missing", ["From", "Body"])
async def test_malformed_incoming_text(make_provider: MakeProvider, missing: str) -> None:
    provider = await make_provider()
    fields = {k: v for k, v in INCOMING.items() if k != missing}
    with pytest.raises(MalformedCallback, match=f"incoming message without {missing}"):
        provider.incoming(signed(INCOMING_URL, fields))


async def test_acknowledgements(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    assert provider.acknowledgement("status").status == 204
    answer = provider.acknowledgement("incoming")
    assert (answer.status, answer.content_type) == (200, "text/xml")
    assert answer.body == b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


KEY_ID = "webhooks_sharedkey_01jz8x5k2m4n6p8q0r2s4t6v8w"
KEY_SECRET = "c2hhcmVkIGtleSBzZWNyZXQ"


@pytest.mark.parametrize(
    "header",
    [
        f"key={KEY_ID},algorithm=HMAC_SHA256",
        f"algorithm=HMAC_SHA256,key={KEY_ID}",
        f" key = {KEY_ID} , algorithm = hmac_sha256 ",
        f"key={KEY_ID},algorithm=,algorithm=HMAC_SHA256",
        f"key={KEY_ID}",
        f"key={KEY_ID},algorithm=HMAC_SHA1",
        f"key={KEY_ID},ALGORITHM=HMAC_SHA256",
    ],
)
async def test_settings_header_read_as_twilio_reads_it(
    make_provider: MakeProvider, folder: Path, header: str
) -> None:
    """Signed as twilio's library signs for the algorithm its get_signature_algorithm reads
    in the header, with the SharedKey the header names."""
    (folder / "key.secret").write_text(KEY_SECRET)
    provider = await make_provider(shared_keys=[{"id": KEY_ID, "secret_file": "key.secret"}])
    algorithm = get_signature_algorithm(header)
    signature = RequestValidator(KEY_SECRET).compute_signature(
        STATUS_URL, STATUS, algorithm=algorithm
    )
    headers = {"x-twilio-signature": signature, "x-twilio-webhooks-signature-settings": header}
    request = WebhookRequest("POST", STATUS_URL, headers, STATUS)
    assert provider.receipt(request) == DeliveryReceipt("SM" + "a" * 32, True, "delivered")
    # the same signature under the other algorithm is not one
    other = "HMAC_SHA1" if algorithm.upper() == "HMAC_SHA256" else "HMAC_SHA256"
    forged = {**headers, "x-twilio-webhooks-signature-settings": f"key={KEY_ID},algorithm={other}"}
    with pytest.raises(CallbackRefused, match=r"^forged Twilio status callback"):
        provider.receipt(WebhookRequest("POST", STATUS_URL, forged, STATUS))


async def test_an_empty_settings_header_is_the_auth_token(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    request = signed(STATUS_URL, STATUS)
    headers = {**request.headers, "x-twilio-webhooks-signature-settings": " "}
    assert provider.receipt(WebhookRequest("POST", STATUS_URL, headers, STATUS)).delivered


# --- answers lost, and looking for the text ---


async def test_an_answer_lost_after_the_request_may_have_sent_the_text(
    make_provider: MakeProvider, api: TwilioApi, silent_server: str
) -> None:
    api.drop_next()
    dropped = await refusal(await make_provider())
    assert dropped.temporary and dropped.maybe_sent
    late = await refusal(await make_provider(base_url=silent_server, timeout="0.3s"))
    assert late.temporary and late.maybe_sent


async def test_refusals_and_unreachable_say_the_text_was_not_sent(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    api.fail_next(503, 20503, "Service Unavailable")
    assert not (await refusal(await make_provider())).maybe_sent
    unreachable = await make_provider(base_url=f"http://127.0.0.1:{free_port()}")
    assert not (await refusal(unreachable)).maybe_sent


async def test_find_sent_matches_number_and_body_from_the_time_given(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider()
    clock = [1_800_000_000.0]
    api.now = lambda: clock[0]
    old = await provider.send(text(body="Rappel"))
    clock[0] += 3600
    await provider.send(text(to="+33698765432", body="Rappel"))
    await provider.send(text(body="Autre chose"))
    wanted = await provider.send(text(body="Rappel"))
    clock[0] += 5
    again = await provider.send(text(body="Rappel"))

    found = await provider.find_sent(text(body="Rappel"), since=clock[0] - 5)
    assert [a.provider_id for a in found] == [wanted.provider_id, again.provider_id]
    assert api.lookups[-1] == {"To": "+33612345678", "From": FROM, "PageSize": "50"}
    # Twilio's clock may be behind ours by up to a minute; an hour is another text.
    assert old.provider_id not in {a.provider_id for a in found}
    assert [
        a.provider_id for a in await provider.find_sent(text(body="Rappel"), clock[0] + 50)
    ] == [
        wanted.provider_id,
        again.provider_id,
    ]
    assert await provider.find_sent(text(body="Rappel"), clock[0] + 70) == []


async def test_find_sent_reads_further_pages_while_they_are_recent(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider()
    clock = [1_800_000_000.0]
    api.now = lambda: clock[0]
    first = await provider.send(text(body="Le bon"))
    for n in range(120):
        clock[0] += 1
        await provider.send(text(body=f"Un autre {n}"))
    [found] = await provider.find_sent(text(body="Le bon"), since=1_800_000_000.0)
    assert found.provider_id == first.provider_id
    assert [q.get("Page", "0") for q in api.lookups] == ["0", "1", "2"]
    # Pages are not read past the messages older than the time asked about.
    api.lookups.clear()
    assert await provider.find_sent(text(body="Le bon"), since=clock[0] + 30) == []
    assert len(api.lookups) == 1


async def test_find_sent_skips_what_twilio_did_not_send(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider()
    api.now = lambda: 1_800_000_000.0
    failed = await provider.send(text(body="Rappel"))
    api.statuses[failed.provider_id] = "failed"
    assert await provider.find_sent(text(body="Rappel"), since=1_800_000_000.0) == []


async def test_find_sent_that_cannot_list_is_a_temporary_error(
    make_provider: MakeProvider, api: TwilioApi
) -> None:
    provider = await make_provider()
    api.fail_lookups(500, 20500, "Internal Server Error")
    with pytest.raises(ProviderError) as failed:
        await provider.find_sent(text(), since=0.0)
    assert failed.value.temporary
    assert "listing messages: Internal Server Error (HTTP 500" in failed.value.detail
