"""DKIM signing time per message: stock dkimpy, ours (RSA, RSA + Ed25519), against
`openssl speed rsa2048` measured in the same run.

    python bench/dkim.py [--seconds 3]

The message is a ~12 KB notification (text, HTML and an .ics part). The target is
ours (RSA) <= 1.5 x OpenSSL's own RSA-2048 signature time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This file's own folder comes first on sys.path and its name would shadow dkimpy's
# `dkim`: put the project root there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402
from dkim.canonicalization import CanonicalizationPolicy  # noqa: E402

from outbound.dkim import Algorithm, Signer, SigningKey, generate_private_key  # noqa: E402
from tests.verifiers.message import realistic_message  # noqa: E402


def ms_per_call(call: Callable[[], object], seconds: float) -> float:
    """Mean time of one call, over about `seconds` (at least 3 calls)."""
    call()
    count, started = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - started < seconds:
        call()
        count += 1
    return (time.perf_counter() - started) / count * 1000


def openssl_rsa2048_ms(seconds: int) -> float:
    """OpenSSL's own RSA-2048 signature time, from `openssl speed`."""
    if shutil.which("openssl") is None:
        sys.exit("openssl is missing: install Debian's openssl")
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "rsa2048"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "rsa 2048 bits 0.000287s 0.000023s   3488.0  42672.3": sign/s is the 3rd number
    match = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)", out, re.MULTILINE)
    if match is None:
        sys.exit(f"cannot read openssl speed's output: {out!r}")
    return 1000 / float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3, help="time per measurement")
    args = parser.parse_args()

    message = realistic_message()
    domain = "example.com"
    rsa_pem = generate_private_key("rsa")

    def key(algorithm: Algorithm, pem: bytes, selector: str) -> SigningKey:
        private_key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        return SigningKey(domain, selector, algorithm, private_key)

    rsa_key = key("rsa", rsa_pem, "rsa")
    ed_key = key("ed25519", generate_private_key("ed25519"), "ed")
    rsa_only = Signer({domain: [rsa_key]})
    dual = Signer({domain: [rsa_key, ed_key]})

    def stock() -> object:
        return dkim.sign(
            message, b"rsa", domain.encode(), rsa_pem, canonicalize=(b"relaxed", b"relaxed")
        )

    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body = dkim.rfc822_parse(message)[1]
    rows = [
        ("stock dkimpy, RSA", ms_per_call(stock, 1)),
        ("ours, RSA", ms_per_call(lambda: rsa_only.sign(message, domain), args.seconds)),
        ("ours, RSA + Ed25519", ms_per_call(lambda: dual.sign(message, domain), args.seconds)),
        ("  of which dkimpy: parse the message", ms_per_call(lambda: dkim.DKIM(message), 1)),
        (
            "  of which dkimpy: relaxed body, per signature",
            ms_per_call(lambda: relaxed.canonicalize_body(body), 1),
        ),
        (
            "  of which dkimpy: parse the RSA key, per signature",
            ms_per_call(lambda: dkim.crypto.parse_pem_private_key(rsa_pem), 1),
        ),
    ]
    reference = openssl_rsa2048_ms(args.seconds)
    print(f"message of {len(message)} bytes; openssl speed rsa2048: {reference:.3f} ms/sign")
    for name, ms in rows:
        print(f"{name:<52}{ms:>8.3f} ms{ms / reference:>8.2f} x openssl")
    ours_rsa, ours_dual = rows[1][1], rows[2][1]
    print(f"ours_rsa / openssl  = {ours_rsa / reference:.2f} (target <= 1.5)")
    print(f"ours_dual / openssl = {ours_dual / reference:.2f}")


if __name__ == "__main__":
    main()
