"""The override files under templates.directory, and the templates the accounts' follow-ups
name, checked before they are used."""

from __future__ import annotations

from pathlib import Path

from gateway.config import WHOLE_FILE, Config
from gateway.errors import ConfigProblem
from gateway.sandbox import template_problems
from outbound.rendering import Renderer, locale_chain

# What the templates are written in; other files there (notes, backups) are not templates.
TEMPLATE_SUFFIXES = (".txt", ".html")


def override_problems(templates_dir: Path) -> list[ConfigProblem]:
    """What stops each `.txt` and `.html` file of the folder from ever rendering, as
    `FILE:line N: problem` (nothing for a folder that does not exist)."""
    if not templates_dir.is_dir():
        return []
    environment = Renderer(templates_dir).environment
    problems: list[ConfigProblem] = []
    for path in sorted(templates_dir.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(templates_dir).parts)
        if hidden or path.suffix not in TEMPLATE_SUFFIXES or not path.is_file():
            continue
        try:
            source = path.read_bytes().decode("utf-8")
        except OSError as exc:
            problems.append(ConfigProblem(str(path), WHOLE_FILE, f"cannot read: {exc.strerror}"))
            continue
        except UnicodeDecodeError as exc:
            problems.append(
                ConfigProblem(str(path), WHOLE_FILE, f"not UTF-8 text (byte {exc.start})")
            )
            continue
        problems.extend(
            ConfigProblem(str(path), WHOLE_FILE if p.line is None else f"line {p.line}", p.problem)
            for p in template_problems(environment, source)
        )
    return problems


def follow_up_problems(config: Config) -> list[ConfigProblem]:
    """Each follow-up of an account file naming a template found nowhere: neither in the
    account's folder nor service-wide (nor among the defaults), in the account's locales."""
    folder = config.settings.templates.directory
    renderer = Renderer(folder)
    problems: list[ConfigProblem] = []
    for account_id, account in config.accounts.items():
        for index, follow_up in enumerate(account.notifications.follow_ups):
            if follow_up.template is None:
                continue
            missing = renderer.missing(follow_up.template, account.locale, account_id)
            if missing:
                problems.append(
                    ConfigProblem(
                        str(config.account_files[account_id]),
                        f"notifications.follow_ups[{index}].template",
                        f"no template {follow_up.template!r}: {' and '.join(missing)} found "
                        f"neither in {folder / account_id}/ nor in {folder}/ (locales "
                        f"{', '.join(locale_chain(account.locale))})",
                    )
                )
    return problems
