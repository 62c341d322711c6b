"""The Lua scripts for every queue move that touches more than one key, so each is atomic.

Their source is in gateway/lua/, one file per script and per helper (local functions that
several scripts share); each file says what it takes (KEYS, ARGV) and returns. Key names
come from gateway/keys.py, as KEYS or as prefixes in ARGV: the Lua spells none itself.

A job id's state lives in the string `<prefix>job:<id>` (it expires after the
idempotency window):

- `q:<entry id>`: on the jobs stream as that entry (ready or in flight);
- `s`: waiting in the scheduled set for its `send_at`;
- `r`: waiting in the retry set for its next attempt;
- `done`, `dead`, `cancelled`: finished; another entry with this id is a duplicate.

Times are passed in (epoch milliseconds) rather than read with TIME, so the
callers' clock rules and tests can control them.
"""

from __future__ import annotations

from gateway.batching import Script
from gateway.lua import lua_source


def _script(name: str, *helpers: str, finish: str = "") -> Script:
    """The script of `<name>.lua`, with the helpers it calls defined before it."""
    return Script(
        lua_source(name),
        helpers="".join(lua_source(helper) for helper in helpers),
        finish=lua_source(finish) if finish else "",
    )


ENQUEUE = _script("enqueue", "arrival")
CLAIM = _script("claim", "publish", "settled", "sends", "arrival")
COMPLETE = _script("complete", "publish", "settled")
RETRY = _script("retry", "publish", "settled")
DEAD_LETTER = _script("dead_letter", "publish", "settled", "sends")
PROMOTE = _script("promote", "deadline")
REPLAY = _script("replay")
FORGET_CONSUMER = _script("forget_consumer")
CANCEL_APPOINTMENT = _script("cancel_appointment", "appointment_data")
SEQUENCE = _script("sequence")
PLAN_NOTIFICATIONS = _script(
    "plan_notifications", "appointment_data", "plan_batch", "stale", finish="plan_batch_finish"
)
RESEND_CONFIRMATION = _script("resend_confirmation", "appointment_data")
RESERVE_ARRIVAL = _script("reserve_arrival", "arrival")
PROMOTE_NOTIFICATIONS = _script(
    "promote_notifications", "appointment_data", "deadline", "notification_job", "keep_waiting"
)
DROP_TEXTS = _script("drop_texts", "appointment_data", "keep_waiting")
