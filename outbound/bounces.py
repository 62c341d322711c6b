"""What the gateway does with one negative outcome, sent or reported: its class, the
action its class calls for (PRODUCT.md, "Bounces and suppression"), the metrics, and the
suppression of an address refused for what it is."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from gateway import metrics
from gateway.bounce_classes import Action, BounceClass, action
from gateway.bounce_matching import Rule
from gateway.bounce_rules import classify
from gateway.settings import SuppressionSettings
from outbound.suppression import SuppressionList, bounce


@dataclass(frozen=True, slots=True)
class Verdict:
    """The class of a negative outcome and what is done about it."""

    bounce_class: BounceClass
    action: Action


def judge(code: int, text: str, final: bool, rules: Sequence[Rule]) -> Verdict:
    """The verdict on a reply (`code` 0: none) that the relay took as `final` (a bounce)
    or not (a deferral: a refusal blaming our side, such as 530, is retried whatever its
    class). A final outcome without a reply (an address no SMTP command can carry, a
    domain without mail) counts as a permanent one. `rules`: the configured ones
    (Config.bounce_rules: the administrator's, then the shipped ones)."""
    classified = classify(550 if final and code == 0 else code, text, rules)
    return Verdict(
        classified.bounce_class,
        action(classified.bounce_class, classified.permanent and final),
    )


_REPLY_CODE: Final = re.compile(r"\s*([245]\d\d)(?:[ -]|$)")
_STATUS_CODE: Final = re.compile(r"\s*[245]\.\d{1,3}\.\d{1,3}\b")


def judge_report(
    status: str | None, diagnostic: str | None, failed: bool, rules: Sequence[Rule]
) -> Verdict:
    """The verdict on one recipient of a delivery report: its status code ("5.1.1") and the
    remote server's reply ("550 5.1.1 ... does not exist"), `failed` for good or delayed.
    A failed report is final whatever its class: the relay that wrote it retries no more,
    so a class that would be retried fails that one message."""
    text = diagnostic or ""
    code = 0
    reply = _REPLY_CODE.match(text)
    if reply is not None:
        code, text = int(reply.group(1)), text[reply.end() :]
    elif status:
        code = {"5": 550, "4": 450}.get(status[:1], 0)
    if status and not _STATUS_CODE.match(text):
        text = f"{status} {text}".strip()
    verdict = judge(code, text, failed, rules)
    if failed and verdict.action == "retry":
        return Verdict(verdict.bounce_class, "fail")
    return verdict


async def settle(
    suppressions: SuppressionList,
    durations: SuppressionSettings,
    verdict: Verdict,
    address: str,
    detail: str,
    account: str | None,
    now: float,
) -> None:
    """Count the outcome, and suppress the address if its class says so (that address
    only, for every account, until the class's duration is over)."""
    metrics.record_bounce(verdict.bounce_class, address, verdict.action)
    if verdict.action == "suppress":
        lasts = durations.expiry(verdict.bounce_class)
        await suppressions.add(bounce(address, verdict.bounce_class, detail, account, now, lasts))
