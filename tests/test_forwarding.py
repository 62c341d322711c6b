"""Checks on receipt (SPF, DKIM, ARC) and forwarded replies: DKIM and ARC verified by dkimpy,
Perl's Mail::DKIM and mailauth, against a loopback DNS server."""

from __future__ import annotations

import email
import re
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.utils import getaddresses

import authres
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.settings import Endpoint
from inbound.authentication import AuthResults, authenticate, resolver_for
from inbound.forwarding import LOOP_HEADER, Forwarder, ForwardError
from outbound.dkim import Algorithm, Signer, SigningKey, generate_private_key
from tests.conftest import DnsZone, FixedClock
from tests.dkim_verifiers import (
    dkimpy_verdicts,
    mail_dkim_arc,
    mail_dkim_verdicts,
    mailauth_authenticate,
    mailauth_verdicts,
    publish,
    results,
)
from tests.redis_server import free_port

DOMAIN = "salon.example"
CLIENT_DOMAIN = "client.test"
CLIENT = f"jane@{CLIENT_DOMAIN}"
CLIENT_IP = "203.0.113.5"
STRANGER_IP = "198.51.100.9"
HELO = f"mail.{CLIENT_DOMAIN}"
SRV_ID = "mx.gateway.test"
OWNER = "owner@owner.test"
BUSINESS = "Salon Belle"
# every byte value, so that any re-encoding of the attachment shows
ATTACHMENT = bytes(range(256)) * 40


def _key(domain: str, algorithm: Algorithm, selector: str) -> SigningKey:
    private_key = serialization.load_pem_private_key(generate_private_key(algorithm), None)
    assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return SigningKey(domain, selector, algorithm, private_key)


@pytest.fixture(scope="module")
def keys() -> list[SigningKey]:
    """The sender domain's keys: RSA, and Ed25519 which ARC cannot use."""
    return [_key(DOMAIN, "rsa", "mailgw-rsa"), _key(DOMAIN, "ed25519", "mailgw-ed25519")]


@pytest.fixture(scope="module")
def client_key() -> SigningKey:
    return _key(CLIENT_DOMAIN, "rsa", "s1")


@pytest.fixture
def forwarder(keys: list[SigningKey]) -> Forwarder:
    signer = Signer({DOMAIN: keys})
    return Forwarder(lambda: signer, FixedClock())


@pytest.fixture
def zone(dns_zone: DnsZone, keys: list[SigningKey], client_key: SigningKey) -> DnsZone:
    """Both domains' keys and SPF records, and our domain's DMARC policy."""
    publish(dns_zone, *keys, client_key)
    dns_zone.set(CLIENT_DOMAIN, ["TXT", f"v=spf1 ip4:{CLIENT_IP} -all"])
    dns_zone.set(DOMAIN, ["TXT", "v=spf1 ip4:127.0.0.1 -all"])
    dns_zone.set(f"_dmarc.{DOMAIN}", ["TXT", "v=DMARC1; p=reject"])
    return dns_zone


def reply(client_key: SigningKey | None = None, *, attachment: bool = True) -> bytes:
    """A client's reply as our server received it (its Received header on top), DKIM-signed
    by the client's domain when a key is given."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = f"Jane Doe <{CLIENT}>"
    message["To"] = "r-0123456789abcdef@reply.salon.example"
    message["Cc"] = "friend@elsewhere.test"
    message["Subject"] = "Re: Votre rendez-vous de mardi"
    message["Date"] = "Tue, 04 Mar 2025 08:00:00 +0100"
    message["Message-ID"] = f"<reply-1@{CLIENT_DOMAIN}>"
    message["In-Reply-To"] = f"<abcdefghijklmnopqrstuvwxyz@{DOMAIN}>"
    message["References"] = f"<abcdefghijklmnopqrstuvwxyz@{DOMAIN}>"
    message.set_content("Bonjour,\n\nJe serai en retard de dix minutes. Désolée !\n\nJane\n")
    if attachment:
        message.add_attachment(
            ATTACHMENT, maintype="application", subtype="octet-stream", filename="plan.bin"
        )
    data = message.as_bytes()
    if client_key is not None:
        assert isinstance(client_key.private_key, rsa.RSAPrivateKey)
        pem = client_key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        data = dkim.sign(data, b"s1", CLIENT_DOMAIN.encode(), pem) + data
    received = (
        f"Received: from {HELO} ({HELO} [{CLIENT_IP}])\r\n"
        f"\tby {SRV_ID} with ESMTP; Tue, 04 Mar 2025 07:00:01 +0000\r\n"
    )
    return received.encode() + data


async def check(
    message: bytes, zone: DnsZone, peer: str = CLIENT_IP, mail_from: str = CLIENT
) -> AuthResults:
    resolver = resolver_for([Endpoint("127.0.0.1", zone.port)])
    return await authenticate(
        message, mail_from=mail_from, helo=HELO, peer=peer, srv_id=SRV_ID, resolver=resolver
    )


def forward(forwarder: Forwarder, message: bytes, auth: AuthResults, **changes: str) -> bytes:
    arguments = {
        "client_name": "Jane Doe",
        "client_address": CLIENT,
        "business_name": BUSINESS,
        "sender_domain": DOMAIN,
        "to": OWNER,
        "auth_results": auth.header_value(),
        **changes,
    }
    return forwarder.forward(message, **arguments)


def zone_txt(zone: DnsZone) -> Callable[[bytes, int], bytes]:
    """dkimpy's dnsfunc, answered from the zone's records (an independent lookup)."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        records = zone.records.get(name.decode().rstrip(".").lower(), [])
        return "".join(value for kind, value in records if kind == "TXT").encode()

    return lookup


