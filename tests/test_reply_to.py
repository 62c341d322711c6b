"""Notifications carry a signed reply address that the gateway routes, not the calendar's own."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.jobs import EmailJob, parse_job
from gateway.reply_tokens import (
    MessageReference,
    ReplyTarget,
    TokenRefused,
    read_local_part,
    reply_secrets,
)
from gateway.settings import Settings
from outbound.builder import MessageBuilder, job_appointment
from outbound.dkim import Signer, SigningKey
from outbound.owner_templates import OwnerTemplates
from outbound.render_pool import RenderPool
from outbound.rendering import Renderer
from tests.conftest import FixedClock
from tests.support import account

DOMAIN = "example.com"
REPLY_DOMAIN = "reply.example.net"
DAY = 86_400
SALON = account(
    calendars=[
        {"id": "101", "name": "Élodie", "reply_to": "elodie@salon.example"},
        {"id": "c" * 128, "name": "Long"},
    ]
)


def settings_with(tmp_path: Path, key: bytes = b"k" * 32) -> Settings:
    (tmp_path / "reply.key").write_bytes(key)
    return Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "sender_domains": [
                {"domain": DOMAIN, "dkim": [{"selector": "s", "algorithm": "ed25519"}]}
            ],
            "inbound": {"reply_domain": REPLY_DOMAIN, "message_id_ttl": "90d"},
            "reply_tokens": {
                "secret_files": [str(tmp_path / "reply.key")],
                "token_lifetime": "30d",
            },
        }
    )


def builder_for(settings: list[Settings], clock: FixedClock) -> MessageBuilder:
    signer = Signer(
        {DOMAIN: [SigningKey(DOMAIN, "s", "ed25519", ed25519.Ed25519PrivateKey.generate())]}
    )
    # the list stands for the daemon's configuration in force, replaced on reload
    # No account here has templates of its own: the pool is never started.
    templates = OwnerTemplates(Renderer(None), RenderPool(1), lambda: settings[-1].templates)
    return MessageBuilder(lambda: settings[-1], lambda: templates, lambda: signer, clock)


def confirmation(calendar: str = "101", appointment: str = "9876543") -> EmailJob:
    job = parse_job(
        json.dumps(
            {
                "v": 1,
                "id": "j1",
                "kind": "email.send",
                "account": "salon",
                "to": ["zoe@example.org"],
                "template": "confirmation",
                "context": {
                    "appointment": {
                        "id": appointment,
                        "calendar": calendar,
                        "type": "2001",
                        "start": "2027-02-01T13:30:00Z",
                        "end": "2027-02-01T14:15:00Z",
                        "timezone": "Europe/Paris",
                        "clients": [{"name": "Zoé Martin", "emails": ["zoe@example.org"]}],
                    }
                },
            }
        )
    )
    assert isinstance(job, EmailJob)
    return job


def custom() -> EmailJob:
    data: dict[str, Any] = {
        "v": 1,
        "id": "j2",
        "kind": "email.send",
        "account": "salon",
        "to": ["zoe@example.org"],
        "subject": "Votre commande",
        "text": "Merci pour votre commande.",
    }
    job = parse_job(json.dumps(data))
    assert isinstance(job, EmailJob)
    return job


async def reply_to(builder: MessageBuilder, job: EmailJob) -> tuple[str, str, str]:
    """The Reply-To of the message built for the job: (local part, domain, the identity's token)."""
    identity = builder.identity(SALON)
    message = await builder.build(job, SALON, job_appointment(job), "zoe@example.org", identity)
    assert message is not None
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    [address] = parsed["Reply-To"].addresses
    return address.username, address.domain, identity.token


async def test_a_confirmation_replies_to_its_appointment(tmp_path: Path, clock: FixedClock) -> None:
    builder = builder_for([settings_with(tmp_path)], clock)
    local, domain, _ = await reply_to(builder, confirmation())
    assert domain == REPLY_DOMAIN
    assert len(local) <= 64
    assert read_local_part(local, [b"k" * 32], clock.now()) == ReplyTarget(
        "salon", "101", "9876543"
    )


async def test_mail_without_an_appointment_replies_to_the_account(
    tmp_path: Path, clock: FixedClock
) -> None:
    builder = builder_for([settings_with(tmp_path)], clock)
    local, _, _ = await reply_to(builder, custom())
    assert read_local_part(local, [b"k" * 32], clock.now()) == ReplyTarget("salon", None, None)


async def test_the_reply_address_lasts_the_token_lifetime(
    tmp_path: Path, clock: FixedClock
) -> None:
    builder = builder_for([settings_with(tmp_path)], clock)
    local, _, _ = await reply_to(builder, confirmation())
    assert read_local_part(local, [b"k" * 32], clock.now() + 30 * DAY - 3600)
    assert read_local_part(local.upper(), [b"k" * 32], clock.now() + 29 * DAY)
    refused = [r for r in range(29 * DAY, 31 * DAY, 3600) if _refused(local, clock.now() + r)]
    assert refused[0] == 30 * DAY


async def test_long_ids_name_the_message(tmp_path: Path, clock: FixedClock) -> None:
    builder = builder_for([settings_with(tmp_path)], clock)
    local, _, token = await reply_to(builder, confirmation("c" * 128, "a" * 200))
    assert len(local) <= 64
    # the message's record (kept for inbound.message_id_ttl) holds the ids; the address ends
    # with the shorter of the two lifetimes
    assert read_local_part(local, [b"k" * 32], clock.now()) == MessageReference(
        token, int(clock.now()) + 30 * DAY
    )


async def test_without_configured_keys_the_generated_one_signs(
    tmp_path: Path, clock: FixedClock
) -> None:
    settings = Settings.model_validate(
        {
            "state_dir": str(tmp_path / "state"),
            "sender_domains": [
                {"domain": DOMAIN, "dkim": [{"selector": "s", "algorithm": "ed25519"}]}
            ],
            "inbound": {"reply_domain": REPLY_DOMAIN},
        }
    )
    local, _, _ = await reply_to(builder_for([settings], clock), custom())
    # what the inbound side reads, as another process would
    assert read_local_part(local, reply_secrets(settings), clock.now())


async def test_the_key_is_read_once_per_configuration(tmp_path: Path, clock: FixedClock) -> None:
    settings = [settings_with(tmp_path, b"1" * 32)]
    builder = builder_for(settings, clock)
    first, _, _ = await reply_to(builder, custom())
    (tmp_path / "reply.key").write_bytes(b"2" * 32)
    clock.advance(3600)  # another expiry, hence another address
    second, _, _ = await reply_to(builder, custom())
    assert read_local_part(second, [b"1" * 32], clock.now())
    settings.append(settings_with(tmp_path, b"3" * 32))  # a reload
    third, _, _ = await reply_to(builder, custom())
    assert read_local_part(third, [b"3" * 32], clock.now())
    assert _refused(third, clock.now(), [b"1" * 32])
    assert first != second != third


def _refused(local: str, now: float, keys: list[bytes] | None = None) -> bool:
    try:
        read_local_part(local, keys or [b"k" * 32], now)
    except TokenRefused:
        return True
    return False
