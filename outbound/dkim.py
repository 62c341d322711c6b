"""DKIM signing (RFC 6376, RSA and RFC 8463 Ed25519): dkimpy's canonicalization, OpenSSL's keys."""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils

from gateway.errors import ConfigError, ConfigProblem, GatewayError
from gateway.secret_files import create_private_file
from gateway.settings import DkimKey, Settings

log = logging.getLogger(__name__)

Algorithm = Literal["rsa", "ed25519"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

RSA_BITS = 2048
# RFC 8301: verifiers ignore RSA keys under 1024 bits.
MIN_RSA_BITS = 1024

# Signed when present; From is signed once more (dkimpy's "frozen" headers) so that no
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
OVERSIGNED_HEADERS = ("from",)


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
        self._keys: dict[str, tuple[_DkimpyKey, ...]] = {}
        for domain, domain_keys in keys.items():
            if not domain_keys or any(k.domain != domain for k in domain_keys):
                raise ValueError(f"DKIM keys of {domain!r}: at least one, all of that domain")
            # RSA on top: every receiver knows it, and some check only the first signature
            ordered = sorted(domain_keys, key=lambda k: k.algorithm != "rsa")
            self.keys[domain.lower()] = tuple(ordered)
            self._keys[domain.lower()] = tuple(_DkimpyKey.of(k) for k in ordered)

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer:
        """A signer with every sender domain's keys, creating the missing default ones;
        ConfigError naming every key file that is wrong."""
        return cls(load_keys(settings.dkim_keys, generate=True))

    def sign(self, message: bytes, domain: str) -> bytes:
        """The message (CRLF line endings) with a DKIM-Signature for each key prepended."""
        keys = self._keys.get(domain.lower())
        if keys is None:
            known = ", ".join(sorted(self._keys)) or "none"
            raise DkimError(f"no DKIM key for sender domain {domain!r} (keys for: {known})")
        # Where the time goes (bench/dkim.py, the ~8 KB sample confirmation): OpenSSL's RSA
        # signature ~0.26 ms; dkimpy's parse of the message ~0.13 ms, once; then per
        # signature its relaxed body canonicalization, ~0.2 ms (two regular expressions over
        # the whole body, ~10 ns a byte with or without spaces, hence compose() sending the
        # shorter of QP and base64, not base64 throughout) and its header canonicalization
        # and hashing, ~0.05 ms. Its re-parse of the RSA key is avoided (_UNPARSED_RSA_KEY).
        try:
            # one parse of the message for all the signatures
            signer = _OpenSslDkim(message)
            headers = [signer.sign_with(key) for key in keys]
        except dkim.DKIMException as exc:
            raise DkimError(f"cannot DKIM-sign the message: {exc}") from exc
        return b"".join(headers) + message


@dataclass(frozen=True, slots=True)
class _Signature:
    """What dkimpy reads from a key's sign(): the signature bytes."""

    signature: bytes


@dataclass(frozen=True, slots=True)
class _OpenSslKey:
    """A key object of the shape dkimpy signs with: sign(digest).signature."""

    key: PrivateKey

    def sign(self, digest: bytes) -> _Signature:
        if isinstance(self.key, rsa.RSAPrivateKey):
            # RSASSA-PKCS1-v1_5 over dkimpy's SHA-256 of the canonical headers (a=rsa-sha256)
            return _Signature(
                self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
            )
        # RFC 8463: PureEdDSA over the SHA-256 digest (a=ed25519-sha256)
        return _Signature(self.key.sign(digest))


# What DKIM.sign() is handed as the "private key" of an RSA signature: a PKCS#1
# RSAPrivateKey whose nine integers are all 0. sign() parses its privkey argument with its
# own pure-Python PEM and ASN.1 code before anything else, on every call: ~0.16 ms for a real
# 2048-bit key, more than half of OpenSSL's whole signature, and there is no argument or
# attribute through which it would take a parsed key instead. The key it parses only goes
# to gen_header (see _OpenSslDkim.gen_header), which signs with our OpenSSL key instead, so
# this stub (parsed in ~5 us) stands in for it and the real key is never serialized nor
# parsed again. Fail-safe: were the seam ever bypassed, dkimpy's own RSA code given a
# modulus of 0 raises (digest too large for modulus), which Signer.sign reports as a
# DkimError; it can never produce a signature with it.
_UNPARSED_RSA_KEY: Final = (
    b"-----BEGIN RSA PRIVATE KEY-----\n"
    + base64.b64encode(b"\x30\x1b" + b"\x02\x01\x00" * 9)
    + b"\n-----END RSA PRIVATE KEY-----\n"
)


@dataclass(frozen=True, slots=True)
class _DkimpyKey:
    """A key with what DKIM.sign() is given for it, prepared once."""

    domain: bytes
    selector: bytes
    signature_algorithm: bytes
    # what dkimpy's sign() parses: the stub above for RSA, the base64 seed for Ed25519 (its
    # parse with PyNaCl is cheap); either way the signature is made with `openssl`
    dkimpy_private_key: bytes
    openssl: _OpenSslKey

    @classmethod
    def of(cls, key: SigningKey) -> _DkimpyKey:
        if isinstance(key.private_key, rsa.RSAPrivateKey):
            dkimpy_private_key = _UNPARSED_RSA_KEY
            algorithm = b"rsa-sha256"
        else:
            dkimpy_private_key = base64.b64encode(
                key.private_key.private_bytes(
                    serialization.Encoding.Raw,
                    serialization.PrivateFormat.Raw,
                    serialization.NoEncryption(),
                )
            )
            algorithm = b"ed25519-sha256"
        return cls(
            key.domain.encode("ascii"),
            key.selector.encode("ascii"),
            algorithm,
            dkimpy_private_key,
            _OpenSslKey(key.private_key),
        )


class _OpenSslDkim(dkim.DKIM):  # type: ignore[misc]  # dkimpy has no type hints
    """dkimpy's DKIM signer, everything but the private-key operation left to it."""

    signature_algorithm: bytes

    def __init__(self, message: bytes) -> None:
        super().__init__(message)
        self.should_sign = {name.encode("ascii") for name in SIGNED_HEADERS}
        self.frozen_sign = {name.encode("ascii") for name in OVERSIGNED_HEADERS}
        self.openssl_key: _OpenSslKey | None = None

    def sign_with(self, key: _DkimpyKey) -> bytes:
        """The DKIM-Signature header line (CRLF-terminated) for one key."""
        self.openssl_key = key.openssl
        try:
            # include_headers omitted: dkimpy takes the should_sign headers present, in the
            # message's order, and the frozen ones once more
            header: bytes = self.sign(
                key.selector,
                key.domain,
                key.dkimpy_private_key,
                signature_algorithm=key.signature_algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
            )
        finally:
            self.openssl_key = None
        return header

    def gen_header(
        self,
        fields: Any,
        include_headers: Any,
        canon_policy: Any,
        header_name: bytes,
        pk: Any,
        standardize: bool = False,
    ) -> Any:
        # The seam. DKIM.sign() has canonicalized and hashed the body and built every tag
        # (a= included) when it calls this; gen_header then hashes the canonical headers and
        # signs that digest according to self.signature_algorithm: the ed25519 branch calls
        # `pk.sign(digest).signature` on the key object it is given, the RSA branch calls
        # dkimpy's module-level, pure-Python RSASSA_PKCS1_v1_5_sign (~20x slower than OpenSSL).
        # So both kinds take the key-object branch with our OpenSSL key in place of `pk`,
        # dkimpy's parse of what sign() was given (_UNPARSED_RSA_KEY for RSA): nothing else
        # in gen_header reads signature_algorithm, so the header, its hash and the a= tag
        # stay dkimpy's (tests/test_dkim.py checks both signatures are byte for byte what
        # stock dkimpy 1.1.8 writes with the real keys). This avoids replacing dkimpy's
        # module globals, which would change every other DKIM/ARC signer in the process.
        algorithm = self.signature_algorithm
        self.signature_algorithm = b"ed25519-sha256"
        try:
            return super().gen_header(
                fields, include_headers, canon_policy, header_name, self.openssl_key, standardize
            )
        finally:
            self.signature_algorithm = algorithm
