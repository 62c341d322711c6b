"""DKIM signing (RFC 6376, RSA and RFC 8463 Ed25519): the keys, and signing with OpenSSL."""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from gateway.errors import ConfigError, ConfigProblem, GatewayError
from gateway.secret_files import create_private_file
from gateway.settings import DkimKey, Settings
from outbound import dkim_relaxed

log = logging.getLogger(__name__)

Algorithm = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

RSA_BITS = 2048
# RFC 8301: verifiers ignore RSA keys under 1024 bits.
MIN_RSA_BITS = 1024

# Signed when present; From is signed once more (dkim_relaxed.headers_to_sign) so that no
# second From can be added without breaking the signatures.
SIGNED_HEADERS = (
    "from",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "mime-version",
    "content-type",
    "in-reply-to",
    "references",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "auto-submitted",
    "feedback-id",
)


class DkimError(GatewayError):
    """A message that cannot be signed: no key for its domain, or not a valid message."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A loaded DKIM private key and where its public half is published."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey


def generate_private_key(algorithm: Algorithm) -> bytes:
    """A new private key as unencrypted PKCS#8 PEM (RSA: 2048 bits)."""
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        if algorithm == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def dns_record(key: SigningKey) -> tuple[str, str]:
    """The TXT record to publish for a key: (name, value)."""
    public = key.private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        # RFC 8463: the bare 32-byte key, not a SubjectPublicKeyInfo
        data = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return (
        f"{key.selector}._domainkey.{key.domain}",
        f"v=DKIM1; k={key.algorithm}; p={base64.b64encode(data).decode('ascii')}",
    )


def load_keys(keys: Sequence[DkimKey], generate: bool) -> dict[str, tuple[SigningKey, ...]]:
    """Every key read from its file, by domain; a missing file that may be generated is
    created when `generate`. Raises ConfigError naming every file that is wrong."""
    by_domain: dict[str, list[DkimKey]] = {}
    for key in keys:
        by_domain.setdefault(key.domain, []).append(key)
    loaded: dict[str, tuple[SigningKey, ...]] = {}
    problems: list[ConfigProblem] = []
    # keys come in the main file's order (Settings.dkim_keys), which gives their place in it
    for domain_index, (domain, domain_keys) in enumerate(by_domain.items()):
        for key_index, key in enumerate(domain_keys):
            try:
                loaded[domain] = (*loaded.get(domain, ()), _load_key(key, generate))
            except _KeyProblem as exc:
                where = f"sender_domains[{domain_index}].dkim[{key_index}]"
                where += "" if key.generate else ".key_file"
                problems.append(ConfigProblem(str(key.path), where, str(exc)))
    if problems:
        raise ConfigError(problems)
    return loaded


class _KeyProblem(Exception):
    pass


def _load_key(key: DkimKey, generate: bool) -> SigningKey:
    created = False
    try:
        data = key.path.read_bytes()
    except FileNotFoundError:
        if not (key.generate and generate):
            raise _KeyProblem("DKIM private key file not found") from None
        data, created = _create_key_file(key)
    except OSError as exc:
        raise _KeyProblem(f"cannot read the DKIM private key: {exc.strerror}") from None
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _KeyProblem(f"not an unencrypted PEM private key ({exc})") from None
    if key.algorithm == "rsa":
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise _KeyProblem("not an RSA private key (algorithm = rsa)")
        if private_key.key_size < MIN_RSA_BITS:
            raise _KeyProblem(
                f"RSA key of {private_key.key_size} bits; at least {MIN_RSA_BITS} needed "
                f"({RSA_BITS} recommended)"
            )
    elif not isinstance(private_key, ed25519.Ed25519PrivateKey):
        raise _KeyProblem("not an Ed25519 private key (algorithm = ed25519)")
    signing_key = SigningKey(key.domain, key.selector, key.algorithm, private_key)
    if created:
        name, value = dns_record(signing_key)
        log.warning(
            "generated DKIM key %s; publish this DNS record: %s TXT %s", key.path, name, value
        )
    return signing_key


