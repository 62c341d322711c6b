"""Loading the configuration: the main file and every account file, checked all at once."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.account import Account
from gateway.bounce_matching import Rule
from gateway.bounce_rule_files import parse_rules, shipped_rules
from gateway.errors import ConfigError, ConfigProblem
from gateway.fields import ACCOUNT_ID_PATTERN
from gateway.settings import Settings
from gateway.validation_errors import FILE_WORDING, dotted

WHOLE_FILE = "(file)"
"""The key of problems about a file as a whole (missing, unreadable, not UTF-8)."""


@dataclass(frozen=True)
class Config:
    """A validated configuration: the main settings and the accounts found in files."""

    path: Path | None
    """The main file, or None for the embedded defaults."""
    settings: Settings
    accounts: Mapping[str, Account]
    account_files: Mapping[str, Path]
    sms_options: BaseModel
    """The [sms.<provider>] table, checked by the configured provider's plugin."""
    bounce_rules: tuple[Rule, ...] = field(default_factory=shipped_rules)
    """The administrator's rules ([bounces] rules_file), then the shipped ones."""


def load_config(path: Path | None) -> Config:
    """Read and validate the main file and its account files; ConfigError lists every problem."""
    if path is None:
        defaults = Settings()
        return Config(None, defaults, MappingProxyType({}), MappingProxyType({}), defaults.sms.file)
    problems: list[ConfigProblem] = []
    source = str(path)
    data = _read_toml(path, problems)
    base_dir = path.absolute().parent
    settings: Settings | None = None
    if data is not None:
        try:
            settings = Settings.model_validate(data, context={"base_dir": base_dir})
        except ValidationError as exc:
            problems.extend(_problems(source, exc))
    sms_options = _sms_options(source, settings, base_dir, problems) if settings else None
    rules_file = settings.bounces.rules_file if settings else None
    bounce_rules = _bounce_rules(rules_file, problems) if rules_file else shipped_rules()
    accounts: dict[str, Account] = {}
    account_files: dict[str, Path] = {}
    if data is not None:
        directory = settings.accounts.directory if settings else _accounts_dir(data, base_dir)
        explicit = isinstance(data.get("accounts"), dict) and "directory" in data["accounts"]
        if directory is not None:
            _load_accounts(directory, explicit, settings, accounts, account_files, problems)
    if problems:
        raise ConfigError(problems)
    assert settings is not None and sms_options is not None
    return Config(
        path,
        settings,
        MappingProxyType(accounts),
        MappingProxyType(account_files),
        sms_options,
        bounce_rules,
    )


def _bounce_rules(path: Path, problems: list[ConfigProblem]) -> tuple[Rule, ...]:
    """The administrator's rules before the shipped ones; their problems at FILE:KEY."""
    data = _read_toml(path, problems)
    if data is None:
        return shipped_rules()
    rules, found = parse_rules(data, str(path))
    problems.extend(found)
    return (*rules, *shipped_rules())


def _sms_options(
    source: str, settings: Settings, base_dir: Path, problems: list[ConfigProblem]
) -> BaseModel | None:
    """The configured SMS provider's own table, checked by its plugin (errors at sms.<name>.*)."""
    # Imported here: the plugins are found through entry points of the outbound side.
    from gateway.sms_provider import UnknownProvider, check_options, find_plugin

    name = settings.sms.provider
    try:
        plugin = find_plugin(name)
    except UnknownProvider as exc:
        problems.append(ConfigProblem(source, "sms.provider", str(exc)))
        return None
    try:
        options: BaseModel = check_options(plugin, settings.sms.options(name), base_dir)
        return options
    except ValidationError as exc:
        problems.extend(_problems(source, exc, prefix=("sms", name)))
        return None


def check(path: Path | None) -> list[ConfigProblem]:
    """Every problem of a configuration (empty when it loads)."""
    try:
        load_config(path)
    except ConfigError as exc:
        return exc.problems
    return []


def validate_account(
    data: Mapping[str, Any], *, account_id: str, source: str, settings: Settings
) -> Account:
    """Validate one account's data (a file's or an account.upsert job's); ConfigError if refused."""
    problems: list[ConfigProblem] = []
    account = _validate_account(data, account_id, source, settings, problems)
    if account is None:
        raise ConfigError(problems)
    return account


