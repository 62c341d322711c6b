"""CPU time to build one notification e-mail, stage by stage: the sample confirmation of the
example account "atelier-elodie" (config/), as `MessageBuilder.build` makes it.

    python bench/build.py [--seconds 2] [--account atelier-elodie] [--kind confirmation]

Prints ms per message for context + render, the .ics, compose(), DKIM signing (RSA +
Ed25519, keys generated in memory) and the whole build. Target for compose(): < 0.5 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

# This file's own folder comes first on sys.path and bench/dkim.py would shadow dkimpy's
# `dkim`: put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: E402

from bench.timing import finished, ms_per_call  # noqa: E402
from gateway.account import Account  # noqa: E402
from gateway.addresses import MessageIdentity  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.config import load_config  # noqa: E402
from gateway.jobs import Appointment, EmailJob, parse_job  # noqa: E402
from gateway.notification_kinds import CATALOGUE, CalendarMethod  # noqa: E402
from outbound.builder import MessageBuilder, job_appointment  # noqa: E402
from outbound.compose import MailSpec, compose  # noqa: E402
from outbound.dkim import Algorithm, Signer, SigningKey, generate_private_key  # noqa: E402
from outbound.owner_templates import POOL_PRELOAD, OwnerTemplates  # noqa: E402
from outbound.render_pool import RenderPool  # noqa: E402
from outbound.rendering import Rendered, Renderer  # noqa: E402
from outbound.samples import sample_context  # noqa: E402

RECIPIENT = "zoe.martin@example.com"


def signer_for(domain: str) -> Signer:
    """RSA-2048 + Ed25519 keys for `domain`, made in memory (no key file is touched)."""

    def key(algorithm: Algorithm, selector: str) -> SigningKey:
        private_key = serialization.load_pem_private_key(
            generate_private_key(algorithm), password=None
        )
        assert isinstance(private_key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey)
        return SigningKey(domain, selector, algorithm, private_key)

    return Signer({domain: [key("rsa", "mailgw-rsa"), key("ed25519", "mailgw-ed25519")]})


@dataclass
class Sample:
    """One notification built as MessageBuilder.build builds it, with each stage callable."""

    builder: MessageBuilder
    signer: Signer
    domain: str
    account: Account
    job: EmailJob
    appointment: Appointment | None
    identity: MessageIdentity
    method: CalendarMethod | None
    spec: MailSpec = field(init=False)

    def render(self) -> tuple[Rendered, str | None]:
        return finished(
            self.builder.render(self.job, self.account, self.appointment, RECIPIENT, None)
        )

    def ics(self) -> bytes | None:
        return self.builder.invitation(
            self.account, self.appointment, self.method, RECIPIENT, self.domain
        )

    def compose(self) -> bytes:
        return compose(self.spec)

    def build(self) -> bytes | None:
        return finished(
            self.builder.build(self.job, self.account, self.appointment, RECIPIENT, self.identity)
        )


def sample(kind: str = "confirmation", account_id: str = "atelier-elodie") -> Sample:
    """The sample `kind` notification (outbound.samples) of an example account."""
    config = load_config(ROOT / "config" / "mailgw.toml")
    settings = config.settings
    account = config.accounts[account_id]
    # The example accounts have no templates of their own: the pool is never started.
    templates = OwnerTemplates(
        Renderer(settings.templates.directory),
        RenderPool(1, POOL_PRELOAD),
        lambda: settings.templates,
    )
    clock = SystemClock()
    domain = account.sender_domain or settings.default_sender_domain.domain
    signer = signer_for(domain)
    builder = MessageBuilder(lambda: settings, lambda: templates, lambda: signer, clock)
    job = parse_job(
        json.dumps(
            {
                "v": 1,
                "id": "bench",
                "kind": "email.send",
                "account": account.id,
                "to": [RECIPIENT],
                "template": kind,
                "context": sample_context(kind, account),
            }
        )
    )
    assert isinstance(job, EmailJob)
    appointment = job_appointment(job)
    identity = builder.identity(account)
    made = Sample(
        builder,
        signer,
        domain,
        account,
        job,
        appointment,
        identity,
        CATALOGUE[kind].calendar_method,
    )
    spec = finished(builder.spec(job, account, appointment, RECIPIENT, identity))
    assert spec is not None
    made.spec = spec
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2, help="time per measurement")
    parser.add_argument("--account", default="atelier-elodie")
    parser.add_argument("--kind", default="confirmation", help="template (notification kind)")
    args = parser.parse_args()

    made = sample(args.kind, args.account)
    composed = made.compose()
    signed = made.build()
    assert signed is not None
    rows = [
        ("context + render", ms_per_call(made.render, args.seconds)),
        ("ics", ms_per_call(made.ics, args.seconds)),
        ("compose", ms_per_call(made.compose, args.seconds)),
        (
            "sign (RSA + Ed25519)",
            ms_per_call(lambda: made.signer.sign(composed, made.domain), args.seconds),
        ),
        ("total: MessageBuilder.build", ms_per_call(made.build, args.seconds)),
    ]
    print(f"{args.kind} of {args.account}: {len(composed)} bytes composed, {len(signed)} signed")
    for name, ms in rows:
        print(f"{name:<32}{ms:>8.3f} ms/message")
    print(f"{'sum of the stages':<32}{sum(ms for _, ms in rows[:4]):>8.3f} ms/message")
    print(f"messages/s on one core (build):  {1000 / rows[-1][1]:>8.0f}")


if __name__ == "__main__":
    main()
