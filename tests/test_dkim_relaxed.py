"""Our DKIM canonicalization and signing, byte for byte against stock dkimpy, hostile messages
included; and the signatures of such messages verified by dkimpy, Mail::DKIM and mailauth."""

from __future__ import annotations

import base64
import time

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outbound import dkim_relaxed
from outbound.dkim import SIGNED_HEADERS, Algorithm, DkimError, Signer, SigningKey
from outbound.dkim import generate_private_key as new_key
from tests.conftest import DnsZone
from tests.dkim_verifiers import dkimpy_verdicts, mail_dkim_verdicts, mailauth_verdicts, publish
from tests.dkim_verifiers import results as verdict_by_algorithm
from tests.verifiers.message import realistic_message

DOMAIN = "example.com"
# a domain too long for one folded line (d= and i= are cut inside, as dkimpy cuts them)
LONG_DOMAIN = "a-very-long-sender-subdomain-name-for-the-folding." + "x" * 30 + ".example"
NOW = 1_800_000_000.0


def _key(algorithm: Algorithm, domain: str, selector: str) -> SigningKey:
    private_key = serialization.load_pem_private_key(new_key(algorithm), None)
    assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
    return SigningKey(domain, selector, algorithm, private_key)


KEYS = {
    domain: (_key("rsa", domain, selector), _key("ed25519", domain, selector + "-ed"))
    for domain, selector in ((DOMAIN, "s"), (LONG_DOMAIN, "mailgw-2024-selector-rsa"))
}
SIGNERS = {domain: Signer({domain: keys}) for domain, keys in KEYS.items()}


def dkimpy_signed(message: bytes, domain: str) -> bytes:
    """What stock dkimpy writes with the same keys, headers and time: RSA then Ed25519."""
    rsa_key, ed_key = KEYS[domain]
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    assert isinstance(ed_key.private_key, ed25519.Ed25519PrivateKey)
    rsa_pem = rsa_key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    seed = ed_key.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    headers = []
    for key, private, algorithm in (
        (rsa_key, rsa_pem, b"rsa-sha256"),
        (ed_key, base64.b64encode(seed), b"ed25519-sha256"),
    ):
        signer = dkim.DKIM(message)
        # dkimpy's own choice of headers, given our list: present ones, From once more
        signer.should_sign = {name.encode() for name in SIGNED_HEADERS}
        signer.frozen_sign = {b"from"}
        headers.append(
            signer.sign(
                key.selector.encode(),
                domain.encode(),
                private,
                signature_algorithm=algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
            )
        )
    return b"".join(headers) + message


