"""Reply addresses: compact HMAC-signed tokens naming where a client's reply goes."""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from secrets import token_bytes
from typing import Final, Literal

from redis.asyncio import Redis

from gateway.errors import ConfigError, ConfigProblem, GatewayError
from gateway.keys import Keys
from gateway.message_records import read_record
from gateway.message_tokens import MESSAGE_TOKEN
from gateway.secret_files import create_private_file
from gateway.settings import SECRET_MIN_BYTES, Settings, read_secret

log = logging.getLogger(__name__)

# A reply token is the local part
#
#     r-<format><expiry><body><mac>
#
# all in lower-case base32 without padding (some servers lower-case addresses):
#   format  one letter, the layout's version: "c" compact, "m" message reference; a
#           new layout takes a new letter
#   expiry  5 characters: 3 bytes, the hour (since the epoch) from which it is refused
#   body    "c": the base32 of the three ids packed (_pack); "m": a sent message's token,
#           whose Redis record (Keys.message) holds the ids
#   mac     16 characters: HMAC-SHA256 of everything before it, truncated to 80 bits
#
# RFC 5321 caps a local part at 64 octets, which leaves the compact body 40 characters
# (25 bytes). Ids that do not fit there (the account's, calendar's and appointment's
# may each be 128 characters long) are named through the message instead: its record
# already lives in Redis, written before the message is sent, so nothing more is stored.
# The MAC covers the text as written, so changing any character of it is caught there.
PREFIX: Final = "r-"
MAX_LENGTH: Final = 64
COMPACT: Final = "c"
REFERENCE: Final = "m"
_EXPIRY_CHARS: Final = 5
_MAC_BYTES: Final = 10
_MAC_CHARS: Final = 16
_HEAD: Final = len(PREFIX) + 1 + _EXPIRY_CHARS
_BODY_BYTES: Final = (MAX_LENGTH - _HEAD - _MAC_CHARS) * 5 // 8
_HOUR: Final = 3600
_MAX_HOURS: Final = (1 << 24) - 1
_BASE32: Final = re.compile(r"[a-z2-7]*")
# The first byte of a packed id: 0 for none, else its length, with this bit set when the
# id is a decimal number (the scheduling service's ids often are) sent as its value's
# big-endian bytes.
_NUMBER: Final = 0x80
_LENGTH: Final = 0x7F
KEY_FILE: Final = "reply-tokens.key"
_GENERATED_KEY_BYTES: Final = 48

Refusal = Literal["forged", "expired", "malformed"]


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Whose reply it is: the account, and the calendar and appointment when the
    notification was about one (None for orders and subscriptions)."""

    account: str
    calendar: str | None
    appointment: str | None


@dataclass(frozen=True, slots=True)
class MessageReference:
    """A sent message whose Redis record (Keys.message) holds the ids too long for a
    token; the reply address naming it stops working at `expires` (epoch s), by when the
    record may be gone."""

    token: str
    expires: int


class TokenRefused(GatewayError):
    """A reply address that is not honoured: `reason` is forged, expired or malformed."""

    def __init__(self, reason: Refusal, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def make_local_part(
    target: ReplyTarget, secret: bytes, expires: int, *, reference: MessageReference
) -> str:
    """The reply token of `target`, refused from `expires` (epoch s, kept to the hour,
    rounded down). The ids travel in it when they fit, else `reference` does, and the
    address then stops working when the message's record expires, if that comes first."""
    if "" in (target.account, target.calendar, target.appointment):
        raise ValueError(f"reply token for an empty id: {target}")
    if not MESSAGE_TOKEN.fullmatch(reference.token):
        raise ValueError(f"not a message token: {reference.token!r}")
    packed = _pack(target)
    if packed is None:
        layout, body, expires = REFERENCE, reference.token, min(expires, reference.expires)
    else:
        layout, body = COMPACT, _b32(packed)
    hours = expires // _HOUR
    if not 0 <= hours <= _MAX_HOURS:
        raise ValueError(f"reply token expiry out of range: {expires}")
    signed = PREFIX + layout + _b32(hours.to_bytes(3, "big")) + body
    return signed + _b32(_mac(secret, signed.encode("ascii")))


