"""Loops, automatic replies and forwarding back to the sender: each rule, on samples and on
single headers."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest

from inbound.loops import LOOP_HEADER, MAX_RECEIVED, is_auto_reply, loop_reason, never_forward_to

SAMPLES = Path(__file__).resolve().parent / "samples"
DOMAIN = "acuityscheduling.com"
OURS = [DOMAIN, "salon-example.fr"]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def mail(*headers: str, received: int = 0) -> bytes:
    trace = [
        f"Received: from hop{i}.example.net by hop{i + 1}.example.net" for i in range(received)
    ]
    lines = [*trace, "From: Camille <camille@example.com>", *headers, "Subject: Re: rappel"]
    return ("\n".join(lines) + "\n\nMerci !\n").encode()


def test_our_trace_header_is_a_loop() -> None:
    reason = loop_reason(sample("looped.eml"), OURS)
    assert reason is not None
    assert f"{LOOP_HEADER}: {DOMAIN}" in reason


@pytest.mark.parametrize(
    "value", [DOMAIN, DOMAIN.upper(), f" {DOMAIN}. ", "salon-example.fr", "Salon-Example.FR"]
)
def test_trace_header_of_any_of_our_domains(value: str) -> None:
    assert loop_reason(mail(f"{LOOP_HEADER}: {value}"), OURS) is not None


def test_trace_header_among_others() -> None:
    message = mail(f"{LOOP_HEADER}: other-gateway.example", f"{LOOP_HEADER}: {DOMAIN}")
    assert loop_reason(message, OURS) is not None


@pytest.mark.parametrize("value", ["other-gateway.example", f"mail.{DOMAIN}", ""])
def test_another_gateway_s_trace_header_is_not_ours(value: str) -> None:
    assert loop_reason(mail(f"{LOOP_HEADER}: {value}"), OURS) is None


def test_replies_have_not_looped() -> None:
    for name in ("reply-client.eml", "vacation-gmail.eml", "ooo-exchange.eml", "list-post.eml"):
        assert loop_reason(sample(name), OURS) is None, name


def test_too_many_received_headers() -> None:
    assert loop_reason(mail(received=MAX_RECEIVED), OURS) is None
    reason = loop_reason(mail(received=MAX_RECEIVED + 1), OURS)
    assert reason == f"{MAX_RECEIVED + 1} Received headers, more than {MAX_RECEIVED}"


def test_received_limit_can_be_set() -> None:
    assert loop_reason(mail(received=3), OURS, max_received=3) is None
    assert loop_reason(mail(received=4), OURS, max_received=3) is not None


def test_a_parsed_message_is_read_as_bytes_are() -> None:
    for name in ("looped.eml", "reply-client.eml"):
        parsed = message_from_bytes(sample(name), policy=policy.default)
        assert loop_reason(parsed, OURS) == loop_reason(sample(name), OURS)
        assert is_auto_reply(parsed) == is_auto_reply(sample(name))


@pytest.mark.parametrize(
    ("name", "automatic"),
    [
        ("reply-client.eml", False),
        ("vacation-gmail.eml", True),
        ("ooo-exchange.eml", True),
        ("list-post.eml", True),
        # Our own notifications say Auto-Submitted: auto-generated.
        ("postfix-hard.eml", True),
        ("qmail-bounce.eml", False),
    ],
)
def test_auto_reply_samples(name: str, automatic: bool) -> None:
    assert is_auto_reply(sample(name)) is automatic


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-replied",
        "Auto-Submitted: auto-generated",
        "Auto-Submitted: Auto-Replied; owner-email=jean@example.com",
        "Auto-Submitted: auto-notified (vacation)",
        "Auto-Submitted: something-new",
        "Precedence: bulk",
        "Precedence: JUNK",
        "Precedence: list",
        "Precedence: bulk (newsletter)",
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "List-Id: Clients <clients.lists.example.org>",
        "List-Post: <mailto:clients@lists.example.org>",
        "List-Unsubscribe: <mailto:leave@lists.example.org>",
    ],
)
def test_automatic_mail(header: str) -> None:
    assert is_auto_reply(mail(header))


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: no",
        "Auto-Submitted: No (a person wrote this)",
        "Auto-Submitted:",
        "Precedence: first-class",
        "Precedence: bulky",
        "X-Mailer: Thunderbird",
        "In-Reply-To: <hq3xw7r2k5mzb4tnc6vd2fy7ga@acuityscheduling.com>",
    ],
)
def test_mail_written_by_a_person(header: str) -> None:
    assert not is_auto_reply(mail(header))


def test_null_envelope_sender_is_automatic() -> None:
    assert is_auto_reply(sample("reply-client.eml"), mail_from="")
    assert not is_auto_reply(sample("reply-client.eml"), mail_from="camille.martin@example.com")
    # Unknown envelope: the headers alone decide.
    assert not is_auto_reply(sample("reply-client.eml"), mail_from=None)


FROM = '"Camille Martin" <camille.martin@example.com>'


@pytest.mark.parametrize(
    ("destination", "mail_from", "from_header", "refused"),
    [
        ("owner@example.com", "camille.martin@example.com", FROM, False),
        ("camille.martin@example.com", "camille.martin@example.com", FROM, True),
        ("Camille.Martin@EXAMPLE.com", "bounces@example.com", FROM, True),
        ("camille.martin@example.com", "", FROM, True),
        ("camille.martin@example.com", "", None, False),
        ("owner@example.com", "<OWNER@example.com>", None, True),
        ("owner@example.com", "", "a@example.com, Owner <owner@example.com>", True),
        ("owner@example.com", "", "owner.example.com", False),
        ("owner@example.com", "", "", False),
        ("owner@example.com", "", "=?utf-8?q?garbage <<<", False),
        (" owner@example.com ", "owner@example.com.", None, True),
    ],
)
def test_never_forward_to_the_sender(
    destination: str, mail_from: str, from_header: str | None, refused: bool
) -> None:
    assert never_forward_to(destination, mail_from, from_header) is refused
