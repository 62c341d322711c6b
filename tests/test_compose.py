"""Tests of the MIME message: structure, headers, and a From that no name can subvert."""

from __future__ import annotations

import email
from dataclasses import replace
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import PermanentFailure
from outbound.compose import MailSpec, compose, feedback_id
from tests.header_parsers import (
    ADJACENT_ENCODED_WORDS,
    check_lines,
    expected,
    mailauth_headers,
    mailtools_headers,
    rfc2047_name,
)

ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
SPEC = MailSpec(
    from_name="L'Atelier d'Élodie & Fils",
    from_address="scheduling@acuityscheduling.com",
    to="zoe@example.com",
    to_name="Zoé Dupont",
    reply_to="elodie.rdv@atelier-elodie.fr",
    subject="Rendez-vous confirmé : Coupe femme, mardi 24 novembre 2026 à 14:30",
    text="Bonjour Zoé,\n\nVotre rendez-vous est confirmé.\n" + "très long " * 200 + "\n",
    html="<p>Bonjour Zoé,</p>\n<p>" + "très long " * 200 + "</p>\n",
    message_id="<20261120.abc123@acuityscheduling.com>",
    date=datetime(2026, 11, 20, 9, 0, tzinfo=UTC),
    ics=ICS,
    ics_method="REQUEST",
    list_unsubscribe=(
        "https://acuityscheduling.com/unsubscribe/" + "t" * 120,
        "mailto:unsubscribe+abc@acuityscheduling.com",
    ),
    feedback_id=feedback_id("confirmation", "atelier-elodie", "acuityscheduling.com"),
)
# Headers a message has; anything else would have been added by a crafted name.
HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "mime-version",
    "auto-submitted", "list-unsubscribe", "list-unsubscribe-post", "feedback-id", "content-type",
    "content-transfer-encoding",
}  # fmt: skip


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_structure_is_mixed_alternative_with_calendar_and_attachment() -> None:
    data = compose(SPEC)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    message = parse(data)
    assert message.get_content_type() == "multipart/mixed"
    alternative, attachment = message.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    text, html, calendar = alternative.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n") == SPEC.text
    assert html.get_content_type() == "text/html"
    assert html.get_content().replace("\r\n", "\n") == SPEC.html
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "REQUEST"
    assert calendar.get_content().replace("\r\n", "\n") == ICS.decode().replace("\r\n", "\n")
    assert attachment.get_content_type() == "application/ics"
    assert attachment.get_filename() == "invite.ics"
    assert attachment.get_content() == ICS
    assert data.count(b"MIME-Version") == 1


