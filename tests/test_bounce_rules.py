"""The classifier and its rules: every shipped rule against a real reply text of the provider
or document its source names; the administrator's rules before the shipped ones; hostile
patterns and texts."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from gateway.bounce_classes import action
from gateway.bounce_rule_files import parse_rules, shipped_rules
from gateway.bounce_rules import classify
from gateway.config import load_config
from tests.test_daemon import mailgw, write_config

SAMPLES = Path(__file__).parent / "samples" / "provider_replies.toml"
REPLIES: list[dict[str, Any]] = tomllib.loads(SAMPLES.read_text("utf-8"))["replies"]


@pytest.mark.parametrize(
    "reply", REPLIES, ids=[f"{r['provider']}-{r['code']}-{i}" for i, r in enumerate(REPLIES)]
)
def test_a_provider_reply_gets_its_class(reply: dict[str, Any]) -> None:
    # reply["source"] names the page or document the text comes from
    found = classify(reply["code"], reply["text"])
    assert (found.bounce_class, found.permanent, found.rule) == (
        reply["class"],
        reply["permanent"],
        reply["rule"],
    ), reply["source"]


def test_every_shipped_rule_is_met_by_a_real_reply() -> None:
    met = {reply["rule"] for reply in REPLIES}
    assert [rule.name for rule in shipped_rules() if rule.name not in met] == []
    assert all(rule.source.strip() for rule in shipped_rules())


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (
            550,
            "550-5.7.1 [192.0.2.1] Our system has detected that this message is likely "
            "unsolicited mail.",
            "fail",
        ),
        (550, "550 5.7.1 ... part of their network is on our block list (S3150)", "fail"),
        (
            550,
            "550-5.7.26 This mail has been blocked because the sender is unauthenticated.",
            "fail",
        ),
        (552, "552-5.2.2 The email account that you tried to reach is over quota.", "retry"),
        (421, "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred", "retry"),
        (550, "550-5.1.1 The email account that you tried to reach does not exist.", "suppress"),
    ],
)
def test_only_address_classes_suppress(code: int, text: str, expected: str) -> None:
    found = classify(code, text)
    assert action(found.bounce_class, found.permanent) == expected


def test_no_reply_at_all_is_transient() -> None:
    assert classify(0, "connection refused").bounce_class == "transient"


def _rules(text: str) -> Any:
    rules, problems = parse_rules(tomllib.loads(text), "bounce-rules.toml")
    return rules, [str(p) for p in problems]


def test_the_administrators_rules_come_first() -> None:
    rules, problems = _rules(
        '[[rules]]\nclass = "reputation"\npattern = "mailbox unavailable"\n'
        'source = "our relay logs"\n'
    )
    assert problems == []
    reply = "550 5.5.0 Requested action not taken: mailbox unavailable"
    assert classify(550, reply).bounce_class == "invalid_recipient"
    found = classify(550, reply, (*rules, *shipped_rules()))
    assert (found.bounce_class, found.rule) == ("reputation", "rules[0]")


def test_a_rule_matches_only_when_all_its_criteria_do() -> None:
    rules, _ = _rules(
        '[[rules]]\nname = "ours"\nclass = "policy"\nstatus = "5.7.*"\ncodes = "550-551"\n'
        'pattern = "refused"\nsource = "s"\n'
    )
    assert classify(550, "5.7.3 refused", rules).rule == "ours"
    assert classify(554, "5.7.3 refused", rules).rule == "no rule"
    assert classify(550, "4.7.3 refused", rules).rule == "a temporary reply"
    assert classify(550, "5.7.3 accepted", rules).rule == "no rule"


def test_a_bad_rules_file_names_file_and_key() -> None:
    _, problems = _rules(
        "other = 1\n"
        '[[rules]]\nclass = "reputation"\npattern = "x"\nsource = "s"\n'
        '[[rules]]\nclass = "spam"\npattern = "(unclosed"\nsource = "s"\n'
        '[[rules]]\nclass = "policy"\nstatus = "5.1"\ncodes = "600-700"\ncolour = 1\n'
        '[[rules]]\nclass = "policy"\nsource = "s"\n'
        '[[rules]]\nclass = "policy"\npattern = "(a)\\\\1"\nsource = "s"\n'
    )
    assert problems[0] == "bounce-rules.toml:other: unknown key (expected [[rules]] tables)"
    assert problems[1].startswith("bounce-rules.toml:rules[1].class: unknown class 'spam'")
    assert problems[2].startswith(
        "bounce-rules.toml:rules[1].pattern: bad regular expression (RE2 syntax): missing )"
    )
    assert problems[3].startswith("bounce-rules.toml:rules[2].colour: unknown key")
    assert "bounce-rules.toml:rules[2].source: missing" in problems
    assert any(p.startswith("bounce-rules.toml:rules[2].status: must be") for p in problems)
    assert any(p.startswith("bounce-rules.toml:rules[2].codes: must be") for p in problems)
    assert (
        "bounce-rules.toml:rules[3].pattern: missing: a rule matches a status, codes or a "
        "pattern" in problems
    )
    # a backreference needs a backtracking engine: refused, not run
    assert any(p.startswith("bounce-rules.toml:rules[4].pattern: bad regular") for p in problems)


def test_a_hostile_pattern_on_a_hostile_text_takes_linear_time() -> None:
    # (a+)+b takes exponential time on a backtracking engine against "aaa...!".
    rules, problems = _rules('[[rules]]\nclass = "policy"\npattern = "(a+)+b"\nsource = "s"\n')
    assert problems == []
    hostile = "550 " + "a" * (1024 * 1024) + "!"
    started = time.monotonic()
    for _ in range(10):
        assert classify(550, hostile, (*rules, *shipped_rules())).bounce_class == "unknown"
    assert time.monotonic() - started < 2.0


def test_check_config_and_run_refuse_a_bad_rules_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, None)
    rules = tmp_path / "bounce-rules.toml"
    rules.write_text(
        '[[rules]]\nclass = "reputation"\npattern = "S3150"\nsource = "our logs"\n'
        '[[rules]]\nclass = "blocked"\npattern = "(?=lookahead)"\nsource = "our logs"\n'
    )
    config.write_text(config.read_text() + '\n[bounces]\nrules_file = "bounce-rules.toml"\n')
    checked = mailgw(config, "check-config")
    assert checked.returncode == 1
    lines = checked.stderr.splitlines()
    assert any(
        line.startswith(f"{rules}:rules[1].class: unknown class 'blocked'") for line in lines
    )
    assert any(line.startswith(f"{rules}:rules[1].pattern: bad regular") for line in lines)
    refused = mailgw(config, "run")
    assert refused.returncode == 2
    assert f"{rules}:rules[1].class: unknown class" in refused.stderr

    rules.write_text('[[rules]]\nclass = "reputation"\npattern = "S3150"\nsource = "our logs"\n')
    assert mailgw(config, "check-config").returncode == 0
    loaded = load_config(config)
    assert loaded.bounce_rules[0].source == "our logs"
    assert loaded.bounce_rules[1:] == shipped_rules()

    rules.unlink()
    missing = mailgw(config, "check-config")
    assert f"{rules}:(file): file not found" in missing.stderr