def _create_key_file(key: DkimKey) -> tuple[bytes, bool]:
    """The new key file's content, and False if another process created it first."""
    data = generate_private_key(key.algorithm)
    try:
        if not create_private_file(key.path, data):
            return key.path.read_bytes(), False
    except OSError as exc:
        raise _KeyProblem(f"cannot create the DKIM private key: {exc.strerror}") from None
    return data, True


class Signer:
    """Signs messages with every key of their sender domain, RSA first. One per process
    and configuration: the daemon's e-mail and forwarded replies share it, and a reload
    makes a new one."""

    def __init__(self, keys: Mapping[str, Sequence[SigningKey]]) -> None:
        self.keys: dict[str, tuple[SigningKey, ...]] = {}
        for domain, domain_keys in keys.items():
            if not domain_keys or any(k.domain != domain for k in domain_keys):
                raise ValueError(f"DKIM keys of {domain!r}: at least one, all of that domain")
            # RSA on top: every receiver knows it, and some check only the first signature
            self.keys[domain.lower()] = tuple(
                sorted(domain_keys, key=lambda k: k.algorithm != "rsa")
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        """A signer with every sender domain's keys, creating the missing default ones;
        ConfigError naming every key file that is wrong."""
        return cls(load_keys(settings.dkim_keys, generate=True))

    def sign(self, message: bytes, domain: str) -> bytes:
        """The message (CRLF line endings) with a DKIM-Signature for each key prepended."""
        keys = self.keys.get(domain.lower())
        if keys is None:
            known = ", ".join(sorted(self.keys)) or "none"
            raise DkimError(f"no DKIM key for sender domain {domain!r} (keys for: {known})")
        try:
            headers, body = dkim_relaxed.parse_message(message)
        except dkim_relaxed.MessageFormatError as exc:
            raise DkimError(f"cannot DKIM-sign the message: {exc}") from exc
        names = [name.lower() for name, _ in headers]
        signed_names = dkim_relaxed.headers_to_sign(names, _SIGNED_HEADERS)
        if b"from" not in signed_names:
            raise DkimError("cannot DKIM-sign the message: it has no From header field")
        # what every signature shares, made once: both are relaxed/relaxed over SHA-256, so
        # one body hash and one canonical text of the signed header fields
        signed_headers = b"".join(
            dkim_relaxed.relaxed_header(name, value) + b"\r\n"
            for name, value in dkim_relaxed.select_headers(headers, names, signed_names)
        )
        body_hash = base64.b64encode(hashlib.sha256(dkim_relaxed.relaxed_body(body)).digest())
        timestamp = int(time.time())
        lines = []
        for key in keys:
            fields = dkim_relaxed.signature_fields(
                _ALGORITHM_TAGS[key.algorithm],
                key.domain.encode("ascii"),
                key.selector.encode("ascii"),
                timestamp,
                signed_names,
                body_hash,
            )
            covered = signed_headers + dkim_relaxed.unsigned_signature_header(fields)
            signature = base64.b64encode(_sign(key.private_key, covered))
            lines.append(dkim_relaxed.signature_header(fields, signature))
        return b"".join(lines) + message


_SIGNED_HEADERS: Final = frozenset(name.encode("ascii") for name in SIGNED_HEADERS)
_ALGORITHM_TAGS: Final[dict[Algorithm, bytes]] = {
    "rsa": b"rsa-sha256",
    "ed25519": b"ed25519-sha256",
}


def _sign(private_key: PrivateKey, covered: bytes) -> bytes:
    """OpenSSL's signature of what a DKIM signature covers."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        # a=rsa-sha256: RSASSA-PKCS1-v1_5 over SHA-256
        return private_key.sign(covered, padding.PKCS1v15(), hashes.SHA256())
    # a=ed25519-sha256 (RFC 8463): PureEdDSA over the SHA-256 digest, not over the text
    return private_key.sign(hashlib.sha256(covered).digest())
