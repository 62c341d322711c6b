"""A notification's job is made in Python (gateway/notifications.py) and, when a waiting one
falls due, in Redis's Lua (gateway/lua/notification_job.lua): the two give the same bytes.
The Lua ships with the package and names no key of its own (gateway/keys.py does)."""

from __future__ import annotations

import inspect
import json
import re
from datetime import UTC, datetime
from importlib.resources import files
from json.encoder import encode_basestring

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from gateway import scripts
from gateway.batching import BULK, Script
from gateway.jobs import EmailJob, SmsJob, parse_job
from gateway.keys import Keys
from gateway.lua import lua_source
from gateway.notification_kinds import NOTIFICATION_KINDS
from gateway.notifications import as_cjson_writes, entry_middle, notification_job
from gateway.queue import JobQueue, QueueOptions
from outbound.sms import queued, records
from tests.conftest import FixedClock
from tests.test_planner import booking_plan

# The packages whose folder `lua` holds scripts, and the modules that make them.
LUA_PACKAGES = ("gateway.lua", "outbound.sms.lua")
SCRIPT_MODULES = (scripts, records, queued)
# Runs the Lua's own notification_job with its helpers, as PROMOTE_NOTIFICATIONS defines them.
LUA_JOB = (
    lua_source("appointment_data")
    + lua_source("notification_job")
    + "local id, job = notification_job(unpack(ARGV))\nreturn {id, job}\n"
)

# Text a hostile upstream may send in ids and context: quotes, backslashes, slashes, every
# control character, DEL, Latin, CJK, line separators, emoji, escapes written out.
HOSTILE = [
    "",
    'a"b',
    "a\\b",
    "a/b",
    "a\\/b",
    "\\u007f",
    "".join(chr(c) for c in range(0x20)),
    "\x7f\x80\x9f",
    "zoé.o'hara@example.com",
    "日本語",
    "\u2028\u2029",
    "😀",
    "</script>",
    "+33612345678",
]
# Any text but lone surrogates (no UTF-8 for them: neither side ever gets one).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# Waiting entries are joined by these bytes: no id, address or number in one holds them.
# The account ids and kinds the job schema allows: both sides write them as they are.
ACCOUNT = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
KIND = st.sampled_from(NOTIFICATION_KINDS)
# Deadlines in milliseconds since the epoch, none or any up to the last second of year 9999.
DEADLINE = st.one_of(st.none(), st.integers(min_value=0, max_value=253_402_300_799_999))
ENTRY_TEXT = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x1d\x1e\x1f"), max_size=40
)


def test_a_notification_job_is_a_valid_job() -> None:
    context = b'{"appointment":{"id":"a/7"}}'
    job_id, email = notification_job(
        "b/1", "atelier-elodie", "a/7", context, "follow_up", 1, "email", "zoé@example.com", True,
        1_796_000_000_999,
    )  # fmt: skip
    parsed = parse_job(email)
    assert isinstance(parsed, EmailJob)
    # To the second below.
    assert parsed.expires_at == datetime(2026, 11, 30, 0, 53, 20, tzinfo=UTC)
    assert (parsed.id, parsed.account, parsed.appointment) == (job_id, "atelier-elodie", "a/7")
    assert (parsed.to, parsed.template) == (["zoé@example.com"], "follow_up")
    assert parsed.context == {
        "appointment": {"id": "a/7"}, "follow_up": 1, "only_if_not_rebooked": True
    }  # fmt: skip
    assert job_id == "b/1/follow_up/1/email/zoé@example.com"
    _, text = notification_job("o1", "atelier-elodie", None, b"{}", "order", 0, "sms",
                               "+33612345678", False, None)  # fmt: skip
    parsed = parse_job(text)
    assert isinstance(parsed, SmsJob)
    assert (parsed.to, parsed.appointment, parsed.expires_at) == ("+33612345678", None, None)


def test_python_writes_a_json_string_as_redis_lua_does(redis_url: str) -> None:
    client = SyncRedis.from_url(redis_url)
    texts = [*HOSTILE, *(chr(c) for c in range(0x100))]
    for text in texts:
        lua = client.eval("return cjson.encode(ARGV[1])", 0, text.encode())
        assert lua == as_cjson_writes(encode_basestring(text)).encode(), repr(text)
        assert json.loads(lua) == text
    client.close()


def _both(
    client: SyncRedis, *args: str | int | bool, expires: int | None = None
) -> tuple[list[bytes], list[bytes]]:
    """The id and job of one notification, made in Python and in Lua."""
    (source, account, appointment, context, kind, index, channel, to, flag) = args
    job_id, job = notification_job(
        str(source), str(account), str(appointment), str(context).encode(), str(kind),
        int(index), str(channel), str(to), bool(flag), expires,
    )  # fmt: skip
    lua = client.eval(
        LUA_JOB, 0, source, account, appointment, context, kind, str(index), channel, to,
        "1" if flag else "0", "" if expires is None else str(expires),
    )  # fmt: skip
    return [job_id.encode(), job], lua


