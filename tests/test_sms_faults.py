"""Texts through real `mailgw run` processes, a real Redis and a loopback Twilio failing 30 %
of its requests in every way a provider fails (tests/sms_faults.py): no second copy of a
text whose answer was lost, no endless retry, every text taken recorded `sent` with the
provider's id, and every delivery report matched to its text."""

from __future__ import annotations

from pathlib import Path

from tests.sms_faults import MAX_ATTEMPTS, run

TEXTS = 300
FOREVER = 5


async def test_texts_through_a_provider_failing_in_every_way(
    tmp_path: Path, redis_url: str
) -> None:
    figures = await run(tmp_path, redis_url, TEXTS, rate=0.3, forever=FOREVER, within=50)
    print("\n".join(figures.lines()))
    # every fault was met, answers lost among them
    assert len(figures.faults) == 9, figures.faults
    assert (
        figures.faults["taken, connection dropped"] + figures.faults["taken, answer too late"] > 0
    )
    assert figures.unsettled == 0
    assert figures.second_copies == 0
    assert figures.accepted == TEXTS - FOREVER
    assert figures.endless == 0 and figures.most_attempts == MAX_ATTEMPTS
    assert figures.sent_with_id == figures.accepted
    assert figures.reports_matched == figures.reports == figures.accepted
