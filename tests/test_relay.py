"""Relay transports over real SMTP on loopback: outcomes, pooling, timeouts, TLS, AUTH, MX."""

from __future__ import annotations

import asyncio
import getpass
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.settings import RelaySettings
from outbound.maildir import unique_name, write_maildir
from outbound.relay import (
    OutgoingMessage,
    RecipientResult,
    RelayTransport,
    address_problem,
    classify,
    recipient_domain,
    split_invalid,
    wire_data,
)
from outbound.transports import build_transport
from tests.conftest import DnsZone, need_tool
from tests.redis_server import free_port
from tests.smtp_server import Pki, RawServer, SmtpServer, make_pki

MESSAGE = (
    b"From: Studio <hello@studio.example>\r\nTo: client@example.com\r\n"
    b"Subject: Your appointment\r\n\r\nSee you tomorrow.\r\n.a line starting with a dot\r\n"
)
SENDER = "b-0123@studio.example"


def envelope(*recipients: str, sender: str = SENDER, require_tls: bool = False) -> OutgoingMessage:
    return OutgoingMessage(sender, recipients or ("client@example.com",), MESSAGE, require_tls)


def relay_settings(**values: Any) -> RelaySettings:
    """Relay settings with short timeouts, as a configuration file would give them."""
    data: dict[str, Any] = {"connect_timeout": "2s", "command_timeout": "2s", **values}
    return RelaySettings.model_validate(data)


def smarthost(port: int, starttls: str = "none", **values: Any) -> RelaySettings:
    host = {"host": "127.0.0.1", "port": port, "starttls": starttls}
    host |= values.pop("smarthost", {})
    return relay_settings(transport="smarthost", smarthost=host, **values)


@pytest.fixture
async def transports() -> AsyncIterator[list[RelayTransport]]:
    """Transports a test builds, closed after it so that no session outlives the test."""
    built: list[RelayTransport] = []
    yield built
    for transport in built:
        await transport.close()


@pytest.fixture
def build(transports: list[RelayTransport]) -> Any:
    def make(settings: RelaySettings) -> RelayTransport:
        transport = build_transport(settings)
        transports.append(transport)
        return transport

    return make


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def statuses(results: list[RecipientResult]) -> dict[str, tuple[str, int]]:
    return {r.recipient: (r.status, r.code) for r in results}


# --- pure rules ---


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (250, "sent"),
        (251, "sent"),
        (421, "deferred"),
        (450, "deferred"),
        (0, "deferred"),
        (550, "bounced"),
        (554, "bounced"),
        (530, "deferred"),
        (354, "deferred"),
        (-1, "deferred"),
    ],
)
def test_classify(code: int, status: str) -> None:
    assert classify(code) == status


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n"),
        (b"a\r\nb", b"a\r\nb\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n"),
        (b".start\r\n", b"..start\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n"),
        (b"a\r\n..x\r\n", b"a\r\n...x\r\n"),
        (b"", b"\r\n"),
    ],
)
def test_wire_data_is_crlf_and_dot_stuffed(message: bytes, wire: bytes) -> None:
    assert wire_data(message) == wire


@pytest.mark.parametrize(
    ("address", "sender", "problem"),
    [
        ("a@example.com", False, None),
        ("b-1+x=y@sub.example.com", False, None),
        ("", True, None),
        ("", False, "5.1.3"),
        ("no-at-sign", False, "5.1.3"),
        ("a b@example.com", False, "5.1.3"),
        ("a@example.com>\r\nRCPT TO:<x@evil.test", False, "5.1.3"),
        ("<a@example.com>", False, "5.1.3"),
        ("élodie@example.com", False, "5.6.7"),
    ],
)
def test_address_problem(address: str, sender: bool, problem: str | None) -> None:
    found = address_problem(address, sender=sender)
    assert (found[:5] if found else None) == problem


def test_split_invalid_bounces_only_the_bad_addresses() -> None:
    bounces, rest = split_invalid(envelope("a@example.com", "bad address@example.com"))
    assert [(b.recipient, b.status) for b in bounces] == [("bad address@example.com", "bounced")]
    assert rest is not None and rest.recipients == ("a@example.com",)
    bounces, rest = split_invalid(envelope("a@example.com", sender="bad sender@x.test"))
    assert rest is None and [b.status for b in bounces] == ["bounced"]
    assert split_invalid(envelope("a@example.com")) == ([], envelope("a@example.com"))


