"""DKIM signing time per message: ours (RSA, RSA + Ed25519) against `openssl speed rsa2048`
measured in the same run, and stock dkimpy for comparison.

    python bench/dkim.py [--seconds 2] [--rounds 3]

Two messages: a ~12 KB notification (text, HTML and an .ics part, tests/verifiers) and the
sample confirmation of the example account "atelier-elodie" made by our own composer
(bench/build.py: render, .ics, outbound.compose). Each round measures OpenSSL, then ours on
both messages; the ratios printed are the medians over the rounds (and their range), as the
machine's load changes between rounds. Targets (issue 21): ours, RSA <= 1.5 x OpenSSL's own
RSA-2048 signature time; RSA + Ed25519 <= 2 x.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

# This file's own folder comes first on sys.path and its name would shadow dkimpy's
# `dkim`: put the project root there instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import dkim  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils  # noqa: E402

from bench.build import sample  # noqa: E402
from bench.timing import ms_per_call  # noqa: E402
from outbound import dkim_relaxed  # noqa: E402
from outbound.dkim import Algorithm, Signer, SigningKey, generate_private_key  # noqa: E402
from tests.verifiers.message import realistic_message  # noqa: E402

# `openssl speed` divides by the CPU time it used (not wall time, unless -elapsed): ours is
# timed in CPU time too, so that another process on the machine slows neither
CPU = time.process_time


def openssl_rsa2048_ms(seconds: int) -> float:
    """OpenSSL's own RSA-2048 signature time (CPU), from `openssl speed`."""
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
    parser.add_argument("--seconds", type=int, default=2, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians reported)")
    args = parser.parse_args()

    domain = "example.com"
    messages = [
        ("realistic message (tests/verifiers)", realistic_message()),
        ("our composer: sample confirmation", sample().compose()),
    ]
    rsa_pem = generate_private_key("rsa")

    def key(algorithm: Algorithm, pem: bytes, selector: str) -> SigningKey:
        private_key = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        return SigningKey(domain, selector, algorithm, private_key)

    rsa_key = key("rsa", rsa_pem, "rsa")
    ed_key = key("ed25519", generate_private_key("ed25519"), "ed")
    assert isinstance(rsa_key.private_key, rsa.RSAPrivateKey)
    rsa_private = rsa_key.private_key
    rsa_only = Signer({domain: [rsa_key]})
    dual = Signer({domain: [rsa_key, ed_key]})

    # (message title, "rsa" or "dual") -> the ratio to OpenSSL of each round
    ratios: dict[tuple[str, str], list[float]] = {}
    for round_number in range(1, args.rounds + 1):
        reference = openssl_rsa2048_ms(args.seconds)
        print(f"round {round_number}: openssl speed rsa2048: {reference:.3f} ms/sign")
        for title, message in messages:
            for kind, signer in (("rsa", rsa_only), ("dual", dual)):
                ms = ms_per_call(
                    lambda m=message, s=signer: s.sign(m, domain), args.seconds, clock=CPU
                )
                ratios.setdefault((title, kind), []).append(ms / reference)
                print(f"  {title}, {kind:<4}: {ms:.3f} ms = {ms / reference:.2f} x openssl")

    digest = bytes(32)
    print("\nwhere the time goes (CPU), for comparison:")
    breakdown = [
        (
            "cryptography (OpenSSL) RSA-2048 sign of a digest",
            lambda: rsa_private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())),
        ),
        (
            "parse the RSA key as dkimpy does (ours never does)",
            lambda: parse_rsa_as_dkimpy(rsa_pem),
        ),
    ]
    for title, message in messages:
        body = dkim_relaxed.parse_message(message)[1]
        breakdown += [
            (f"{title}: {len(message)} bytes, body {len(body)}", None),
            ("  stock dkimpy, RSA", lambda m=message: dkim_sign(m, domain, rsa_pem)),
            ("  ours: parse the message", lambda m=message: dkim_relaxed.parse_message(m)),
            ("  ours: relaxed body, once", lambda b=body: dkim_relaxed.relaxed_body(b)),
        ]
    for name, call in breakdown:
        print(name if call is None else f"{name:<56}{ms_per_call(call, 1, clock=CPU):>8.3f} ms")

    print(f"\nmedians of {args.rounds} rounds (range):")
    targets = {"rsa": "target <= 1.5", "dual": "target <= 2"}
    for (title, kind), values in ratios.items():
        print(
            f"{title}: ours_{kind} / openssl = {statistics.median(values):.2f} "
            f"({min(values):.2f}-{max(values):.2f}; {targets[kind]})"
        )


def parse_rsa_as_dkimpy(pem: bytes) -> object:
    return dkim.crypto.parse_pem_private_key(pem)


def dkim_sign(message: bytes, domain: str, pem: bytes) -> object:
    return dkim.sign(message, b"rsa", domain.encode(), pem, canonicalize=(b"relaxed", b"relaxed"))


if __name__ == "__main__":
    main()
