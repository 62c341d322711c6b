"""DKIM signing, checked by three independent verifiers: dkimpy, Perl's Mail::DKIM, mailauth."""

from __future__ import annotations

import base64
import email
import logging
import re
import stat
import subprocess
from collections.abc import Callable
from email import policy
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.errors import ConfigError
from gateway.settings import DkimKey
from outbound.dkim import (
    Algorithm,
    DkimError,
    Signer,
    SigningKey,
    dns_record,
    generate_private_key,
    load_keys,
)
from tests.conftest import DnsZone, need_tool
from tests.dkim_verifiers import (
    dkimpy_verdicts,
    mail_dkim_verdicts,
    mailauth_verdicts,
    publish,
    results,
)
from tests.verifiers.message import BUSINESS_NAME, realistic_message

VERIFIERS = Path(__file__).resolve().parent / "verifiers"
DOMAIN = "example.com"
SIGNED = (
    "from : reply-to : to : subject : date : message-id : auto-submitted : list-unsubscribe : "
    "list-unsubscribe-post : mime-version : content-type : from"
)


def _key(algorithm: Algorithm, selector: str) -> SigningKey:
    private_key = serialization.load_pem_private_key(generate_private_key(algorithm), None)
    assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return SigningKey(DOMAIN, selector, algorithm, private_key)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return _key("rsa", "mailgw-rsa")


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return _key("ed25519", "mailgw-ed25519")


@pytest.fixture(scope="module")
def signer(rsa_key: SigningKey, ed_key: SigningKey) -> Signer:
    # configured Ed25519 first: the signer still puts RSA on top
    return Signer({DOMAIN: [ed_key, rsa_key]})


@pytest.fixture
def published(dns_zone: DnsZone, rsa_key: SigningKey, ed_key: SigningKey) -> DnsZone:
    """The DNS server, answering both keys' TXT records."""
    publish(dns_zone, rsa_key, ed_key)
    return dns_zone


def signature_headers(message: bytes) -> list[str]:
    parsed = email.message_from_bytes(message, policy=policy.compat32)
    return [re.sub(r"\s+", " ", value) for value in parsed.get_all("DKIM-Signature", [])]


def tag(header: str, name: str) -> str:
    match = re.search(rf"(?:^|;)\s*{name}=([^;]*)", header)
    assert match is not None, f"no {name}= in {header}"
    return match.group(1).strip()


# --- signing and verifying ---


def test_signatures_rsa_then_ed25519_over_the_chosen_headers(signer: Signer) -> None:
    message = realistic_message()
    signed = signer.sign(message, DOMAIN)
    assert signed.endswith(message)
    headers = signature_headers(signed)
    assert [tag(h, "a") for h in headers] == ["rsa-sha256", "ed25519-sha256"]
    assert [tag(h, "s") for h in headers] == ["mailgw-rsa", "mailgw-ed25519"]
    for header in headers:
        assert tag(header, "d") == DOMAIN
        assert tag(header, "c") == "relaxed/relaxed"
        assert tag(header, "h") == SIGNED
    # only CRLF line endings: the added headers as the message
    assert b"\n" not in signed.replace(b"\r\n", b"")


def test_optional_headers_signed_when_present(signer: Signer) -> None:
    message = (
        b"From: a@example.com\r\nCc: c@example.org\r\nIn-Reply-To: <1@x>\r\n"
        b"References: <0@x> <1@x>\r\nX-Mailer: not signed\r\nReceived: not signed\r\n"
        b"\r\nbody\r\n"
    )
    headers = signature_headers(signer.sign(message, DOMAIN))
    assert tag(headers[0], "h") == "from : cc : in-reply-to : references : from"


def test_every_verifier_passes_both_signatures(
    signer: Signer, published: DnsZone, mail_dkim: str, mailauth: str
) -> None:
    signed = signer.sign(realistic_message(), DOMAIN)
    both = {"rsa-sha256": "pass", "ed25519-sha256": "pass"}
    assert results(dkimpy_verdicts(signed, published)) == both
    assert results(mailauth_verdicts(mailauth, signed, published)) == both
    # Mail::DKIM without CryptX has no Ed25519: it passes the RSA signature and calls the
    # other "invalid (unsupported algorithm)", which does not make the message fail
    perl = mail_dkim_verdicts(mail_dkim, signed, published)
    assert results(perl)["rsa-sha256"] == "pass"
    assert results(perl)["ed25519-sha256"] in ("invalid", "pass")
    assert {(v["domain"], v["selector"]) for v in perl} >= {(DOMAIN, "mailgw-rsa")}


