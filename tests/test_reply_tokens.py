"""Reply tokens: round trips, length, case, key rotation, tampering, expiry, the key file."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.errors import ConfigError
from gateway.keys import Keys
from gateway.message_records import MessageRecord, record_message
from gateway.message_tokens import new_token
from gateway.reply_tokens import (
    KEY_FILE,
    MessageReference,
    ReplyTarget,
    TokenRefused,
    _b32,
    _mac,
    make_local_part,
    read_local_part,
    reply_secrets,
    resolve,
)
from gateway.settings import Settings, read_secret

NOW = 1_800_000_000  # a whole hour
DAY = 86_400
KEY = b"k" * 32
OLD_KEY = b"o" * 32
MESSAGE = "abcdefghijklmnopqrstuvwxyz"
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def make(target: ReplyTarget, key: bytes = KEY, lifetime: int = 180 * DAY) -> str:
    return make_local_part(
        target, key, NOW + lifetime, reference=MessageReference(MESSAGE, NOW + 90 * DAY)
    )


def refusal(local: str, keys: list[bytes] | None = None, now: float = NOW) -> str:
    with pytest.raises(TokenRefused) as caught:
        read_local_part(local, keys or [KEY], now)
    return caught.value.reason


@pytest.mark.parametrize(
    "target",
    [
        ReplyTarget("atelier-elodie", "101", "987654321"),
        ReplyTarget("atelier-elodie", None, None),
        ReplyTarget("A.b_c-9", "Élodie", "0042"),
        ReplyTarget("x", "0", None),
    ],
)
def test_short_ids_travel_in_the_token(target: ReplyTarget) -> None:
    local = make(target)
    assert local.startswith("r-c") and len(local) <= 64
    assert local == local.lower()
    assert read_local_part(local, [KEY], NOW) == target


def test_a_typical_account_with_numeric_ids_fits() -> None:
    # the scheduling service's ids are numbers, sent as such; the account id is a name
    target = ReplyTarget("atelier-elodie", "4812345", "1234567890")
    local = make(target)
    assert local.startswith("r-c")
    assert read_local_part(local, [KEY], NOW) == target


def test_long_ids_name_the_message_instead() -> None:
    target = ReplyTarget("a" * 128, "c" * 128, "x" * 128)
    local = make(target)
    assert local.startswith("r-m") and len(local) <= 64
    # the message's record outlives neither the reply address nor the other way round
    assert read_local_part(local, [KEY], NOW) == MessageReference(MESSAGE, NOW + 90 * DAY)
    assert refusal(local, now=NOW + 90 * DAY) == "expired"


def test_upper_cased_by_a_mail_server_still_reads() -> None:
    target = ReplyTarget("Atelier", "101", "42")
    assert read_local_part(make(target).upper(), [KEY], NOW) == target
    long = make(ReplyTarget("a" * 128, None, None))
    assert read_local_part(long.upper(), [KEY], NOW) == MessageReference(MESSAGE, NOW + 90 * DAY)


ACCOUNT_IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
IDS = st.one_of(st.text(min_size=1, max_size=128), st.integers(0, 10**128 - 1).map(str))


@given(account=ACCOUNT_IDS, calendar=st.none() | IDS, appointment=st.none() | IDS)
def test_every_id_length_gives_at_most_64_characters(
    account: str, calendar: str | None, appointment: str | None
) -> None:
    target = ReplyTarget(account, calendar, appointment)
    local = make(target)
    assert len(local) <= 64
    assert local.startswith("r-") and set(local[2:]) <= set(BASE32)
    assert read_local_part(local, [KEY], NOW) in (
        target,
        MessageReference(MESSAGE, NOW + 90 * DAY),
    )


@pytest.mark.parametrize("size", range(1, 129))
def test_each_id_length_from_1_to_128(size: int) -> None:
    for target in (
        ReplyTarget("a" * size, "é" * size, "9" * size),
        ReplyTarget("a", None, "x" * size),
    ):
        local = make(target)
        assert len(local) <= 64
        assert read_local_part(local, [KEY], NOW) in (
            target,
            MessageReference(MESSAGE, NOW + 90 * DAY),
        )


def test_keys_rotate_the_first_signs_all_verify() -> None:
    target = ReplyTarget("atelier", "101", "42")
    old = make(target, OLD_KEY)
    new = make(target, KEY)
    assert old != new
    assert read_local_part(old, [KEY, OLD_KEY], NOW) == target
    assert read_local_part(new, [KEY, OLD_KEY], NOW) == target
    # once the old key is dropped, its addresses stop working
    assert refusal(old, [KEY]) == "forged"


def test_changing_any_character_is_refused() -> None:
    for local in (
        make(ReplyTarget("atelier", "101", "42")),
        make(ReplyTarget("a" * 99, None, None)),
    ):
        for index, original in enumerate(local):
            for replacement in BASE32 + "-":
                if replacement == original:
                    continue
                tampered = local[:index] + replacement + local[index + 1 :]
                reason = refusal(tampered)
                if index >= 3 and replacement != "-":
                    assert reason == "forged", tampered
                else:
                    # the prefix and the layout letter are checked before the signature
                    assert reason in ("forged", "malformed"), tampered
    assert refusal(make(ReplyTarget("atelier", None, None), b"x" * 32)) == "forged"


def test_expiry_is_kept_to_the_hour() -> None:
    target = ReplyTarget("atelier", "101", "42")
    local = make(target, lifetime=DAY + 1800)
    assert read_local_part(local, [KEY], NOW + DAY - 1) == target
    # rounded down: an address never outlives its lifetime
    assert refusal(local, now=NOW + DAY) == "expired"
    with pytest.raises(TokenRefused, match="expired on 2027-01-16 08:00 UTC"):
        read_local_part(local, [KEY], NOW + 2 * DAY)


def test_a_short_lifetime_for_compact_tokens_is_not_cut_to_the_record() -> None:
    local = make(ReplyTarget("atelier", None, None), lifetime=180 * DAY)
    assert read_local_part(local, [KEY], NOW + 179 * DAY) == ReplyTarget("atelier", None, None)


@pytest.mark.parametrize(
    ("local", "reason"),
    [
        ("", "malformed"),
        ("scheduling", "malformed"),
        ("b-" + MESSAGE, "malformed"),
        ("r-", "malformed"),
        ("r-c", "malformed"),
        ("r-c" + "a" * 21, "malformed"),  # no room for a body
        ("r-c" + "a" * 62, "malformed"),  # 65 characters
        ("r-x" + "a" * 30, "malformed"),  # no such layout
        ("r-c" + "a" * 20 + "1" + "a" * 10, "malformed"),  # not base32
        ("r-c" + "a" * 20 + "é" + "a" * 10, "malformed"),
        ("r-c" + "a" * 20 + "=" + "a" * 10, "malformed"),
        ("r-c" + "a" * 30, "forged"),  # well formed, not ours
    ],
)
def test_malformed_tokens(local: str, reason: str) -> None:
    assert refusal(local) == reason


def test_a_token_that_does_not_decode_is_malformed_even_if_signed() -> None:
    # only a stolen key could sign one; it is still not taken for anything
    signed = "r-c" + "aaaaa" + "a" * 3  # three base32 characters: no whole byte
    assert refusal(signed + _b32(_mac(KEY, signed.encode("ascii")))) == "malformed"


@pytest.mark.parametrize(
    ("target", "reference", "expires", "message"),
    [
        (ReplyTarget("", None, None), MESSAGE, NOW, "empty id"),
        (ReplyTarget("a", "", None), MESSAGE, NOW, "empty id"),
        (ReplyTarget("a", None, None), "short", NOW, "not a message token"),
        (ReplyTarget("a", None, None), MESSAGE.upper(), NOW, "not a message token"),
        (ReplyTarget("a", None, None), MESSAGE, -3600, "out of range"),
        (ReplyTarget("a", None, None), MESSAGE, 3600 << 24, "out of range"),
    ],
)
def test_bad_arguments(target: ReplyTarget, reference: str, expires: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_local_part(target, KEY, expires, reference=MessageReference(reference, expires))


async def test_a_reference_resolves_to_the_message_record(redis: Redis) -> None:
    keys = Keys("test:")
    appointment, order = new_token(), new_token()
    async with redis.pipeline(transaction=False) as pipe:
        record_message(
            pipe,
            keys,
            appointment,
            MessageRecord("j1", "a" * 128, "reminder", "zoe@example.com", "x.example", "42", "7"),
            60,
        )
        record_message(
            pipe, keys, order, MessageRecord("j2", "b", "order", "z@e.com", "x.example"), 60
        )
        await pipe.execute()
    assert await resolve(redis, keys, MessageReference(appointment, NOW)) == ReplyTarget(
        "a" * 128, "7", "42"
    )
    assert await resolve(redis, keys, MessageReference(order, NOW)) == ReplyTarget("b", None, None)
    with pytest.raises(TokenRefused, match="record of message") as caught:
        await resolve(redis, keys, MessageReference(new_token(), NOW))
    assert caught.value.reason == "expired"


def settings_in(state_dir: Path, **sections: object) -> Settings:
    return Settings.model_validate({"state_dir": str(state_dir), **sections})


def test_configured_secrets_are_used_signing_key_first(tmp_path: Path) -> None:
    (tmp_path / "new.key").write_bytes(b"n" * 32 + b"\n")
    (tmp_path / "old.key").write_bytes(b"o" * 40)
    settings = settings_in(
        tmp_path / "state",
        reply_tokens={"secret_files": [str(tmp_path / "new.key"), str(tmp_path / "old.key")]},
    )
    assert reply_secrets(settings) == [b"n" * 32, b"o" * 40]
    assert not (tmp_path / "state").exists()


def test_without_secrets_a_key_is_generated_once(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "state")
    [secret] = reply_secrets(settings)
    path = tmp_path / "state" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(secret, validate=True)) == 48
    # written as a secret file is, so it can be listed in reply_tokens.secret_files
    assert read_secret(path) == secret
    assert settings_in(
        tmp_path, reply_tokens={"secret_files": [str(path)]}
    ).reply_tokens.secrets() == [secret]
    assert reply_secrets(settings_in(tmp_path / "state")) == [secret]
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]


def test_a_damaged_generated_key_is_reported(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_bytes(b"short\n")
    with pytest.raises(ConfigError, match="holds 5 bytes, fewer than 32"):
        reply_secrets(settings_in(tmp_path))


def test_a_key_that_cannot_be_created_is_reported(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the folder should be")
    with pytest.raises(ConfigError, match="cannot create the reply-token key"):
        reply_secrets(settings_in(tmp_path / "state"))
