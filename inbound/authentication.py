"""Authentication of a received message (SPF, DKIM, ARC) and its Authentication-Results."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal

import authres.core  # type: ignore[import-untyped]
import dkim
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver
import spf  # type: ignore[import-untyped]
from dkim.util import InvalidTagValueList, parse_tag_value

from gateway.settings import Endpoint

SpfResult = Literal["pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"]
DkimResult = Literal["pass", "fail", "temperror", "permerror"]
ArcResult = Literal["pass", "fail", "none"]

# RFC 7208 section 4.6.4 suggests at least 20 s for a whole SPF check; a key lookup gets 5 s.
SPF_TIME: Final = 20.0
DNS_TIME: Final = 5.0
# Each signature costs a DNS lookup: a message with thousands must not hold the worker.
MAX_SIGNATURES: Final = 10
# RFC 6008: header.b holds enough of b= to tell two signatures of one domain apart.
SIGNATURE_PREFIX: Final = 8

_AUTHSERV_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class SpfCheck:
    """SPF (RFC 7208) of the envelope sender's domain, or of the HELO name for the null
    sender, against the client's address."""

    result: SpfResult
    identity: Literal["mailfrom", "helo"]
    domain: str
    explanation: str


@dataclass(frozen=True, slots=True)
class DkimCheck:
    """One DKIM-Signature's verdict (RFC 6376), with the tags that name it."""

    result: DkimResult
    domain: str
    selector: str
    algorithm: str
    signature: str
    reason: str


@dataclass(frozen=True, slots=True)
class ArcCheck:
    """The verdict on the ARC chain the message arrived with (RFC 8617); none if it had none."""

    result: ArcResult
    reason: str


@dataclass(frozen=True, slots=True)
class AuthResults:
    """What was checked on receipt, by the server named `srv_id` (RFC 8601 authserv-id)."""

    srv_id: str
    peer: str
    spf: SpfCheck
    dkim: tuple[DkimCheck, ...]
    arc: ArcCheck

    def header_value(self) -> str:
        """The Authentication-Results field body, one result per folded line: what the ARC
        seal of a forwarded message records (dkimpy's arc_sign reads it back with authres)."""
        # pyspf's explanation of a pass or fail is the domain's (exp=), an error's is its own
        spf_reason = self.spf.explanation if self.spf.result.endswith("error") else ""
        results = [
            _result(
                "spf", self.spf.result, spf_reason, [("smtp", self.spf.identity, self.spf.domain)]
            ),
            *(
                _result(
                    "dkim",
                    check.result,
                    check.reason,
                    [
                        ("header", "d", check.domain),
                        ("header", "s", check.selector),
                        ("header", "a", check.algorithm),
                        ("header", "b", check.signature),
                    ],
                )
                for check in self.dkim
            ),
            _result("arc", self.arc.result, self.arc.reason, [("smtp", "remote-ip", self.peer)]),
        ]
        return self.srv_id + "".join(f";\r\n {result}" for result in results)


def _result(method: str, result: str, reason: str, properties: list[tuple[str, str, str]]) -> str:
    return str(
        authres.core.AuthenticationResult(
            method,
            result=result,
            reason=_reason(reason),
            properties=[
                authres.core.AuthenticationResultProperty(kind, name, _value(value))
                for kind, name, value in properties
                if value
            ],
        )
    )


# authres writes a value or reason that holds an "@" as it is, unquoted (to keep addresses
# readable), whatever else it holds: "a; dkim=pass@x" would read as a result of its own. The
# values come from the sender (HELO, MAIL FROM, signature tags), so no "@" is let through,
# and a value keeps only what host names, IP addresses and base64 are made of; anything else
# becomes "?", which authres quotes.
def _value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.:_+/=\[\]-]", "?", text)[:255]


def _reason(text: str) -> str:
    # printable ASCII but "@" (0x40): the ranges space to "?" and "A" to "~"
    return re.sub(r"[^ -?A-~]", "?", text)[:200]


