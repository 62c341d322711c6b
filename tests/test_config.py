"""Loading the configuration: the example, defaults, and every kind of problem named FILE:KEY."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import Config, check, load_config, validate_account
from gateway.config_location import config_path
from gateway.errors import ConfigError
from gateway.settings import Endpoint

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "mailgw.toml"

ACCOUNT = """\
business_name = "Salon Test"
owner_email = "owner@salon.example.com"
plan = "growing"
timezone = "Europe/Paris"
locale = "fr"
country = "FR"
"""


def write(
    folder: Path, main: str = "", accounts: dict[str, str] | None = None, state: bool = True
) -> Path:
    """A main file (with state_dir in tmp) and account files; returns the main file's path."""
    path = folder / "mailgw.toml"
    # state_dir first: top-level keys must precede the first table
    path.write_text(('state_dir = "state"\n' if state else "") + main, encoding="utf-8")
    (folder / "accounts").mkdir(exist_ok=True)
    for name, text in (accounts or {}).items():
        (folder / "accounts" / f"{name}.toml").write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    return [str(problem) for problem in check(path)]


def keys(path: Path) -> list[str]:
    return [f"{problem.file}:{problem.key}" for problem in check(path)]


# --- the example and the defaults ---


def test_example_loads_without_problems() -> None:
    assert check(EXAMPLE) == []
    config = load_config(EXAMPLE)
    assert config.path == EXAMPLE
    assert set(config.accounts) == {"atelier-elodie", "brooklyn-yoga"}
    assert config.account_files["atelier-elodie"] == EXAMPLE.parent / "accounts/atelier-elodie.toml"
    settings = config.settings
    assert [d.domain for d in settings.sender_domains] == [
        "acuityscheduling.com",
        "acuityscheduling-mail.com",
    ]
    assert all(key.generate for key in settings.dkim_keys)
    assert {key.algorithm for key in settings.dkim_keys} == {"rsa", "ed25519"}
    assert settings.reply_tokens.secret_files == ()
    assert settings.relay.transport == "smarthost"
    french = config.accounts["atelier-elodie"]
    assert french.business_name == "L'Atelier d'Élodie & Fils"
    assert len(french.notifications.reminders) == 3
    assert french.sms_reminder_allowed
    english = config.accounts["brooklyn-yoga"]
    assert english.sender_domain == "acuityscheduling-mail.com"
    assert english.notifications.reminders[0].offset == timedelta(hours=24)


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    config = load_config(None)
    assert config == Config(None, config.settings, {}, {}, config.settings.sms.file)
    settings = config.settings
    assert settings.relay.transport == "maildir"
    assert settings.redis.embedded
    assert settings.state_dir == Path.home() / ".local/state/mailgw"
    assert settings.relay.maildir.path == settings.state_dir / "maildir"
    assert settings.default_sender_domain.domain == "localhost"
    assert [(k.selector, k.algorithm) for k in settings.dkim_keys] == [
        ("mailgw-rsa", "rsa"),
        ("mailgw-ed25519", "ed25519"),
    ]
    assert settings.dkim_keys[0].path == settings.state_dir / "dkim/localhost/mailgw-rsa.key"
    assert settings.queue.scheduler_interval == timedelta(seconds=0.25)
    assert settings.relay.retry_max == timedelta(seconds=4000)
    assert settings.inbound.listen == Endpoint("127.0.0.1", 2525)


def test_state_directory_from_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/one:{tmp_path}/two")
    settings = load_config(None).settings
    assert settings.state_dir == tmp_path / "one"
    assert settings.sms.file.path == tmp_path / "one/sms-outbox.jsonl"


