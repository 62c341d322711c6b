"""The order of one appointment's events (gateway/ordering.py): the keys compare as the
events they stand for, and any interleaving and repetition of the events leaves what
applying them once each, in the order they were sent, leaves."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ordering import RANKS, Applied, order_key, position

KINDS = list(RANKS)
BOOKED, MOVED, CANCELLED = KINDS
# Sequences as big as a job may carry (any JSON integer), stream ids as Redis makes them.
sequences = st.one_of(st.integers(0, 20), st.integers(0, 10**300))
ids = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
arrival_ids = st.one_of(
    ids, st.tuples(st.integers(1_700_000_000_000, 1_900_000_000_000), st.integers(0, 3))
)


def arrival(stream_id: tuple[int, int]) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


@settings(max_examples=2000)
@given(
    st.sampled_from(KINDS), sequences, arrival_ids, st.sampled_from(KINDS), sequences, arrival_ids
)
def test_keys_compare_as_their_kind_sequence_and_arrival(
    kind: str,
    sequence: int,
    arrived: tuple[int, int],
    other_kind: str,
    other_sequence: int,
    other_arrived: tuple[int, int],
) -> None:
    key = order_key(kind, sequence, arrival(arrived))
    other = order_key(other_kind, other_sequence, arrival(other_arrived))
    event = (KINDS.index(kind), sequence, *arrived)
    other_event = (KINDS.index(other_kind), other_sequence, *other_arrived)
    assert (key < other) == (event < other_event)
    assert (key == other) == (event == other_event)
    assert key.isdigit()
    # A resend compares by its position alone.
    assert (position(sequence, arrival(arrived)) < other[1:]) == (
        (sequence, *arrived) < (other_sequence, *other_arrived)
    )
    read = Applied.read(key, "job-1")
    assert (read.kind, read.sequence, read.arrived_ms, read.key) == (
        kind,
        sequence,
        arrived[0],
        key,
    )


@dataclass(frozen=True)
class Sent:
    """One event as the upstream application sent it: its job, kind and key."""

    job: str
    kind: str
    key: str


def planned_after(events: list[Sent]) -> Sent | None:
    """The event an appointment's plan follows once `events` are handled in this order, by
    the planning script's rule: an event takes effect over another job's only if its key is
    greater; its own job's, run again, finds its own planning."""
    applied: Sent | None = None
    for event in events:
        if applied is None or event.job == applied.job or event.key > applied.key:
            applied = event
    return applied


@st.composite
def histories(draw: st.DrawFn) -> list[Sent]:
    """What an upstream application sends about one appointment, in the order it sent it:
    a booking, moves, perhaps a cancellation. One process sends them in order (arrivals
    rising, `sequence` left at 0 or raised at each change); several processes raise the
    sequence but may reach the stream in any order."""
    moves = draw(st.integers(0, 4))
    kinds = [BOOKED] + [MOVED] * moves + draw(st.sampled_from([[], [CANCELLED]]))
    processes = draw(st.sampled_from(["one, no sequence", "one, sequence", "several"]))
    first = draw(st.integers(0, 5))
    sequences = (
        [0] * len(kinds)
        if processes == "one, no sequence"
        else list(range(first, first + len(kinds)))
    )
    arrivals = list(range(1, len(kinds) + 1))
    if processes == "several":
        arrivals = draw(st.permutations(arrivals))
    return [
        Sent(f"job-{i}", kind, order_key(kind, sequences[i], f"1800000000000-{arrivals[i]}"))
        for i, kind in enumerate(kinds)
    ]


@settings(max_examples=1000)
@given(st.data())
def test_any_interleaving_and_repetition_leaves_what_the_order_sent_leaves(
    data: st.DataObject,
) -> None:
    sent = data.draw(histories())
    # Some of the events, each handled at least once, in any order, some again.
    handled = data.draw(st.lists(st.sampled_from(sent), min_size=1, max_size=12))
    handled = data.draw(st.permutations(handled + data.draw(st.lists(st.sampled_from(handled)))))
    in_order = [event for event in sent if event in handled]
    assert planned_after(handled) == planned_after(in_order) == in_order[-1]
    # Applied in the order sent, each event takes effect when it is handled.
    for i, event in enumerate(in_order):
        assert planned_after(in_order[: i + 1]) == event


def test_a_booking_never_follows_a_move_nor_anything_a_cancellation() -> None:
    cancelled = order_key(CANCELLED, 0, "5-0")
    moved = order_key(MOVED, 0, "3-0")
    assert order_key(BOOKED, 7, "9-0") < moved < cancelled
    assert order_key(MOVED, 7, "9-0") < cancelled
    assert order_key(MOVED, 0, "4-0") > moved
    assert order_key(MOVED, 1, "2-0") > moved  # the sequence before the arrival


def test_why_an_event_changes_nothing() -> None:
    moved = Applied.read(order_key(MOVED, 0, "1795375461309-0"), "m1")
    assert moved.why_not(BOOKED, 0, "1795375454800-0") == (
        "stale: appointment.rescheduled of 2026-11-22T19:24:21.309Z already applied (job m1)"
    )
    # A booking that reached the gateway after the move came before it all the same.
    assert moved.why_not(BOOKED, 0, "1795375470000-0").startswith("stale: ")
    # The sequence said so: both are named.
    later = Applied.read(order_key(MOVED, 3, "1795375461309-0"), "m3")
    assert later.why_not(MOVED, 2, "1795375470000-0") == (
        "stale: appointment.rescheduled of 2026-11-22T19:24:21.309Z already applied"
        " (job m3, sequence 3)"
    )
    cancelled = Applied.read(order_key(CANCELLED, 0, "1795375472300-0"), "c1")
    assert cancelled.why_not(MOVED, 0, "1795375461309-0") == (
        "stale: appointment.cancelled of 2026-11-22T19:24:32.300Z already applied (job c1)"
    )
    assert cancelled.why_not("appointment.confirmation.resend", 0, "1795375480000-0") == (
        "the appointment is cancelled: appointment.cancelled of 2026-11-22T19:24:32.300Z"
        " already applied (job c1)"
    )