def _from_header(message: bytes) -> bytes:
    match = re.search(rb"^From:(.*?)\r\n(?! )", message, re.MULTILINE | re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("encoding", ["rfc2047", "utf-8"])
def test_accented_quoted_business_name_survives(
    encoding: str, signer: Signer, published: DnsZone, mail_dkim: str, mailauth: str
) -> None:
    name = 'Zoë "L\'Atelier", Coiffure & Co., Saint-Étienne'
    assert name != BUSINESS_NAME
    message = realistic_message(from_name=name)
    # as sent with SMTPUTF8: the name as UTF-8 in a quoted string
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    if encoding == "utf-8":
        message = message.replace(
            _from_header(message), f' "{quoted}" <scheduling@{DOMAIN}>'.encode()
        )
    signed = signer.sign(message, DOMAIN)
    # the header is signed as it is, and still reads as the name
    assert _from_header(signed) == _from_header(message)
    decoded = str(make_header(decode_header(_from_header(signed).decode())))
    expected = f'"{quoted}"' if encoding == "utf-8" else name
    assert decoded.strip() == f"{expected} <scheduling@{DOMAIN}>"
    both = {"rsa-sha256": "pass", "ed25519-sha256": "pass"}
    assert results(dkimpy_verdicts(signed, published)) == both
    assert results(mailauth_verdicts(mailauth, signed, published)) == both
    assert results(mail_dkim_verdicts(mail_dkim, signed, published))["rsa-sha256"] == "pass"


def _change_body_byte(signed: bytes) -> bytes:
    return signed.replace(b"Hello Jean", b"Hello Joan", 1)


def _change_subject(signed: bytes) -> bytes:
    return signed.replace(b"Subject: Appointment confirmed", b"Subject: Appointment cancelled", 1)


def _add_from(signed: bytes) -> bytes:
    # added below the existing one, where a verifier not oversigning would take the signed one
    head, body = signed.split(b"\r\n\r\n", 1)
    return head + b"\r\nFrom: Support <support@attacker.example>\r\n\r\n" + body


@pytest.mark.parametrize(
    "alter", [_change_body_byte, _change_subject, _add_from], ids=["body", "subject", "from"]
)
def test_altered_message_fails_every_verifier(
    alter: Callable[[bytes], bytes],
    signer: Signer,
    published: DnsZone,
    mail_dkim: str,
    mailauth: str,
) -> None:
    signed = signer.sign(realistic_message(), DOMAIN)
    altered = alter(signed)
    assert altered != signed
    for verdicts in (
        dkimpy_verdicts(altered, published),
        mailauth_verdicts(mailauth, altered, published),
        mail_dkim_verdicts(mail_dkim, altered, published),
    ):
        assert len(verdicts) == 2
        # mailauth says "neutral" for a body hash mismatch, the others "fail" or "invalid"
        assert all(verdict["result"] != "pass" for verdict in verdicts), verdicts
    assert results(mail_dkim_verdicts(mail_dkim, altered, published))["rsa-sha256"] == "fail"


def test_unknown_domain_is_refused(signer: Signer) -> None:
    with pytest.raises(DkimError, match=r"no DKIM key for sender domain 'other\.example'"):
        signer.sign(realistic_message(), "other.example")


def test_message_without_from_is_refused(signer: Signer) -> None:
    with pytest.raises(DkimError, match="From"):
        signer.sign(b"Subject: hi\r\n\r\nbody\r\n", DOMAIN)


def test_keys_must_match_their_domain(rsa_key: SigningKey) -> None:
    with pytest.raises(ValueError, match=r"other\.example"):
        Signer({"other.example": [rsa_key]})
    with pytest.raises(ValueError, match=r"example\.com"):
        Signer({DOMAIN: []})


# --- keys ---


def test_dns_records(rsa_key: SigningKey, ed_key: SigningKey) -> None:
    name, value = dns_record(rsa_key)
    assert name == f"mailgw-rsa._domainkey.{DOMAIN}"
    assert value.startswith("v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
    name, value = dns_record(ed_key)
    assert name == f"mailgw-ed25519._domainkey.{DOMAIN}"
    key = value.removeprefix("v=DKIM1; k=ed25519; p=")
    assert ed_key.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    ) == base64.b64decode(key)
    assert len(base64.b64decode(key)) == 32


def _dkim_key(state: Path, selector: str, algorithm: Algorithm) -> DkimKey:
    return DkimKey(DOMAIN, selector, algorithm, state / "dkim" / DOMAIN / f"{selector}.key", True)


def test_generated_keys_are_private_and_their_records_verify(
    tmp_path: Path,
    dns_zone: DnsZone,
    mail_dkim: str,
    mailauth: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    wanted = (_dkim_key(state, "r1", "rsa"), _dkim_key(state, "e1", "ed25519"))
    with caplog.at_level(logging.WARNING, logger="outbound.dkim"):
        keys = load_keys(wanted, generate=True)
    for key in wanted:
        assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
        assert key.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    for folder in (state / "dkim", state / "dkim" / DOMAIN):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in (state / "dkim" / DOMAIN).iterdir()) == ["e1.key", "r1.key"]
    assert [k.algorithm for k in keys[DOMAIN]] == ["rsa", "ed25519"]
    generated_rsa = keys[DOMAIN][0].private_key
    assert isinstance(generated_rsa, rsa.RSAPrivateKey) and generated_rsa.key_size == 2048

    # the record to publish is logged; published, it verifies the key's signatures
    for signing_key in keys[DOMAIN]:
        name, value = dns_record(signing_key)
        assert f"{name} TXT {value}" in caplog.text
    publish(dns_zone, *keys[DOMAIN])
    signed = Signer(keys).sign(realistic_message(), DOMAIN)
    both = {"rsa-sha256": "pass", "ed25519-sha256": "pass"}
    assert results(dkimpy_verdicts(signed, dns_zone)) == both
    assert results(mailauth_verdicts(mailauth, signed, dns_zone)) == both
    assert results(mail_dkim_verdicts(mail_dkim, signed, dns_zone))["rsa-sha256"] == "pass"

    # loaded again: the same keys, nothing generated
    caplog.clear()
    again = load_keys(wanted, generate=True)
    assert [dns_record(k) for k in again[DOMAIN]] == [dns_record(k) for k in keys[DOMAIN]]
    assert "generated" not in caplog.text


def test_existing_key_files_are_read(tmp_path: Path, rsa_key: SigningKey) -> None:
    path = tmp_path / "given.pem"
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    # the traditional "BEGIN RSA PRIVATE KEY" form of opendkim-genkey is read too
    path.write_bytes(
        rsa_key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    keys = load_keys([DkimKey(DOMAIN, "given", "rsa", path, False)], generate=True)
    assert dns_record(keys[DOMAIN][0]) == (
        f"given._domainkey.{DOMAIN}",
        dns_record(rsa_key)[1],
    )


def _problems(error: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(problem) for problem in error.value.problems]


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    openssl = need_tool("openssl")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    ed_file = tmp_path / "ed.key"
    ed_file.write_bytes(generate_private_key("ed25519"))
    small = tmp_path / "small.key"
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512", "-out", small],
        check=True,
        capture_output=True,
    )
    missing = tmp_path / "missing.key"
    wanted = [
        DkimKey(DOMAIN, "a", "rsa", missing, False),
        DkimKey(DOMAIN, "b", "rsa", garbage, False),
        DkimKey(DOMAIN, "c", "rsa", ed_file, False),
        # a key the gateway may generate, when it is told not to (generate=False)
        _dkim_key(tmp_path, "f", "rsa"),
        DkimKey("other.example", "d", "rsa", small, False),
        DkimKey("other.example", "e", "ed25519", garbage, False),
    ]
    with pytest.raises(ConfigError) as error:
        load_keys(wanted, generate=False)
    # every problem at once, each naming the key file and its place in the main file
    not_pem = "not an unencrypted PEM private key"
    assert [
        problem[: problem.index(not_pem) + len(not_pem)] if not_pem in problem else problem
        for problem in _problems(error)
    ] == [
        f"{missing}:sender_domains[0].dkim[0].key_file: DKIM private key file not found",
        f"{garbage}:sender_domains[0].dkim[1].key_file: {not_pem}",
        f"{ed_file}:sender_domains[0].dkim[2].key_file: not an RSA private key (algorithm = rsa)",
        f"{wanted[3].path}:sender_domains[0].dkim[3]: DKIM private key file not found",
        f"{small}:sender_domains[1].dkim[0].key_file: RSA key of 512 bits; at least 1024 "
        "needed (2048 recommended)",
        f"{garbage}:sender_domains[1].dkim[1].key_file: {not_pem}",
    ]
    assert not (tmp_path / "dkim").exists()


def test_wrong_key_type_for_ed25519(tmp_path: Path) -> None:
    path = tmp_path / "rsa.key"
    path.write_bytes(generate_private_key("rsa"))
    with pytest.raises(ConfigError) as error:
        load_keys([DkimKey(DOMAIN, "e", "ed25519", path, False)], generate=True)
    assert _problems(error) == [
        f"{path}:sender_domains[0].dkim[0].key_file: not an Ed25519 private key "
        "(algorithm = ed25519)"
    ]


def test_unreadable_key_file(tmp_path: Path) -> None:
    # A folder where the key should be: unreadable even for root, unlike chmod 0.
    path = tmp_path / "locked.key"
    path.mkdir()
    with pytest.raises(ConfigError) as error:
        load_keys([DkimKey(DOMAIN, "e", "ed25519", path, False)], generate=True)
    assert _problems(error) == [
        f"{path}:sender_domains[0].dkim[0].key_file: cannot read the DKIM private key: "
        "Is a directory"
    ]


def test_key_that_cannot_be_created(tmp_path: Path) -> None:
    # a dangling link: no key to read, and no file can be made in its place
    path = tmp_path / "r.key"
    path.symlink_to(tmp_path / "nowhere" / "r.key")
    with pytest.raises(ConfigError) as error:
        load_keys([DkimKey(DOMAIN, "r", "rsa", path, True)], generate=True)
    assert _problems(error) == [
        f"{path}:sender_domains[0].dkim[0]: cannot create the DKIM private key: "
        "No such file or directory"
    ]
    assert list(tmp_path.iterdir()) == [path]