def test_headers() -> None:
    message = parse(compose(SPEC))
    assert {name.lower() for name in message} == HEADERS - {"content-transfer-encoding"}
    assert message["Subject"] == SPEC.subject
    assert message["To"].addresses[0].display_name == "Zoé Dupont"
    assert message["To"].addresses[0].addr_spec == "zoe@example.com"
    assert message["Reply-To"].addresses[0].addr_spec == "elodie.rdv@atelier-elodie.fr"
    assert message["Message-ID"] == SPEC.message_id
    assert message["Date"].datetime == SPEC.date
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["MIME-Version"] == "1.0"
    assert message["List-Unsubscribe"] == (
        f"<{SPEC.list_unsubscribe[0]}>, <{SPEC.list_unsubscribe[1]}>"  # type: ignore[index]
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Feedback-ID"] == "confirmation:atelier-elodie:acuityscheduling.com:mailgw"


def test_without_ics_html_or_unsubscribe() -> None:
    message = parse(compose(replace(SPEC, ics=None, list_unsubscribe=None)))
    assert message.get_content_type() == "multipart/alternative"
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    plain = parse(compose(replace(SPEC, ics=None, html=None)))
    assert plain.get_content_type() == "text/plain"


def test_cancel_method() -> None:
    message = parse(compose(replace(SPEC, ics_method="CANCEL")))
    calendar = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert calendar.get_param("method") == "CANCEL"


def check_from(name: str) -> None:
    data = compose(replace(SPEC, from_name=name, to_name=name))
    check_lines(data)
    message = parse(data)
    raw = email.message_from_bytes(data, policy=policy.compat32)
    assert {key.lower() for key in message} <= HEADERS
    assert len(message.keys()) == len(set(message.keys()))
    for header, addr_spec in (
        ("From", SPEC.from_address),
        ("To", SPEC.to),
        ("Reply-To", SPEC.reply_to),
    ):
        assert len(message.get_all(header) or []) == 1
        (address,) = message[header].addresses
        assert address.addr_spec == addr_spec
        assert rfc2047_name(raw[header]) == expected(name)
        # headerregistry keeps the white space between adjacent encoded words of a display
        # name (CPython gh-128110): it reads the name exactly otherwise.
        if not ADJACENT_ENCODED_WORDS.search(raw[header]):
            assert address.display_name == expected(name)
    assert not message.defects


# Names that are one line, however crafted: kept exactly, alone in their header.
HOSTILE = [
    '"a" <b@c>',
    "a <b@c>, d@e",
    "Élodie, d'Artagnan & Fils <x@y>",
    "x@y.com",
    "; group:",
    "(comment) name",
    'back\\slash \\" quote',
    "=?utf-8?q?Fake=40x?=",
    "Bcc: x@y",
    "x" * 200,
    "x" * 1200,
    "é" * 200,
    "Élodie " * 30,
    "😀 Spa & Bien-être 💆",
    "🐍" * 60,
    "山田美容室 渋谷店",
    "  spaces  around  ",
    "¡ \xa00",
    "Salon «\xa0Les Fils\xa0»",
    "Dr. Smith, Family Practice & Associates of the Greater Springfield Area, LLC",
    "",
]
# Names that are not one line: refused, never altered (the account settings and the job
# schema refuse them first, naming the field).
NOT_ONE_LINE = [
    "Evil\r\nBcc: x@y",
    "Evil\nBcc: victim@example.com",
    'Evil"\r\nBcc: x@y\r\n"',
    "nul\x00byte",
    "\t\t¡  é",
    "Müller\tGmbH",
    "\u2028line\u2029separators\x85",
    "\r\n",
    "del\x7f",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_display_names(name: str) -> None:
    check_from(name)


@pytest.mark.parametrize("name", NOT_ONE_LINE)
@pytest.mark.parametrize("field", ["from_name", "to_name", "subject"])
def test_text_not_on_one_line_is_refused(name: str, field: str) -> None:
    with pytest.raises(PermanentFailure, match="must be on one line"):
        compose(replace(SPEC, **{field: name}))  # type: ignore[arg-type]


ONE_LINE_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Zl", "Zp", "Cs")))


@settings(max_examples=300, deadline=None)
# Names of only white space are refused by the account settings, as they would show nothing.
@given(ONE_LINE_TEXT.filter(lambda name: bool(name.strip())))
def test_any_display_name_is_kept_exactly_and_alone(name: str) -> None:
    check_from(name)


@settings(max_examples=100, deadline=None)
@given(ONE_LINE_TEXT, st.sampled_from(["\r", "\n", "\t", "\x00", "\x85", "\u2028"]))
def test_any_text_with_a_line_break_is_refused(text: str, brk: str) -> None:
    with pytest.raises(PermanentFailure, match="must be on one line"):
        compose(replace(SPEC, from_name=text + brk + text))
    with pytest.raises(PermanentFailure, match="must be on one line"):
        compose(replace(SPEC, subject=brk + text))


LONG_NAMES = [
    # French: accents, apostrophes (straight and typographic), quotes, guillemets with
    # non-breaking spaces, a comma and an ampersand, 1,200 characters in all.
    (
        "L'Atelier d'Élodie & Fils \u2014 « Coiffure, beauté & bien-être » "
        'chez "Zoé" d\u2019Artagnan, Saint-Étienne-du-Rouvray '
    )
    * 10,
    "Ça coûte «\xa0moins\xa0» cher ; vraiment\xa0? " * 30,
    "山田美容室 渋谷店「さくら」ヘアサロン、東京都渋谷区神南一丁目 " * 25,
    "Салон красоты «Золотая рыбка», Санкт-Петербург " * 25,
    "صالون الجمال في دبي، الإمارات العربية المتحدة " * 25,
    "Ηλιαχτίδα — κομμωτήριο, Θεσσαλονίκη " * 30,
    "🌸 Spa & Bien-être 💆‍♀️ 🧖🏽 " * 40,
]


@pytest.mark.parametrize("name", LONG_NAMES, ids=lambda name: name[:12])
def test_long_names_and_subjects_in_any_script(name: str) -> None:
    assert len(name) >= 700
    check_from(name)
    check_subject(name)


@pytest.mark.parametrize(
    "change",
    [
        {"to": "a@b.c\r\nBcc: x@y"},
        {"to": "Name <a@b.c>"},
        {"reply_to": "not an address"},
        {"message_id": "<x@y>\r\nBcc: z@w"},
        {"message_id": "no-brackets@y"},
        {"list_unsubscribe": ("http://insecure.example.com/u", "mailto:u@example.com")},
        {"list_unsubscribe": ("https://e.com/u>, <https://evil", "mailto:u@example.com")},
        {"list_unsubscribe": ("https://e.com/u\r\nBcc: x@y", "mailto:u@example.com")},
        {"feedback_id": "confirmation:a:b:mailgw\r\nBcc: x@y"},
        {"feedback_id": "confirmation:a:b"},
        {"feedback_id": "confirmation:a b:c:mailgw"},
    ],
)
def test_unusable_addresses_and_urls_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(PermanentFailure):
        compose(replace(SPEC, **change))  # type: ignore[arg-type]


def test_internationalized_domain_is_sent_as_punycode() -> None:
    message = parse(compose(replace(SPEC, to="zoe@exémple.fr")))
    assert message["To"].addresses[0].addr_spec == "zoe@xn--exmple-cva.fr"


def test_non_ascii_local_part_is_refused() -> None:
    with pytest.raises(PermanentFailure, match="non-ASCII local part"):
        compose(replace(SPEC, to="zoé@exemple.fr"))


def test_every_part_is_7bit_and_whole() -> None:
    """No 8-bit octet and no line over 76 octets in a body (the relay does not ask for
    8BITMIME); the parser finds no defect; each multipart has its own "=_" boundary."""
    data = compose(SPEC)
    assert data.isascii()
    body = data.split(b"\r\n\r\n", 1)[1]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    message = parse(data)
    boundaries = [part.get_boundary() for part in message.walk() if part.is_multipart()]
    assert len(boundaries) == len(set(boundaries)) == 2
    assert all(boundary and boundary.startswith("=_") for boundary in boundaries)
    assert all(not part.defects for part in message.walk())
    encodings = {
        part.get_content_type(): part["Content-Transfer-Encoding"]
        for part in message.walk()
        if not part.is_multipart()
    }
    assert encodings.pop("application/ics") == "base64"
    assert set(encodings.values()) <= {"quoted-printable", "base64"}


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (
            "Bonjour Zoé,\n\nVotre rendez-vous chez L'Atelier d'Élodie est confirmé.\n",
            "quoted-printable",
        ),
        ("山田美容室 渋谷店のご予約を承りました。\n" * 20, "base64"),
    ],
)
def test_the_shorter_transfer_encoding(text: str, encoding: str) -> None:
    message = parse(compose(replace(SPEC, text=text, html=None, ics=None)))
    assert message.get_content_type() == "text/plain"
    assert message["Content-Transfer-Encoding"] == encoding
    assert message.get_content().replace("\r\n", "\n") == text