def test_recipient_domain() -> None:
    assert recipient_domain(["a@Example.COM", "b@example.com."]) == "example.com"
    with pytest.raises(ValueError):
        recipient_domain(["a@example.com", "b@example.org"])
    with pytest.raises(ValueError):
        recipient_domain([])


# --- outcomes ---


async def test_outcome_per_recipient(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        results = await relay.deliver(
            envelope("ok@example.com", "defer@example.com", "reject@example.com")
        )
    assert statuses(results) == {
        "ok@example.com": ("sent", 250),
        "defer@example.com": ("deferred", 450),
        "reject@example.com": ("bounced", 550),
    }
    assert results[1].response == "4.2.1 <defer@example.com>: try again later"
    assert {r.server for r in results} == {f"127.0.0.1[127.0.0.1]:{server.port}"}
    [received] = server.messages
    assert received.recipients == ["ok@example.com"]
    assert received.sender == SENDER
    assert received.data == MESSAGE  # the dot-stuffed line arrives as it was


async def test_refused_sender_and_data_apply_to_all_accepted(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        refused_sender = await relay.deliver(
            envelope("a@example.com", "b@example.com", sender="reject@studio.example")
        )
        refused_data = await relay.deliver(
            envelope("datafail@example.com", "ok@example.com", "reject@example.com")
        )
        all_refused = await relay.deliver(envelope("reject@example.com", "defer@example.com"))
        # the session is reset (RSET after the refused RCPTs) and reused after each failure
        after = await relay.deliver(envelope("ok@example.com"))
    assert statuses(refused_sender) == {
        "a@example.com": ("bounced", 550),
        "b@example.com": ("bounced", 550),
    }
    assert statuses(refused_data) == {
        "datafail@example.com": ("bounced", 554),
        "ok@example.com": ("bounced", 554),
        "reject@example.com": ("bounced", 550),
    }
    assert refused_data[0].response == "5.6.0 message refused"
    assert statuses(all_refused) == {
        "reject@example.com": ("bounced", 550),
        "defer@example.com": ("deferred", 450),
    }
    assert statuses(after) == {"ok@example.com": ("sent", 250)}
    assert server.sessions == 1


async def test_null_sender_and_invalid_recipient(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        results = await relay.deliver(envelope("ok@example.com", "not an address", sender=""))
    assert statuses(results) == {
        "ok@example.com": ("sent", 250),
        "not an address": ("bounced", 0),
    }
    assert server.messages[0].sender == "<>"  # as aiosmtpd records the null sender


# --- connection reuse and limits ---


async def test_messages_share_a_session(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        for n in range(6):
            [result] = await relay.deliver(envelope(f"ok{n}@example.com"))
            assert result.status == "sent"
    assert server.sessions == 1
    assert {m.session for m in server.messages} == {1}


async def test_messages_per_connection(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port, messages_per_connection=3))
        for n in range(7):
            [result] = await relay.deliver(envelope(f"ok{n}@example.com"))
            assert result.status == "sent"
    assert server.sessions == 3  # 3 + 3 + 1
    assert [m.session for m in server.messages] == [1, 1, 1, 2, 2, 2, 3]


async def test_concurrent_messages_within_the_connection_limit(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port, max_connections_per_destination=2))
        results = await asyncio.gather(
            *(relay.deliver(envelope(f"pause{n}@example.com")) for n in range(12))
        )
    assert all(r.status == "sent" for [r] in results)
    assert server.max_active == 2
    assert server.sessions == 2
    assert len(server.messages) == 12


async def test_idle_session_closed_after_idle_timeout(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port, connection_idle_timeout="0.3s"))
        await relay.deliver(envelope("ok@example.com"))
        assert len(server.active) == 1
        await asyncio.wait_for(server.wait_closed(), 2)
        # a new message opens a new session
        [result] = await relay.deliver(envelope("ok@example.com"))
    assert result.status == "sent"
    assert server.sessions == 2


async def test_session_closed_by_the_server_while_idle(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        await relay.deliver(envelope("ok@example.com"))
        for session in list(server.active):
            assert session.transport is not None
            session.transport.close()
        await asyncio.wait_for(server.wait_closed(), 2)
        [result] = await relay.deliver(envelope("ok@example.com"))
    assert result.status == "sent"
    assert server.sessions == 2


async def test_reused_session_dropped_at_mail_from_is_retried_once(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        await relay.deliver(envelope("ok@example.com"))
        [result] = await relay.deliver(envelope("ok@example.com", sender="drop@studio.example"))
    # the server hung up at MAIL FROM on the reused session: sent again on a new one
    assert result.status == "sent"
    assert server.sessions == 2 and server.messages[-1].session == 2


async def test_a_fresh_session_dropped_is_not_retried(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port))
        [result] = await relay.deliver(envelope("ok@example.com", sender="drop@studio.example"))
    assert (result.status, result.code) == ("deferred", 0)
    assert "lost at MAIL FROM" in result.response
    assert server.sessions == 1


async def test_cancelled_waiting_message_is_not_sent(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port, max_connections_per_destination=1))
        first = asyncio.ensure_future(relay.deliver(envelope("pause@example.com")))
        second = asyncio.ensure_future(relay.deliver(envelope("cancelled@example.com")))
        await asyncio.sleep(0.01)
        second.cancel()
        [result] = await first
        third = await relay.deliver(envelope("ok@example.com"))
    assert result.status == "sent" and third[0].status == "sent"
    assert second.cancelled()
    assert [m.recipients for m in server.messages] == [["pause@example.com"], ["ok@example.com"]]


async def test_close_quits_idle_sessions(build: Any) -> None:
    async with SmtpServer() as server:
        relay = build_transport(smarthost(server.port))
        await relay.deliver(envelope("ok@example.com"))
        assert len(server.active) == 1
        await relay.close()
        await asyncio.wait_for(server.wait_closed(), 2)
        [after] = await relay.deliver(envelope("ok@example.com"))
    assert after.status == "deferred"


# --- failures and timeouts ---


async def test_connection_refused(build: Any) -> None:
    port = free_port()
    [result] = await build(smarthost(port)).deliver(envelope())
    assert (result.status, result.code) == ("deferred", 0)
    assert result.response == f"connection refused to 127.0.0.1:{port}"


async def test_greeting_421(build: Any) -> None:
    async with RawServer(b"421 4.3.2 too busy, try later\r\n") as server:
        [result] = await build(smarthost(server.port)).deliver(envelope())
    assert (result.status, result.code) == ("deferred", 421)
    assert "421 4.3.2 too busy" in result.response


async def test_greeting_554_defers_rather_than_bounces(build: Any) -> None:
    async with RawServer(b"554 5.7.1 no service for you\r\n") as server:
        [result] = await build(smarthost(server.port)).deliver(envelope())
    assert (result.status, result.code) == ("deferred", 554)


async def test_silent_server_times_out_at_connect_timeout(build: Any) -> None:
    async with RawServer(None) as server:
        relay = build(smarthost(server.port, connect_timeout="0.4s"))
        started = time.monotonic()
        results = await asyncio.gather(*(relay.deliver(envelope()) for _ in range(3)))
        elapsed = time.monotonic() - started
    assert 0.35 < elapsed < 1.5
    for [result] in results:
        assert (result.status, result.code) == ("deferred", 0)
        assert result.response.startswith("no greeting from 127.0.0.1")


async def test_slow_reply_times_out_at_command_timeout(build: Any) -> None:
    async with SmtpServer(slow_seconds=5) as server:
        relay = build(smarthost(server.port, command_timeout="0.4s"))
        started = time.monotonic()
        [result] = await relay.deliver(envelope("slow@example.com"))
        elapsed = time.monotonic() - started
        assert (result.status, result.code) == ("deferred", 0)
        assert "no reply to end of data" in result.response
        assert elapsed < 1.5
        [after] = await relay.deliver(envelope("ok@example.com"))
    assert after.status == "sent"
    assert server.sessions == 2


# --- TLS ---


async def test_starttls_required_with_a_valid_certificate(build: Any, pki: Pki) -> None:
    async with SmtpServer(tls=pki.good) as server:
        relay = build(smarthost(server.port, "required", tls_ca_file=str(pki.ca_file)))
        [result] = await relay.deliver(envelope())
    assert result.status == "sent"
    assert server.messages[0].tls


@pytest.mark.parametrize(
    ("cert", "problem"),
    [("untrusted", "certificate verify failed"), ("wrong_name", "Mismatch")],
)
async def test_starttls_required_with_a_bad_certificate(
    build: Any, pki: Pki, cert: str, problem: str
) -> None:
    async with SmtpServer(tls=getattr(pki, cert)) as server:
        relay = build(smarthost(server.port, "required", tls_ca_file=str(pki.ca_file)))
        [result] = await relay.deliver(envelope())
    assert (result.status, result.code) == ("deferred", 0)
    assert result.response.startswith("TLS handshake with 127.0.0.1")
    assert problem in result.response
    assert server.messages == []


async def test_starttls_required_but_not_offered(build: Any, pki: Pki) -> None:
    async with SmtpServer() as server:
        relay = build(smarthost(server.port, "required", tls_ca_file=str(pki.ca_file)))
        [result] = await relay.deliver(envelope())
    assert (result.status, result.code) == ("deferred", 0)
    assert "does not offer STARTTLS" in result.response
    assert server.messages == []


async def test_opportunistic_tls_accepts_an_untrusted_certificate(build: Any, pki: Pki) -> None:
    async with SmtpServer(tls=pki.untrusted) as server:
        relay = build(smarthost(server.port, "opportunistic", tls_ca_file=str(pki.ca_file)))
        [result] = await relay.deliver(envelope())
    assert result.status == "sent"
    assert server.messages[0].tls


async def test_opportunistic_without_tls_sends_in_clear(build: Any) -> None:
    async with SmtpServer() as server:
        [result] = await build(smarthost(server.port, "opportunistic")).deliver(envelope())
    assert result.status == "sent"
    assert not server.messages[0].tls


async def test_require_tls_envelope_overrides_opportunistic(build: Any, pki: Pki) -> None:
    async with SmtpServer(tls=pki.untrusted) as server:
        relay = build(smarthost(server.port, "opportunistic", tls_ca_file=str(pki.ca_file)))
        [plain] = await relay.deliver(envelope())
        [hipaa] = await relay.deliver(envelope(require_tls=True))
    assert plain.status == "sent"
    assert hipaa.status == "deferred"
    assert "certificate verify failed" in hipaa.response


# --- AUTH ---


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "smtp-password"
    path.write_text("s3cret\n")
    return path


async def test_auth_over_tls(build: Any, pki: Pki, password_file: Path) -> None:
    async with SmtpServer(tls=pki.good, password="s3cret") as server:
        relay = build(
            smarthost(
                server.port,
                "required",
                tls_ca_file=str(pki.ca_file),
                smarthost={"username": "studio", "password_file": str(password_file)},
            )
        )
        results = [await relay.deliver(envelope(f"ok{n}@example.com")) for n in range(2)]
    assert [r.status for [r] in results] == ["sent", "sent"]
    assert [(m.user, m.tls, m.session) for m in server.messages] == [("studio", True, 1)] * 2


async def test_auth_refused(build: Any, pki: Pki, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-it")
    async with SmtpServer(tls=pki.good, password="s3cret") as server:
        relay = build(
            smarthost(
                server.port,
                "required",
                tls_ca_file=str(pki.ca_file),
                smarthost={"username": "studio", "password_file": str(wrong)},
            )
        )
        [result] = await relay.deliver(envelope())
    # a wrong password says nothing about the message: deferred, not bounced
    assert (result.status, result.code) == ("deferred", 535)
    assert "refused AUTH as studio" in result.response


async def test_auth_without_tls_only_to_loopback_with_starttls_none(
    build: Any, password_file: Path
) -> None:
    credentials = {"username": "studio", "password_file": str(password_file)}
    async with SmtpServer(password="s3cret", auth_require_tls=False) as server:
        loopback = build(smarthost(server.port, "none", smarthost=credentials))
        [sent] = await loopback.deliver(envelope())
        opportunistic = build(smarthost(server.port, "opportunistic", smarthost=credentials))
        [refused] = await opportunistic.deliver(envelope())
    assert sent.status == "sent"
    assert server.messages[0].user == "studio"
    assert refused.status == "deferred"
    assert "refusing to send the password" in refused.response


async def test_auth_required_by_the_server_but_not_configured(build: Any) -> None:
    async with SmtpServer(password="s3cret", auth_require_tls=False) as server:
        [result] = await build(smarthost(server.port)).deliver(envelope())
    # 530 (RFC 4954) asks to authenticate: the configuration is at fault, not the message
    assert (result.status, result.code) == ("deferred", 530)


# --- MX ---


def mx_settings(dns_zone: DnsZone, port: int, **values: Any) -> RelaySettings:
    mx = {"resolvers": [f"127.0.0.1:{dns_zone.port}"], "port": port} | values.pop("mx", {})
    return relay_settings(transport="mx", mx=mx, **values)


async def test_mx_first_host_down_sends_via_the_second(build: Any, dns_zone: DnsZone) -> None:
    async with SmtpServer() as server:
        dns_zone.set("example.com", ["MX", 10, "mx1.example.com"], ["MX", 20, "mx2.example.com"])
        dns_zone.set("mx1.example.com", ["A", "127.0.0.2"])  # nothing listens there
        dns_zone.set("mx2.example.com", ["A", "127.0.0.1"])
        relay = build(mx_settings(dns_zone, server.port))
        [result] = await relay.deliver(envelope("ok@example.com"))
    assert result.status == "sent"
    assert result.server == f"mx2.example.com[127.0.0.1]:{server.port}"


async def test_mx_first_host_greets_421(build: Any, dns_zone: DnsZone) -> None:
    async with (
        SmtpServer() as server,
        RawServer(b"421 busy\r\n", host="127.0.0.2", port=server.port),
    ):
        dns_zone.set("example.com", ["MX", 5, "mx1.example.com"], ["MX", 10, "mx2.example.com"])
        dns_zone.set("mx1.example.com", ["A", "127.0.0.2"])
        dns_zone.set("mx2.example.com", ["A", "127.0.0.1"])
        [result] = await build(mx_settings(dns_zone, server.port)).deliver(envelope())
    assert result.status == "sent"
    assert result.server is not None and result.server.startswith("mx2.example.com")


async def test_mx_all_hosts_down(build: Any, dns_zone: DnsZone) -> None:
    port = free_port()
    dns_zone.set("example.com", ["MX", 10, "mx1.example.com"], ["MX", 20, "mx2.example.com"])
    dns_zone.set("mx1.example.com", ["A", "127.0.0.2"])
    dns_zone.set("mx2.example.com", ["A", "127.0.0.1"])
    [result] = await build(mx_settings(dns_zone, port)).deliver(envelope())
    assert (result.status, result.code) == ("deferred", 0)
    assert "mx1.example.com[127.0.0.2]" in result.response
    assert "mx2.example.com[127.0.0.1]" in result.response


async def test_mx_null_mx_bounces(build: Any, dns_zone: DnsZone) -> None:
    dns_zone.set("example.com", ["MX", 0, "."])
    [result] = await build(mx_settings(dns_zone, free_port())).deliver(envelope())
    assert result.status == "bounced"
    assert "null MX" in result.response


async def test_mx_nxdomain_bounces(build: Any, dns_zone: DnsZone) -> None:
    [result] = await build(mx_settings(dns_zone, free_port())).deliver(envelope())
    assert result.status == "bounced"
    assert result.response.startswith("5.1.2") and "NXDOMAIN" in result.response


async def test_mx_absent_falls_back_to_the_address(build: Any, dns_zone: DnsZone) -> None:
    async with SmtpServer() as server:
        dns_zone.set("example.com", ["A", "127.0.0.1"])
        [result] = await build(mx_settings(dns_zone, server.port)).deliver(envelope())
    assert result.status == "sent"
    assert result.server == f"example.com[127.0.0.1]:{server.port}"


async def test_mx_domain_without_mx_or_address_bounces(build: Any, dns_zone: DnsZone) -> None:
    dns_zone.set("example.com", ["TXT", "v=spf1 -all"])
    [result] = await build(mx_settings(dns_zone, free_port())).deliver(envelope())
    assert result.status == "bounced"


async def test_mx_require_tls_defers_without_tls(build: Any, dns_zone: DnsZone) -> None:
    async with SmtpServer() as server:
        dns_zone.set("example.com", ["MX", 10, "mx1.example.com"])
        dns_zone.set("mx1.example.com", ["A", "127.0.0.1"])
        relay = build(mx_settings(dns_zone, server.port, mx={"starttls": "opportunistic"}))
        [plain] = await relay.deliver(envelope())
        [hipaa] = await relay.deliver(envelope(require_tls=True))
    assert plain.status == "sent"
    assert (hipaa.status, hipaa.code) == ("deferred", 0)
    assert "does not offer STARTTLS" in hipaa.response
    assert len(server.messages) == 1


async def test_mx_require_tls_with_verified_tls(build: Any, dns_zone: DnsZone, pki: Pki) -> None:
    async with SmtpServer(tls=pki.good) as server:
        dns_zone.set("example.com", ["MX", 10, "mx1.example.com"])
        dns_zone.set("mx1.example.com", ["A", "127.0.0.1"])
        settings = mx_settings(dns_zone, server.port, tls_ca_file=str(pki.ca_file))
        [result] = await build(settings).deliver(envelope(require_tls=True))
    assert result.status == "sent"
    assert server.messages[0].tls


async def test_mx_envelope_of_several_domains_is_a_programming_error(
    build: Any, dns_zone: DnsZone
) -> None:
    relay = build(mx_settings(dns_zone, free_port()))
    with pytest.raises(ValueError):
        await relay.deliver(envelope("a@example.com", "b@example.org"))


# --- maildir ---


async def test_maildir(build: Any, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    relay = build(relay_settings(transport="maildir", maildir={"path": str(maildir)}))
    first = await relay.deliver(envelope("a@example.com", "b@example.com"))
    second = await relay.deliver(envelope("c@example.com"))
    assert [(r.status, r.code, r.server) for r in first + second] == [("sent", 250, None)] * 3
    files = sorted((maildir / "new").iterdir())
    assert len(files) == 2
    assert list((maildir / "tmp").iterdir()) == [] and (maildir / "cur").is_dir()
    assert first[0].response == f"written to {maildir / 'new' / files[0].name}" or (
        first[0].response == f"written to {maildir / 'new' / files[1].name}"
    )
    content = {f.read_bytes() for f in files}
    assert (
        b"Return-Path: <b-0123@studio.example>\r\nDelivered-To: a@example.com\r\n"
        b"Delivered-To: b@example.com\r\n" + MESSAGE
    ) in content


async def test_maildir_tells_whether_it_has_an_envelope_s_message(
    build: Any, tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    relay = build(relay_settings(transport="maildir", maildir={"path": str(maildir)}))
    taken = envelope("a@example.com")
    assert await relay.has(taken) is False  # no Maildir yet
    await relay.deliver(taken)
    assert await relay.has(taken) is True
    assert await relay.has(replace(taken, recipients=("b@example.com",))) is False
    assert await relay.has(replace(taken, sender="b-4567@studio.example")) is False
    # A reader moved it to cur/, flags added: still there.
    [path] = (maildir / "new").iterdir()
    path.rename(maildir / "cur" / f"{path.name}:2,S")
    assert await relay.has(taken) is True


async def test_smtp_transports_cannot_tell_what_a_server_took(build: Any) -> None:
    relay = build(relay_settings(transport="smarthost", smarthost={"host": "127.0.0.1"}))
    assert await relay.has(envelope()) is None
    await relay.close()


def test_maildir_names_are_unique(tmp_path: Path) -> None:
    assert len({unique_name() for _ in range(1000)}) == 1000
    paths = {write_maildir(tmp_path, b"x\r\n") for _ in range(20)}
    assert len(paths) == 20 and all(p.parent == tmp_path / "new" for p in paths)


async def test_maildir_write_failure_defers(build: Any, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    relay = build(relay_settings(transport="maildir", maildir={"path": str(blocked)}))
    [result] = await relay.deliver(envelope())
    assert (result.status, result.code) == ("deferred", 0)


# --- an independent server: Postfix's smtp-sink ---


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[Any]:
    binary = need_tool("smtp-sink")
    started: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> tuple[int, Path]:
        port = free_port()
        dump = tmp_path / f"dump-{port}"
        process = subprocess.Popen(
            [binary, "-u", getpass.getuser(), "-D", str(dump), *options, f"127.0.0.1:{port}", "10"]
        )
        started.append(process)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
        return port, dump

    yield start
    for process in started:
        process.terminate()
        process.wait(10)


async def test_against_postfix_smtp_sink(build: Any, smtp_sink: Any) -> None:
    port, dump = smtp_sink()
    relay = build(smarthost(port, "opportunistic", helo_name="gw.studio.example"))
    results = [await relay.deliver(envelope(f"c{n}@example.com")) for n in range(3)]
    assert [(r.status, r.code) for [r] in results] == [("sent", 250)] * 3
    await relay.close()
    text = dump.read_bytes()
    assert text.count(b"X-Helo-Args: gw.studio.example") == 3
    assert text.count(b"Subject: Your appointment") == 3
    assert b".a line starting with a dot" in text and b"..a line" not in text

    soft_port, _ = smtp_sink("-r", "RCPT")
    [deferred] = await build(smarthost(soft_port)).deliver(envelope())
    hard_port, _ = smtp_sink("-f", ".")
    [bounced] = await build(smarthost(hard_port)).deliver(envelope())
    assert (deferred.status, deferred.code) == ("deferred", 450)
    assert (bounced.status, bounced.code) == ("bounced", 500)
