"""A client's reply made ready to relay: From rewritten for DMARC, DKIM-signed, ARC-sealed."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Final

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.addresses import sender_address
from gateway.clock import Clock
from gateway.errors import PermanentFailure
from gateway.header_text import one_line
from outbound.dkim import DkimError, Signer
from outbound.headers import mailbox

# Our trace header: every forwarded message carries one naming the sender domain it went out
# from. A received message that already holds one for one of our sender domains has come
# back to us (a destination forwarding to a reply address, say): it is dropped, not
# forwarded again.
LOOP_HEADER: Final = "X-Mailgw-Loop"

# Fields of the original left out. From, Sender, Reply-To and To are written anew; Cc and
# Bcc would reach others a second time; Return-Path is the final server's to add. The
# client's DKIM-Signatures fail once From is rewritten (their verdicts travel in the ARC
# seal's ARC-Authentication-Results instead), and Authentication-Results are other servers'
# claims, or forged ones in our name that the seal would vouch for.
_DROPPED: Final = frozenset(
    {
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"bcc",
        b"return-path",
        b"dkim-signature",
        b"authentication-results",
    }
)
_BARE_LF = re.compile(rb"(?<!\r)\n")
# A header field's first line: its name, then the colon (RFC 5322 section 3.6.8).
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
# A CR or LF that does not start a folded line (CRLF then white space): a new header.
_BREAK = re.compile(r"\r(?!\n[ \t])|(?<!\r)\n")


class ForwardError(PermanentFailure):
    """A reply that cannot be forwarded: not a message, or no key to sign or seal it."""


@dataclass(frozen=True, slots=True)
class _ArcKey:
    selector: bytes
    domain: bytes
    # PKCS#1 PEM: the form dkimpy's arc_sign parses
    pem: bytes


class Forwarder:
    """Forwards replies from the sender domains whose DKIM keys the signer it is given holds,
    the keys in force when each reply is forwarded."""

    def __init__(self, signer: Callable[[], Signer], clock: Clock) -> None:
        self._signer = signer
        self._clock = clock

    def forward(
        self,
        original: bytes,
        *,
        client_name: str,
        client_address: str,
        business_name: str,
        sender_domain: str,
        to: str,
        auth_results: str,
    ) -> bytes:
        """The reply `original` (as received) rewritten to go to `to`, with CRLF line ends.

        From: "<client name> via <business name>" <scheduling@<sender domain>> (the
        client's address stands in for an empty name); Reply-To: the client; To: `to`.
        Kept as they were: Subject, Message-ID, In-Reply-To, References, the other
        headers and the body, byte for byte (bare LF line ends become CRLF). A missing
        Message-ID or Date is added. On top: LOOP_HEADER, then `auth_results` (the value of
        AuthResults.header_value() from the checks on receipt) as Authentication-Results;
        then the message is DKIM-signed with the sender domain's keys and ARC-sealed with
        its RSA key, recording those results (i=1, or the next instance of the chain it
        came with).

        Raises ForwardError if the original is not a message or a key is missing, and
        AddressRefused if an address cannot be written in a header.
        """
        srv_id, _, _ = auth_results.partition(";")
        if not auth_results.isascii() or _BREAK.search(auth_results) or not srv_id.strip():
            raise ValueError(f"not an Authentication-Results value: {auth_results!r}")
        signer = self._signer()
        arc_key = _arc_key(signer, sender_domain)
        if arc_key is None:
            raise ForwardError(
                f"no RSA DKIM key for {sender_domain!r} to ARC-seal with (ARC is RSA only)"
            )
        fields, body = _split(_BARE_LF.sub(b"\r\n", original))
        kept = [field for field in fields if _name(field) not in _DROPPED]
        present = {_name(field) for field in kept}
        top = [f"{LOOP_HEADER}: {sender_domain}", f"Authentication-Results: {auth_results}"]
        # The client's name comes from the client's own mail, where it cannot be refused as
        # the gateway's own text is: a control character in it is made a space.
        name = f"{one_line(client_name).strip() or client_address} via {business_name}"
        added = [
            f"From: {mailbox(name, sender_address(sender_domain))}",
            f"Reply-To: {mailbox(None, client_address)}",
            f"To: {mailbox(None, to)}",
        ]
        if b"message-id" not in present:
            added.append(f"Message-ID: <{secrets.token_hex(16)}@{sender_domain}>")
        if b"date" not in present:
            added.append(f"Date: {formatdate(self._clock.now(), usegmt=True)}")
        message = (
            b"\r\n".join(
                [*(h.encode("ascii") for h in top), *kept, *(h.encode("ascii") for h in added)]
            )
            + b"\r\n\r\n"
            + body
        )
        try:
            signed = signer.sign(message, sender_domain)
            arc_set: list[bytes] = dkim.arc_sign(
                signed,
                arc_key.selector,
                arc_key.domain,
                arc_key.pem,
                srv_id.strip().lower().encode(),
            )
        except (DkimError, dkim.DKIMException) as exc:
            raise ForwardError(f"cannot sign the forwarded reply: {exc}") from exc
        if not arc_set:
            raise ForwardError(f"dkimpy made no ARC set from these results: {auth_results!r}")
        return b"".join(arc_set) + signed


def _arc_key(signer: Signer, domain: str) -> _ArcKey | None:
    """The key to ARC-seal with: RFC 8617 ARC signatures are rsa-sha256 only, so the
    domain's first RSA key."""
    for key in signer.keys.get(domain.lower(), ()):
        if isinstance(key.private_key, rsa.RSAPrivateKey):
            pem = key.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
            return _ArcKey(key.selector.encode(), key.domain.encode(), pem)
    return None


def _split(message: bytes) -> tuple[list[bytes], bytes]:
    """The header fields (each with its folded lines, without its last CRLF) and the body."""
    end = message.find(b"\r\n\r\n")
    head, body = (
        (message.removesuffix(b"\r\n"), b"") if end < 0 else (message[:end], message[end + 4 :])
    )
    fields = re.split(rb"\r\n(?![ \t])", head)
    for field in fields:
        if not _FIELD.match(field):
            raise ForwardError(f"the reply is not a message: no header field in {field[:80]!r}")
    return fields, body


def _name(field: bytes) -> bytes:
    return field.split(b":", 1)[0].strip().lower()
