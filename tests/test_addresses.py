"""Envelope recipients sorted into our mailboxes, and Message-IDs found in reply headers."""

from __future__ import annotations

import pytest

from gateway.addresses import (
    BounceAddress,
    NotOurDomain,
    Postmaster,
    Recipient,
    ReplyAddress,
    SenderMailbox,
    UnknownMailbox,
    UnsubscribeAddress,
    classify,
    message_tokens,
)
from gateway.reply_tokens import MessageReference, ReplyTarget, make_local_part

NOW = 1_800_000_000
KEY = b"k" * 32
REPLY_DOMAIN = "reply.example.net"
SENDERS = ("mail.example.com", "other.example.org")
TOKEN = "abcdefghijklmnopqrstuvwxyz"
TARGET = ReplyTarget("atelier", "101", "42")


def token(target: ReplyTarget = TARGET, key: bytes = KEY, expires: int = NOW + 3600) -> str:
    return make_local_part(target, key, expires, reference=MessageReference(TOKEN, expires))


def sort(
    address: str, reply_domain: str = REPLY_DOMAIN, senders: tuple[str, ...] = SENDERS
) -> Recipient:
    return classify(
        address, reply_domain=reply_domain, sender_domains=senders, secrets=[KEY], now=NOW
    )


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (f"{token()}@{REPLY_DOMAIN}", ReplyAddress(TARGET)),
        (f"{token().upper()}@REPLY.Example.NET", ReplyAddress(TARGET)),
        (f"{token()}@{REPLY_DOMAIN}.", ReplyAddress(TARGET)),
        (
            f"{token(ReplyTarget('a' * 100, None, None))}@{REPLY_DOMAIN}",
            ReplyAddress(MessageReference(TOKEN, NOW + 3600)),
        ),
        (f"unsubscribe-{TOKEN}@{REPLY_DOMAIN}", UnsubscribeAddress(TOKEN)),
        (f"Unsubscribe-{TOKEN.upper()}@{REPLY_DOMAIN.upper()}", UnsubscribeAddress(TOKEN)),
        (f"b-{TOKEN}@mail.example.com", BounceAddress(TOKEN, "mail.example.com")),
        (f"B-{TOKEN.upper()}@Other.Example.ORG", BounceAddress(TOKEN, "other.example.org")),
        ("scheduling@mail.example.com", SenderMailbox("mail.example.com")),
        ("Scheduling@OTHER.example.org", SenderMailbox("other.example.org")),
        ("postmaster@mail.example.com", Postmaster("mail.example.com")),
        ("PostMaster@reply.example.net", Postmaster("reply.example.net")),
        ("Postmaster", Postmaster("")),
        ("zoe@example.com", NotOurDomain("example.com")),
        ("scheduling@example.com", NotOurDomain("example.com")),
        (f"{token()}@example.com", NotOurDomain("example.com")),
        ("a@[127.0.0.1]", NotOurDomain("[127.0.0.1]")),
        ("user@mail.example.com.evil.example", NotOurDomain("mail.example.com.evil.example")),
        # a source route (RFC 5321 C) names the final domain last; it is the one we check
        ("@mail.example.com:zoe@example.com", NotOurDomain("example.com")),
        (
            "zoe@example.com@mail.example.com",
            UnknownMailbox("no such mailbox: 'zoe@example.com@mail.example.com'"),
        ),
        (
            "zoe%example.com@mail.example.com",
            UnknownMailbox("no such mailbox: 'zoe%example.com@mail.example.com'"),
        ),
    ],
)
def test_classify(address: str, expected: Recipient) -> None:
    assert sort(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "owner@mail.example.com",
        "@mail.example.com",
        "",
        "scheduling",
        "mailer-daemon",
        f"b-{TOKEN}@{REPLY_DOMAIN}",  # bounce addresses are on the sender domains
        f"b-{TOKEN[:-1]}@mail.example.com",
        f"b-{TOKEN}1@mail.example.com",
        f"b-0{TOKEN[1:]}@mail.example.com",  # 0 is not base32
        f"unsubscribe-{TOKEN}@mail.example.com",  # and unsubscribe ones on the reply domain
        f"unsubscribe-{TOKEN[:-1]}@{REPLY_DOMAIN}",
        f"unsubscribe-@{REPLY_DOMAIN}",
        f"scheduling@{REPLY_DOMAIN}",
        f"{token()}@mail.example.com",  # reply addresses only on the reply domain
        '"scheduling"@mail.example.com',
    ],
)
def test_our_domains_but_no_such_mailbox(address: str) -> None:
    assert isinstance(sort(address), UnknownMailbox)


@pytest.mark.parametrize(
    ("local", "reason"),
    [
        (token(key=b"x" * 32), "forged"),
        (token()[:-1] + ("a" if token()[-1] != "a" else "b"), "forged"),
        (token(expires=NOW), "expired"),
        ("r-" + "a" * 40, "not a valid reply token"),
        ("r-", "not a valid reply token"),
    ],
)
def test_refused_reply_tokens_are_unknown_mailboxes(local: str, reason: str) -> None:
    found = sort(f"{local}@{REPLY_DOMAIN}")
    assert isinstance(found, UnknownMailbox)
    assert reason in found.reason


def test_a_domain_that_is_both_reply_and_sender_domain() -> None:
    # the embedded defaults: everything is "localhost"
    def local(address: str) -> Recipient:
        return sort(address, reply_domain="localhost", senders=("localhost",))

    assert local(f"{token()}@localhost") == ReplyAddress(TARGET)
    assert local(f"b-{TOKEN}@localhost") == BounceAddress(TOKEN, "localhost")
    assert local(f"unsubscribe-{TOKEN}@localhost") == UnsubscribeAddress(TOKEN)
    assert local("scheduling@localhost") == SenderMailbox("localhost")
    assert local("postmaster@LOCALHOST") == Postmaster("localhost")
    assert isinstance(local("root@localhost"), UnknownMailbox)


def test_sender_domains_in_any_case() -> None:
    found = sort("scheduling@mail.example.com", senders=("Mail.Example.COM.",))
    assert found == SenderMailbox("mail.example.com")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (f"<{TOKEN}@mail.example.com>", [TOKEN]),
        (f"  <{TOKEN.upper()}@MAIL.example.com.>  ", [TOKEN]),
        (
            # References: the thread's first message first, the most recent last
            f"<x1@client.example> <{'a' * 26}@mail.example.com>\r\n"
            f" <x2@client.example>\r\n\t<{'b' * 26}@other.example.org> (comment)",
            ["a" * 26, "b" * 26],
        ),
        (f"<{TOKEN}@mail.example.com> <{TOKEN}@mail.example.com>", [TOKEN]),
        (f"<{TOKEN}@example.com>", []),  # not our domain
        (f"<{TOKEN[:-1]}@mail.example.com>", []),  # not one of our tokens
        (f"<{TOKEN}x@mail.example.com>", []),
        (f"<b-{TOKEN}@mail.example.com>", []),
        (f"{TOKEN}@mail.example.com", []),  # no angle brackets: not a msg-id
        (f"<{TOKEN}@mail.example.com", []),
        (f"<a@b@mail.example.com> <{TOKEN}@mail.example.com>", [TOKEN]),
        ("", []),
        ("<>", []),
    ],
)
def test_message_tokens(header: str, expected: list[str]) -> None:
    assert message_tokens(header, SENDERS) == expected
