"""Notification templates rendered in a sandbox: account, service-wide and default templates."""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

from jinja2 import (
    BaseLoader,
    Environment,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context

from gateway.errors import PermanentFailure
from gateway.sandbox import OwnerSandbox
from outbound.context import format_date, format_datetime, format_time

DEFAULTS: Final = Path(__file__).with_name("templates")
FALLBACK_LOCALE: Final = "en"
# What one notification is made of: its subject, text and HTML templates (the last optional).
PARTS: Final = ("subject.txt", "txt", "html")
OPTIONAL_PART: Final = "html"

# No separator and no leading dot: a name from a template or a job can never leave its folder.
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_LOCALE = re.compile(r"([A-Za-z]{2,3})(?:[-_]([A-Za-z0-9]{2,8}))?")
_SHARED_SCOPE: Final = "_"
_CACHE_SIZE: Final = 2000
# Bounds on what a template may compute: enough for any message, too little to exhaust memory.
_MAX_EXPONENT: Final = 64
_MAX_REPEAT: Final = 100_000
_MAX_PROBLEM: Final = 300

ACCOUNT_OVERRIDE: Final = "account override"
SERVICE_OVERRIDE: Final = "service-wide override"
DEFAULT: Final = "default"


class RenderError(PermanentFailure):
    """A template that cannot be rendered: which one, from where, at which line, and why."""

    def __init__(self, template: str, origin: str, line: int | None, problem: str) -> None:
        self.template = template
        self.origin = origin
        self.line = line
        self.problem = problem
        where = f" line {line}" if line is not None else ""
        super().__init__(f"template {template} ({origin}){where}: {problem}")

    def __reduce__(self) -> tuple[type[RenderError], tuple[str, str, int | None, str]]:
        # Raised in the render pool's processes and sent back to the daemon.
        return RenderError, (self.template, self.origin, self.line, self.problem)


class OutputOverLimit(Exception):
    """A render stopped as its output went past the limit it was given."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notification rendered: a one-line subject, the text body and the HTML body if any."""

    subject: str
    text: str
    html: str | None

    @property
    def empty(self) -> bool:
        """Nothing to say (a follow-up whose template renders empty is not sent)."""
        return not self.text.strip() and not (self.html or "").strip()

    @classmethod
    def of(cls, subject: str | None, text: str | None, html: str | None) -> Rendered:
        """The parts as `Renderer.part` gives them, the subject made one printable line."""
        subject = "".join(c for c in subject or "" if c.isprintable() or c.isspace())
        return cls(
            subject=" ".join(subject.split()),
            text=text or "",
            html=html if html is not None and html.strip() else None,
        )


def locale_chain(locale: str) -> tuple[str, ...]:
    """Where templates are looked for, most specific first: fr_CA, then fr, then en."""
    match = _LOCALE.fullmatch(locale)
    if match is None:
        raise ValueError(f"not a locale: {locale!r}")
    language, region = match.group(1).lower(), match.group(2)
    chain = [f"{language}_{region.upper()}"] if region else []
    chain += [language, FALLBACK_LOCALE]
    return tuple(dict.fromkeys(chain))


@dataclass(frozen=True, slots=True)
class _Origin:
    file: str
    label: str


class _Loader(BaseLoader):
    """Finds `<scope>/<locale>/<file>`: account folder, service-wide folder, package defaults.

    The scope is the account id when the account has its own folder, else `_`, so that the
    compiled defaults are shared by every account without overrides.
    """

    def __init__(self, templates_dir: Path | None) -> None:
        self.templates_dir = templates_dir
        # Compiled code names its template by file path; errors are reported by file and origin.
        self.origins: dict[str, _Origin] = {}

    def candidates(self, scope: str, locale: str, file: str) -> list[tuple[Path, str]]:
        found: list[tuple[Path, str]] = []
        for name in locale_chain(locale):
            if self.templates_dir is not None:
                if scope != _SHARED_SCOPE:
                    found.append((self.templates_dir / scope / name / file, ACCOUNT_OVERRIDE))
                found.append((self.templates_dir / name / file, SERVICE_OVERRIDE))
            found.append((DEFAULTS / name / file, DEFAULT))
        # Files shared by every locale (the HTML layout) live at the root of the defaults.
        found.append((DEFAULTS / file, DEFAULT))
        return found

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, None]:
        scope, locale, file = template.split("/", 2)
        if not _FILE.fullmatch(file):
            raise TemplateNotFound(template)
        for path, label in self.candidates(scope, locale, file):
            try:
                source = path.read_text(encoding="utf-8")
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            self.origins[str(path)] = _Origin(file, label)
            # Never checked again: a Renderer is made anew when the daemon reloads.
            return source, str(path), None
        raise TemplateNotFound(template)