def expected_body(text: str) -> str:
    # Canonical form: every line break (CR, LF or CRLF) one line end, the last line ended.
    return (b"\n".join(text.encode("utf-8").splitlines()) + b"\n").decode("utf-8")


BODY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)


@settings(max_examples=200, deadline=None)
@given(BODY_TEXT, BODY_TEXT)
def test_any_body_is_kept(text: str, html: str) -> None:
    data = compose(replace(SPEC, text=text, html=html))
    assert data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    message = parse(data)
    assert all(not part.defects for part in message.walk())
    alternative, _ = message.iter_parts()
    plain, rich, _ = alternative.iter_parts()
    assert plain.get_content().replace("\r\n", "\n") == expected_body(text)
    assert rich.get_content().replace("\r\n", "\n") == expected_body(html)


def check_subject(subject: str) -> None:
    data = compose(replace(SPEC, subject=subject))
    assert data.isascii()
    check_lines(data)
    message = parse(data)
    assert {key.lower() for key in message} == HEADERS - {"content-transfer-encoding"}
    assert len(message.get_all("Subject") or []) == 1
    assert message["Subject"] == expected(subject)
    assert not message.defects


@pytest.mark.parametrize(
    "subject",
    [
        *HOSTILE,
        "Rendez-vous confirmé : " + "très long " * 40,
        "=?utf-8?q?Fake?= =?utf-8?b?RmFrZQ==?= a=?b c?=d",
        "Subject: Bcc: x@y; =?",
        "日本語の件名 and English words 😀 mixed",
        "https://example.com/" + "a" * 200,
    ],
)
def test_hostile_subjects(subject: str) -> None:
    check_subject(subject)


@settings(max_examples=300, deadline=None)
@given(ONE_LINE_TEXT.filter(lambda text: len(text) <= 120))
def test_any_subject_is_kept_and_alone(subject: str) -> None:
    check_subject(subject)


def test_header_policy_refuses_what_is_not_one_header() -> None:
    """The last guard: whatever compose() hands the generator is written only as one
    header field of ASCII lines of at most 998 octets."""
    from outbound.compose import _POLICY

    assert _POLICY.fold("To", "a\r\n <b@c>") == "To: a\r\n <b@c>\r\n"
    for value in ("a\r\nBcc: x@y", "a\nb", "a\rb", "a\r\n", "é", "x" * 1000):
        with pytest.raises(ValueError):
            _POLICY.fold("Subject", value)


@pytest.mark.parametrize("name", HOSTILE + LONG_NAMES, ids=lambda name: name[:12])
def test_independent_readers_read_names_and_subjects_as_written(
    name: str, mailauth: str, mailtools: str
) -> None:
    data = compose(replace(SPEC, from_name=name, to_name=name, subject=name))
    for read in (mailauth_headers(mailauth, data), mailtools_headers(mailtools, data)):
        assert read["fields"] == [key.lower() for key in parse(data)]
        assert read["from"] == [{"name": expected(name), "address": SPEC.from_address}]
        assert read["to"] == [{"name": expected(name), "address": SPEC.to}]
        assert read["reply-to"] == [{"name": expected(name), "address": SPEC.reply_to}]
        assert read["subject"] == expected(name)