def assert_same_as_dkimpy(message: bytes, domain: str = DOMAIN) -> None:
    """Ours equals dkimpy's, or both refuse the message."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(time, "time", lambda: NOW)
        try:
            expected = dkimpy_signed(message, domain)
        except (dkim.DKIMException, IndexError):
            # IndexError: dkimpy's parse of a folded line before any header field
            with pytest.raises(DkimError):
                SIGNERS[domain].sign(message, domain)
            return
        assert SIGNERS[domain].sign(message, domain) == expected


FOLDED_REFERENCES = b"References:" + b"".join(
    b"\r\n\t<%d.thread@example.org>" % i for i in range(40)
)
HOSTILE = {
    "realistic": realistic_message(),
    "empty body": b"From: a@example.com\r\nSubject: x\r\n\r\n",
    "no body at all": b"From: a@example.com\r\nSubject: x\r\n",
    "no line break at the end": b"From: a@example.com",
    "body of empty lines": b"From: a@example.com\r\n\r\n\r\n\r\n\r\n",
    "body without final CRLF": b"From: a@example.com\r\n\r\nlast line  \t",
    "trailing whitespace": b"From: a@example.com\r\n\r\na \t \r\n\t\r\n  b\r\n \r\n\r\n",
    "runs of whitespace": b"From: a@example.com\r\n\r\n  a\t\tb    c \t d" + b" " * 999 + b"e\r\n",
    "lone CR": b"From: a@example.com\r\n\r\na\r\r\nb \r c\r",
    "bare LF": b"From: a@example.com\nSubject: x\n\nline one \nline two\n\n",
    "mixed line breaks": b"From: a@example.com\r\nTo: b\n\r\nx\ny\r\nz  \n",
    "message starts with an empty line": b"\r\nFrom: a@example.com\r\n\r\nbody\r\n",
    "no From": b"Subject: hi\r\n\r\nbody\r\n",
    "From header in another case, twice": (
        b"FROM: a@example.com\r\nfrom:b@example.com\r\nfRoM :c\r\n\r\nx\r\n"
    ),
    "duplicates, bottom up": (
        b"To: 1\r\nFrom: a@example.com\r\nTo: 2\r\nSubject: s1\r\nTo: 3\r\nSubject: s2\r\n\r\nx"
    ),
    "empty and whitespace values": (
        b"From: a@example.com\r\nSubject:\r\nTo:   \t \r\nCc:\r\n \r\n\t\r\n\r\nx\r\n"
    ),
    "whitespace in values": (
        b"From:\t  A   \t B <a@example.com>  \r\nSubject: \x0bvt ff\x0c \r\n\r\nx\r\n"
    ),
    "long folded header": b"From: a@example.com\r\n" + FOLDED_REFERENCES + b"\r\n\r\nx\r\n",
    "non-ASCII": (
        "From: Zoë <a@example.com>\r\nSubject: Rendez-vous confirmé  ✓\r\n\r\n"
        "Bonjour Zoé,\t à bientôt ! 日本語 \r\n"
    ).encode(),
    "unsigned headers around": (
        b"Received: from x\r\nFrom: a@example.com\r\nX-Mailer: y\r\nDKIM-Signature: v=1\r\n\r\nx"
    ),
    "mbox From line": b"From a@example.com Mon Jan 1\r\nFrom: a@example.com\r\n\r\nx\r\n",
    "folded line before any header": b" folded\r\nFrom: a@example.com\r\n\r\nx\r\n",
    "not a header line": b"From: a@example.com\r\nno colon here\r\n\r\nx\r\n",
    "non-ASCII header name": "From: a@example.com\r\nSujét: x\r\n\r\nx\r\n".encode(),
}


@pytest.mark.parametrize("domain", [DOMAIN, LONG_DOMAIN])
@pytest.mark.parametrize("message", HOSTILE.values(), ids=HOSTILE.keys())
def test_same_as_dkimpy(message: bytes, domain: str) -> None:
    assert_same_as_dkimpy(message, domain)


# the bytes that make canonicalization and parsing differ: whitespace, line breaks, colons
TRICKY = st.sampled_from([b" ", b"\t", b"\r", b"\n", b"\r\n", b":", b"a", b"\xc3\xa9", b"\x0b"])
VALUES = st.lists(TRICKY, max_size=30).map(b"".join)
NAMES = st.sampled_from([*(n.encode() for n in SIGNED_HEADERS), b"FROM", b"Cc", b"X-Other"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=8),
    body=st.lists(TRICKY, max_size=80).map(b"".join),
)
def test_same_as_dkimpy_whatever_the_bytes(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    message = b"".join(name + b":" + value + b"\r\n" for name, value in headers)
    assert_same_as_dkimpy(message + b"\r\n" + body)


@pytest.mark.parametrize(
    "text",
    [b"", b"\r\n", b"\r\n\r\n", b"a", b"a\r\n", b" \t a  \t\r\n\r\n", b"x \r\n  \r\n\r\n"],
)
def test_relaxed_body_is_dkimpys(text: bytes) -> None:
    from dkim.canonicalization import Relaxed

    assert dkim_relaxed.relaxed_body(text) == Relaxed.canonicalize_body(text)


def test_fold_is_dkimpys() -> None:
    for length in range(1, 400, 7):
        words = b" ".join(b"w" * (n % 13 + 1) for n in range(length))
        for value in (words, b"x" * length, words + b"\r\n"):
            assert dkim_relaxed.fold(value) == dkim.fold(value, namelen=14), value


HOSTILE_VERIFIED = ("empty body", "trailing whitespace", "runs of whitespace", "long folded header")


@pytest.mark.parametrize("name", HOSTILE_VERIFIED)
def test_every_verifier_passes_hostile_messages(
    name: str, dns_zone: DnsZone, mail_dkim: str, mailauth: str
) -> None:
    publish(dns_zone, *KEYS[DOMAIN])
    signed = SIGNERS[DOMAIN].sign(HOSTILE[name], DOMAIN)
    both = {"rsa-sha256": "pass", "ed25519-sha256": "pass"}
    assert verdict_by_algorithm(dkimpy_verdicts(signed, dns_zone)) == both
    assert verdict_by_algorithm(mailauth_verdicts(mailauth, signed, dns_zone)) == both
    perl = verdict_by_algorithm(mail_dkim_verdicts(mail_dkim, signed, dns_zone))
    assert perl["rsa-sha256"] == "pass"
    assert perl["ed25519-sha256"] in ("invalid", "pass")