def resolver_for(servers: Sequence[Endpoint]) -> dns.resolver.Resolver:
    """A resolver asking the given DNS servers, else the system's (/etc/resolv.conf).

    Its `lifetime` (dnspython's default: 5 s) caps each lookup of the checks."""
    if not servers:
        return dns.resolver.Resolver()
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(s.host, s.port) for s in servers]
    return resolver


async def authenticate(
    message: bytes,
    *,
    mail_from: str,
    helo: str,
    peer: str,
    srv_id: str,
    resolver: dns.resolver.Resolver,
) -> AuthResults:
    """SPF, DKIM (every signature, up to MAX_SIGNATURES) and ARC of a message received from
    the client at IP address `peer`, which said HELO `helo` and MAIL FROM `mail_from` ("" for
    the null sender). Failures are results (temperror when DNS failed), never exceptions.

    pyspf and dkimpy are blocking libraries: the checks run in a worker thread.
    """
    if not _AUTHSERV_ID.fullmatch(srv_id):
        raise ValueError(f"not a host name to use as authserv-id: {srv_id!r}")
    return await asyncio.to_thread(_check, message, mail_from, helo, peer, srv_id, resolver)


def _check(
    message: bytes,
    mail_from: str,
    helo: str,
    peer: str,
    srv_id: str,
    resolver: dns.resolver.Resolver,
) -> AuthResults:
    lookup = _key_lookup(resolver)
    return AuthResults(
        srv_id,
        peer,
        _spf(mail_from, helo, peer, resolver),
        _dkim(message, lookup),
        _arc(message, lookup),
    )


# --- SPF ---

# pyspf resolves through its module-level DNSLookup function (its own tests replace it the
# same way) with dnspython's default resolver; this one asks the resolver of the check under
# way, in its thread's context, and keeps pyspf's own for any other caller.
_SPF_RESOLVER: ContextVar[dns.resolver.Resolver | None] = ContextVar("spf_resolver", default=None)
_PYSPF_LOOKUP: Final = spf.DNSLookup