def test_config_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MAILGW_CONFIG", raising=False)
    monkeypatch.setattr("gateway.config_location.DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert config_path() is None  # the embedded defaults
    assert config_path("given.toml") == Path("given.toml")
    (tmp_path / "absent.toml").touch()
    assert config_path() == tmp_path / "absent.toml"
    monkeypatch.setenv("MAILGW_CONFIG", "/srv/mailgw.toml")
    assert config_path() == Path("/srv/mailgw.toml")
    assert config_path("given.toml") == Path("given.toml")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[templates]\ndirectory = "tpl"\n[sms.file]\npath = "out/sms.jsonl"\n')
    settings = load_config(path).settings
    assert settings.state_dir == tmp_path / "state"
    assert settings.templates.directory == tmp_path / "tpl"
    assert settings.accounts.directory == tmp_path / "accounts"
    assert settings.sms.file.path == tmp_path / "out/sms.jsonl"
    # defaults under a relative state_dir follow it
    assert settings.relay.maildir.path == tmp_path / "state/maildir"
    assert settings.dkim_keys[0].path == tmp_path / "state/dkim/localhost/mailgw-rsa.key"


def test_the_sms_provider_checks_its_own_table(tmp_path: Path) -> None:
    token = tmp_path / "twilio.token"
    token.write_text("0123456789abcdef0123456789abcdef\n")
    sid = "AC" + "0" * 32
    path = write(
        tmp_path,
        f'[sms]\nprovider = "twilio"\n[sms.twilio]\naccount_sid = "{sid}"\n'
        'auth_token_file = "twilio.token"\nfrom_number = "+15551234567"\n'
        '[sms.kannel]\nignored = "only the provider in use is checked"\n',
    )
    config = load_config(path)
    assert config.settings.sms.provider == "twilio"
    assert config.sms_options.model_dump()["auth_token_file"] == str(token)

    path.write_text('[sms]\nprovider = "twilio"\n[sms.twilio]\nfrom = "+15551234567"\n')
    assert keys(path) == [
        f"{path}:sms.twilio.account_sid",
        f"{path}:sms.twilio.auth_token_file",
        f"{path}:sms.twilio.from",
    ]


def test_an_sms_provider_that_is_not_installed(tmp_path: Path) -> None:
    path = write(tmp_path, '[sms]\nprovider = "nexmo"\n')
    [problem] = check(path)
    assert problem.key == "sms.provider"
    assert problem.message.startswith("no SMS provider 'nexmo' is installed (installed: file,")


def test_sms_provider_table_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[sms]\ntwilio = "yes"\n')
    assert keys(path) == [f"{path}:sms.twilio"]


# --- problems in the main file ---


def test_missing_main_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml") == [f"{tmp_path / 'nope.toml'}:(file): file not found"]


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nconcurrency 32\n")
    [problem] = check(path)
    assert f"{problem.file}:{problem.key}" == f"{path}:line 3"
    assert problem.message.startswith("TOML syntax error: ")


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nconcurency = 3\n")
    assert problems(path) == [f"{path}:queue.concurency: unknown key"]


def test_unknown_section(tmp_path: Path) -> None:
    path = write(tmp_path, "[relais]\ntransport = 'mx'\n")
    assert problems(path) == [f"{path}:relais: unknown key"]


def test_wrong_type(tmp_path: Path) -> None:
    path = write(tmp_path, '[queue]\nconcurrency = "many"\nmax_attempts = 2.5\n')
    assert problems(path) == [
        f"{path}:queue.concurrency: must be a whole number, not a string ('many')",
        f"{path}:queue.max_attempts: must be a whole number, not a number (2.5)",
    ]


def test_bad_duration(tmp_path: Path) -> None:
    path = write(tmp_path, '[queue]\nvisibility_timeout = "5 minutes"\nbackoff_max = "0s"\n')
    assert keys(path) == [f"{path}:queue.visibility_timeout", f"{path}:queue.backoff_max"]


def test_suppression_durations_by_class(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[suppression]\nbad_domain = "7d"\ninvalid_recipient = "0s"\nmailbox_full = "1d"\n',
    )
    assert keys(path) == [
        f"{path}:suppression.invalid_recipient",
        f"{path}:suppression.mailbox_full",
    ]
    assert problems(path)[1] == f"{path}:suppression.mailbox_full: unknown key"
    path = write(tmp_path, '[suppression]\nbad_domain = "7d"\n')
    settings = load_config(path).settings.suppression
    assert (settings.expiry("bad_domain"), settings.expiry("invalid_recipient")) == (
        timedelta(days=7), timedelta(days=365)
    )  # fmt: skip
    assert settings.expiry("mailbox_full") is None


def test_bad_deadlines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[deadlines]\nfollow_up_grace = "a week"\npurchase_grace = "0s"\nafter_start = 1\n',
    )
    assert keys(path) == [
        f"{path}:deadlines.follow_up_grace",
        f"{path}:deadlines.purchase_grace",
        f"{path}:deadlines.after_start",
    ]


def test_bad_enum(tmp_path: Path) -> None:
    path = write(tmp_path, '[log]\nlevel = "verbose"\n')
    assert problems(path) == [f"{path}:log.level: must be one of: debug, info, warning, error"]


def test_smarthost_without_host(tmp_path: Path) -> None:
    path = write(tmp_path, '[relay]\ntransport = "smarthost"\n')
    assert problems(path) == [f'{path}:relay.smarthost.host: required when transport = "smarthost"']


