"""Tests of template rendering: defaults in fr and en, overrides, sandbox, strict errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.notification_kinds import APPOINTMENT_KINDS, CATALOGUE, NOTIFICATION_KINDS
from outbound.context import build_context
from outbound.rendering import DEFAULTS, OutputOverLimit, Renderer, RenderError, locale_chain
from tests.test_context import ORDER, SUBSCRIPTION, appointment, atelier

ACCOUNT_ID = "atelier-elodie"


def job_context(kind: str) -> dict[str, Any]:
    if kind in APPOINTMENT_KINDS:
        return {"appointment": appointment(previous_start="2026-11-23T09:00:00Z")}
    if kind == "order":
        return {"order": ORDER, "product": "package"}
    return {"subscription": SUBSCRIPTION, "by": "client"}


def context(kind: str, **account: Any) -> dict[str, Any]:
    unsubscribe = "https://u.example.com/u/abc" if CATALOGUE[kind].list_unsubscribe else None
    return build_context(
        kind, atelier(**account), job_context(kind), None, unsubscribe_url=unsubscribe
    )


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(None)


@pytest.mark.parametrize("locale", ["fr", "en"])
@pytest.mark.parametrize("kind", NOTIFICATION_KINDS)
def test_every_kind_renders_in_both_languages(renderer: Renderer, kind: str, locale: str) -> None:
    for part in ("subject.txt", "txt", "html"):
        assert (DEFAULTS / locale / f"{kind}.{part}").is_file()
    rendered = renderer.render(kind, locale, context(kind, locale=locale), ACCOUNT_ID)
    assert rendered.subject
    assert "\n" not in rendered.subject and "\r" not in rendered.subject
    if kind == "follow_up":
        assert rendered.empty
        assert rendered.html is None
        return
    assert not rendered.empty
    assert "L'Atelier d'Élodie & Fils" in rendered.text
    assert rendered.html is not None
    assert "L&#39;Atelier d&#39;Élodie &amp; Fils" in rendered.html
    assert rendered.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in rendered.html


def test_french_confirmation_reads_as_written(renderer: Renderer) -> None:
    rendered = renderer.render("confirmation", "fr", context("confirmation"), ACCOUNT_ID)
    assert rendered.subject == (
        "Rendez-vous confirmé : Coupe femme, mardi 24 novembre 2026 à 14:30"
    )
    assert "Date : mardi 24 novembre 2026 à 14:30\n" in rendered.text
    assert "Avec : Élodie\n" in rendered.text
    assert "Lieu : 12 rue de la Paix, 75002 Paris\n" in rendered.text
    assert "Durée : 45\xa0min\n" in rendered.text
    assert "Annuler le rendez-vous : https://app.example.com/cancel?id=123456&t=x" in rendered.text
    assert rendered.html is not None
    assert 'href="https://app.example.com/cancel?id=123456&amp;t=x"' in rendered.html
    assert ">Déplacer</a>" in rendered.html
    assert "unsubscribe" not in rendered.text


def test_english_reminder_carries_the_unsubscribe_link(renderer: Renderer) -> None:
    rendered = renderer.render("reminder", "en", context("reminder", locale="en"), ACCOUNT_ID)
    assert rendered.subject == "Reminder: Coupe femme on Tuesday, November 24, 2026 at 2:30 PM"
    assert "https://u.example.com/u/abc" in rendered.text
    assert rendered.html is not None
    assert 'href="https://u.example.com/u/abc"' in rendered.html
    assert ">Cancel</a>" in rendered.html and ">Reschedule</a>" in rendered.html


def test_client_in_another_time_zone(renderer: Renderer) -> None:
    job = {"appointment": appointment(timezone="America/New_York")}
    values = build_context("confirmation", atelier(), job, None, unsubscribe_url=None)
    rendered = renderer.render("confirmation", "fr", values, ACCOUNT_ID)
    assert "mardi 24 novembre 2026 à 08:30 (heure de l\u2019Est nord-américain)" in rendered.text


@pytest.mark.parametrize("kind", ["confirmation", "reminder", "reschedule"])
def test_buttons_hidden_when_the_account_disables_them(renderer: Renderer, kind: str) -> None:
    rendered = renderer.render(
        kind, "fr", context(kind, show_cancel_reschedule_links=False), ACCOUNT_ID
    )
    assert "cancel?id" not in rendered.text
    assert rendered.html is not None and "cancel?id" not in rendered.html


def test_buttons_hidden_when_the_url_is_absent(renderer: Renderer) -> None:
    job = {"appointment": appointment(cancel_url=None)}
    values = build_context("confirmation", atelier(), job, None, unsubscribe_url=None)
    rendered = renderer.render("confirmation", "fr", values, ACCOUNT_ID)
    assert rendered.html is not None
    assert ">Annuler</a>" not in rendered.html and ">Déplacer</a>" in rendered.html


def test_business_name_is_escaped_in_html_only(renderer: Renderer) -> None:
    name = "<script>alert(1)</script> & Co"
    rendered = renderer.render(
        "confirmation", "en", context("confirmation", business_name=name), ACCOUNT_ID
    )
    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in rendered.html
    assert name in rendered.text


def test_subject_is_one_line(renderer: Renderer, tmp_path: Path) -> None:
    (tmp_path / ACCOUNT_ID / "fr").mkdir(parents=True)
    (tmp_path / ACCOUNT_ID / "fr" / "confirmation.subject.txt").write_text(
        "Hello\r\nBcc: x@example.com\n\t{{ appointment.type }}\x00\n"
    )
    rendered = Renderer(tmp_path).render("confirmation", "fr", context("confirmation"), ACCOUNT_ID)
    assert rendered.subject == "Hello Bcc: x@example.com Coupe femme"


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text, encoding="utf-8")


def test_account_and_service_wide_overrides(tmp_path: Path) -> None:
    write(tmp_path / "fr", "confirmation.subject.txt", "Service : {{ appointment.type }}")
    write(tmp_path / "fr", "confirmation.txt", "Texte du service")
    write(tmp_path / ACCOUNT_ID / "fr", "confirmation.txt", "Texte de {{ business.name }}")
    renderer = Renderer(tmp_path)
    mine = renderer.render("confirmation", "fr", context("confirmation"), ACCOUNT_ID)
    assert mine.subject == "Service : Coupe femme"
    assert mine.text == "Texte de L'Atelier d'Élodie & Fils"
    assert mine.html is not None and "Votre rendez-vous" in mine.html
    other = renderer.render("confirmation", "fr", context("confirmation"), "brooklyn-yoga")
    assert other.text == "Texte du service"
    # English has no override: the defaults apply.
    english = renderer.render("confirmation", "en", context("confirmation"), ACCOUNT_ID)
    assert english.subject.startswith("Confirmed: ")


def test_overrides_written_while_running_count_from_the_next_renderer(tmp_path: Path) -> None:
    renderer = Renderer(tmp_path)
    values = context("confirmation")
    assert renderer.render("confirmation", "fr", values, ACCOUNT_ID).subject.startswith("Rendez")
    write(tmp_path / "fr", "confirmation.subject.txt", "Un")
    write(tmp_path / ACCOUNT_ID / "fr", "confirmation.subject.txt", "Deux")
    # The renderer in force reads no files once it has them (the daemon makes a new one
    # on reload): the next one sees both overrides, the account's first.
    assert renderer.render("confirmation", "fr", values, ACCOUNT_ID).subject.startswith("Rendez")
    reloaded = Renderer(tmp_path)
    assert reloaded.render("confirmation", "fr", values, ACCOUNT_ID).subject == "Deux"
    assert reloaded.render("confirmation", "fr", values, "other").subject == "Un"


def test_locale_fallback(tmp_path: Path) -> None:
    assert locale_chain("fr_CA") == ("fr_CA", "fr", "en")
    assert locale_chain("en-gb") == ("en_GB", "en")
    renderer = Renderer(tmp_path)
    values = context("confirmation")
    assert renderer.render("confirmation", "fr_CA", values, ACCOUNT_ID).subject.startswith(
        "Rendez-vous confirmé"
    )
    assert renderer.render("confirmation", "de", values, ACCOUNT_ID).subject.startswith("Confirmed")
    write(tmp_path / ACCOUNT_ID / "fr_CA", "confirmation.subject.txt", "Québec")
    renderer = Renderer(tmp_path)
    assert renderer.render("confirmation", "fr_CA", values, ACCOUNT_ID).subject == "Québec"
    assert renderer.render("confirmation", "fr", values, ACCOUNT_ID).subject != "Québec"


def test_follow_up_override_is_sent_and_its_html_may_be_absent(tmp_path: Path) -> None:
    write(tmp_path / ACCOUNT_ID / "fr", "merci.subject.txt", "Merci {{ client.name }}")
    write(tmp_path / ACCOUNT_ID / "fr", "merci.txt", "{{ data.note }}")
    values = build_context(
        "follow_up",
        atelier(),
        {"appointment": appointment(), "note": "À bientôt !"},
        None,
        unsubscribe_url=None,
    )
    rendered = Renderer(tmp_path).render("merci", "fr", values, ACCOUNT_ID)
    assert rendered == type(rendered)("Merci Zoé Dupont", "À bientôt !", None)
    assert not rendered.empty


def test_empty_follow_up_renders_empty(renderer: Renderer) -> None:
    assert renderer.render("follow_up", "fr", context("follow_up"), ACCOUNT_ID).empty


def test_missing_template_is_a_render_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError) as refused:
        Renderer(tmp_path).render("nothing", "fr", context("confirmation"), ACCOUNT_ID)
    assert str(refused.value) == (
        "template nothing.subject.txt (service-wide override, default): not found"
    )


def test_undefined_variable_names_template_origin_and_line(tmp_path: Path) -> None:
    write(
        tmp_path / ACCOUNT_ID / "fr",
        "confirmation.html",
        "<p>\n{{ business.name }}\n\n{{ apointment.type }}</p>",
    )
    with pytest.raises(RenderError) as refused:
        Renderer(tmp_path).render("confirmation", "fr", context("confirmation"), ACCOUNT_ID)
    assert str(refused.value) == (
        "template confirmation.html (account override) line 4: 'apointment' is undefined"
    )
    assert refused.value.temporary is False


def test_error_in_a_layout_names_the_layout(tmp_path: Path) -> None:
    write(
        tmp_path / "fr",
        "base.html",
        '{% extends "layout.html" %}\n{% block footer %}\n{{ nope }}\n{% endblock %}',
    )
    with pytest.raises(RenderError) as refused:
        Renderer(tmp_path).render("confirmation", "fr", context("confirmation"), ACCOUNT_ID)
    assert (
        str(refused.value)
        == "template base.html (service-wide override) line 3: 'nope' is undefined"
    )


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    write(tmp_path / ACCOUNT_ID / "en", "reminder.txt", "Hello\n{% if %}\n")
    with pytest.raises(RenderError) as refused:
        Renderer(tmp_path).render("reminder", "en", context("reminder"), ACCOUNT_ID)
    assert str(refused.value).startswith("template reminder.txt (account override) line 2: ")


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__['os'] }}",
        "{{ (business.name).format.__globals__ }}",
        "{{ business.__class__ }}",
        "{{ business.update({'name': 'x'}) }}",
        "{{ '{0.__class__}'.format(business) }}",
        "{{ 9 ** 9999999 }}",
        "{{ 'a' * 100000000 }}",
        "{{ lipsum(100000) }}",
        "{% include '../../../etc/passwd' %}",
    ],
)
def test_sandbox_refuses_escapes(tmp_path: Path, source: str) -> None:
    write(tmp_path / ACCOUNT_ID / "fr", "confirmation.txt", f"avant\n{source}\n")
    with pytest.raises(RenderError) as refused:
        Renderer(tmp_path).render("confirmation", "fr", context("confirmation"), ACCOUNT_ID)
    assert str(refused.value).startswith("template confirmation.txt (account override)")


@pytest.mark.parametrize(
    ("kind", "account_id"), [("../x", ACCOUNT_ID), ("confirmation", "../x"), (".hidden", "a")]
)
def test_names_cannot_leave_the_templates_folder(
    renderer: Renderer, kind: str, account_id: str
) -> None:
    with pytest.raises(RenderError):
        renderer.render(kind, "fr", context("confirmation"), account_id)


def test_no_attribute_starting_with_an_underscore_is_reached(tmp_path: Path) -> None:
    """As `mailgw check-config` says (gateway/sandbox.py): even a key of that name is reached
    by subscript only."""
    write(tmp_path / ACCOUNT_ID / "fr", "merci.subject.txt", "{{ data['_id'] }}")
    write(tmp_path / ACCOUNT_ID / "fr", "merci.txt", "{{ data._id }}")
    values = build_context(
        "follow_up", atelier(), {"appointment": appointment(), "_id": "x1"}, None,
        unsubscribe_url=None,
    )  # fmt: skip
    renderer = Renderer(tmp_path)
    prefix = renderer.prefix("merci", "fr", ACCOUNT_ID)
    assert renderer.part(prefix, "merci", "subject.txt", values) == "x1"
    with pytest.raises(RenderError) as refused:
        renderer.part(prefix, "merci", "txt", values)
    assert str(refused.value) == (
        "template merci.txt (account override) line 1:"
        " access to attribute '_id' of 'dict' object is unsafe."
    )


def test_output_past_its_limit_stops_the_render(tmp_path: Path) -> None:
    write(tmp_path / ACCOUNT_ID / "fr", "merci.subject.txt", "{{ 'é' * 500 }}")
    # Ten billion characters, were it not stopped after the 1001st.
    loops = "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"
    write(tmp_path / ACCOUNT_ID / "fr", "merci.txt", loops)
    renderer = Renderer(tmp_path)
    prefix = renderer.prefix("merci", "fr", ACCOUNT_ID)
    values = context("follow_up")
    # Counted in UTF-8 bytes: 500 'é' are 1000 of them.
    assert renderer.part(prefix, "merci", "subject.txt", values, max_output=1000) == "é" * 500
    with pytest.raises(OutputOverLimit):
        renderer.part(prefix, "merci", "subject.txt", values, max_output=999)
    with pytest.raises(OutputOverLimit):
        renderer.part(prefix, "merci", "txt", values, max_output=1000)
