"""Tests of the job schema and parser: what is accepted, and how every refusal reads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import MalformedJob
from gateway.jobs import (
    KNOWN_KINDS,
    AccountDeleteJob,
    AccountUpsertJob,
    AppointmentJob,
    EmailJob,
    OrderJob,
    SmsJob,
    SubscriptionCancelledJob,
    SubscriptionPaidJob,
    SubscriptionRenewalUpcomingJob,
    job_to_json,
    parse_job,
)

CLIENT = {"name": "Zoé Dupont", "emails": ["zoe@example.com"], "phone": "06 12 34 56 78"}
APPOINTMENT = {
    "id": "123456",
    "calendar": "4321",
    "type": "987",
    "start": "2026-11-24T14:30:00+01:00",
    "end": "2026-11-24T15:00:00+01:00",
    "timezone": "Europe/Paris",
    "clients": [CLIENT],
    "location": "12 rue de la Paix",
    "cancel_url": "https://app.example.com/cancel?id=123456",
    "reschedule_url": "https://app.example.com/reschedule?id=123456",
    "booked_at": "2026-11-20T09:00:00Z",
}
SUBSCRIPTION = {
    "id": "s1",
    "name": "Yoga, 10 sessions a month",
    "client": CLIENT,
    "renews_at": "2026-12-01T00:00:00+01:00",
    "amount": "49.90",
    "currency": "EUR",
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "appointment.booked": {"appointment": APPOINTMENT},
    "appointment.rescheduled": {
        "appointment": {**APPOINTMENT, "previous_start": "2026-11-23T10:00:00+01:00"}
    },
    "appointment.cancelled": {"appointment": {**APPOINTMENT, "notify": False}},
    "appointment.confirmation.resend": {"appointment": APPOINTMENT},
    "order.placed": {
        "product": "gift_certificate",
        "order": {
            "id": "o1",
            "name": "Gift certificate",
            "client": CLIENT,
            "amount": "50",
            "currency": "EUR",
            "details": {"code": "ABC-123", "for": "Marc"},
        },
    },
    "subscription.paid": {"subscription": SUBSCRIPTION, "first_charge": True},
    "subscription.renewal_upcoming": {"subscription": SUBSCRIPTION},
    "subscription.cancelled": {"subscription": SUBSCRIPTION, "by": "payment_failure"},
    "email.send": {
        "to": ["zoe@example.com", "marc@example.org"],
        "template": "follow_up",
        "context": {"note": "Merci !"},
        "appointment": "123456",
        "locale": "fr",
    },
    "sms.send": {"to": "+33612345678", "text": "See you tomorrow at 14:30", "appointment": "9"},
    "account.upsert": {"data": {"business_name": "Salon Zoé", "plan": "growing"}},
    "account.delete": {},
}

CLASSES: dict[str, type] = {
    "appointment.booked": AppointmentJob,
    "appointment.rescheduled": AppointmentJob,
    "appointment.cancelled": AppointmentJob,
    "appointment.confirmation.resend": AppointmentJob,
    "order.placed": OrderJob,
    "subscription.paid": SubscriptionPaidJob,
    "subscription.renewal_upcoming": SubscriptionRenewalUpcomingJob,
    "subscription.cancelled": SubscriptionCancelledJob,
    "email.send": EmailJob,
    "sms.send": SmsJob,
    "account.upsert": AccountUpsertJob,
    "account.delete": AccountDeleteJob,
}


def job(kind: str, /, **changes: Any) -> dict[str, Any]:
    """A valid job of `kind` as a dict (a deep copy, free to alter), with `changes` applied."""
    body = {"v": 1, "id": f"job-{kind}", "kind": kind, "account": "salon-zoe"}
    body.update(copy.deepcopy(EXAMPLES[kind]))
    body.update(changes)
    return body


def reason(data: Any) -> str:
    """The reason parse_job gives for refusing `data` (a dict is sent as JSON)."""
    raw = data if isinstance(data, str | bytes) else json.dumps(data)
    with pytest.raises(MalformedJob) as refused:
        parse_job(raw)
    return refused.value.reason


def test_known_kinds_are_in_interface_order_and_each_has_an_example() -> None:
    assert KNOWN_KINDS[0] == "appointment.booked"
    assert KNOWN_KINDS[-1] == "account.delete"
    assert list(EXAMPLES) == list(KNOWN_KINDS)


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_valid_example_of_every_kind_parses(kind: str) -> None:
    parsed = parse_job(json.dumps(job(kind)).encode())
    assert isinstance(parsed, CLASSES[kind])
    assert (parsed.v, parsed.id, parsed.kind, parsed.account) == (
        1,
        f"job-{kind}",
        kind,
        "salon-zoe",
    )
    assert parsed.send_at is None


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_job_to_json_round_trips(kind: str) -> None:
    parsed = parse_job(json.dumps(job(kind, send_at="2026-11-24T08:00:00+01:00")))
    text = job_to_json(parsed)
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    assert parse_job(text) == parsed


def test_job_to_json_leaves_out_fields_that_were_not_given() -> None:
    out = json.loads(job_to_json(parse_job(json.dumps(job("account.delete")))))
    assert out == {
        "v": 1,
        "id": "job-account.delete",
        "kind": "account.delete",
        "account": "salon-zoe",
    }


def test_appointment_fields_and_defaults() -> None:
    body = job("appointment.booked")
    del body["appointment"]["location"], body["appointment"]["booked_at"]
    parsed = parse_job(json.dumps(body))
    assert isinstance(parsed, AppointmentJob)
    appointment = parsed.appointment
    assert appointment.start == datetime(2026, 11, 24, 13, 30, tzinfo=UTC)
    assert appointment.end - appointment.start == timedelta(minutes=30)
    assert appointment.location == ""
    assert appointment.notify is True
    assert appointment.booked_at is None
    assert appointment.zone.key == "Europe/Paris"
    assert appointment.clients[0].emails == ["zoe@example.com"]
    assert appointment.clients[0].phone == "06 12 34 56 78"


def test_rescheduled_carries_the_previous_start() -> None:
    parsed = parse_job(json.dumps(job("appointment.rescheduled")))
    assert isinstance(parsed, AppointmentJob)
    assert parsed.appointment.previous_start == datetime(
        2026, 11, 23, 10, tzinfo=timezone(timedelta(hours=1))
    )


def test_appointment_sequence_defaults_to_zero_and_is_never_negative() -> None:
    parsed = parse_job(json.dumps(job("appointment.booked")))
    assert isinstance(parsed, AppointmentJob)
    assert parsed.appointment.sequence == 0
    body = job("appointment.rescheduled")
    body["appointment"]["sequence"] = 3
    moved = parse_job(json.dumps(body))
    assert isinstance(moved, AppointmentJob)
    assert moved.appointment.sequence == 3
    body["appointment"]["sequence"] = -1
    assert (
        reason(body) == "field 'appointment.sequence': input should be greater than or equal to 0"
    )


def test_send_at_is_an_aware_datetime() -> None:
    parsed = parse_job(json.dumps(job("sms.send", send_at="2026-11-24T08:00:00Z")))
    assert parsed.send_at == datetime(2026, 11, 24, 8, tzinfo=UTC)


def test_subscription_paid_first_charge_defaults_to_false() -> None:
    body = job("subscription.paid")
    del body["first_charge"]
    parsed = parse_job(json.dumps(body))
    assert isinstance(parsed, SubscriptionPaidJob)
    assert parsed.first_charge is False


def test_email_send_with_subject_and_text() -> None:
    body = job("email.send", subject="Hello", text="Plain", html="<p>Plain</p>")
    del body["template"], body["context"]
    parsed = parse_job(json.dumps(body))
    assert isinstance(parsed, EmailJob)
    assert (parsed.template, parsed.subject, parsed.text, parsed.html) == (
        None,
        "Hello",
        "Plain",
        "<p>Plain</p>",
    )
    assert parsed.context == {}


def test_sms_send_with_template() -> None:
    body = job("sms.send", template="reminder")
    del body["text"]
    parsed = parse_job(json.dumps(body))
    assert isinstance(parsed, SmsJob)
    assert (parsed.template, parsed.context, parsed.text) == ("reminder", {}, None)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("appointment.booked", "123456"),
        ("appointment.cancelled", "123456"),
        ("email.send", "123456"),
        ("sms.send", "9"),
        ("order.placed", None),
        ("subscription.paid", None),
        ("account.upsert", None),
        ("account.delete", None),
    ],
)
def test_appointment_id_of_each_family(kind: str, expected: str | None) -> None:
    assert parse_job(json.dumps(job(kind))).appointment_id == expected


def test_email_send_without_appointment_has_no_appointment_id() -> None:
    body = job("email.send")
    del body["appointment"]
    assert parse_job(json.dumps(body)).appointment_id is None


def test_extra_unknown_fields_are_ignored() -> None:
    body = job("appointment.booked", priority="high", trace={"span": 1})
    body["appointment"]["color"] = "blue"
    body["appointment"]["clients"][0]["loyalty"] = 3
    parsed = parse_job(json.dumps(body))
    assert isinstance(parsed, AppointmentJob)
    assert "priority" not in job_to_json(parsed)


def test_not_json() -> None:
    assert reason("") == "not JSON: Expecting value at line 1 column 1 (char 0)"
    assert (
        reason('{"v": 1,')
        == "not JSON: Expecting property name enclosed in double quotes at line 1 column 9 (char 8)"
    )
    assert reason(b'{"id": "\xff"}') == "not JSON: not valid UTF-8 at byte 8"


@pytest.mark.parametrize("raw", ["[]", "1", '"job"', "null", "[{}]"])
def test_not_a_json_object(raw: str) -> None:
    assert reason(raw) == "not a JSON object"


def test_missing_version() -> None:
    body = job("account.delete")
    del body["v"]
    assert reason(body) == "missing field 'v'"


@pytest.mark.parametrize(
    ("version", "shown"), [(2, "2"), ("1", "'1'"), (True, "true"), (1.0, "1.0"), (None, "null")]
)
def test_wrong_version(version: object, shown: str) -> None:
    assert reason(job("account.delete", v=version)) == (
        f"unsupported job version {shown} (supported: 1)"
    )


def test_version_is_checked_before_kind() -> None:
    assert (
        reason({"v": 2, "kind": "appointment.bookd"}) == "unsupported job version 2 (supported: 1)"
    )


def test_unknown_kind() -> None:
    assert reason(job("appointment.booked", kind="appointment.bookd")) == (
        "unknown kind 'appointment.bookd' (known: appointment.booked, appointment.rescheduled, "
        "appointment.cancelled, appointment.confirmation.resend, order.placed, "
        "subscription.paid, subscription.renewal_upcoming, subscription.cancelled, "
        "email.send, sms.send, account.upsert, account.delete)"
    )


def test_missing_or_non_string_kind() -> None:
    body = job("account.delete")
    del body["kind"]
    assert reason(body) == "missing field 'kind'"
    assert reason(job("account.delete", kind=3)) == "field 'kind': must be a string"


def test_missing_field_at_depth() -> None:
    body = job("appointment.booked")
    del body["appointment"]["clients"][0]["emails"]
    assert reason(body) == "missing field 'appointment.clients[0].emails'"


def test_missing_top_level_field() -> None:
    body = job("order.placed")
    del body["id"]
    assert reason(body) == "missing field 'id'"


def test_bad_email() -> None:
    body = job("appointment.booked")
    body["appointment"]["clients"][0]["emails"] = ["zoe@example.com", "zoe.example.com"]
    assert reason(body) == (
        "field 'appointment.clients[0].emails[1]': not a valid e-mail address: "
        "An email address must have an @-sign."
    )


def test_no_email_at_all() -> None:
    body = job("appointment.booked")
    body["appointment"]["clients"][0]["emails"] = []
    assert reason(body) == "field 'appointment.clients[0].emails': must not be empty"


def test_naive_datetime() -> None:
    body = job("appointment.booked")
    body["appointment"]["start"] = "2026-11-24T14:30:00"
    assert reason(body) == "field 'appointment.start': must be an RFC 3339 date-time with offset"


@pytest.mark.parametrize("value", ["2026-11-24T08:00:00", "tomorrow", 1795000000, "2026-11-24"])
def test_bad_send_at(value: object) -> None:
    assert reason(job("account.delete", send_at=value)) == (
        "field 'send_at': must be an RFC 3339 date-time with offset"
    )


@pytest.mark.parametrize("end", ["2026-11-24T14:00:00+01:00", "2026-11-24T13:30:00Z"])
def test_end_not_after_start(end: str) -> None:
    body = job("appointment.booked")
    body["appointment"]["end"] = end
    assert reason(body) == "field 'appointment.end': must be after 'start'"


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "europe/paris", "", "../../etc/passwd", "localtime"]
)
def test_bad_timezone(zone: str) -> None:
    body = job("appointment.booked")
    body["appointment"]["timezone"] = zone
    assert reason(body) == (
        "field 'appointment.timezone': must be an IANA time zone name, such as \"Europe/Paris\""
    )


def test_bad_url() -> None:
    body = job("appointment.booked")
    body["appointment"]["cancel_url"] = "javascript:alert(1)"
    assert reason(body) == "field 'appointment.cancel_url': must be an http or https URL"


def test_bad_account_and_id() -> None:
    assert reason(job("account.delete", account="-salon", id="")) == (
        "field 'id': must not be empty; field 'account': must be an account id: a letter or "
        "digit, then up to 127 letters, digits, '.', '_' or '-'"
    )
    assert reason(job("account.delete", id="a\nb")) == (
        "field 'id': must not contain control characters"
    )
    assert reason(job("account.delete", id="x" * 201)) == (
        "field 'id': must be at most 200 characters"
    )


def test_numeric_ids_are_kept_as_text_but_nothing_else_is_coerced() -> None:
    body = job("appointment.booked", id=42)
    body["appointment"]["calendar"] = 4321
    parsed = parse_job(json.dumps(body))
    assert isinstance(parsed, AppointmentJob)
    assert (parsed.id, parsed.appointment.calendar) == ("42", "4321")
    body["appointment"]["calendar"] = True
    body["appointment"]["notify"] = "false"
    body["appointment"]["location"] = 12
    assert reason(body) == (
        "field 'appointment.calendar': must be a string; "
        "field 'appointment.location': must be a string; "
        "field 'appointment.notify': must be true or false"
    )


def test_email_with_a_display_name_is_refused() -> None:
    assert reason(job("email.send", to=["Zoé <zoe@example.com>"])) == (
        "field 'to[0]': must be a bare e-mail address, without a name"
    )


def test_email_send_with_both_template_and_subject() -> None:
    assert reason(job("email.send", subject="Hi", text="Hello")) == (
        "give either 'template' or 'subject' and 'text', not both"
    )


def test_email_send_with_neither_template_nor_subject() -> None:
    body = job("email.send")
    del body["template"], body["context"]
    assert reason(body) == "give either 'template' (with 'context') or 'subject' and 'text'"


def test_email_send_with_subject_but_no_text() -> None:
    body = job("email.send", subject="Hi")
    del body["template"], body["context"]
    assert reason(body) == "missing field 'text' (it goes with 'subject')"


def test_email_send_unknown_template() -> None:
    assert reason(job("email.send", template="birthday")).startswith(
        "field 'template': must be 'confirmation', 'reminder', "
    )


def test_sms_send_with_both_or_neither() -> None:
    assert reason(job("sms.send", template="reminder")) == (
        "give either 'template' or 'text', not both"
    )
    body = job("sms.send")
    del body["text"]
    assert reason(body) == "give either 'template' (with 'context') or 'text'"


def test_cancelled_subscription_without_by() -> None:
    body = job("subscription.cancelled")
    del body["by"]
    assert reason(body) == "missing field 'by'"
    assert reason(job("subscription.cancelled", by="staff")) == (
        "field 'by': must be 'client', 'owner' or 'payment_failure'"
    )


def test_account_upsert_data_must_be_an_object() -> None:
    assert reason(job("account.upsert", data=[1])) == "field 'data': must be a JSON object"


def test_several_problems_are_joined_and_capped() -> None:
    body = job("appointment.booked")
    body["appointment"]["clients"] = [{"name": "x", "emails": ["bad"]}] * 100
    text = reason(body)
    assert text.startswith("field 'appointment.clients[0].emails[0]': not a valid e-mail address")
    assert "; field 'appointment.clients[1].emails[0]'" in text
    assert len(text) <= 1000
    assert text.endswith(" more")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _mutated_job(kind: str, key: str, value: object) -> str:
    body = job(kind)
    appointment = body.get("appointment")
    target = appointment if isinstance(appointment, dict) and key.startswith("a.") else body
    target[key.removeprefix("a.")] = value
    return json.dumps(body)


def _parses_or_is_refused(raw: str | bytes) -> None:
    try:
        parse_job(raw)
    except MalformedJob as refused:
        assert refused.reason
        assert len(refused.reason) <= 1000


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_arbitrary_text_is_parsed_or_refused(raw: str | bytes) -> None:
    _parses_or_is_refused(raw)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_is_parsed_or_refused(value: object) -> None:
    _parses_or_is_refused(json.dumps(value))


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(KNOWN_KINDS),
    st.sampled_from(
        [
            *("v", "id", "kind", "account", "send_at", "to", "text", "template", "context"),
            *("data", "a.start", "a.end", "a.timezone", "a.clients", "a.cancel_url", "a.notify"),
        ]
    ),
    json_values,
)
def test_arbitrary_field_values_are_parsed_or_refused(kind: str, key: str, value: object) -> None:
    _parses_or_is_refused(_mutated_job(kind, key, value))


# --- explicit null ---

TEXT_EMAIL = {"to": ["zoe@example.com"], "subject": "Bonjour", "text": "À demain", "html": "<p/>"}
TEXT_SMS = {"to": "+33612345678", "text": "À demain"}
TEMPLATE_SMS = {"to": "+33612345678", "template": "reminder", "context": {}}


def _parent(body: dict[str, Any], path: str) -> tuple[Any, str]:
    target: Any = body
    *parents, name = path.split(".")
    for parent in parents:
        target = target[int(parent)] if parent.isdigit() else target[parent]
    return target, name


def example(kind: str, base: dict[str, Any] | None) -> dict[str, Any]:
    """A valid job of `kind`: its example, or the common fields and `base`."""
    body = job(kind)
    if base is None:
        return body
    return {key: body[key] for key in ("v", "id", "kind", "account")} | copy.deepcopy(base)


# Optional fields whose absence means "none": null means the same.
NULL_IS_NONE = [
    ("appointment.booked", None, "send_at"),
    ("appointment.booked", None, "appointment.cancel_url"),
    ("appointment.booked", None, "appointment.reschedule_url"),
    ("appointment.booked", None, "appointment.booked_at"),
    ("appointment.rescheduled", None, "appointment.previous_start"),
    ("appointment.booked", None, "appointment.clients.0.phone"),
    ("order.placed", None, "order.amount"),
    ("order.placed", None, "order.currency"),
    ("order.placed", None, "order.details"),
    ("subscription.paid", None, "subscription.renews_at"),
    ("subscription.paid", None, "subscription.amount"),
    ("subscription.paid", None, "subscription.currency"),
    ("email.send", None, "locale"),
    ("email.send", None, "appointment"),
    ("email.send", None, "subject"),
    ("email.send", None, "text"),
    ("email.send", None, "html"),
    ("email.send", TEXT_EMAIL, "template"),
    ("email.send", TEXT_EMAIL, "html"),
    ("sms.send", None, "template"),
    ("sms.send", None, "appointment"),
    ("sms.send", TEMPLATE_SMS, "text"),
]


@pytest.mark.parametrize(("kind", "base", "path"), NULL_IS_NONE)
def test_null_is_the_same_as_leaving_an_optional_field_out(
    kind: str, base: dict[str, Any] | None, path: str
) -> None:
    given, absent = example(kind, base), example(kind, base)
    parent, name = _parent(given, path)
    parent[name] = None
    parent, name = _parent(absent, path)
    parent.pop(name, None)
    assert parse_job(json.dumps(given)) == parse_job(json.dumps(absent))


# Fields that need a value (required, with a default value, or needed by the form of the
# job): null is refused like any other value of the wrong type, the field named.
NULL_REFUSED = [
    ("appointment.booked", None, "appointment.location", "must be a string"),
    ("appointment.booked", None, "appointment.notify", "must be true or false"),
    ("appointment.booked", None, "appointment.sequence", "must be an integer"),
    ("appointment.booked", None, "appointment.clients.0.name", "must be a string"),
    ("appointment.booked", None, "appointment.clients.0.emails", "must be a list"),
    ("appointment.booked", None, "appointment.id", "must be a string"),
    ("subscription.paid", None, "first_charge", "must be true or false"),
    ("order.placed", None, "order.name", "must be a string"),
    ("email.send", None, "context", "must be a JSON object"),
    ("email.send", TEXT_EMAIL, "subject", "must be a string"),
    ("email.send", TEXT_EMAIL, "text", "must be a string"),
    ("sms.send", TEMPLATE_SMS, "context", "must be a JSON object"),
    ("sms.send", TEXT_SMS, "to", "must be a string"),
]


@pytest.mark.parametrize(("kind", "base", "path", "problem"), NULL_REFUSED)
def test_null_is_refused_where_a_value_is_needed(
    kind: str, base: dict[str, Any] | None, path: str, problem: str
) -> None:
    body = example(kind, base)
    parent, name = _parent(body, path)
    parent[name] = None
    assert reason(body) == f"field '{path.replace('.0.', '[0].')}': {problem}"


def test_null_subject_and_text_are_neither_form() -> None:
    body = job("sms.send")
    body["text"] = None
    assert reason(body) == "give either 'template' (with 'context') or 'text'"
    email = {key: job("email.send")[key] for key in ("v", "id", "kind", "account", "to")}
    assert reason({**email, "subject": None, "text": None}) == (
        "give either 'template' (with 'context') or 'subject' and 'text'"
    )
    assert reason({**email, "subject": "Bonjour"}) == (
        "missing field 'text' (it goes with 'subject')"
    )


# --- text that reaches a header ---

HEADER_FIELDS = [
    ("appointment.booked", None, "appointment.clients.0.name"),
    ("order.placed", None, "order.name"),
    ("order.placed", None, "order.client.name"),
    ("subscription.paid", None, "subscription.name"),
    ("email.send", TEXT_EMAIL, "subject"),
]


@pytest.mark.parametrize(("kind", "base", "path"), HEADER_FIELDS)
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("Zoé\r\nBcc: victim@example.com", "LF, CR"),
        ("Zoé\nMartin", "LF"),
        ("Zoé\tMartin", "TAB"),
        ("Zoé\x85Martin", "NEL"),
        ("Zoé\u2028Martin", "U+2028"),
        ("Zoé\x00", "NUL"),
    ],
)
def test_text_that_reaches_a_header_is_one_line(
    kind: str, base: dict[str, Any] | None, path: str, value: str, shown: str
) -> None:
    body = example(kind, base)
    parent, name = _parent(body, path)
    parent[name] = value
    assert reason(body) == (
        f"field '{path.replace('.0.', '[0].')}': must be on one line: "
        f"control characters are not allowed ({shown})"
    )


@pytest.mark.parametrize(("kind", "base", "path"), HEADER_FIELDS)
def test_text_that_reaches_a_header_is_kept_as_written(
    kind: str, base: dict[str, Any] | None, path: str
) -> None:
    value = 'L\u2019Atelier d\'Élodie « Chez "Zoé" »\xa0& 山田 ' + "très long " * 100
    body = example(kind, base)
    parent, name = _parent(body, path)
    parent[name] = value
    parsed = json.loads(job_to_json(parse_job(json.dumps(body))))
    parent, name = _parent(parsed, path)
    assert parent[name] == value
