"""SMPP 3.4 PDUs an ESME transmitter needs: framing, the bind and submit_sm bodies, statuses."""

# No PyPI codec fits: smpplib is untyped, py2-era and numbers PDUs through a process-wide
# client; aiosmpplib ships no type information and fails to parse vendor status codes;
# smpp34 encodes no bind or enquire_link from Python. Five PDUs do not need one.

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

HEADER = struct.Struct(">IIII")
# An ESME receives only short responses and the odd request; anything larger is garbage.
MAX_PDU_LENGTH = 64 * 1024
INTERFACE_VERSION = 0x34
MAX_SHORT_MESSAGE = 254
RESPONSE_BIT = 0x80000000


class Command(IntEnum):
    """Command ids (SMPP 3.4 section 5.1.2) of the PDUs this transmitter sends or answers."""

    GENERIC_NACK = 0x80000000
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015


class SmppProtocolError(Exception):
    """Bytes from the peer that are no SMPP PDU."""


@dataclass(frozen=True, slots=True)
class Pdu:
    """One PDU: the header's fields and the raw body (mandatory and optional parameters)."""

    command_id: int
    status: int
    sequence: int
    body: bytes = b""

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    def encode(self) -> bytes:
        length = HEADER.size + len(self.body)
        return HEADER.pack(length, self.command_id, self.status, self.sequence) + self.body

    @classmethod
    def decode(cls, frame: bytes) -> Pdu:
        """A PDU from its header and the body_length(header) octets after it."""
        if len(frame) < HEADER.size or len(frame) != body_length(frame) + HEADER.size:
            raise SmppProtocolError(f"PDU of {len(frame)} octets, unlike its command_length")
        _, command_id, status, sequence = HEADER.unpack_from(frame)
        return cls(command_id, status, sequence, frame[HEADER.size :])


def body_length(header: bytes) -> int:
    """How many octets of body follow a 16-octet header, by its command_length."""
    length = int.from_bytes(header[:4], "big")
    if not HEADER.size <= length <= MAX_PDU_LENGTH:
        raise SmppProtocolError(f"command_length {length} is outside 16..{MAX_PDU_LENGTH}")
    return length - HEADER.size


def c_octet_string(value: str, size: int, field: str) -> bytes:
    """`value` NUL-terminated, for a field of at most `size` octets, terminator included."""
    try:
        encoded = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"SMPP {field} must be ASCII: {value!r}") from None
    if len(encoded) >= size or b"\0" in encoded:
        raise ValueError(f"SMPP {field} holds at most {size - 1} characters: {value!r}")
    return encoded + b"\0"


def first_c_octet_string(body: bytes) -> str:
    """The leading C-octet string of a body (message_id, system_id); empty if the body is."""
    return body.split(b"\0", 1)[0].decode("ascii", "replace")


@dataclass(frozen=True, slots=True)
class Address:
    """An SMPP address: type of number, numbering plan indicator, digits or name."""

    ton: int
    npi: int
    address: str


def bind_transmitter(system_id: str, password: str, system_type: str) -> bytes:
    """The body of bind_transmitter (section 4.1.1): no address range, as a transmitter."""
    return b"".join((
        c_octet_string(system_id, 16, "system_id"),
        c_octet_string(password, 9, "password"),
        c_octet_string(system_type, 13, "system_type"),
        bytes((INTERFACE_VERSION, 0, 0)),
        c_octet_string("", 41, "address_range"),
    ))  # fmt: skip


def submit_sm(
    source: Address,
    destination: Address,
    short_message: bytes,
    *,
    esm_class: int,
    data_coding: int,
    registered_delivery: int,
    valid_for: int | None = None,
) -> bytes:
    """The body of submit_sm (section 4.4.1), delivered at once, within `valid_for` seconds
    if given (a relative validity_period), else within the SMSC's own validity."""
    if len(short_message) > MAX_SHORT_MESSAGE:
        raise ValueError(
            f"SMPP short_message holds at most {MAX_SHORT_MESSAGE} octets, not {len(short_message)}"
        )
    return b"".join((
        c_octet_string("", 6, "service_type"),
        bytes((source.ton, source.npi)),
        c_octet_string(source.address, 21, "source_addr"),
        bytes((destination.ton, destination.npi)),
        c_octet_string(destination.address, 21, "destination_addr"),
        bytes((esm_class, 0, 0)),  # protocol_id, priority_flag
        c_octet_string("", 17, "schedule_delivery_time"),
        c_octet_string(
            "" if valid_for is None else relative_time(valid_for), 17, "validity_period"
        ),
        bytes((registered_delivery, 0, data_coding, 0, len(short_message))),
        short_message,
    ))  # fmt: skip


def relative_time(seconds: int) -> str:
    """A relative time (section 7.1.1): "YYMMDDhhmmss000R", years of 365 days and months of
    30 (as SMSCs read them), capped at 99 years."""
    seconds = max(1, seconds)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    days, hour = divmod(hours, 24)
    years, days = divmod(days, 365)
    months, day = divmod(days, 30)
    if years > 99:
        return "991130235959000R"
    return f"{years:02d}{months:02d}{day:02d}{hour:02d}{minute:02d}{second:02d}000R"