class _Environment(OwnerSandbox):
    intercepted_binops = frozenset({"*", "**"})

    def join_path(self, template: str, parent: str) -> str:
        # `{% extends "layout.html" %}` means the layout of the same account and locale.
        scope, locale, _ = parent.split("/", 2)
        return f"{scope}/{locale}/{template}"

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise SecurityError(f"exponent larger than {_MAX_EXPONENT}")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > _MAX_REPEAT
                ):
                    raise SecurityError(f"repetition longer than {_MAX_REPEAT}")
        return super().call_binop(context, operator, left, right)


def _zone(context: Context) -> ZoneInfo:
    return ZoneInfo(str(context.get("timezone", "UTC")))


@pass_context
def _date_filter(context: Context, value: str, format: str = "full") -> str:
    return format_date(datetime.fromisoformat(value), _zone(context), context["locale"], format)


@pass_context
def _time_filter(context: Context, value: str, format: str = "short") -> str:
    return format_time(datetime.fromisoformat(value), _zone(context), context["locale"], format)


@pass_context
def _datetime_filter(context: Context, value: str) -> str:
    return format_datetime(datetime.fromisoformat(value), _zone(context), context["locale"])


class Renderer:
    """Renders notifications; compiled templates are cached and shared across accounts."""

    def __init__(self, templates_dir: Path | None) -> None:
        self.templates_dir = templates_dir
        self._loader = _Loader(templates_dir)
        # Accounts with their own folder, listed once (new ones count from the next reload).
        self._account_dirs = (
            {p.name for p in templates_dir.iterdir() if p.is_dir()}
            if templates_dir is not None and templates_dir.is_dir()
            else set()
        )
        self._env = _Environment(
            loader=self._loader,
            undefined=StrictUndefined,
            autoescape=lambda name: name is not None and name.endswith(".html"),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            cache_size=_CACHE_SIZE,
            # No file checks on every render: templates are read again on reload (SIGHUP).
            auto_reload=False,
        )
        # lipsum() can produce text of any size; the other default globals are bounded.
        del self._env.globals["lipsum"]
        self._env.filters.update(date=_date_filter, time=_time_filter, datetime=_datetime_filter)

    @property
    def environment(self) -> Environment:
        """The sandbox templates run in (what `mailgw check-config` checks them against)."""
        return self._env

    def has_own_templates(self, account_id: str) -> bool:
        """Whether the account has its own folder of templates (as the Renderer was made)."""
        return account_id in self._account_dirs

    def render(
        self, kind: str, locale: str, context: Mapping[str, Any], account_id: str
    ) -> Rendered:
        """Subject, text and HTML of `kind` for that account; RenderError if any part fails."""
        prefix = self.prefix(kind, locale, account_id)
        values = dict(context)
        return Rendered.of(*(self.part(prefix, kind, part, values) for part in PARTS))

    def prefix(self, kind: str, locale: str, account_id: str) -> str:
        """Where `kind` is looked for, for that account in that locale; RenderError if any of
        the three names is not one."""
        if not _FILE.fullmatch(kind):
            raise RenderError(kind, DEFAULT, None, "not a template name")
        if not _ACCOUNT.fullmatch(account_id):
            raise RenderError(kind, DEFAULT, None, f"not an account id: {account_id!r}")
        try:
            chain = locale_chain(locale)
        except ValueError as exc:
            raise RenderError(kind, DEFAULT, None, str(exc)) from None
        return f"{self._scope(account_id)}/{chain[0]}/"

    def part(
        self,
        prefix: str,
        kind: str,
        part: str,
        values: Mapping[str, Any],
        max_output: int | None = None,
    ) -> str | None:
        """One of PARTS rendered: None for an HTML template that does not exist, RenderError
        for a subject or text that does not (or any that fails). With `max_output`, the
        render stops with OutputOverLimit once it has written more bytes (UTF-8) than that."""
        file = f"{kind}.{part}"
        text = self._render(prefix, file, values, max_output)
        if text is None and part != OPTIONAL_PART:
            raise RenderError(file, self._searched(prefix), None, "not found")
        return text

    def missing(self, kind: str, locale: str, account_id: str) -> list[str]:
        """The files `kind` cannot render without (its subject and text) that are found
        nowhere for that account in that locale: neither in the account's folder, nor
        service-wide, nor among the defaults."""
        return [
            file
            for file in (f"{kind}.{part}" for part in PARTS if part != OPTIONAL_PART)
            if not any(
                path.is_file() for path, _ in self._loader.candidates(account_id, locale, file)
            )
        ]

    def _searched(self, prefix: str) -> str:
        labels = [DEFAULT]
        if self.templates_dir is not None:
            labels.insert(0, SERVICE_OVERRIDE)
            if not prefix.startswith(f"{_SHARED_SCOPE}/"):
                labels.insert(0, ACCOUNT_OVERRIDE)
        return ", ".join(labels)

    def _scope(self, account_id: str) -> str:
        return account_id if account_id in self._account_dirs else _SHARED_SCOPE

    def _render(
        self, prefix: str, file: str, values: Mapping[str, Any], max_output: int | None
    ) -> str | None:
        """The rendered template, or None if there is no such template."""
        name = prefix + file
        try:
            template = self._env.get_template(name)
            if max_output is None:
                return template.render(values)
            return bounded(template.generate(values), max_output)
        except (OutputOverLimit, MemoryError):
            # Limits of the render pool's processes: the pool says which one was reached.
            raise
        except TemplateNotFound as exc:
            if exc.name == name:
                return None
            missing = str(exc.name).rsplit("/", 1)[-1]
            raise self._error(file, exc, f"{missing} not found") from None
        except Exception as exc:
            raise self._error(file, exc, _problem(exc)) from None

    def _error(self, file: str, exc: Exception, problem: str) -> RenderError:
        origin, line = None, None
        # Jinja rewrites the traceback so that template frames carry the template's file and
        # line; the innermost one is where the problem is (perhaps in the layout, not `file`).
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            found = self._loader.origins.get(frame.f_code.co_filename)
            if found is not None:
                origin, line = found, lineno
        if isinstance(exc, TemplateSyntaxError):
            found = self._loader.origins.get(exc.filename or "")
            origin, line = found or origin, exc.lineno
        if origin is None:
            return RenderError(file, DEFAULT, line, problem)
        return RenderError(origin.file, origin.label, line, problem)


def bounded(chunks: Iterator[str], max_output: int) -> str:
    """The chunks joined, or OutputOverLimit as soon as they pass `max_output` bytes."""
    written: list[str] = []
    size = 0
    for chunk in chunks:
        # isascii() is O(1): only text with other characters is encoded to be measured.
        size += len(chunk) if chunk.isascii() else len(chunk.encode("utf-8", "surrogatepass"))
        if size > max_output:
            raise OutputOverLimit
        written.append(chunk)
    return "".join(written)


def _problem(exc: Exception) -> str:
    if isinstance(exc, UndefinedError | SecurityError | TemplateSyntaxError):
        text = exc.message or str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_PROBLEM else text[: _MAX_PROBLEM - 3] + "..."