@pytest.mark.parametrize("text", HOSTILE)
def test_the_lua_makes_the_job_python_makes_of_hostile_text(redis_url: str, text: str) -> None:
    client = SyncRedis.from_url(redis_url)
    context = json.dumps({"appointment": {"id": text, "note": text}}, ensure_ascii=False)
    for channel in ("email", "sms"):
        for flag in (False, True):
            python, lua = _both(
                client, f"b/{text}", "atelier-elodie", text, context, "reminder",
                2**63 + 1, channel, text, flag,
            )  # fmt: skip
            assert python == lua
            job = json.loads(python[1])
            assert job["id"] == python[0].decode()
            assert job["appointment"] == text
            assert job.get("context", {}).get("only_if_not_rebooked", False) is flag
    client.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    source=TEXT,
    account=ACCOUNT,
    appointment=TEXT,
    kind=KIND,
    index=st.integers(min_value=0, max_value=2**70),
    channel=st.sampled_from(["email", "sms"]),
    to=TEXT,
    flag=st.booleans(),
    note=TEXT,
    expires=DEADLINE,
)
def test_the_lua_makes_the_job_python_makes_of_any_text(
    redis_url: str,
    source: str,
    account: str,
    appointment: str,
    kind: str,
    index: int,
    channel: str,
    to: str,
    flag: bool,
    note: str,
    expires: int | None,
) -> None:
    client = SyncRedis.from_url(redis_url)
    context = json.dumps({"appointment": {"note": note}}, ensure_ascii=False)
    python, lua = _both(client, source, account, appointment, context, kind, index, channel, to,
                        flag, expires=expires)  # fmt: skip
    client.close()
    assert python == lua


@given(
    appointment=ENTRY_TEXT,
    source=ENTRY_TEXT,
    to=ENTRY_TEXT.filter(bool),
    note=TEXT,
    index=st.integers(min_value=0, max_value=2**70),
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_a_job_made_when_due_is_the_job_python_makes(
    redis: Redis,
    appointment: str,
    source: str,
    to: str,
    note: str,
    index: int,
) -> None:
    # Through the real scripts: planned to wait, then made by PROMOTE_NOTIFICATIONS.
    await redis.flushall()
    clock = FixedClock()
    queue = JobQueue(redis, QueueOptions(), clock)
    context = json.dumps({"appointment": {"note": note}}, ensure_ascii=False).encode()
    due = int(clock.now() * 1000) + 1000
    # A follow-up's week of grace; a reminder sent whenever it comes (deadlines turned off).
    notifications = [
        ("follow_up", index, "email", True, 604_800_000),
        ("reminder", index, "sms", False, None),
    ]
    await queue.plan_notifications(
        booking_plan(
            appointment,
            source,
            context,
            clock.now(),
            [f"{due}{entry_middle(*notice)}{to}" for notice in notifications],
            [due] * len(notifications),
        )
    )
    clock.advance(1)
    assert await queue.promote_due(100) == 2
    # The gateway's client decodes replies (escaping bytes that are not UTF-8).
    entries = await redis.xrange(queue.keys.jobs)
    made = [fields["job"].encode("utf-8", "surrogateescape") for _, fields in entries]
    expected = [
        notification_job(source, "atelier-elodie", appointment, context, kind, index, channel,
                         to, flag, None if late is None else due + late)[1]
        for kind, index, channel, flag, late in notifications
    ]  # fmt: skip
    assert made == expected
    assert b'"expires_at":"' in made[0]


def _lua_files() -> dict[str, str]:
    """Every .lua file the packages ship (found as an installed package finds it), by
    package and name, with its text."""
    return {
        f"{package}/{path.name}": path.read_text(encoding="utf-8")
        for package in LUA_PACKAGES
        for path in files(package).iterdir()
        if path.name.endswith(".lua")
    }


def test_every_script_reads_its_lua_from_the_package() -> None:
    shipped = _lua_files()
    assert "gateway.lua/bulk.lua" in shipped
    made = [
        script.helpers + script.source + script.finish
        for module in SCRIPT_MODULES
        for script in vars(module).values()
        if isinstance(script, Script)
    ]
    unused = [name for name, text in shipped.items() if not any(text in m for m in made)]
    assert unused == ["gateway.lua/bulk.lua"], "a .lua file no script uses"
    assert lua_source("bulk") == BULK


def _key_names() -> set[str]:
    """What gateway/keys.py puts after the prefix: whole names (`scheduled`) and the start
    of those made per id (`job:`)."""
    keys = Keys(prefix="")
    names = set()
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name == "prefix":
            continue
        if isinstance(member, property):
            value = getattr(keys, name)
        else:
            value = member(keys, *[""] * (len(inspect.signature(member).parameters) - 1))
        names.add(value.split(":")[0] + ":" if ":" in value else value)
    return names


def _spelled_keys(lua: str, names: set[str]) -> list[str]:
    """The key names and prefixes a Lua text spells: a literal holding the default prefix,
    naming a prefix of keys.py (`'job:'`), or a name of keys.py joined to text (`.. 'x'`)."""
    code = re.sub(r"--[^\n]*", "", lua)
    found = []
    for joined, single, double in re.findall(r"""(\.\.\s*)?(?:'([^']*)'|"([^"]*)")""", code):
        literal = single or double
        named = literal in names and (bool(joined) or literal.endswith(":"))
        if named or "mailgw" in literal:
            found.append(literal)
    return found


def test_no_lua_spells_a_key_name() -> None:
    names = _key_names()
    assert {"job:", "appt:", "apptdata:", "scheduled", "retry", "payloads", "waiting"} <= names
    # The check finds what the scripts spelled before.
    assert _spelled_keys("redis.call('GET', prefix .. 'job:' .. id)", names) == ["job:"]
    assert _spelled_keys("redis.call('DECRBY', prefix .. 'waiting', 1)", names) == ["waiting"]
    assert _spelled_keys("redis.call('DEL', 'mailgw:jobs')", names) == ["mailgw:jobs"]
    # A stream field or a state value is no key ('attempts' is both a field and a name).
    assert _spelled_keys("redis.call('XADD', KEYS[1], '*', 'attempts', 'q:' .. id)", names) == []
    for name, text in _lua_files().items():
        assert _spelled_keys(text, names) == [], name