def test_smarthost_username_needs_password_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[relay.smarthost]\nhost = "smtp.example.net"\nusername = "u"\n')
    assert keys(path) == [f"{path}:relay.smarthost.password_file"]


@pytest.mark.parametrize(
    "url",
    [
        "",
        "redis://localhost:6379/0",
        "rediss://user:secret@redis.example.net:6380",
        "unix:///run/redis/redis.sock",
        "redis+sentinel://s1:26379,s2:26379,s3/mymaster/2",
    ],
)
def test_good_redis_urls(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, f'[redis]\nurl = "{url}"\n')
    assert problems(path) == []


def test_bad_redis_url_scheme_does_not_show_the_password(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nurl = "http://:secret@localhost:6379"\n')
    [problem] = problems(path)
    assert problem.startswith(f"{path}:redis.url: unsupported Redis URL scheme http://; use ")
    assert "secret" not in problem


def test_sentinel_url_needs_service_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nurl = "redis+sentinel://s1:26379,s2:26379"\n')
    [problem] = problems(path)
    assert problem.startswith(f"{path}:redis.url: bad redis+sentinel:// URL: ")


def test_cluster_needs_hash_tag(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nurl = "redis+cluster://n1:6379,n2:6379"\n')
    [problem] = problems(path)
    assert problem.startswith(f"{path}:redis.prefix: with a redis+cluster:// URL the prefix")
    assert "one slot" in problem
    path = write(tmp_path, '[redis]\nurl = "redis+cluster://n1:6379,n2"\nprefix = "{mailgw}:"\n')
    assert problems(path) == []


def test_tls_cert_without_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    path = write(tmp_path, '[inbound]\ntls_cert = "cert.pem"\n')
    assert problems(path) == [f"{path}:inbound.tls_key: required when tls_cert is set"]


def test_tls_files_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path, '[inbound]\ntls_cert = "cert.pem"\ntls_key = "key.pem"\n')
    assert problems(path) == [
        f"{path}:inbound.tls_cert: file not found: {tmp_path / 'cert.pem'}",
        f"{path}:inbound.tls_key: file not found: {tmp_path / 'key.pem'}",
    ]


def test_bad_listen_address(tmp_path: Path) -> None:
    path = write(tmp_path, '[inbound]\nlisten = "localhost"\n[relay.mx]\nresolvers = ["dns"]\n')
    assert keys(path) == [f"{path}:relay.mx.resolvers[0]", f"{path}:inbound.listen"]


def test_bad_session_limits(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[inbound]\nline_length_limit = 998\nsoft_error_limit = 0\nhard_error_limit = -1\n"
        'error_sleep_time = "-1s"\ncommand_timeout = "0s"\n',
    )
    assert problems(path) == [
        f"{path}:inbound.line_length_limit: must be greater than or equal to 1000",
        f"{path}:inbound.soft_error_limit: must be greater than 0",
        f"{path}:inbound.hard_error_limit: must be greater than 0",
        f'{path}:inbound.error_sleep_time: not a duration: \'-1s\' (write "90s", "15m", '
        '"24h", "2d", "1w", "1h30m" or a number of seconds)',
        f"{path}:inbound.command_timeout: must be longer than 0s",
    ]


def test_mx_resolvers(tmp_path: Path) -> None:
    path = write(tmp_path, '[relay.mx]\nresolvers = ["9.9.9.9", "[2620:fe::fe]:5353"]\n')
    resolvers = load_config(path).settings.relay.mx.resolvers
    assert resolvers == (Endpoint("9.9.9.9", 53), Endpoint("2620:fe::fe", 5353))


SENDER = """
[[sender_domains]]
domain = "{domain}"
{extra}
[[sender_domains.dkim]]
selector = "s1"
{key}
"""


def sender(domain: str, extra: str = "", key: str = "") -> str:
    return SENDER.format(domain=domain, extra=extra, key=key)


def test_missing_explicit_key_file(tmp_path: Path) -> None:
    path = write(tmp_path, sender("example.com", key='key_file = "dkim/s1.key"'))
    assert problems(path) == [
        f"{path}:sender_domains[0].dkim[0].key_file: file not found: {tmp_path / 'dkim/s1.key'}"
    ]


def test_explicit_key_file(tmp_path: Path) -> None:
    (tmp_path / "s1.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    path = write(tmp_path, sender("Example.COM.", key='key_file = "s1.key"'))
    [key] = load_config(path).settings.dkim_keys
    assert (key.domain, key.path, key.generate) == ("example.com", tmp_path / "s1.key", False)


def test_sender_domains_unique_one_default(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        sender("a.example", "default = true")
        + sender("b.example", "default = true")
        + sender("a.example"),
    )
    assert problems(path) == [
        f"{path}:sender_domains[1].default: only one sender domain may be the default "
        "(sender_domains[0] is)",
        f"{path}:sender_domains[2].domain: duplicate of sender_domains[0]",
    ]


def test_a_repeated_dkim_selector_names_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, sender("a.example") + '[[sender_domains.dkim]]\nselector = "s1"\n')
    assert problems(path) == [
        f"{path}:sender_domains[0].dkim[1].selector: duplicate of dkim[0]",
    ]


def test_default_sender_domain(tmp_path: Path) -> None:
    path = write(tmp_path, sender("a.example") + sender("b.example"))
    assert load_config(path).settings.default_sender_domain.domain == "a.example"
    path = write(tmp_path, sender("a.example") + sender("b.example", "default = true"))
    assert load_config(path).settings.default_sender_domain.domain == "b.example"


def test_bad_domain_and_missing_selector(tmp_path: Path) -> None:
    path = write(tmp_path, '[[sender_domains]]\ndomain = "-bad-.example"\n')
    assert keys(path) == [f"{path}:sender_domains[0].domain", f"{path}:sender_domains[0].dkim"]
    assert problems(path)[1].endswith("required key is missing")


def test_reply_token_secrets(tmp_path: Path) -> None:
    (tmp_path / "new.key").write_bytes(b"n" * 32 + b"\n")
    (tmp_path / "short.key").write_bytes(b"s" * 31 + b"\n")
    path = write(tmp_path, '[reply_tokens]\nsecret_files = ["new.key", "short.key", "gone.key"]\n')
    assert keys(path) == [
        f"{path}:reply_tokens.secret_files[1]",
        f"{path}:reply_tokens.secret_files[2]",
    ]
    path = write(tmp_path, '[reply_tokens]\nsecret_files = ["new.key"]\n')
    assert load_config(path).settings.reply_tokens.secrets() == [b"n" * 32]


def test_accounts_directory_set_but_missing(tmp_path: Path) -> None:
    path = write(tmp_path, '[accounts]\ndirectory = "nowhere"\n')
    assert problems(path) == [f"{tmp_path / 'nowhere'}:(file): accounts directory not found"]


# --- problems in account files ---


def account_file(tmp_path: Path, name: str = "salon") -> str:
    return str(tmp_path / "accounts" / f"{name}.toml")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("plan = 'gold'", "plan: must be one of: emerging, growing, powerhouse"),
        ("verified = 'yes'", "verified: must be true or false, not a string ('yes')"),
        ("colour = 'red'", "colour: unknown key"),
        (
            "timezone = 'Europe/Pariss'",
            "timezone: unknown time zone 'Europe/Pariss': use an IANA name such as Europe/Paris",
        ),
        (
            "locale = 'de'",
            "locale: unsupported locale 'de': use fr or en, optionally with a region (fr_CA)",
        ),
        (
            "country = 'XX'",
            "country: unknown country 'XX': use a two-letter ISO 3166 code such as FR or US",
        ),
        (
            "business_name = 'Evil\\r\\nBcc: all@example.com'",
            "business_name: must be on one line: control characters are not allowed (LF, CR)",
        ),
        (
            "business_name = 'A\\u0000B'",
            "business_name: must be on one line: control characters are not allowed (NUL)",
        ),
        (
            "business_name = 'Müller\\tGmbH'",
            "business_name: must be on one line: control characters are not allowed (TAB)",
        ),
        ("business_name = '   '", "business_name: must not be empty"),
        ("sender_domain = 'other.example'", None),
    ],
)
def test_account_field_problems(tmp_path: Path, lines: str, expected: str | None) -> None:
    key = lines.split(" ")[0]
    text = "\n".join(line for line in ACCOUNT.splitlines() if not line.startswith(key + " "))
    path = write(tmp_path, accounts={"salon": text + "\n" + lines.replace("'", '"') + "\n"})
    if expected is None:
        assert problems(path) == [
            f"{account_file(tmp_path)}:sender_domain: 'other.example' is not a configured "
            "sender domain (configured: localhost)"
        ]
    else:
        assert problems(path) == [f"{account_file(tmp_path)}:{expected}"]


