"""The order of one appointment's events, whatever order they are handled in: pure rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.clock import rfc3339

# What an appointment goes through, in the only order it can: booked, moved (any number of
# times), cancelled. A booking never comes after a move, and a cancellation is final, so
# the kind decides first; between two events of one kind, the appointment's `sequence`
# (the iCalendar SEQUENCE the scheduling service raises at each change), then the order in
# which they reached the gateway (their arrival: the stream entry id each first came as).
RANKS: Final = {
    "appointment.booked": "0",
    "appointment.rescheduled": "1",
    "appointment.cancelled": "2",
}
_KINDS: Final = {rank: kind for kind, rank in RANKS.items()}
# A key is digits only, each number after its length (in four digits for the sequence,
# which may have hundreds; in two for the numbers of a stream entry id), so that keys
# compare as plain strings, in Python as in Redis's Lua, whatever the numbers' sizes.
_SEQUENCE_WIDTH, _ID_WIDTH = 4, 2
# The lengths in two digits, made once: formatting them costs most of a key.
_LENGTHS: Final = tuple(f"{length:0{_ID_WIDTH}d}" for length in range(100))


def _sequence(sequence: int) -> str:
    digits = str(sequence)
    return f"{len(digits):0{_SEQUENCE_WIDTH}d}{digits}"


# The start of a key (rank and sequence) for each kind and the small sequences nearly
# every event has, made once too.
_STARTS: Final = {
    kind: tuple(rank + _sequence(n) for n in range(64)) for kind, rank in RANKS.items()
}


def _arrival(arrival: str) -> str:
    # A stream entry id's numbers have no leading zeros: their lengths order them first.
    milliseconds, _, number = arrival.partition("-")
    return f"{_LENGTHS[len(milliseconds)]}{milliseconds}{_LENGTHS[len(number)]}{number}"


def position(sequence: int, arrival: str) -> str:
    """An event's place among those of its kind: its sequence, then its arrival (a stream
    entry id, `<milliseconds>-<number>`)."""
    return _sequence(sequence) + _arrival(arrival)


def order_key(kind: str, sequence: int, arrival: str) -> str:
    """The key of an appointment event: of two events, the one with the greater key is the
    later one (see RANKS). The planning script compares them, atomically with the plan's
    write: an event takes effect only over an earlier one (or its own job's, run again)."""
    starts = _STARTS[kind]
    start = starts[sequence] if sequence < len(starts) else RANKS[kind] + _sequence(sequence)
    return start + _arrival(arrival)


@dataclass(frozen=True, slots=True)
class Applied:
    """The event an appointment's plan follows: its kind, sequence and arrival, and its job."""

    kind: str
    sequence: int
    arrived_ms: int
    job: str
    key: str

    @classmethod
    def read(cls, key: str, job: str) -> Applied:
        """What `order_key` made `key` of."""
        at = 1
        numbers = []
        for width in (_SEQUENCE_WIDTH, _ID_WIDTH, _ID_WIDTH):
            length = int(key[at : at + width])
            at += width
            numbers.append(int(key[at : at + length]))
            at += length
        return cls(_KINDS[key[0]], numbers[0], numbers[1], job, key)

    def why_not(self, kind: str, sequence: int, arrival: str) -> str:
        """Why an event of `kind`, `sequence` and `arrival` that does not supersede this one
        changes nothing: it came before it, or after the cancellation."""
        applied = f"{self.kind} of {rfc3339(self.arrived_ms / 1000)}"
        details = f"job {self.job}"
        if self.sequence != sequence:
            details += f", sequence {self.sequence}"
        later = position(sequence, arrival) > self.key[1:]
        if self.kind == "appointment.cancelled" and later:
            return f"the appointment is cancelled: {applied} already applied ({details})"
        return f"stale: {applied} already applied ({details})"
