"""DKIM signing time per message: stock dkimpy, ours (RSA, RSA + Ed25519), against
`openssl speed rsa2048` measured in the same run.

    python bench/dkim.py [--seconds 3]

Two messages: a ~12 KB notification (text, HTML and an .ics part, tests/verifiers) and the
sample confirmation of the example account "atelier-elodie" made by our own composer
(bench/build.py: render, .ics, outbound.compose). The target is ours (RSA) <= 1.5 x
OpenSSL's own RSA-2048 signature time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

# This file's own folder comes first on sys.path and its name would shadow dkimpy's
# `dkim`: put the project root there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import dkim  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402
from dkim.canonicalization import CanonicalizationPolicy  # noqa: E402

from bench.build import sample  # noqa: E402
from bench.timing import ms_per_call  # noqa: E402
from outbound.dkim import Algorithm, Signer, SigningKey, generate_private_key  # noqa: E402
from tests.verifiers.message import realistic_message  # noqa: E402


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

    domain = "example.com"
    composed = sample()
    messages = [
        ("realistic message (tests/verifiers)", realistic_message()),
        ("our composer: sample confirmation", composed.compose()),
    ]
    rsa_pem = generate_private_key("rsa")

    def key(algorithm: Algorithm, pem: bytes, selector: str) -> SigningKey:
        private_key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        return SigningKey(domain, selector, algorithm, private_key)

    rsa_key = key("rsa", rsa_pem, "rsa")
    ed_key = key("ed25519", generate_private_key("ed25519"), "ed")
    rsa_only = Signer({domain: [rsa_key]})
    dual = Signer({domain: [rsa_key, ed_key]})
    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    reference = openssl_rsa2048_ms(args.seconds)
    print(f"openssl speed rsa2048: {reference:.3f} ms/sign")
    print(
        f"{'  parse the RSA key as dkimpy does (which ours avoids)':<56}"
        f"{ms_per_call(lambda: dkim.crypto.parse_pem_private_key(rsa_pem), 1):>8.3f} ms"
    )
    ratios: list[tuple[str, float, float]] = []
    for title, message in messages:

        def stock(message: bytes = message) -> object:
            return dkim.sign(
                message, b"rsa", domain.encode(), rsa_pem, canonicalize=(b"relaxed", b"relaxed")
            )

        body = dkim.rfc822_parse(message)[1]
        rows = [
            ("stock dkimpy, RSA", ms_per_call(stock, 1)),
            (
                "ours, RSA",
                ms_per_call(lambda m=message: rsa_only.sign(m, domain), args.seconds),
            ),
            (
                "ours, RSA + Ed25519",
                ms_per_call(lambda m=message: dual.sign(m, domain), args.seconds),
            ),
            (
                "  of which dkimpy: parse the message",
                ms_per_call(lambda m=message: dkim.DKIM(m), 1),
            ),
            (
                "  of which dkimpy: relaxed body, per signature",
                ms_per_call(lambda b=body: relaxed.canonicalize_body(b), 1),
            ),
        ]
        print(f"\n{title}: {len(message)} bytes, body {len(body)} bytes")
        for name, ms in rows:
            print(f"{name:<56}{ms:>8.3f} ms{ms / reference:>8.2f} x openssl")
        ratios.append((title, rows[1][1] / reference, rows[2][1] / reference))
    print()
    for title, ours_rsa, ours_dual in ratios:
        print(f"{title}: ours_rsa / openssl  = {ours_rsa:.2f} (target <= 1.5)")
        print(f"{title}: ours_dual / openssl = {ours_dual:.2f}")


if __name__ == "__main__":
    main()