def _spf_lookup(
    name: str, qtype: str, strict: bool | int = True, timeout: float = SPF_TIME
) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup contract: ((name, type), value) for each record of the answer."""
    resolver = _SPF_RESOLVER.get()
    if resolver is None:
        found: list[tuple[tuple[str, str], Any]] = _PYSPF_LOOKUP(name, qtype, strict, timeout)
        return found
    try:
        answer = resolver.resolve(
            name, qtype, lifetime=min(timeout, resolver.lifetime), search=False
        )
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise spf.TempError(f"DNS lookup of {name} {qtype} failed: {exc}") from None
    # the values pyspf's dnspython lookup gives for each type
    values: list[Any]
    if qtype in ("A", "AAAA"):
        values = [rdata.address for rdata in answer]
    elif qtype == "MX":
        values = [(rdata.preference, rdata.exchange) for rdata in answer]
    elif qtype == "PTR":
        values = [rdata.target.to_text(True) for rdata in answer]
    else:
        values = [rdata.strings for rdata in answer]
    return [((name, qtype), value) for value in values]


spf.DNSLookup = _spf_lookup


def _spf(mail_from: str, helo: str, peer: str, resolver: dns.resolver.Resolver) -> SpfCheck:
    token = _SPF_RESOLVER.set(resolver)
    try:
        query = spf.query(i=peer, s=mail_from, h=helo, querytime=SPF_TIME)
        result, _code, explanation = query.check()
    finally:
        _SPF_RESOLVER.reset(token)
    # pyspf checks postmaster@<HELO> for the null sender (RFC 7208 section 2.4)
    return SpfCheck(result, query.ident, query.o, explanation)


# --- DKIM and ARC ---

# What dkimpy raises for a header section it cannot parse: MessageFormatError, or IndexError
# when the first line is a continuation line.
_UNPARSABLE: Final = (dkim.DKIMException, IndexError)


class _NoKey(dkim.DKIMException):  # type: ignore[misc]  # dkimpy has no type hints
    """No key record at the name a signature gives (a permanent error, RFC 6376 6.1.2)."""


class _DnsTrouble(dkim.DKIMException):  # type: ignore[misc]
    """The key lookup failed (timeout, server failure): maybe not next time."""


def _key_lookup(resolver: dns.resolver.Resolver) -> Callable[..., bytes]:
    """dkimpy's dnsfunc: the key record (TXT) at a name, through `resolver`.

    Both errors are DKIMExceptions that dkimpy's verify_sig lets through (it turns the
    ones it knows, and an empty record, into a bare False): DKIM tells them apart, and
    arc_verify reports them as a failed chain with their text."""

    def lookup(name: bytes, timeout: float = DNS_TIME) -> bytes:
        text = name.decode("ascii", "replace")
        try:
            answer = resolver.resolve(
                dns.name.from_text(name), "TXT", lifetime=min(timeout, resolver.lifetime)
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            raise _NoKey(f"no key record at {text}") from None
        except (dns.exception.SyntaxError, dns.name.NameTooLong):
            raise _NoKey(f"no such DNS name: {text}") from None
        except dns.exception.DNSException as exc:
            raise _DnsTrouble(f"key lookup of {text} failed: {exc}") from None
        # a name holding several records is ambiguous; dkimpy's own lookup takes the first too
        return b"".join(answer[0].strings)

    return lookup


def _dkim(message: bytes, lookup: Callable[..., bytes]) -> tuple[DkimCheck, ...]:
    try:
        verifier = dkim.DKIM(message, timeout=DNS_TIME)
    except _UNPARSABLE:
        return ()  # no header section to find signatures in
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    return tuple(
        _verify(verifier, index, value, lookup)
        for index, value in enumerate(signatures[:MAX_SIGNATURES])
    )


def _verify(verifier: Any, index: int, header: bytes, lookup: Callable[..., bytes]) -> DkimCheck:
    try:
        tags = parse_tag_value(header)
    except InvalidTagValueList:
        tags = {}
    # verify_headerprep and verify_sig are DKIM.verify in two steps: a signature that cannot
    # be read (missing or bad tags) is a permerror, one that does not verify a fail
    try:
        signature, include_headers, signature_headers = verifier.verify_headerprep(index)
    except dkim.DKIMException as exc:
        return _dkim_check(tags, "permerror", str(exc))
    try:
        passed = verifier.verify_sig(signature, include_headers, signature_headers[index], lookup)
    except _NoKey as exc:
        return _dkim_check(tags, "permerror", str(exc))
    except _DnsTrouble as exc:
        return _dkim_check(tags, "temperror", str(exc))
    except dkim.DKIMException as exc:  # a body hash mismatch, a key too small...
        return _dkim_check(tags, "fail", str(exc))
    if passed:
        return _dkim_check(tags, "pass", "")
    return _dkim_check(tags, "fail", "signature did not verify")


def _dkim_check(tags: dict[bytes, bytes], result: DkimResult, reason: str) -> DkimCheck:
    def tag(name: bytes) -> str:
        return re.sub(rb"\s+", b"", tags.get(name, b"")).decode("ascii", "replace")

    signature = tag(b"b")[:SIGNATURE_PREFIX]
    return DkimCheck(result, tag(b"d"), tag(b"s"), tag(b"a"), signature, reason)


def _arc(message: bytes, lookup: Callable[..., bytes]) -> ArcCheck:
    try:
        result, _sets, reason = dkim.arc_verify(message, dnsfunc=lookup)
    except _UNPARSABLE as exc:
        return ArcCheck("fail", f"not a message: {exc!r}")
    verdict = _ARC_RESULTS.get(result, "fail")
    return ArcCheck(verdict, str(reason) if verdict == "fail" else "")


# dkimpy's chain validation results; anything else (None: a chain that ended) fails
_ARC_RESULTS: Final[dict[bytes, ArcResult]] = {b"pass": "pass", b"none": "none"}