def _validate_account(
    data: Mapping[str, Any],
    account_id: str,
    source: str,
    settings: Settings | None,
    problems: list[ConfigProblem],
) -> Account | None:
    found: list[ConfigProblem] = []
    if not re.fullmatch(ACCOUNT_ID_PATTERN, account_id):
        found.append(
            ConfigProblem(
                source,
                "id",
                f"bad account id {account_id!r}: use letters, digits, '.', '_' and '-' "
                "(up to 128, starting with a letter or digit)",
            )
        )
    if "id" in data and data["id"] != account_id:
        found.append(
            ConfigProblem(source, "id", f"the account id is {account_id!r}; remove this key")
        )
    account: Account | None = None
    try:
        account = Account.model_validate({**data, "id": account_id})
    except ValidationError as exc:
        found.extend(p for p in _problems(source, exc) if p.key != "id")
    text = account.notifications.sms_reminder.text if account else None
    if text is not None:
        # Imported here: jinja2 is slow to import, and only accounts with their own
        # reminder text need it.
        from gateway.sandbox import TEXT_ENVIRONMENT, template_problems

        # Found now, not when the first reminder of the account is due.
        found.extend(
            ConfigProblem(source, "notifications.sms_reminder.text", str(problem))
            for problem in template_problems(TEXT_ENVIRONMENT, text)
        )
    domain = account.sender_domain if account else data.get("sender_domain")
    if settings is not None and isinstance(domain, str) and settings.sender_domain(domain) is None:
        known = ", ".join(d.domain for d in settings.sender_domains)
        found.append(
            ConfigProblem(
                source,
                "sender_domain",
                f"{domain!r} is not a configured sender domain (configured: {known})",
            )
        )
    problems.extend(found)
    return account if not found else None


def _load_accounts(
    directory: Path,
    explicit: bool,
    settings: Settings | None,
    accounts: dict[str, Account],
    account_files: dict[str, Path],
    problems: list[ConfigProblem],
) -> None:
    if not directory.is_dir():
        # the default folder may be absent (accounts can come from account.upsert jobs only)
        if explicit:
            problems.append(
                ConfigProblem(str(directory), WHOLE_FILE, "accounts directory not found")
            )
        return
    for file in sorted(directory.glob("*.toml")):
        # editors' hidden and backup files are not accounts
        if file.name.startswith("."):
            continue
        data = _read_toml(file, problems)
        if data is None:
            continue
        account = _validate_account(data, file.stem, str(file), settings, problems)
        if account is not None:
            accounts[account.id] = account
            account_files[account.id] = file


def _read_toml(path: Path, problems: list[ConfigProblem]) -> dict[str, Any] | None:
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        problems.append(ConfigProblem(source, WHOLE_FILE, "file not found"))
        return None
    except OSError as exc:
        problems.append(ConfigProblem(source, WHOLE_FILE, f"cannot read: {exc.strerror}"))
        return None
    except UnicodeDecodeError as exc:
        problems.append(ConfigProblem(source, WHOLE_FILE, f"not UTF-8 text (byte {exc.start})"))
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        # tomllib (3.11) gives the position only inside its message: "... (at line 3, column 7)"
        where = re.search(r"\(at line (\d+), column (\d+)\)$", message)
        if where:
            line, column = where.groups()
            message = f"{message[: where.start()].rstrip()} (column {column})"
            key = f"line {line}"
        else:
            key = f"line {text.count(chr(10)) + 1}"
            message = re.sub(r"\s*\(at end of document\)$", " (at the end of the file)", message)
        problems.append(ConfigProblem(source, key, f"TOML syntax error: {message}"))
        return None


def _accounts_dir(data: Mapping[str, Any], base_dir: Path) -> Path | None:
    # used when the main file is invalid, so that account files are still checked
    section = data.get("accounts", {})
    raw = section.get("directory", "accounts") if isinstance(section, dict) else None
    if not isinstance(raw, str) or not raw:
        return None
    return base_dir / Path(raw).expanduser()


def _problems(
    source: str, exc: ValidationError, prefix: tuple[str, ...] = ()
) -> list[ConfigProblem]:
    return [
        ConfigProblem(source, dotted((*prefix, *error["loc"])), FILE_WORDING.problem(error))
        for error in exc.errors()
    ]
