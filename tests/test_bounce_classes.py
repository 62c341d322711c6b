"""The actions of each bounce class, as PRODUCT.md's "Bounces and suppression" says."""

from __future__ import annotations

from gateway.bounce_classes import BOUNCE_CLASSES, RULES, action

ADDRESS = {"invalid_recipient", "bad_domain", "inactive_mailbox"}


def test_every_class_has_its_rules() -> None:
    assert set(RULES) == set(BOUNCE_CLASSES)


def test_only_a_permanent_refusal_about_the_address_suppresses() -> None:
    suppressing = {c for c in BOUNCE_CLASSES if action(c, permanent=True) == "suppress"}
    assert suppressing == ADDRESS
    assert {action(c, permanent=False) for c in BOUNCE_CLASSES} == {"retry"}


def test_a_full_mailbox_and_a_rate_limit_are_retried_even_when_permanent() -> None:
    assert action("mailbox_full", permanent=True) == "retry"
    assert action("rate_limited", permanent=True) == "retry"


def test_the_sender_s_problems_fail_that_message_only() -> None:
    for bounce_class in ("reputation", "policy", "content", "authentication", "protocol", "tls"):
        assert action(bounce_class, permanent=True) == "fail"


def test_suppression_lasts_a_year_for_a_mailbox_and_30_days_for_a_domain() -> None:
    assert RULES["invalid_recipient"].suppressed_for is not None
    assert RULES["invalid_recipient"].suppressed_for.days == 365
    assert RULES["inactive_mailbox"].suppressed_for is not None
    assert RULES["inactive_mailbox"].suppressed_for.days == 365
    assert RULES["bad_domain"].suppressed_for is not None
    assert RULES["bad_domain"].suppressed_for.days == 30
    assert all(RULES[c].suppressed_for is None for c in set(BOUNCE_CLASSES) - ADDRESS)
