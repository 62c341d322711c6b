"""What is wrong with an owner's template before it runs: the pure check, and `mailgw
check-config` refusing override files with FILE:line N: problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sandbox import TEXT_ENVIRONMENT, template_problems
from outbound.rendering import DEFAULTS, Renderer
from tests.test_daemon import mailgw, write_config

NEVER = "is never allowed (names starting with '_' are refused)"


def found(source: str) -> list[str]:
    return [str(p) for p in template_problems(TEXT_ENVIRONMENT, source)]


@pytest.mark.parametrize(
    ("source", "problems"),
    [
        ("Bonjour {{ client }}, à {{ time }}.", []),
        ("{{ date|upper }} {{ '%s' % time }} {{ '{:>3}'.format(time) }}", []),
        ("{{ client }\n", ["line 1: unexpected '}'"]),
        (
            "{% for x in y %}\n{{ x }}\n",
            [
                "line 2: Unexpected end of template. Jinja was looking for the following tags:"
                " 'endfor' or 'else'. The innermost block that needs to be closed is 'for'."
            ],
        ),
        ("\n{{ client|shout }}", ["line 2: no filter named 'shout'"]),
        ("{% if client %}\n{{ client|shout }}{% endif %}", ["line 2: no filter named 'shout'"]),
        ("{% if client is loud %}x{% endif %}", ["line 1: no test named 'loud'"]),
        (
            "{{ client.__class__.__mro__ }}",
            [
                "line 1: the attribute '__class__' is never allowed"
                " (names starting with '_' are refused)",
                "line 1: the attribute '__mro__' is never allowed"
                " (names starting with '_' are refused)",
            ],
        ),
        # A key of that name is reached by subscript.
        ("{{ data['_id'] }}", []),
        (
            "{{ data._id }}",
            [f"line 1: the attribute '_id' {NEVER}"],
        ),
        (
            "{{ range(3)|list|attr('__len__') }}",
            [f"line 1: the attribute '__len__' {NEVER}"],
        ),
        (
            "{% set d = {} %}{{ d.update(a=1) }}{{ d.items() }}",
            ["line 1: calling 'update' is never allowed (values cannot be changed)"],
        ),
    ],
)
def test_problems_found_before_running(source: str, problems: list[str]) -> None:
    assert found(source) == problems


def test_the_default_templates_have_none() -> None:
    environment = Renderer(None).environment
    files = sorted(DEFAULTS.rglob("*.*"))
    assert len(files) > 60
    for path in files:
        assert template_problems(environment, path.read_text(encoding="utf-8")) == [], path


def test_check_config_refuses_override_files_naming_file_and_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, None)
    own = tmp_path / "templates" / "salon" / "fr"
    shared = tmp_path / "templates" / "en"
    for folder in (own, shared):
        folder.mkdir(parents=True)
    (own / "reminder.html").write_text("<p>\n{{ appointment.date|shout }}</p>\n")
    (own / "reminder.txt").write_text("{{ client.name.__class__ }}\n")
    (own / "confirmation.txt").write_text("{% if x %}\n")
    # An account's filters come from the gateway: date, time and datetime exist.
    (own / "confirmation.subject.txt").write_text("{{ appointment.start_iso|date('short') }}\n")
    (shared / "footer.txt").write_text("{{ unsubscribe_url|loud }}\n")
    result = mailgw(config, "check-config")
    assert result.returncode == 1, result.stdout
    assert sorted(result.stderr.splitlines()) == [
        f"{shared / 'footer.txt'}:line 1: no filter named 'loud'",
        f"{own / 'confirmation.txt'}:line 1: Unexpected end of template. Jinja was looking"
        " for the following tags: 'elif' or 'else' or 'endif'. The innermost block that needs"
        " to be closed is 'if'.",
        f"{own / 'reminder.html'}:line 2: no filter named 'shout'",
        f"{own / 'reminder.txt'}:line 1: the attribute '__class__' is never allowed"
        " (names starting with '_' are refused)",
    ]

    for path in (own / "reminder.html", own / "reminder.txt", own / "confirmation.txt"):
        path.unlink()
    (shared / "footer.txt").write_text("{{ unsubscribe_url }}\n")
    result = mailgw(config, "check-config")
    assert result.returncode == 0, result.stderr