def test_bad_email(tmp_path: Path) -> None:
    text = ACCOUNT.replace("owner@salon.example.com", "owner at salon")
    text += '[[calendars]]\nid = "1"\nname = "A"\nreply_to = "a@"\n'
    path = write(tmp_path, accounts={"salon": text})
    assert keys(path) == [
        f"{account_file(tmp_path)}:owner_email",
        f"{account_file(tmp_path)}:calendars[0].reply_to",
    ]
    assert "not a valid email address" in problems(path)[0]


def test_missing_required_key(tmp_path: Path) -> None:
    text = ACCOUNT.replace('owner_email = "owner@salon.example.com"\n', "")
    path = write(tmp_path, accounts={"salon": text})
    assert problems(path) == [f"{account_file(tmp_path)}:owner_email: required key is missing"]


def test_too_many_reminders(tmp_path: Path) -> None:
    reminders = "".join(f'[[notifications.reminders]]\noffset = "{h}h"\n' for h in (1, 2, 3, 4))
    path = write(tmp_path, accounts={"salon": ACCOUNT + reminders})
    assert problems(path) == [
        f"{account_file(tmp_path)}:notifications.reminders: at most 3 allowed, found 4"
    ]


def test_reminder_offset_under_one_hour(tmp_path: Path) -> None:
    text = ACCOUNT + "[notifications]\nreminders = [{offset = '24h'}, {offset = '30m'}]\n"
    path = write(tmp_path, accounts={"salon": text})
    assert problems(path) == [
        f"{account_file(tmp_path)}:notifications.reminders[1].offset: must be at least 1h (got 30m)"
    ]