def parse(message: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(message, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def field_names(message: bytes) -> set[bytes]:
    """The names of the header fields, read as a receiving server splits them."""
    head = message.split(b"\r\n\r\n", 1)[0]
    return {field.split(b":", 1)[0].lower() for field in re.split(rb"\r\n(?![ \t])", head)}


def sealed_results(message: bytes) -> dict[str, list[str]]:
    """The results the newest ARC-Authentication-Results records, by method."""
    values = [
        re.sub(r"\s+", " ", str(v))
        for v in parse(message).get_all("ARC-Authentication-Results", [])
    ]
    newest = max(values, key=lambda value: int(value.split(";")[0].strip().removeprefix("i=")))
    header = authres.AuthenticationResultsHeader.parse_value(newest.split(";", 1)[1].strip())
    found: dict[str, list[str]] = {}
    for result in header.results:
        found.setdefault(result.method, []).append(str(result))
    return found


# --- checks on receipt ---


async def test_signed_reply_from_an_allowed_address_passes(
    zone: DnsZone, client_key: SigningKey
) -> None:
    auth = await check(reply(client_key), zone)
    assert (auth.spf.result, auth.spf.identity, auth.spf.domain) == (
        "pass",
        "mailfrom",
        CLIENT_DOMAIN,
    )
    [signature] = auth.dkim
    assert (signature.result, signature.domain, signature.selector) == ("pass", CLIENT_DOMAIN, "s1")
    assert signature.algorithm == "rsa-sha256" and len(signature.signature) == 8
    assert auth.arc.result == "none"
    value = auth.header_value()
    assert value.startswith(f"{SRV_ID};\r\n spf=pass smtp.mailfrom={CLIENT_DOMAIN};\r\n")
    assert f"dkim=pass header.d={CLIENT_DOMAIN} header.s=s1 header.a=rsa-sha256 header.b=" in value
    assert value.endswith(f"arc=none smtp.remote-ip={CLIENT_IP}")


async def test_reply_from_an_address_outside_spf_fails_spf(zone: DnsZone) -> None:
    auth = await check(reply(), zone, peer=STRANGER_IP)
    assert auth.spf.result == "fail"
    assert auth.dkim == ()
    assert f"spf=fail smtp.mailfrom={CLIENT_DOMAIN}" in auth.header_value()


async def test_null_sender_checks_the_helo_name(zone: DnsZone) -> None:
    zone.set(HELO, ["TXT", f"v=spf1 ip4:{CLIENT_IP} -all"])
    auth = await check(reply(), zone, mail_from="")
    assert (auth.spf.result, auth.spf.identity, auth.spf.domain) == ("pass", "helo", HELO)
    assert f"spf=pass smtp.helo={HELO}" in auth.header_value()


async def test_domain_without_spf_record(zone: DnsZone) -> None:
    auth = await check(reply(), zone, mail_from="someone@nospf.test")
    assert auth.spf.result == "none"


async def test_dkim_verdicts(zone: DnsZone, client_key: SigningKey) -> None:
    signed = reply(client_key)
    tampered = signed.replace(b"dix minutes", b"une heure")
    assert tampered != signed
    auth = await check(tampered, zone)
    assert [c.result for c in auth.dkim] == ["fail"]
    assert "body hash mismatch" in auth.dkim[0].reason

    zone.set(f"s1._domainkey.{CLIENT_DOMAIN}")  # the key withdrawn
    auth = await check(signed, zone)
    assert [(c.result, c.reason) for c in auth.dkim] == [
        ("permerror", f"no key record at s1._domainkey.{CLIENT_DOMAIN}.")
    ]

    broken = b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test\r\n" + signed
    auth = await check(broken, zone)
    assert auth.dkim[0].result == "permerror" and auth.dkim[0].domain == "x.test"


async def test_dns_failure_is_a_temporary_error(client_key: SigningKey) -> None:
    # nothing answers there: every lookup times out
    resolver = resolver_for([Endpoint("127.0.0.1", free_port())])
    resolver.lifetime = 0.3
    auth = await authenticate(
        reply(client_key),
        mail_from=CLIENT,
        helo=HELO,
        peer=CLIENT_IP,
        srv_id=SRV_ID,
        resolver=resolver,
    )
    assert auth.spf.result == "temperror"
    assert [c.result for c in auth.dkim] == ["temperror"]


async def test_sender_controlled_values_cannot_add_results(zone: DnsZone) -> None:
    # a quoted local part, a HELO and a signature whose tags would read as results of ours
    mail_from = '"x; dkim=pass header.d=bank.test"@client.test'
    forged = (
        b'DKIM-Signature: v=1; a=rsa-sha256; d=a;dkim=pass@bank.test; s=x"y; '
        b"h=from; bh=AAAA; b=BBBB\r\n" + reply()
    )
    resolver = resolver_for([Endpoint("127.0.0.1", zone.port)])
    auth = await authenticate(
        forged,
        mail_from=mail_from,
        helo="evil; dkim=pass header.d=bank.test",
        peer=STRANGER_IP,
        srv_id=SRV_ID,
        resolver=resolver,
    )
    header = authres.AuthenticationResultsHeader.parse_value(
        re.sub(r"\s+", " ", auth.header_value())
    )
    assert header.authserv_id == SRV_ID
    assert [(r.method, r.result) for r in header.results] == [
        ("spf", "fail"),
        ("dkim", "permerror"),
        ("arc", "none"),
    ]
    assert "bank.test" not in str(header.results[0])


async def test_authserv_id_must_be_a_host_name(zone: DnsZone) -> None:
    resolver = resolver_for([Endpoint("127.0.0.1", zone.port)])
    with pytest.raises(ValueError, match="authserv-id"):
        await authenticate(
            reply(), mail_from=CLIENT, helo=HELO, peer=CLIENT_IP, srv_id="a; b", resolver=resolver
        )


# --- forwarding ---


async def test_forwarded_reply_passes_every_verifier(
    zone: DnsZone, client_key: SigningKey, forwarder: Forwarder, mail_dkim: str, mailauth: str
) -> None:
    original = reply(client_key)
    forwarded = forward(forwarder, original, await check(original, zone))

    both = {"rsa-sha256": "pass", "ed25519-sha256": "pass"}
    perl = mail_dkim_verdicts(mail_dkim, forwarded, zone)
    for verdicts in (
        dkimpy_verdicts(forwarded, zone),
        perl,
        mailauth_verdicts(mailauth, forwarded, zone),
    ):
        # ours only: the client's signature, broken by the new From, is gone
        assert {v["domain"] for v in verdicts} == {DOMAIN}, verdicts
    assert results(dkimpy_verdicts(forwarded, zone)) == both
    assert results(mailauth_verdicts(mailauth, forwarded, zone)) == both
    # Mail::DKIM without CryptX has no Ed25519 (see test_dkim.py): the RSA signature passes
    assert results(perl)["rsa-sha256"] == "pass"
    assert results(perl)["ed25519-sha256"] in ("invalid", "pass")

    cv, sets, reason = dkim.arc_verify(forwarded, dnsfunc=zone_txt(zone))
    assert cv == dkim.CV_Pass, reason
    assert [s["instance"] for s in sets] == [1]

    arc = mail_dkim_arc(mail_dkim, forwarded, zone)
    assert arc["result"] == "pass", arc
    assert {(s["header"], s["instance"], s["domain"], s["result"]) for s in arc["signatures"]} == {
        ("ARC-Seal", 1, DOMAIN, "pass"),
        ("ARC-Message-Signature", 1, DOMAIN, "pass"),
    }

    # as the owner's server sees it, received from our relay
    seen = mailauth_authenticate(
        mailauth, forwarded, zone, "127.0.0.1", "relay.salon.example", f"b-token@{DOMAIN}"
    )
    assert seen["arc"]["result"] == "pass" and seen["arc"]["instance"] == 1, seen
    assert seen["dmarc"] == "pass", seen
    assert seen["arc"]["sealed"]["mta"] == SRV_ID
    assert seen["arc"]["sealed"]["spf"]["result"] == "pass"
    assert [(d["result"], d["header"]["d"]) for d in seen["arc"]["sealed"]["dkim"]] == [
        ("pass", CLIENT_DOMAIN)
    ]

    sealed = sealed_results(forwarded)
    assert sealed["spf"] == [f"spf=pass smtp.mailfrom={CLIENT_DOMAIN}"]
    assert [r.split(" ")[:2] for r in sealed["dkim"]] == [
        ["dkim=pass", f"header.d={CLIENT_DOMAIN}"]
    ]


async def test_reply_failing_spf_is_forwarded_with_its_results_sealed(
    zone: DnsZone, forwarder: Forwarder, mail_dkim: str, mailauth: str
) -> None:
    original = reply()
    forwarded = forward(forwarder, original, await check(original, zone, peer=STRANGER_IP))

    assert results(mail_dkim_verdicts(mail_dkim, forwarded, zone))["rsa-sha256"] == "pass"
    assert mail_dkim_arc(mail_dkim, forwarded, zone)["result"] == "pass"
    seen = mailauth_authenticate(
        mailauth, forwarded, zone, "127.0.0.1", "relay.salon.example", f"b-token@{DOMAIN}"
    )
    assert (seen["arc"]["result"], seen["dmarc"]) == ("pass", "pass"), seen
    assert seen["arc"]["sealed"]["spf"]["result"] == "fail"
    assert sealed_results(forwarded) == {
        "spf": [f"spf=fail smtp.mailfrom={CLIENT_DOMAIN}"],
        "arc": [f"arc=none smtp.remote-ip={STRANGER_IP}"],
    }


async def test_headers_rewritten_and_body_intact(
    zone: DnsZone, client_key: SigningKey, forwarder: Forwarder
) -> None:
    original = reply(client_key)
    forwarded = forward(forwarder, original, await check(original, zone))

    # the body, attachment included, byte for byte
    assert forwarded.split(b"\r\n\r\n", 1)[1] == original.split(b"\r\n\r\n", 1)[1]
    [attachment] = [part for part in parse(forwarded).iter_attachments()]
    assert attachment.get_content() == ATTACHMENT

    message = parse(forwarded)
    assert message["From"].addresses[0].display_name == f"Jane Doe via {BUSINESS}"
    assert message["From"].addresses[0].addr_spec == f"scheduling@{DOMAIN}"
    assert message["Reply-To"] == CLIENT
    assert message["To"] == OWNER
    assert message["Cc"] is None
    assert message["Subject"] == "Re: Votre rendez-vous de mardi"
    assert message["Message-ID"] == f"<reply-1@{CLIENT_DOMAIN}>"
    assert (
        message["In-Reply-To"] == message["References"] == f"<abcdefghijklmnopqrstuvwxyz@{DOMAIN}>"
    )
    assert message["Date"] == "Tue, 04 Mar 2025 08:00:00 +0100"
    assert message[LOOP_HEADER] == DOMAIN
    assert str(message["Received"]).startswith(f"from {HELO}")
    # on top, newest first: the ARC set, our signatures, what we found on receipt
    names = [name.lower() for name, _ in message.items()]
    assert names[:7] == [
        "arc-seal",
        "arc-message-signature",
        "arc-authentication-results",
        "dkim-signature",
        "dkim-signature",
        LOOP_HEADER.lower(),
        "authentication-results",
    ]
    assert names.count("dkim-signature") == 2
    assert names.count("from") == names.count("to") == names.count("reply-to") == 1
    assert b"\n" not in forwarded.replace(b"\r\n", b"")


async def test_hostile_client_name_cannot_add_headers(zone: DnsZone, forwarder: Forwarder) -> None:
    original = reply(attachment=False)
    auth = await check(original, zone)
    # the original's fields less Cc, and ours
    expected = field_names(original) - {b"cc"} | {
        b"reply-to",
        b"x-mailgw-loop",
        b"authentication-results",
        b"dkim-signature",
        b"arc-seal",
        b"arc-message-signature",
        b"arc-authentication-results",
    }
    for name in (
        "Eve\r\nBcc: victim@elsewhere.test",
        'Eve" <eve@evil.test>, "x',
        "=?utf-8?q?Bcc=3A_victim=40elsewhere=2Etest?= \n\r\x00\x0b",
        'Ève 🙂 <admin@salon.example>; \\ "',
    ):
        forwarded = forward(forwarder, original, auth, client_name=name)
        message = parse(forwarded)
        assert message["Bcc"] is None
        assert len(message.get_all("From", [])) == 1
        [(display, address)] = getaddresses([str(message["From"])])
        assert address == f"scheduling@{DOMAIN}"
        assert display.endswith(f" via {BUSINESS}")
        # every line of the name is folded into From: no field but the expected ones
        assert field_names(forwarded) == expected
        assert dkim.arc_verify(forwarded, dnsfunc=zone_txt(zone))[0] == dkim.CV_Pass


async def test_forged_results_in_our_name_are_not_sealed(
    zone: DnsZone, forwarder: Forwarder
) -> None:
    original = (
        f"Authentication-Results: {SRV_ID}; dkim=pass header.d=bank.test\r\n".encode() + reply()
    )
    forwarded = forward(forwarder, original, await check(original, zone, peer=STRANGER_IP))
    assert b"bank.test" not in forwarded
    assert "dkim" not in sealed_results(forwarded)


async def test_message_that_came_sealed_gets_the_next_instance(
    zone: DnsZone, client_key: SigningKey, forwarder: Forwarder, mail_dkim: str, mailauth: str
) -> None:
    first = forward(forwarder, reply(client_key), await check(reply(client_key), zone))
    # the forwarded message comes back through a second gateway of ours
    auth = await check(first, zone, peer="127.0.0.1", mail_from=f"b-token@{DOMAIN}")
    assert auth.arc.result == "pass"
    second = forward(forwarder, first, auth, to="other@owner.test")

    cv, sets, reason = dkim.arc_verify(second, dnsfunc=zone_txt(zone))
    assert cv == dkim.CV_Pass, reason
    assert sorted(s["instance"] for s in sets) == [1, 2]
    assert re.search(rb"ARC-Seal: i=2; cv=pass", second)
    assert mail_dkim_arc(mail_dkim, second, zone)["result"] == "pass"
    seen = mailauth_authenticate(
        mailauth, second, zone, "127.0.0.1", "relay.salon.example", f"b-token@{DOMAIN}"
    )
    assert (seen["arc"]["result"], seen["arc"]["instance"]) == ("pass", 2), seen


async def test_missing_message_id_and_date_are_added(zone: DnsZone, forwarder: Forwarder) -> None:
    original = re.sub(rb"(?m)^(Message-ID|Date): [^\r]*\r\n", b"", reply(attachment=False))
    forwarded = forward(forwarder, original, await check(original, zone))
    message = parse(forwarded)
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(DOMAIN)}>", message["Message-ID"])
    assert message["Date"].datetime.timestamp() == FixedClock().now()


async def test_bare_line_feeds_become_crlf(zone: DnsZone, forwarder: Forwarder) -> None:
    original = reply(attachment=False).replace(b"\r\n", b"\n")
    forwarded = forward(forwarder, original, await check(original, zone))
    assert b"\n" not in forwarded.replace(b"\r\n", b"")
    assert forwarded.split(b"\r\n\r\n", 1)[1] == original.split(b"\n\n", 1)[1].replace(
        b"\n", b"\r\n"
    )


async def test_what_cannot_be_forwarded(zone: DnsZone, keys: list[SigningKey]) -> None:
    auth = await check(reply(attachment=False), zone)
    ed25519_signer = Signer({DOMAIN: keys[1:]})
    only_ed25519 = Forwarder(lambda: ed25519_signer, FixedClock())
    with pytest.raises(ForwardError, match=r"no RSA DKIM key for 'salon\.example'"):
        forward(only_ed25519, reply(attachment=False), auth)
    signer = Signer({DOMAIN: keys})
    forwarder = Forwarder(lambda: signer, FixedClock())
    with pytest.raises(ForwardError, match="not a message"):
        forward(forwarder, b"this is no header\r\n\r\nbody\r\n", auth)
    with pytest.raises(ValueError, match="not an Authentication-Results value"):
        forward(forwarder, reply(attachment=False), auth, auth_results="x\r\nBcc: y")
