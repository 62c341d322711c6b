"""How an appointment's notifications wait in Redis: one compact entry each, in its data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from json.encoder import encode_basestring

# Joins the fields of an entry: no id, address or number holds this byte.
SEP = "\x1f"
# Joins an appointment's entries.
ENTRIES_SEP = "\x1e"
# Joins the parts of an appointment's data (see read_data in scripts.APPOINTMENT_DATA).
DATA_SEP = "\x1d"


@dataclass(frozen=True, slots=True)
class Waiting:
    """One notification an appointment waits to send: its job is made when it falls due.
    Read and written by the Lua scripts too (see dispatch in scripts.APPOINTMENT_DATA)."""

    due_ms: int
    kind: str
    index: int
    channel: str
    only_if_not_rebooked: bool
    recipient: str

    @classmethod
    def parse(cls, entry: str) -> Waiting:
        due, kind, index, channel, flag, recipient = entry.split(SEP, 5)
        return cls(int(due), kind, int(index), channel, flag == "1", recipient)

    def fields(self) -> dict[str, str | int]:
        """What the history says of it."""
        return {
            "kind": self.kind,
            "channel": self.channel,
            "index": self.index,
            "recipient": self.recipient,
        }


@cache
def entry_middle(kind: str, index: int, channel: str, only_if_not_rebooked: bool) -> str:
    """An entry but its due time before and its recipient after: the same for every
    appointment of an account, so made once."""
    return f"{SEP}{kind}{SEP}{index}{SEP}{channel}{SEP}{int(only_if_not_rebooked)}{SEP}"


def parse_entries(joined: str | None) -> list[Waiting]:
    """The entries an appointment's data holds (as scripts.PLAN_NOTIFICATIONS keeps them)."""
    return [Waiting.parse(entry) for entry in (joined or "").split(ENTRIES_SEP) if entry]


def appointment_data(
    account: str, source: str, entries: str, made: str, order: str, context: bytes
) -> bytes:
    """An appointment's data (see read_data in scripts.APPOINTMENT_DATA): its account, the
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
    scripts make the same (dispatch in scripts.APPOINTMENT_DATA)."""
    return f"{source}/{kind}/{index}/{channel}/{recipient}"


def notification_job(
    source: str,
    account: str,
    appointment: str,
    context: bytes,
    kind: str,
    index: int,
    channel: str,
    to: str,
    only_if_not_rebooked: bool,
) -> tuple[str, bytes]:
    """A notification made at once, as the planning script takes it: its job's id and its
    job (JSON, UTF-8), with the appointment's context (with a follow-up's place in the
    account's list, which names its template, and marked when it goes only if the client
    has not booked again). What dispatch (scripts.APPOINTMENT_DATA) makes of an
    entry when it falls due, made here where it costs less than in Redis's Lua. (The
    account id and the kind need no escaping: see gateway.jobs.)"""
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
    head = (
        f'{{"v":1,"id":{encode_basestring(job_id)},"kind":"{job_kind}","account":"{account}",'
        f'"appointment":{encode_basestring(appointment)},"to":{recipient},"template":"{kind}",'
        '"context":'
    )
    return job_id, head.encode() + context + b"}"
