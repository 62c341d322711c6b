"""Bounces (RFC 3464) and feedback reports (RFC 5965): the RFCs' examples, Postfix, sendmail,
Exchange and Gmail reports, plain-text and vendor bounces (qmail, Exim, Postfix without DSN,
Yahoo), malformed ones, and garbage that must never raise."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.bounce_rule_files import shipped_rules
from inbound.reports import (
    DeliveryReport,
    FeedbackReport,
    RecipientStatus,
    parse_arf,
    parse_dsn,
    parse_plain_bounce,
)
from outbound.bounces import judge_report

SAMPLES = Path(__file__).resolve().parent / "samples"
DOMAIN = "acuityscheduling.com"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def dsn(name: str) -> DeliveryReport:
    report = parse_dsn(sample(name))
    assert report is not None
    return report


def arf(name: str) -> FeedbackReport:
    report = parse_arf(sample(name))
    assert report is not None
    return report


def report(parts: str, report_type: str = "delivery-status") -> bytes:
    """A multipart/report around `parts` (each "Content-Type: ...\\n\\nbody")."""
    body = "".join(f"--B\n{part}\n" for part in parts.split("\n--\n"))
    return (
        "From: MAILER-DAEMON@mx.example.org\n"
        f"To: b-hq3xw7r2k5mzb4tnc6vd2fy7ga@{DOMAIN}\n"
        "MIME-Version: 1.0\n"
        f"Content-Type: multipart/report; report-type={report_type}; boundary=B\n\n"
        f"--B\nContent-Type: text/plain\n\nIt failed.\n{body}--B--\n"
    ).encode()


def status_part(*blocks: str) -> str:
    per_message = "Reporting-MTA: dns; mx.example.org"
    return "Content-Type: message/delivery-status\n\n" + "\n\n".join((per_message, *blocks))


# Each sample: reporting MTA, its recipients as (address, action, status, hard, soft),
# and the Message-ID of the message it reports on.
DSN_SAMPLES = {
    "rfc3464-simple.eml": (
        "cs.utk.edu",
        [("louisl@larry.slip.umd.edu", "failed", "4.0.0")],
        None,
    ),
    "rfc3464-multiple-recipients.eml": (
        "cs.utk.edu",
        [
            ("arathib@vnet.ibm.com", "failed", "5.0.0"),
            ("johnh@hpnjld.njd.hp.com", "delayed", "4.0.0"),
            ("wsnell@sdcc13.ucsd.edu", "failed", "5.0.0"),
        ],
        None,
    ),
    "postfix-hard.eml": (
        "mail.example.org",
        [("camille.martin@example.org", "failed", "5.1.1")],
        f"<hq3xw7r2k5mzb4tnc6vd2fy7ga@{DOMAIN}>",
    ),
    "postfix-delayed.eml": (
        "relay.example.net",
        [("jean.dupont@example.net", "delayed", "4.4.1")],
        f"<m2n3b4v5c6x7z2l3k4j5h6g7f2@{DOMAIN}>",
    ),
    "postfix-smtputf8.eml": (
        "mx.exemple.fr",
        [
            ("rené.lefèvre@exemple.fr", "failed", "5.1.1"),
            ("zoë@exemple.fr", "delayed", "4.2.2"),
        ],
        f"<z7x6c5v4b3n2m7l6k5j4h3g2f7@{DOMAIN}>",
    ),
    "sendmail-several.eml": (
        "lists.example.edu",
        [
            ("staff@example.edu", "expanded", "2.0.0"),
            ("ana@example.edu", "relayed", "2.0.0"),
            ("ben@example.edu", "failed", "5.2.2"),
            ("chloe@example.edu", "delayed", "4.3.0"),
            ("dan@example.edu", "delivered", "2.0.0"),
        ],
        f"<q2w3e4r5t6y7u2i3o4p5a6s7d2@{DOMAIN}>",
    ),
    "exchange-hard.eml": (
        "DM6PR11MB4545.namprd11.prod.outlook.com",
        [("lee.chen@contoso.com", "failed", "5.1.10")],
        f"<v3c4x5z6a7s2d3f4g5h6j7k2l3@{DOMAIN}>",
    ),
    "gmail-hard.eml": (
        "googlemail.com",
        [("nobody@example.org", "failed", "5.1.1")],
        f"<t2y3u4i5o6p7a2s3d4f5g6h7j2@{DOMAIN}>",
    ),
}


@pytest.mark.parametrize("name", DSN_SAMPLES)
def test_dsn_samples(name: str) -> None:
    reporting_mta, recipients, message_id = DSN_SAMPLES[name]
    report = dsn(name)
    assert report.reporting_mta == reporting_mta
    assert [(r.recipient, r.action, r.status) for r in report.recipients] == (recipients)
    assert report.original_message_id == message_id


def test_postfix_hard_bounce_in_full() -> None:
    assert dsn("postfix-hard.eml").recipients == (
        RecipientStatus(
            recipient="camille.martin@example.org",
            action="failed",
            status="5.1.1",
            # Unfolded: the field spans two lines in the report.
            diagnostic="550 5.1.1 <camille.martin@example.org>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
            remote_mta="mx.example.org",
        ),
    )


def test_delay_warning_is_soft_with_its_reason() -> None:
    [delayed] = dsn("postfix-delayed.eml").recipients
    assert delayed.diagnostic == (
        "connect to mx1.example.net[203.0.113.40]:25: Connection timed out"
    )
    assert delayed.remote_mta is None


def test_exchange_report_with_crlf_line_ends() -> None:
    assert b"\r\n" in sample("exchange-hard.eml")
    [failed] = dsn("exchange-hard.eml").recipients
    assert failed.diagnostic == (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient lee.chen@contoso.com not found "
        "by SMTP address lookup"
    )


def test_gmail_remote_mta_without_its_comment() -> None:
    [failed] = dsn("gmail-hard.eml").recipients
    assert failed.remote_mta == "mx.example.org"
    assert failed.diagnostic is not None
    assert failed.diagnostic.startswith("550 5.1.1 The email account that you tried to reach")


def test_several_recipients_keep_their_own_details() -> None:
    report = dsn("sendmail-several.eml")
    by_address = {r.recipient: r for r in report.recipients}
    assert by_address["ben@example.edu"].diagnostic == "552 5.2.2 Mailbox full"
    assert by_address["ben@example.edu"].remote_mta == "mailhost.example.edu"
    assert by_address["ana@example.edu"].diagnostic == "250 2.0.0 Ok: queued as 3F2A1"
    assert by_address["staff@example.edu"].diagnostic is None
    assert report.original_envelope_id == "q2w3e4r5t6y7u2i3o4p5a6s7d2"


def test_utf8_addresses_and_their_escapes() -> None:
    report = dsn("postfix-smtputf8.eml")
    assert report.recipients[0].diagnostic == "destinataire inconnu : rené.lefèvre"
    # The second is written zo\x{EB}@exemple.fr (RFC 6533).
    assert report.recipients[1].recipient == "zoë@exemple.fr"
    assert report.recipients[1].diagnostic == "452 4.2.2 boîte pleine"


def test_not_delivery_reports() -> None:
    for name in (
        "qmail-bounce.eml",
        "reply-client.eml",
        "vacation-gmail.eml",
        "rfc5965-complete.eml",
        "arf-abuse-headers.eml",
    ):
        assert parse_dsn(sample(name)) is None, name


def test_report_without_a_status_part() -> None:
    assert parse_dsn(report("Content-Type: text/rfc822-headers\n\nMessage-ID: <a@b>")) is None


def test_status_part_naming_no_recipient() -> None:
    assert parse_dsn(report(status_part())) is None
    assert parse_dsn(report(status_part("Action: failed\nStatus: 5.1.1"))) is None
    assert parse_dsn(report(status_part("Final-Recipient: rfc822;\nStatus: 5.1.1"))) is None


def test_recipient_without_action_or_status_is_skipped() -> None:
    parsed = parse_dsn(
        report(
            status_part(
                "Final-Recipient: rfc822; vague@example.org\nAction: exploded",
                "Final-Recipient: rfc822; known@example.org\nAction: failed\nStatus: 5.1.1",
            )
        )
    )
    assert parsed is not None
    assert [r.recipient for r in parsed.recipients] == ["known@example.org"]


@pytest.mark.parametrize(
    ("fields", "action", "status"),
    [
        # No Action: the status class says what happened.
        ("Status: 5.1.1", "failed", "5.1.1"),
        ("Status: 4.2.2", "delayed", "4.2.2"),
        ("Status: 2.0.0", "delivered", "2.0.0"),
        ("Action: FAILED\nStatus: 5.1.1", "failed", "5.1.1"),
        # No usable Status: the server's answer holds the code.
        ("Action: failed\nDiagnostic-Code: smtp; 550 5.1.1 no such user", "failed", "5.1.1"),
        ("Action: failed\nStatus: five\nDiagnostic-Code: smtp; 550 5.7.1 no", "failed", "5.7.1"),
        ("Action: failed\nStatus: 5.1.1.1", "failed", None),
        ("Action: failed", "failed", None),
        ("Diagnostic-Code: smtp; 452 4.2.2 over quota", "delayed", "4.2.2"),
    ],
)
def test_incomplete_recipient_fields(fields: str, action: str, status: str | None) -> None:
    parsed = parse_dsn(report(status_part(f"Final-Recipient: rfc822; x@example.org\n{fields}")))
    assert parsed is not None
    [recipient] = parsed.recipients
    assert (recipient.action, recipient.status) == (action, status)


def test_status_code_is_not_read_out_of_an_ip_address() -> None:
    parsed = parse_dsn(
        report(
            status_part(
                "Final-Recipient: rfc822; x@example.org\nAction: failed\n"
                "Diagnostic-Code: smtp; connect to 10.5.1.1 refused"
            )
        )
    )
    assert parsed is not None and parsed.recipients[0].status is None


@pytest.mark.parametrize(
    ("field", "recipient"),
    [
        ("Final-Recipient: rfc822;<angled@example.org>", "angled@example.org"),
        ("Final-Recipient: bare@example.org", "bare@example.org"),
        ("Original-Recipient: rfc822; only.original@example.org", "only.original@example.org"),
        ("Final-Recipient: rfc822;\nOriginal-Recipient: rfc822; o@example.org", "o@example.org"),
        ("Final-Recipient: utf-8; j\\x{F6}rg@example.de", "jörg@example.de"),
        (
            "Final-Recipient: utf-8; a\\x{D800}\\x{110000}@example.de",
            "a\\x{D800}\\x{110000}@example.de",
        ),
        ("Final-Recipient: rfc822; j\\x{F6}rg@example.de", "j\\x{F6}rg@example.de"),
        ("Final-Recipient: x-unknown; MAILBOX 17", "MAILBOX 17"),
    ],
)
def test_recipient_forms(field: str, recipient: str) -> None:
    parsed = parse_dsn(report(status_part(f"{field}\nAction: failed\nStatus: 5.1.1")))
    assert parsed is not None and parsed.recipients[0].recipient == recipient


def test_per_message_block_may_be_missing() -> None:
    parsed = parse_dsn(
        report(
            "Content-Type: message/delivery-status\n\n"
            "Final-Recipient: rfc822; x@example.org\nAction: failed\nStatus: 5.1.1"
        )
    )
    assert parsed is not None
    assert parsed.reporting_mta is None
    assert [r.recipient for r in parsed.recipients] == ["x@example.org"]


def test_junk_line_inside_a_block() -> None:
    parsed = parse_dsn(
        report(
            status_part(
                "Final-Recipient: rfc822; x@example.org\nthis is not a field\n"
                "Action: failed\nStatus: 5.1.1",
                "Final-Recipient: rfc822; y@example.org\nAction: delayed\nStatus: 4.4.1",
            )
        )
    )
    assert parsed is not None
    # The junk line ends the fields of x's block, which loses its Action and Status.
    assert [r.recipient for r in parsed.recipients] == ["y@example.org"]


def test_status_part_outside_a_multipart_report() -> None:
    message = report(status_part("Final-Recipient: rfc822; x@example.org\nAction: failed"))
    mixed = message.replace(b"multipart/report; report-type=delivery-status", b"multipart/mixed")
    parsed = parse_dsn(mixed)
    assert parsed is not None and parsed.recipients[0].recipient == "x@example.org"


def test_a_report_attached_to_a_message_is_not_read() -> None:
    attached = sample("postfix-hard.eml").decode()
    message = (
        "From: someone@example.org\nMIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=OUTER\n\n"
        "--OUTER\nContent-Type: text/plain\n\nLook at this bounce.\n"
        f"--OUTER\nContent-Type: message/rfc822\n\n{attached}\n--OUTER--\n"
    )
    assert parse_dsn(message.encode()) is None


def test_original_as_text_headers_message_or_placeholder() -> None:
    block = "Final-Recipient: rfc822; x@example.org\nAction: failed\nStatus: 5.1.1"
    headers = "Content-Type: text/rfc822-headers\n\nSubject: hi\nMessage-ID:  <id1@example.com>  "
    message = "Content-Type: message/rfc822\n\nSubject: hi\nMessage-ID: <id2@example.com>\n\nBody"
    no_id = "Content-Type: message/rfc822\n\nSubject: no id\n\nBody"
    for original, message_id in [
        (headers, "<id1@example.com>"),
        (message, "<id2@example.com>"),
        (no_id, None),
    ]:
        parsed = parse_dsn(report(f"{status_part(block)}\n--\n{original}"))
        assert parsed is not None and parsed.original_message_id == message_id


# Feedback reports: type, user agent, version, Original-Mail-From, Original-Rcpt-To,
# arrival date, source IP, and the original Message-ID.
EDT = timezone(timedelta(hours=-4))
ARF_SAMPLES = {
    "rfc5965-simple.eml": FeedbackReport(
        feedback_type="abuse",
        user_agent="SomeGenerator/1.0",
        version="1",
        original_mail_from=None,
        original_rcpt_to=(),
        arrival_date=None,
        source_ip=None,
        original_message_id="8787KJKJ3K4J3K4J3K4J3.mail@example.net",
    ),
    "rfc5965-complete.eml": FeedbackReport(
        feedback_type="abuse",
        user_agent="SomeGenerator/1.0",
        version="1",
        original_mail_from="somespammer@example.net",
        original_rcpt_to=("user@example.com",),
        arrival_date=datetime(2005, 3, 8, 14, 0, tzinfo=EDT),
        source_ip="192.0.2.1",
        original_message_id="8787KJKJ3K4J3K4J3K4J3.mail@example.net",
    ),
    "arf-abuse-headers.eml": FeedbackReport(
        feedback_type="abuse",
        user_agent="ExampleMail-Feedback/2.0",
        version="1",
        original_mail_from=f"b-k7j6h5g4f3d2s7a6p5o4i3u2y7@{DOMAIN}",
        original_rcpt_to=("louise.bernard@mail.example.net",),
        arrival_date=datetime(2026, 3, 7, 8, 15, 2, tzinfo=UTC),
        source_ip="2001:db8:5::7",
        original_message_id=f"<k7j6h5g4f3d2s7a6p5o4i3u2y7@{DOMAIN}>",
    ),
    "arf-not-spam.eml": FeedbackReport(
        feedback_type="not-spam",
        user_agent="Example-Feedback-Service/1.0",
        version="0.1",
        original_mail_from=None,
        original_rcpt_to=("hugo@example.com", "hugo.alias@example.com"),
        # Received-Date: the name of the field in drafts before RFC 5965.
        arrival_date=datetime(2026, 3, 8, 15, 0, tzinfo=UTC),
        source_ip="198.51.100.7",
        original_message_id=f"<p7o6i5u4y3t2r7e6w5q4a3s2d7@{DOMAIN}>",
    ),
}


@pytest.mark.parametrize("name", ARF_SAMPLES)
def test_arf_samples(name: str) -> None:
    assert arf(name) == ARF_SAMPLES[name]


def feedback(fields: str, original: str = "") -> bytes:
    parts = f"Content-Type: message/feedback-report\n\n{fields}"
    return report(f"{parts}\n--\n{original}" if original else parts, "feedback-report")


@pytest.mark.parametrize("kind", ["abuse", "fraud", "virus", "other", "not-spam", "auth-failure"])
def test_feedback_types(kind: str) -> None:
    parsed = parse_arf(feedback(f"Feedback-Type: {kind.upper()}\nVersion: 1"))
    assert parsed is not None and parsed.feedback_type == kind


def test_feedback_report_without_feedback_type() -> None:
    assert parse_arf(feedback("User-Agent: X/1\nVersion: 1")) is None
    assert parse_arf(feedback("Feedback-Type:\nVersion: 1")) is None


def test_feedback_fields_after_a_blank_line() -> None:
    parsed = parse_arf(feedback("\nFeedback-Type: abuse\nSource-IP: 192.0.2.9"))
    assert parsed is not None and parsed.source_ip == "192.0.2.9"


def test_feedback_with_an_unreadable_arrival_date() -> None:
    parsed = parse_arf(feedback("Feedback-Type: abuse\nArrival-Date: yesterday, about noon"))
    assert parsed is not None and parsed.arrival_date is None


def test_feedback_original_headers() -> None:
    original = "Content-Type: text/rfc822-headers\n\nFrom: a@b\nMessage-ID: <m@b> (comment)"
    parsed = parse_arf(feedback("Feedback-Type: abuse", original))
    assert parsed is not None and parsed.original_message_id == "<m@b>"


def test_not_feedback_reports() -> None:
    for name in ("postfix-hard.eml", "reply-client.eml", "qmail-bounce.eml"):
        assert parse_arf(sample(name)) is None, name


def parse_both(data: bytes) -> None:
    """The parsers, which must not raise, and whose texts must be storable as UTF-8."""
    for parsed in (parse_dsn(data), parse_arf(data), parse_plain_bounce(data)):
        for text in _texts(parsed):
            text.encode("utf-8")


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple):
        return [t for item in value for t in _texts(item)]
    if dataclasses.is_dataclass(value):
        return [t for f in dataclasses.fields(value) for t in _texts(getattr(value, f.name))]
    return []


GARBAGE = [
    b"",
    b"\x00\xff\xfe garbage",
    b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all",
    b"Content-Type: multipart/report; boundary=B\n\n--B\nContent-Type: message/delivery-status\n",
    b"Content-Type: message/delivery-status\n\nFinal-Recipient",
    b"Content-Type: message/feedback-report\n\n\n\n",
    b'Content-Type: multipart/report; boundary="\n\n--\n--\n',
    b"Content-Type: multipart/report; boundary=B\n\n--B\nContent-Type: message/rfc822\n\n--B--",
    # Deeper than the email package's recursion can go.
    b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(3000)
    ),
]


@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_is_none(garbage: bytes) -> None:
    assert parse_dsn(garbage) is None
    assert parse_arf(garbage) is None


def test_truncated_reports() -> None:
    for name in [*DSN_SAMPLES, *ARF_SAMPLES]:
        data = sample(name)
        for cut in range(0, len(data), 89):
            parse_both(data[:cut])


SAMPLE_NAMES = sorted(p.name for p in SAMPLES.glob("*.eml"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(SAMPLE_NAMES),
    seed=st.integers(0, 2**32 - 1),
    edits=st.integers(1, 40),
)
def test_damaged_samples_never_raise(name: str, seed: int, edits: int) -> None:
    data = bytearray(sample(name))
    rng = random.Random(seed)
    for _ in range(edits):
        if not data:
            break
        at = rng.randrange(len(data))
        choice = rng.random()
        if choice < 0.4:
            data[at] = rng.choice(b'\n\r:;<>()"=- \t\x00\xc3\xa9ab-5.')
        elif choice < 0.7:
            del data[at : at + rng.randrange(1, 200)]
        else:
            data[at:at] = data[rng.randrange(len(data)) :][: rng.randrange(1, 200)]
    parse_both(bytes(data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(data: bytes) -> None:
    parse_both(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "Final-Recipient: ",
                "Original-Recipient: ",
                "Action: ",
                "Status: ",
                "Diagnostic-Code: ",
                "Remote-MTA: ",
                "Feedback-Type: ",
                "Arrival-Date: ",
                "Message-ID: ",
                "rfc822;",
                "utf-8;",
                "\\x{",
                "D800",
                "E9",
                "110000",
                "}",
                "5.1.1",
                "<",
                ">",
                "\n",
                "\n\n",
                " ",
                "é",
                "=?utf-8?q?=C3?=",
            ]
        ),
        max_size=60,
    )
)
def test_random_fields_never_raise(pieces: list[str]) -> None:
    fields = "".join(pieces)
    parse_both(report(status_part(fields) + "\n--\nContent-Type: text/rfc822-headers\n\n" + fields))
    parse_both(feedback(fields, "Content-Type: message/rfc822\n\n" + fields))


@pytest.mark.parametrize(
    ("name", "recipient", "status", "bounce_class", "diagnostic"),
    [
        # qmail-send's own text, no reply code: the paragraph after the address
        ("qmail-bounce.eml", "someone@example.info", "5.1.1", "invalid_recipient", "no mailbox"),
        # Exim: the remote reply, indented, under "SMTP error from remote mail server"
        ("exim-plain.eml", "someone@example.com", "5.1.1", "invalid_recipient", "User unknown"),
        # Postfix without DSN: "said: 550 5.7.1 ..." folded over four lines
        ("postfix-plain.eml", "someone@outlook.example", "5.7.1", "reputation", "(S3150)."),
        # Yahoo's plain-text failure notice: "554: delivery error: dd ..."
        ("yahoo-plain.eml", "someone@yahoo.com", "5.0.0", "invalid_recipient", "yahoo.com account"),
    ],
)
def test_plain_text_bounces(
    name: str, recipient: str, status: str, bounce_class: str, diagnostic: str
) -> None:
    data = sample(name)
    assert parse_dsn(data) is None and parse_arf(data) is None
    report = parse_plain_bounce(data)
    assert report is not None
    assert report.original_message_id == "<hq3xw7r2k5mzb4tnc6vd2fy7ga@acuityscheduling.com>"
    [found] = report.recipients
    assert (found.recipient, found.action, found.status) == (recipient, "failed", status)
    assert found.diagnostic is not None and diagnostic in found.diagnostic
    verdict = judge_report(found.status, found.diagnostic, True, shipped_rules())
    assert verdict.bounce_class == bounce_class


def test_a_reply_or_a_report_is_no_plain_bounce() -> None:
    for name in ("reply-client.eml", "arf-abuse-headers.eml", "ooo-exchange.eml"):
        assert parse_plain_bounce(sample(name)) is None, name


def test_a_report_status_is_classified_with_its_diagnostic() -> None:
    [failed] = dsn("gmail-hard.eml").recipients
    verdict = judge_report(failed.status, failed.diagnostic, True, shipped_rules())
    assert verdict.bounce_class == "invalid_recipient"
    assert judge_report("5.2.2", None, True, shipped_rules()).bounce_class == "mailbox_full"
    delayed = judge_report("4.4.7", "Connection timed out", False, shipped_rules())
    assert (delayed.bounce_class, delayed.action) == ("transient", "retry")