def read_local_part(
    local: str, secrets: Sequence[bytes], now: float
) -> ReplyTarget | MessageReference:
    """Who a reply token is for, in any case; TokenRefused unless one of `secrets` signed
    it and it has not expired."""
    token = local.lower()
    if not token.startswith(PREFIX):
        raise TokenRefused("malformed", f"not a reply address: {local!r}")
    if not (
        _HEAD + _MAC_CHARS < len(token) <= MAX_LENGTH
        and token[len(PREFIX)] in (COMPACT, REFERENCE)
        and _BASE32.fullmatch(token, len(PREFIX))
    ):
        raise TokenRefused("malformed", f"not a valid reply token: {local!r}")
    layout, signed, mac = token[len(PREFIX)], token[:-_MAC_CHARS], token[-_MAC_CHARS:]
    # compared as bytes: 16 base32 characters are exactly 10 bytes, and decoding once costs
    # less than encoding each key's
    expected, message = _unb32(mac), signed.encode("ascii")
    # every key is tried: the first signs, the others are older ones still honoured
    if not any(hmac.compare_digest(_mac(secret, message), expected) for secret in secrets):
        raise TokenRefused(
            "forged", f"reply token {local!r} is not signed by any of our keys (forged or altered)"
        )
    body = signed[_HEAD:]
    try:
        expires = int.from_bytes(_unb32(signed[len(PREFIX) + 1 : _HEAD]), "big") * _HOUR
        target = MessageReference(body, expires) if layout == REFERENCE else _unpack(_unb32(body))
    except (ValueError, IndexError):
        # signed by us, so only a bug or a stolen key could get here
        raise TokenRefused("malformed", f"reply token {local!r} does not decode") from None
    if now >= expires:
        when = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise TokenRefused("expired", f"reply token {local!r} expired on {when}")
    return target


def _mac(secret: bytes, signed: bytes) -> bytes:
    return hmac.digest(secret, signed, sha256)[:_MAC_BYTES]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _unb32(text: str) -> bytes:
    try:
        return base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


def _pack(target: ReplyTarget) -> bytes | None:
    """The ids packed for a compact token, or None when they do not fit one."""
    fields = [_field(v) for v in (target.account, target.calendar, target.appointment)]
    if sum(1 + len(data) for _, data in fields) > _BODY_BYTES:
        return None
    # every length is under _NUMBER here, the whole being at most _BODY_BYTES
    return b"".join(bytes([flag | len(data)]) + data for flag, data in fields)


def _field(value: str | None) -> tuple[int, bytes]:
    if value is None:
        return 0, b""
    # only a number written canonically comes back as the same text
    if value.isascii() and value.isdigit() and (value == "0" or not value.startswith("0")):
        number = int(value)
        return _NUMBER, number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")
    return 0, value.encode()


def _unpack(data: bytes) -> ReplyTarget:
    values: list[str | None] = []
    for _ in range(3):
        head, data = data[0], data[1:]
        size = head & _LENGTH
        chunk, data = data[:size], data[size:]
        if len(chunk) != size:
            raise ValueError("truncated id")
        if head == 0:
            values.append(None)
        elif head & _NUMBER:
            values.append(str(int.from_bytes(chunk, "big")))
        else:
            values.append(chunk.decode())
    account, calendar, appointment = values
    if data or account is None:
        raise ValueError("not three ids")
    return ReplyTarget(account, calendar, appointment)


# --- I/O: the ids of a message reference, and the keys ---


async def resolve(redis: Redis, keys: Keys, reference: MessageReference) -> ReplyTarget:
    """The ids that the message's Redis record holds; TokenRefused (expired) once the
    record is gone."""
    record = await read_record(redis, keys, reference.token)
    if record is None or not record.get("account"):
        raise TokenRefused(
            "expired", f"the record of message {reference.token}, named by a reply token, expired"
        )
    return ReplyTarget(
        record["account"], record.get("calendar") or None, record.get("appointment") or None
    )


def reply_secrets(settings: Settings) -> list[bytes]:
    """The keys of reply tokens, signing key first: those configured, else one generated
    once under the state directory (like the default DKIM keys)."""
    configured = settings.reply_tokens.secrets()
    if configured:
        return configured
    path = settings.state_dir / KEY_FILE
    try:
        if not path.exists():
            _create_key(path)
        secret = read_secret(path)
    except OSError as exc:
        raise _key_problem(path, f"cannot read the reply-token key: {exc.strerror}") from None
    if len(secret) < SECRET_MIN_BYTES:
        raise _key_problem(
            path,
            f"the generated reply-token key holds {len(secret)} bytes, fewer than "
            f"{SECRET_MIN_BYTES}; delete it to have a new one made",
        )
    return [secret]


def _create_key(path: Path) -> None:
    # the same base64 text that the settings suggest for secret files, so the file can be
    # moved to reply_tokens.secret_files as it is
    data = base64.b64encode(token_bytes(_GENERATED_KEY_BYTES)) + b"\n"
    try:
        if not create_private_file(path, data):
            return
    except OSError as exc:
        raise _key_problem(path, f"cannot create the reply-token key: {exc.strerror}") from None
    log.warning(
        "generated the reply-token key %s; every gateway process must use the same one "
        "(reply_tokens.secret_files) or replies are refused as forged",
        path,
    )


def _key_problem(path: Path, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(str(path), "reply_tokens.secret_files", message)])
