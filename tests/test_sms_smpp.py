"""The smpp provider against a real SMSC (Perl's Net::SMPP: tests/verifiers/smsc.pl); its codec."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.sms_provider import (
    CallbackRefused,
    ProviderContext,
    ProviderError,
    TextMessage,
    WebhookRequest,
    check_options,
    find_plugin,
)
from outbound.sms import smpp_pdu
from outbound.sms.segments import check_length, gsm7_bytes, split
from outbound.sms.smpp import PLUGIN, SmppOptions, SmppProvider
from outbound.sms.smpp_pdu import Address, Command, Pdu
from tests.redis_server import free_port
from tests.smsc import PASSWORD, SYSTEM_ID, Smsc, running_smsc, tls_front
from tests.smtp_server import Pki, make_pki

TO = "+33612345678"

MakeProvider = Callable[..., Awaitable[SmppProvider]]


def text_message(text: str, reference: str = "job-1:+33612345678") -> TextMessage:
    segments = check_length(text)
    return TextMessage(TO, text, reference, segments.encoding, segments.parts)


def options(tmp_path: Path, port: int, password: str = PASSWORD, **table: Any) -> SmppOptions:
    (tmp_path / "smpp-password").write_text(password + "\n")
    table = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": SYSTEM_ID,
        "password_file": "smpp-password",
        "source_addr": "Mailgw",
        **table,
    }
    return check_options(PLUGIN, table, tmp_path)


@pytest.fixture
async def smsc() -> AsyncIterator[Smsc]:
    async with running_smsc() as server:
        yield server


@pytest.fixture
async def make_provider(tmp_path: Path, smsc: Smsc) -> AsyncIterator[MakeProvider]:
    """Providers bound to `smsc` (options as keyword arguments), closed after the test."""
    made: list[SmppProvider] = []

    async def make(**table: Any) -> SmppProvider:
        context = ProviderContext("smpp", "http://127.0.0.1:1", tmp_path)
        port = table.pop("port", smsc.port)
        provider = PLUGIN.create(options(tmp_path, port, **table), context)
        assert isinstance(provider, SmppProvider)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


async def test_gsm7_text_arrives_as_septets_with_its_extension_characters(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    accepted = await provider.send(text_message("Prix: 5€ [ok]"))

    bind = await smsc.event("bind")
    assert (bind["system_id"], bind["password"], bind["status"]) == (SYSTEM_ID, PASSWORD, 0)
    submit = await smsc.event("submit_sm")
    # "Prix: 5" as themselves, then € = ESC 0x65, [ = ESC 0x3C, ] = ESC 0x3E
    assert bytes.fromhex(submit["short_message"]) == (b"Prix: 5\x1b\x65 \x1b\x3cok\x1b\x3e")
    assert (submit["data_coding"], submit["esm_class"], submit["registered_delivery"]) == (0, 0, 1)
    assert (submit["destination_addr"], submit["dest_addr_ton"], submit["dest_addr_npi"]) == (
        "33612345678", 1, 1,
    )  # fmt: skip
    assert (submit["source_addr"], submit["source_addr_ton"], submit["source_addr_npi"]) == (
        "Mailgw", 5, 0,
    )  # fmt: skip
    assert accepted.provider_id == submit["message_id"] != ""


async def test_french_text_arrives_as_utf16_big_endian(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider(source_addr="+33700000000", registered_delivery=0)
    text = "Ça marche, à demain ✓"
    await provider.send(text_message(text))

    submit = await smsc.event("submit_sm")
    assert submit["data_coding"] == 8
    assert bytes.fromhex(submit["short_message"]).decode("utf-16-be") == text
    assert (submit["source_addr"], submit["source_addr_ton"], submit["source_addr_npi"]) == (
        "33700000000", 1, 1,
    )  # fmt: skip
    assert submit["registered_delivery"] == 0


async def test_long_text_arrives_in_three_concatenated_parts(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    text = "".join(f"Rappel {n:03d}; " for n in range(34))[:400]
    assert len(text) == 400 and check_length(text).parts == 3

    accepted = await provider.send(text_message(text))

    submits = await smsc.events("submit_sm", 3)
    payloads = [bytes.fromhex(submit["short_message"]) for submit in submits]
    headers = [payload[:6] for payload in payloads]
    reference = headers[0][3]
    assert headers == [bytes((5, 0, 3, reference, 3, n)) for n in (1, 2, 3)]
    assert all(submit["esm_class"] == 0x40 and submit["data_coding"] == 0 for submit in submits)
    assert all(len(payload) - 6 <= 153 for payload in payloads)
    assert b"".join(payload[6:] for payload in payloads) == gsm7_bytes(text)
    assert "".join(split(text)) == text
    assert accepted.provider_id == submits[0]["message_id"]
    assert len({submit["message_id"] for submit in submits}) == 3


async def test_a_retry_keeps_the_concatenation_reference(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    message = text_message("x" * 200)
    await provider.send(message)
    await provider.send(message)
    first, _, again, _ = await smsc.events("submit_sm", 4)
    assert first["short_message"][:12] == again["short_message"][:12]


async def test_throttled_is_temporary(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    await smsc.control("fail", status=0x58, count=1)

    with pytest.raises(ProviderError) as refused:
        await provider.send(text_message("Bonjour"))
    assert refused.value.temporary
    assert refused.value.code == "ESME_RTHROTTLED"
    assert "ESME_RTHROTTLED (0x00000058): throttling error" in refused.value.detail

    # the session survives a refusal
    await provider.send(text_message("Bonjour"))
    refused_submit, accepted_submit = await smsc.events("submit_sm", 2)
    assert (refused_submit["status"], accepted_submit["status"]) == (0x58, 0)
    assert refused_submit["connection"] == accepted_submit["connection"] == 1


async def test_invalid_destination_is_permanent(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    await smsc.control("fail", status=0x0B, count=1)

    with pytest.raises(ProviderError) as refused:
        await provider.send(text_message("Bonjour"))
    assert not refused.value.temporary
    assert refused.value.code == "ESME_RINVDSTADR"
    assert str(refused.value) == (
        "ESME_RINVDSTADR: the SMSC answered submit_sm with an error: "
        "ESME_RINVDSTADR (0x0000000B): invalid destination address"
    )


async def test_refused_second_part_is_named(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    await smsc.control("fail", status=0, count=1)
    await smsc.control("fail", status=0x14, count=1)

    with pytest.raises(ProviderError) as refused:
        await provider.send(text_message("y" * 200))
    assert refused.value.temporary
    assert "submit_sm of part 2/2 with an error: ESME_RMSGQFUL" in refused.value.detail


async def test_generic_nack_is_an_error_with_its_status(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await smsc.control("nack", status=0x03, count=1)

    with pytest.raises(ProviderError) as refused:
        await provider.send(text_message("Bonjour"))
    assert not refused.value.temporary
    assert "with generic_nack: ESME_RINVCMDID (0x00000003)" in refused.value.detail


async def test_wrong_password_is_a_clear_temporary_error(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider(password="wrong")

    with pytest.raises(ProviderError) as refused:
        await provider.send(text_message("Bonjour"))
    assert refused.value.temporary
    assert refused.value.code == "ESME_RINVPASWD"
    assert "refused bind_transmitter as 'mailgw'" in refused.value.detail
    assert "ESME_RINVPASWD (0x0000000E): invalid password" in refused.value.detail
    assert "check [sms.smpp] credentials" in refused.value.detail
    assert (await smsc.event("bind"))["status"] == 0x0E

    # the next send within the backoff does not try again, and says why and when
    with pytest.raises(ProviderError) as waiting:
        await provider.send(text_message("Bonjour"))
    assert waiting.value.code == "ESME_RINVPASWD" and waiting.value.temporary
    assert waiting.value.retry_after is not None and 0 < waiting.value.retry_after <= 1
    await smsc.no_event("bind", within=0.3)


async def test_unreachable_smsc_is_temporary(tmp_path: Path) -> None:
    context = ProviderContext("smpp", "http://127.0.0.1:1", tmp_path)
    provider = SmppProvider(options(tmp_path, free_port()), context)
    try:
        with pytest.raises(ProviderError) as refused:
            await provider.send(text_message("Bonjour"))
        assert refused.value.temporary and refused.value.code == "connect"
        assert not refused.value.maybe_sent
        assert "cannot connect to SMSC 127.0.0.1:" in refused.value.detail
    finally:
        await provider.close()


async def test_next_send_binds_again_after_the_smsc_drops_the_connection(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(text_message("Avant"))
    assert (await smsc.event("bind"))["connection"] == 1

    await smsc.control("drop")
    await smsc.event("closed")
    # the provider reads the end of the connection on the loop
    await asyncio.sleep(0.2)

    await provider.send(text_message("Après"))
    assert (await smsc.event("bind"))["connection"] == 2
    assert [s["connection"] for s in await smsc.events("submit_sm", 2)] == [1, 2]


async def test_no_answer_is_a_temporary_timeout(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider(response_timeout=0.3)
    await smsc.control("silence", count=1)

    with pytest.raises(ProviderError) as refused:
        await provider.send(text_message("Bonjour"))
    assert refused.value.temporary and refused.value.code == "timeout"
    # the SMSC got the submit_sm: it may have taken the text
    assert refused.value.maybe_sent
    assert "no answer to submit_sm from SMSC 127.0.0.1:" in refused.value.detail
    assert "within 0.3 s" in refused.value.detail


async def test_sends_never_exceed_max_per_second(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider(max_per_second=10)
    loop = asyncio.get_running_loop()
    start = loop.time()

    accepted = await asyncio.gather(
        *(provider.send(text_message(f"Rappel {n}")) for n in range(20))
    )

    assert loop.time() - start >= 1.85
    assert len({a.provider_id for a in accepted}) == 20
    submits = await smsc.events("submit_sm", 20)
    assert {s["seq"] for s in submits} == set(range(2, 22))  # after the bind's 1


async def test_enquire_link_on_an_idle_session(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider(enquire_link_interval=0.2)
    await provider.send(text_message("Bonjour"))

    first = await smsc.event("enquire_link", within=2)
    second = await smsc.event("enquire_link", within=2)
    assert first["connection"] == second["connection"] == 1
    assert second["seq"] > first["seq"]


async def test_the_smsc_enquire_link_is_answered(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    await provider.send(text_message("Bonjour"))

    await smsc.control("enquire_link")
    assert (await smsc.event("enquire_link_resp"))["connection"] == 1


async def test_close_unbinds(smsc: Smsc, make_provider: MakeProvider) -> None:
    provider = await make_provider()
    await provider.send(text_message("Bonjour"))

    await provider.close()
    assert (await smsc.event("unbind"))["connection"] == 1
    with pytest.raises(ProviderError, match="closed"):
        await provider.send(text_message("Bonjour"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def test_tls_session(smsc: Smsc, make_provider: MakeProvider, pki: Pki) -> None:
    async with tls_front(smsc, pki.good.server_context()) as port:
        provider = await make_provider(port=port, tls=True, tls_ca_file=str(pki.ca_file))
        accepted = await provider.send(text_message("Bonjour"))
        assert accepted.provider_id == (await smsc.event("submit_sm"))["message_id"]
        await provider.close()
        await smsc.event("unbind")


async def test_tls_with_an_unknown_certificate_is_refused(
    smsc: Smsc, make_provider: MakeProvider, pki: Pki
) -> None:
    async with tls_front(smsc, pki.untrusted.server_context()) as port:
        provider = await make_provider(port=port, tls=True, tls_ca_file=str(pki.ca_file))
        with pytest.raises(ProviderError) as refused:
            await provider.send(text_message("Bonjour"))
        assert refused.value.temporary and refused.value.code == "connect"
        assert "CERTIFICATE_VERIFY_FAILED" in refused.value.detail


async def test_a_request_of_the_smsc_other_than_enquire_link_is_nacked(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(text_message("Bonjour"))

    await smsc.control("deliver_sm")
    nack = await smsc.event("generic_nack")
    assert (nack["connection"], nack["status"]) == (1, 0x03)  # ESME_RINVCMDID


async def test_unbind_by_the_smsc_is_answered_and_the_next_send_binds_again(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await provider.send(text_message("Avant"))

    await smsc.control("unbind")
    assert (await smsc.event("unbind_resp"))["connection"] == 1
    await smsc.event("closed")

    await provider.send(text_message("Après"))
    assert [b["connection"] for b in await smsc.events("bind", 2)] == [1, 2]


async def test_a_drop_fails_the_texts_waiting_for_an_answer(
    smsc: Smsc, make_provider: MakeProvider
) -> None:
    provider = await make_provider()
    await smsc.control("silence", count=1)
    sending = asyncio.ensure_future(provider.send(text_message("Bonjour")))
    await smsc.event("submit_sm")

    await smsc.control("drop")
    with pytest.raises(ProviderError) as lost:
        await sending
    assert lost.value.temporary and lost.value.code == "connection_lost"
    assert lost.value.maybe_sent
    assert "the SMSC closed the connection" in lost.value.detail


async def test_no_http_callbacks(make_provider: MakeProvider) -> None:
    provider = await make_provider()
    request = WebhookRequest("POST", "http://127.0.0.1/sms/smpp/status", {}, {})
    with pytest.raises(CallbackRefused, match="takes no HTTP callbacks"):
        provider.receipt(request)
    with pytest.raises(CallbackRefused, match="takes no HTTP callbacks"):
        provider.incoming(request)
    assert provider.acknowledgement("status").status == 404


# --- options ---


def test_plugin_is_registered() -> None:
    assert find_plugin("smpp") is PLUGIN


def test_defaults(tmp_path: Path) -> None:
    checked = options(tmp_path, 2775, source_addr="")
    assert (checked.port, checked.max_per_second, checked.registered_delivery) == (2775, 10, 1)
    assert checked.enquire_link_interval.total_seconds() == 30
    assert checked.response_timeout.total_seconds() == 10
    assert checked.tls is False
    assert checked.password_file == tmp_path / "smpp-password"
    assert checked.source() == Address(0, 0, "")


@pytest.mark.parametrize(
    ("table", "source"),
    [
        ({"source_addr": "+33612345678"}, Address(1, 1, "33612345678")),
        ({"source_addr": "36180"}, Address(0, 1, "36180")),
        ({"source_addr": "Cabinet"}, Address(5, 0, "Cabinet")),
        ({"source_addr": "36180", "source_ton": 3, "source_npi": 0}, Address(3, 0, "36180")),
    ],
)
def test_sender_type_and_plan(tmp_path: Path, table: dict[str, Any], source: Address) -> None:
    assert options(tmp_path, 2775, **table).source() == source


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"source_addr": "Cabinet Dupont"}, "a sender name has at most 11 characters"),
        ({"source_addr": "Médecin"}, "only ASCII"),
        ({"system_id": "x" * 16}, "at most 15 characters"),
        ({"registered_delivery": "1"}, "valid integer"),
        ({"max_per_second": 0}, "greater than 0"),
        ({"password_file": "missing"}, "file not found"),
        ({"secret": "x"}, "Extra inputs are not permitted"),
        ({"tls_ca_file": "smpp-password"}, "tls_ca_file"),
        ({"tls_ca_file": "smpp-password", "tls": True}, "holds no PEM certificates"),
    ],
)
def test_bad_options(tmp_path: Path, table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options(tmp_path, 2775, **table)


def test_password_of_more_than_8_characters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="ASCII password of at most 8 characters"):
        options(tmp_path, 2775, password="123456789")


# --- the PDU codec ---


def test_pdu_header_and_round_trip() -> None:
    pdu = Pdu(Command.ENQUIRE_LINK, 0, 7)
    assert pdu.encode() == bytes.fromhex("00000010 00000015 00000000 00000007")
    answer = Pdu(Command.SUBMIT_SM_RESP, 0, 9, b"abc\0")
    frame = answer.encode()
    assert smpp_pdu.body_length(frame[:16]) == 4
    assert Pdu.decode(frame) == answer and answer.is_response and not pdu.is_response
    assert smpp_pdu.first_c_octet_string(answer.body) == "abc"
    assert smpp_pdu.first_c_octet_string(b"") == ""


@pytest.mark.parametrize("length", [0, 15, smpp_pdu.MAX_PDU_LENGTH + 1])
def test_pdu_length_out_of_bounds(length: int) -> None:
    with pytest.raises(smpp_pdu.SmppProtocolError, match="command_length"):
        smpp_pdu.body_length(length.to_bytes(4, "big") + bytes(12))


def test_pdu_decode_checks_the_length() -> None:
    with pytest.raises(smpp_pdu.SmppProtocolError, match="unlike its command_length"):
        Pdu.decode(Pdu(Command.SUBMIT_SM_RESP, 0, 1, b"abc\0").encode()[:-1])


def test_bind_transmitter_body() -> None:
    assert smpp_pdu.bind_transmitter("mailgw", "s3cret", "") == (b"mailgw\0s3cret\0\0\x34\0\0\0")


def test_submit_sm_body() -> None:
    body = smpp_pdu.submit_sm(
        Address(5, 0, "Mailgw"),
        Address(1, 1, "33612345678"),
        b"Hi",
        esm_class=0x40,
        data_coding=8,
        registered_delivery=1,
    )
    assert body == (
        b"\0"  # service_type
        b"\x05\x00Mailgw\0"
        b"\x01\x0133612345678\0"
        b"\x40\x00\x00"  # esm_class, protocol_id, priority_flag
        b"\0\0"  # schedule_delivery_time, validity_period
        b"\x01\x00\x08\x00\x02Hi"  # registered_delivery, replace, data_coding, default id, len
    )


def test_submit_sm_validity_period_is_the_time_left() -> None:
    # SMPP 3.4 section 7.1.1, relative: years, months (30 days), days, hours, minutes and
    # seconds, "000R"; the SMSC stops its own retries then.
    body = smpp_pdu.submit_sm(
        Address(5, 0, "Mailgw"), Address(1, 1, "33612345678"), b"Hi",
        esm_class=0, data_coding=0, registered_delivery=1, valid_for=3 * 3600 + 61,
    )  # fmt: skip
    # After an empty schedule_delivery_time.
    assert b"\x00" + b"000000030101000R\x00\x01" in body
    assert smpp_pdu.relative_time(0) == "000000000001000R"
    assert smpp_pdu.relative_time(400 * 86400 + 1) == "010105000001000R"
    assert smpp_pdu.relative_time(200 * 365 * 86400) == "991130235959000R"


def test_field_limits() -> None:
    with pytest.raises(ValueError, match="short_message holds at most 254 octets"):
        smpp_pdu.submit_sm(
            Address(0, 0, ""), Address(1, 1, "1"), bytes(255),
            esm_class=0, data_coding=0, registered_delivery=0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="system_id holds at most 15 characters"):
        smpp_pdu.c_octet_string("x" * 16, 16, "system_id")
    with pytest.raises(ValueError, match="must be ASCII"):
        smpp_pdu.c_octet_string("é", 16, "system_id")


def test_concatenation_udh() -> None:
    assert smpp_pdu.concatenation_udh(0x1A7, 3, 2) == bytes((5, 0, 3, 0xA7, 3, 2))


@pytest.mark.parametrize(
    ("status", "description"),
    [
        (0x58, "ESME_RTHROTTLED (0x00000058): throttling error: too many messages"),
        (0x0B, "ESME_RINVDSTADR (0x0000000B): invalid destination address"),
        (0x401, "ESME_VENDOR (0x00000401): vendor-specific error (see the SMSC's documentation)"),
        (0x09, "ESME_RESERVED (0x00000009): status reserved by SMPP 3.4"),
    ],
)
def test_status_descriptions(status: int, description: str) -> None:
    assert smpp_pdu.describe_status(status) == description
