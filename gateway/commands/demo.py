"""`mailgw run --demo`: a first booking for an example business, and where its notices land."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from gateway.clock import Clock
from gateway.jobs import parse_job
from gateway.queue import JobQueue
from gateway.settings import Settings

log = logging.getLogger(__name__)

ACCOUNT_ID = "atelier-elodie"
# The example business of config/accounts/atelier-elodie.toml, on the sender domain of
# whatever configuration runs (the embedded defaults have "localhost").
ACCOUNT: dict[str, Any] = {
    "business_name": "L'Atelier d'Élodie & Fils",
    "owner_email": "elodie@atelier-elodie.fr",
    "plan": "growing",
    "timezone": "Europe/Paris",
    "locale": "fr",
    "country": "FR",
    "verified": True,
    "calendars": [{"id": "101", "name": "Élodie", "reply_to": "elodie.rdv@atelier-elodie.fr"}],
    "appointment_types": [{"id": "2001", "name": "Coupe femme"}],
    "notifications": {
        "reminders": [{"offset": "24h"}, {"offset": "2h"}],
        "sms_reminder": {"enabled": True, "offset": "3h"},
    },
}
CLIENT = {"name": "Zoé Martin", "emails": ["zoe@example.com"], "phone": "06 12 34 56 78"}
# Long enough to wait for: the confirmation and the SMS reminder are the ones sent at once.
WAIT_SECONDS = 60.0


def demo_jobs(now: float) -> list[dict[str, Any]]:
    """The account, then an appointment 2 h 30 from `now` (so that its 3 h SMS reminder,
    booked late but within its grace, goes out at once with the confirmation)."""
    start = datetime.fromtimestamp(now, UTC).replace(second=0, microsecond=0)
    start += timedelta(hours=2, minutes=30)
    stamp = int(now)
    return [
        {
            "v": 1,
            "id": f"demo-account-{stamp}",
            "kind": "account.upsert",
            "account": ACCOUNT_ID,
            "data": ACCOUNT,
        },
        {
            "v": 1,
            "id": f"demo-{stamp}",
            "kind": "appointment.booked",
            "account": ACCOUNT_ID,
            "appointment": {
                "id": f"demo-{stamp}",
                "calendar": "101",
                "type": "2001",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=45)).isoformat(),
                "timezone": "Europe/Paris",
                "clients": [CLIENT],
                "location": "12 rue des Lilas, 75011 Paris",
            },
        },
    ]


async def run_demo(queue: JobQueue, settings: Settings, clock: Clock, out: TextIO) -> None:
    """Enqueue the demo jobs, wait for the notices sent at once, and say where they are."""
    account, booking = demo_jobs(clock.now())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    after = "0"

    async def events() -> list[dict[str, Any]]:
        nonlocal after
        read = await queue.events(after, count=1000, block_ms=500)
        if read:
            after = read[-1][0]
        return [json.loads(raw) for _, raw in read]

    # The workers run jobs concurrently: the booking must wait until the account is in.
    await queue.enqueue(parse_job(json.dumps(account)))
    applied = False
    while not applied and loop.time() < deadline:
        applied = any(e.get("job") == account["id"] for e in await events())
    await queue.enqueue(parse_job(json.dumps(booking)))
    wanted = {"confirmation": "email", "reminder": "sms"}
    found: dict[str, dict[str, Any]] = {}
    while len(found) < len(wanted) and loop.time() < deadline:
        for event in await events():
            ours = event.get("appointment") == booking["id"] and event.get("status") == "sent"
            if ours and wanted.get(event.get("kind", "")) == event.get("channel"):
                found[event["kind"]] = event
    out.write(_summary(booking, found, settings))
    out.flush()


def _summary(booking: dict[str, Any], found: dict[str, dict[str, Any]], settings: Settings) -> str:
    lines = [
        "",
        f"mailgw demo: appointment {booking['id']} booked for {CLIENT['name']} with "
        f"{ACCOUNT['business_name']} ({booking['appointment']['start']}).",
    ]
    email = found.get("confirmation")
    if email is not None:
        where = str(email.get("reason", "")).removeprefix("250 written to ")
        lines.append(f"  confirmation e-mail (DKIM-signed): {where}")
    else:
        lines.append("  the confirmation e-mail was not sent in time: see `mailgw events`")
    text = found.get("reminder")
    if text is not None:
        sms = settings.sms
        where = str(sms.file.path) if sms.provider == "file" else f"the {sms.provider} provider"
        lines.append(f"  SMS reminder to {text['recipient']}: {where}")
    else:
        lines.append("  the SMS reminder was not sent in time: see `mailgw events`")
    lines += [f"  everything about it: mailgw history {booking['id']}", ""]
    return "\n".join(lines)