def test_reminder_offsets_distinct(tmp_path: Path) -> None:
    text = ACCOUNT + "[notifications]\nreminders = [{offset = '24h'}, {offset = '1d'}]\n"
    path = write(tmp_path, accounts={"salon": text})
    assert keys(path) == [f"{account_file(tmp_path)}:notifications.reminders[1].offset"]


def test_follow_up_delay_out_of_range(tmp_path: Path) -> None:
    text = ACCOUNT + "[notifications]\nfollow_ups = [{delay = '10m'}, {delay = '366d'}]\n"
    path = write(tmp_path, accounts={"salon": text})
    assert problems(path) == [
        f"{account_file(tmp_path)}:notifications.follow_ups[0].delay: "
        "must be between 14m24s and 365d (got 10m)",
        f"{account_file(tmp_path)}:notifications.follow_ups[1].delay: "
        "must be between 14m24s and 365d (got 366d)",
    ]


def test_too_many_follow_ups_and_long_sms(tmp_path: Path) -> None:
    follow_ups = "".join(f"[[notifications.follow_ups]]\ndelay = '{d}d'\n" for d in range(1, 8))
    text = ACCOUNT + f"[notifications.sms_reminder]\ntext = '{'x' * 1601}'\n" + follow_ups
    path = write(tmp_path, accounts={"salon": text})
    file = account_file(tmp_path)
    assert problems(path) == [
        f"{file}:notifications.sms_reminder.text: must be at most 1600 characters",
        f"{account_file(tmp_path)}:notifications.follow_ups: at most 6 allowed, found 7",
    ]


def test_sms_offset_range(tmp_path: Path) -> None:
    text = ACCOUNT + "[notifications.sms_reminder]\nenabled = true\noffset = '15d'\n"
    path = write(tmp_path, accounts={"salon": text})
    assert problems(path) == [
        f"{account_file(tmp_path)}:notifications.sms_reminder.offset: "
        "must be between 15m and 14d (got 15d)"
    ]


def test_duplicate_calendar_and_type_ids(tmp_path: Path) -> None:
    text = ACCOUNT + (
        "[[calendars]]\nid = 7\nname = 'A'\n[[calendars]]\nid = '7'\nname = 'B'\n"
        "[[appointment_types]]\nid = 'x'\nname = 'X'\n[[appointment_types]]\nid = 'x'\nname = 'Y'\n"
    )
    path = write(tmp_path, accounts={"salon": text})
    assert problems(path) == [
        f"{account_file(tmp_path)}:calendars[1].id: duplicate of calendars[0]",
        f"{account_file(tmp_path)}:appointment_types[1].id: duplicate of appointment_types[0]",
    ]


def test_bad_account_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, accounts={"-salon": ACCOUNT})
    assert keys(path) == [f"{account_file(tmp_path, '-salon')}:id"]


