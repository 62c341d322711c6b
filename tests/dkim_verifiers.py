"""The independent DKIM verifiers the tests run: dkimpy, Perl's Mail::DKIM and mailauth.

Their fixtures, `mail_dkim` and `mailauth`, are in conftest.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import dkim
from dkim.util import parse_tag_value

from outbound.dkim import SigningKey, dns_record
from tests.conftest import DnsZone

VERIFIERS = Path(__file__).resolve().parent / "verifiers"


def publish(zone: DnsZone, *keys: SigningKey) -> None:
    for key in keys:
        name, value = dns_record(key)
        zone.set(name, ["TXT", value])


Verdicts = list[dict[str, Any]]


def dkimpy_verdicts(message: bytes, zone: DnsZone) -> Verdicts:
    """dkimpy's verdict on each signature, keys from the zone's records."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        records = zone.records.get(name.decode().rstrip(".").lower(), [])
        return "".join(value for kind, value in records if kind == "TXT").encode()

    verifier = dkim.DKIM(message)
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    verdicts = []
    for index, signature in enumerate(signatures):
        try:
            passed = verifier.verify(index, dnsfunc=dnsfunc)
        except dkim.DKIMException:  # a body hash mismatch is raised, not returned
            passed = False
        fields = parse_tag_value(signature)
        verdicts.append(
            {
                "domain": fields[b"d"].decode(),
                "selector": fields[b"s"].decode(),
                "algorithm": fields[b"a"].decode(),
                "result": "pass" if passed else "fail",
            }
        )
    return verdicts


def run_verifier(command: list[str], message: bytes) -> Verdicts:
    result = subprocess.run(command, input=message, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def mail_dkim_verdicts(perl: str, message: bytes, zone: DnsZone) -> Verdicts:
    return run_verifier([perl, str(VERIFIERS / "mail_dkim.pl"), "dkim", str(zone.port)], message)


def mailauth_verdicts(node: str, message: bytes, zone: DnsZone) -> Verdicts:
    return run_verifier([node, str(VERIFIERS / "verify_dkim.mjs"), str(zone.port)], message)


def results(verdicts: Verdicts) -> dict[str, str]:
    """Result by algorithm."""
    return {verdict["algorithm"]: verdict["result"] for verdict in verdicts}


def mail_dkim_arc(perl: str, message: bytes, zone: DnsZone) -> dict[str, Any]:
    """Mail::DKIM::ARC::Verifier's verdict on the ARC chain, and on each of its signatures."""
    [verdict] = run_verifier(
        [perl, str(VERIFIERS / "mail_dkim.pl"), "arc", str(zone.port)], message
    )
    return verdict


def mailauth_authenticate(
    node: str, message: bytes, zone: DnsZone, ip: str, helo: str, mail_from: str
) -> dict[str, Any]:
    """mailauth's authenticate(): DKIM, SPF, ARC (with the results its last set sealed) and
    DMARC, as a server receiving the message from `ip` would find them."""
    command = [node, str(VERIFIERS / "authenticate.mjs"), str(zone.port), ip, helo, mail_from]
    [verdict] = run_verifier(command, message)
    return verdict
