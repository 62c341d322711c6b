"""A notification, made here only: its id, its entry while it waits in Redis (one compact
entry each, in its appointment's data), and its `email.send` or `sms.send` job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from json.encoder import encode_basestring

# Joins the fields of an entry: no id, address or number holds this byte.
SEP = "\x1f"
# Joins an appointment's entries.
ENTRIES_SEP = "\x1e"
# Joins the parts of an appointment's data (see read_data in gateway/lua/appointment_data.lua).
DATA_SEP = "\x1d"


@dataclass(frozen=True, slots=True)
class Waiting:
    """One notification an appointment waits to send: its job is made when it falls due.
    Read and written by the Lua scripts too (see gateway/lua/notification_job.lua)."""

    due_ms: int
    kind: str
    index: int
    channel: str
    only_if_not_rebooked: bool
    # How long after its due time it may still go out (its deadline), or None: no deadline.
    late_ms: int | None
    recipient: str

    @classmethod
    def parse(cls, entry: str) -> Waiting:
        fields = entry.split(SEP, 6)
        if len(fields) == 6:
            # Written by 0.1, without the deadline field: no deadline (an upgrade keeps
            # what was waiting).
            fields.insert(5, "")
        due, kind, index, channel, flag, late, recipient = fields
        late_ms = int(late) if late else None
        return cls(int(due), kind, int(index), channel, flag == "1", late_ms, recipient)

    @property
    def expires_ms(self) -> int | None:
        """Its deadline, in milliseconds since the epoch."""
        return None if self.late_ms is None else self.due_ms + self.late_ms

    def fields(self) -> dict[str, str | int]:
        """What the history says of it."""
        return {
            "kind": self.kind,
            "channel": self.channel,
            "index": self.index,
            "recipient": self.recipient,
        }


@cache
def entry_middle(
    kind: str, index: int, channel: str, only_if_not_rebooked: bool, late_ms: int | None
) -> str:
    """An entry but its due time before and its recipient after: the same for every
    appointment of an account, so made once. Its deadline is kept as the time after its
    due time it may still go out (`late_ms`, empty for none), which is the same for every
    appointment too: a reminder's offset, a follow-up's grace (gateway/deadlines.py)."""
    late = "" if late_ms is None else str(late_ms)
    return f"{SEP}{kind}{SEP}{index}{SEP}{channel}{SEP}{int(only_if_not_rebooked)}{SEP}{late}{SEP}"


def parse_entries(joined: str | None) -> list[Waiting]:
    """The entries an appointment's data holds (as plan_notifications.lua keeps them)."""
    return [Waiting.parse(entry) for entry in (joined or "").split(ENTRIES_SEP) if entry]


def appointment_data(
    account: str, source: str, entries: str, made: str, order: str, context: bytes
) -> bytes:
    """An appointment's data (see read_data in gateway/lua/appointment_data.lua): its account, the
    planning job whose id its jobs carry, its waiting entries and the ids of the jobs made
    from them (each list joined by ENTRIES_SEP), the order key of the planning job's event
    (gateway/ordering.py), and its context."""
    return (
        f"{account}{DATA_SEP}{source}{DATA_SEP}{entries}{DATA_SEP}{made}{DATA_SEP}{order}"
        f"{DATA_SEP}".encode()
        + context
    )


def waiting_in(data: str | None) -> list[Waiting]:
    """The entries an appointment's data holds (account, source, entries, made jobs, order,
    context)."""
    return parse_entries(data.split(DATA_SEP, 3)[2] if data else None)


def notification_id(source: str, kind: str, index: int, channel: str, recipient: str) -> str:
    """The id of one notification: the same for the same planning job, whatever the number
    of times that job is run, so a notification is enqueued once (idempotency). The Lua
    makes the same (notification_job in gateway/lua/notification_job.lua)."""
    return f"{source}/{kind}/{index}/{channel}/{recipient}"


def expires_text(expires_ms: int) -> str:
    """A deadline as a job's `expires_at` carries it: RFC 3339 UTC, to the second below (the
    Lua writes the same: rfc3339_seconds in gateway/lua/notification_job.lua)."""
    return datetime.fromtimestamp(expires_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def as_cjson_writes(json_text: str) -> str:
    """JSON text written by the standard library's encoder, as Redis's Lua (cjson) writes
    it, so that a job made here is the job the Lua makes of the same notification, to the
    byte: cjson escapes `/` and DEL too (in JSON text, neither stands outside a string)."""
    return json_text.replace("/", "\\/").replace("\x7f", "\\u007f")


def notification_job(
    source: str,
    account: str,
    appointment: str | None,
    context: bytes,
    kind: str,
    index: int,
    channel: str,
    to: str,
    only_if_not_rebooked: bool,
    expires_ms: int | None,
) -> tuple[str, bytes]:
    """A notification's job (JSON, UTF-8) and its id: an `email.send` to one address or an
    `sms.send` to one number, with its context (`appointment`'s, for an appointment's
    notification; with a follow-up's place in the account's list, which names its
    template; marked when it goes only if the client has not booked again). The Lua
    makes the same of an entry that falls due (gateway/lua/notification_job.lua; the
    tests compare the two). The account id and the kind need no escaping: the job schema
    allows none that would (gateway/jobs.py)."""
    job_id = notification_id(source, kind, index, channel, to)
    if channel == "sms":
        job_kind, recipient = "sms.send", encode_basestring(to)
    else:
        job_kind, recipient = "email.send", f"[{encode_basestring(to)}]"
    added = f',"follow_up":{index}' if kind == "follow_up" else ""
    if only_if_not_rebooked:
        added += ',"only_if_not_rebooked":true'
    if added:
        context = context[:-1] + added.encode() + b"}"
    concerns = "" if appointment is None else f'"appointment":{encode_basestring(appointment)},'
    expires = "" if expires_ms is None else f'"expires_at":"{expires_text(expires_ms)}",'
    head = (
        f'{{"v":1,"id":{encode_basestring(job_id)},"kind":"{job_kind}",'
        f'"account":"{account}",{concerns}"to":{recipient},"template":"{kind}",{expires}'
        '"context":'
    )
    # The context is the caller's, written as it is on both sides.
    return job_id, as_cjson_writes(head).encode() + context + b"}"