def concatenation_udh(reference: int, total: int, number: int) -> bytes:
    """The user data header of part `number` of `total` (IE 0x00, 8-bit reference)."""
    return bytes((5, 0x00, 3, reference & 0xFF, total, number))


# command_status values of SMPP 3.4 section 5.1.3: name and meaning.
STATUSES: dict[int, tuple[str, str]] = {
    0x00: ("ESME_ROK", "no error"),
    0x01: ("ESME_RINVMSGLEN", "message length is invalid"),
    0x02: ("ESME_RINVCMDLEN", "command length is invalid"),
    0x03: ("ESME_RINVCMDID", "invalid command id"),
    0x04: ("ESME_RINVBNDSTS", "incorrect bind status for the command"),
    0x05: ("ESME_RALYBND", "already bound"),
    0x06: ("ESME_RINVPRTFLG", "invalid priority flag"),
    0x07: ("ESME_RINVREGDLVFLG", "invalid registered delivery flag"),
    0x08: ("ESME_RSYSERR", "system error"),
    0x0A: ("ESME_RINVSRCADR", "invalid source address"),
    0x0B: ("ESME_RINVDSTADR", "invalid destination address"),
    0x0C: ("ESME_RINVMSGID", "message id is invalid"),
    0x0D: ("ESME_RBINDFAIL", "bind failed"),
    0x0E: ("ESME_RINVPASWD", "invalid password"),
    0x0F: ("ESME_RINVSYSID", "invalid system id"),
    0x11: ("ESME_RCANCELFAIL", "cancel_sm failed"),
    0x13: ("ESME_RREPLACEFAIL", "replace_sm failed"),
    0x14: ("ESME_RMSGQFUL", "message queue full"),
    0x15: ("ESME_RINVSERTYP", "invalid service type"),
    0x33: ("ESME_RINVNUMDESTS", "invalid number of destinations"),
    0x34: ("ESME_RINVDLNAME", "invalid distribution list name"),
    0x40: ("ESME_RINVDESTFLAG", "invalid destination flag"),
    0x42: ("ESME_RINVSUBREP", "invalid submit with replace request"),
    0x43: ("ESME_RINVESMCLASS", "invalid esm_class field"),
    0x44: ("ESME_RCNTSUBDL", "cannot submit to a distribution list"),
    0x45: ("ESME_RSUBMITFAIL", "submit_sm failed"),
    0x48: ("ESME_RINVSRCTON", "invalid source address TON"),
    0x49: ("ESME_RINVSRCNPI", "invalid source address NPI"),
    0x50: ("ESME_RINVDSTTON", "invalid destination address TON"),
    0x51: ("ESME_RINVDSTNPI", "invalid destination address NPI"),
    0x53: ("ESME_RINVSYSTYP", "invalid system_type field"),
    0x54: ("ESME_RINVREPFLAG", "invalid replace_if_present flag"),
    0x55: ("ESME_RINVNUMMSGS", "invalid number of messages"),
    0x58: ("ESME_RTHROTTLED", "throttling error: too many messages"),
    0x61: ("ESME_RINVSCHED", "invalid scheduled delivery time"),
    0x62: ("ESME_RINVEXPIRY", "invalid validity period"),
    0x63: ("ESME_RINVDFTMSGID", "predefined message invalid or not found"),
    0x64: ("ESME_RX_T_APPN", "receiver temporary application error"),
    0x65: ("ESME_RX_P_APPN", "receiver permanent application error"),
    0x66: ("ESME_RX_R_APPN", "receiver reject message error"),
    0x67: ("ESME_RQUERYFAIL", "query_sm failed"),
    0xC0: ("ESME_RINVOPTPARSTREAM", "error in the optional part of the PDU body"),
    0xC1: ("ESME_ROPTPARNOTALLWD", "optional parameter not allowed"),
    0xC2: ("ESME_RINVPARLEN", "invalid parameter length"),
    0xC3: ("ESME_RMISSINGOPTPARAM", "expected optional parameter missing"),
    0xC4: ("ESME_RINVOPTPARAMVAL", "invalid optional parameter value"),
    0xFE: ("ESME_RDELIVERYFAILURE", "delivery failure"),
    0xFF: ("ESME_RUNKNOWNERR", "unknown error"),
}


def _status(status: int) -> tuple[str, str]:
    if status in STATUSES:
        return STATUSES[status]
    if 0x400 <= status <= 0x4FF:
        return "ESME_VENDOR", "vendor-specific error (see the SMSC's documentation)"
    return "ESME_RESERVED", "status reserved by SMPP 3.4"


def status_name(status: int) -> str:
    """The status's ESME_ name; ESME_VENDOR or ESME_RESERVED for unlisted ones."""
    return _status(status)[0]


def describe_status(status: int) -> str:
    """'ESME_RINVDSTADR (0x0000000B): invalid destination address'."""
    name, meaning = _status(status)
    return f"{name} (0x{status:08X}): {meaning}"