def test_id_key_must_match_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, accounts={"salon": 'id = "other"\n' + ACCOUNT})
    assert keys(path) == [f"{account_file(tmp_path)}:id"]
    path = write(tmp_path, accounts={"salon": 'id = "salon"\n' + ACCOUNT})
    assert problems(path) == []


def test_account_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, accounts={"salon": ACCOUNT + "plan = 'growing'\n"})
    [problem] = check(path)
    assert (problem.file, problem.key) == (account_file(tmp_path), "line 7")


def test_every_problem_in_every_file_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[queue]\nconcurrency = 0\n[relay]\ntransport = "smtp"\n',
        accounts={
            "good": ACCOUNT,
            "one": ACCOUNT.replace("growing", "gold") + "sender_domain = 'nowhere.example'\n",
            "two": ACCOUNT.replace("Europe/Paris", "Mars/Olympus") + "[notifications]\nx = 1\n",
            "three": "this is not toml\n",
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [f"{p.file}:{p.key}" for p in caught.value.problems] == [
        f"{path}:queue.concurrency",
        f"{path}:relay.transport",
        f"{account_file(tmp_path, 'one')}:plan",
        f"{account_file(tmp_path, 'three')}:line 1",
        f"{account_file(tmp_path, 'two')}:timezone",
        f"{account_file(tmp_path, 'two')}:notifications.x",
    ]
    assert str(caught.value).splitlines()[1] == (
        f"{path}:relay.transport: must be one of: maildir, smarthost, mx"
    )


def test_sender_domain_checked_once_settings_are_valid(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        sender("acuityscheduling.com"),
        accounts={"salon": ACCOUNT + "sender_domain = 'acuityscheduling.com'\n"},
    )
    assert load_config(path).accounts["salon"].sender_domain == "acuityscheduling.com"


# --- account.upsert jobs ---


def test_validate_account_for_a_job(tmp_path: Path) -> None:
    settings = load_config(None).settings
    data = {
        "business_name": 'Chez "Zoé" & Cie\'s',
        "owner_email": "zoe@example.com",
        "plan": "powerhouse",
        "timezone": "America/Montreal",
        "locale": "fr-ca",
        "country": "ca",
        "sender_domain": "localhost",
        "notifications": {"reminders": []},
    }
    account = validate_account(data, account_id="zoe", source="job 42", settings=settings)
    assert account.business_name == 'Chez "Zoé" & Cie\'s'
    assert (account.locale, account.country, account.language) == ("fr_CA", "CA", "fr")
    assert account.notifications.reminders == ()
    with pytest.raises(ConfigError) as caught:
        validate_account(
            {**data, "sender_domain": "x.example", "plan": 3},
            account_id="zoe",
            source="job 42",
            settings=settings,
        )
    assert [f"{p.file}:{p.key}" for p in caught.value.problems] == [
        "job 42:plan",
        "job 42:sender_domain",
    ]


def test_empty_lists_where_one_entry_is_needed(tmp_path: Path) -> None:
    path = write(tmp_path, "sender_domains = []\n", state=False)
    assert problems(path) == [f"{path}:sender_domains: must list at least one entry"]
    path = write(tmp_path, '[[sender_domains]]\ndomain = "a.example"\ndkim = []\n')
    assert problems(path) == [f"{path}:sender_domains[0].dkim: must list at least one entry"]


def test_an_sms_text_that_can_never_render_is_refused(tmp_path: Path) -> None:
    texts = {
        "syntax": "Rappel {{ date }",
        "filter": "Rappel {{ date|shout }}",
        "guarded": "Rappel{% if client %} {{ client|shout }}{% endif %}",
        "dunder": "{{ business.__class__ }}",
        "mutating": "{{ calendar.append(1) }}",
    }
    accounts = {
        name: ACCOUNT + f"verified = true\n[notifications.sms_reminder]\ntext = '{text}'\n"
        for name, text in texts.items()
    }
    path = write(tmp_path, accounts={**accounts, "fine": ACCOUNT})
    key = "notifications.sms_reminder.text"
    file = tmp_path / "accounts"
    assert problems(path) == [
        f"{file}/dunder.toml:{key}: line 1: the attribute '__class__' is never allowed"
        " (names starting with '_' are refused)",
        f"{file}/filter.toml:{key}: line 1: no filter named 'shout'",
        f"{file}/guarded.toml:{key}: line 1: no filter named 'shout'",
        f"{file}/mutating.toml:{key}: line 1: calling 'append' is never allowed"
        " (values cannot be changed)",
        f"{file}/syntax.toml:{key}: line 1: unexpected '}}'",
    ]
