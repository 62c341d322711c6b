"""SMS length rules: GSM-7 or UCS-2, units, parts, and how a long text is split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outbound.sms.segments import (
    MAX_CHARACTERS,
    Segments,
    TextTooLong,
    check_length,
    count,
    encoding_of,
    gsm7_bytes,
    split,
)

BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = "^{}\\[~]|€\f"
EMOJI = "\N{GRINNING FACE}"


def test_the_basic_table_is_gsm7_one_septet_each() -> None:
    assert len(BASIC) == 127
    assert count(BASIC) == Segments("gsm7", 127, 1)


@pytest.mark.parametrize("char", EXTENSION)
def test_every_extension_character_counts_two(char: str) -> None:
    assert count("a" + char) == Segments("gsm7", 3, 1)
    assert count(char * 80) == Segments("gsm7", 160, 1)
    assert count(char * 81).parts == 2


@pytest.mark.parametrize(
    "char", ["ç", "ê", "â", "\N{RIGHT SINGLE QUOTATION MARK}", EMOJI, "\u00a0", "`", "\x1b"]
)
def test_one_character_outside_gsm7_makes_the_whole_text_ucs2(char: str) -> None:
    assert encoding_of("Bonjour" + char) == "ucs2"
    assert count("a" * 69 + char).encoding == "ucs2"


def test_empty_text() -> None:
    assert count("") == Segments("gsm7", 0, 0)
    assert split("") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, Segments("gsm7", 160, 1)),
        ("a" * 161, Segments("gsm7", 161, 2)),
        ("a" * 153 * 2, Segments("gsm7", 306, 2)),
        ("a" * (153 * 2 + 1), Segments("gsm7", 307, 3)),
        ("a" * 158 + "€", Segments("gsm7", 160, 1)),
        ("a" * 159 + "€", Segments("gsm7", 161, 2)),
        ("é" * 160, Segments("gsm7", 160, 1)),
        ("ê" * 70, Segments("ucs2", 70, 1)),
        ("ê" * 71, Segments("ucs2", 71, 2)),
        ("ê" * 67 * 2, Segments("ucs2", 134, 2)),
        ("ê" * (67 * 2 + 1), Segments("ucs2", 135, 3)),
        ("ê" * 68 + EMOJI, Segments("ucs2", 70, 1)),
    ],
)
def test_boundaries(text: str, expected: Segments) -> None:
    assert count(text) == expected


def test_an_extension_character_is_never_split_from_its_escape() -> None:
    # 152 septets, then a 2-septet character: part one ends before it (152 septets).
    text = "a" * 152 + "€" + "b" * 152
    assert count(text) == Segments("gsm7", 306, 3)
    assert split(text) == ["a" * 152, "€" + "b" * 151, "b"]


def test_an_extension_character_that_ends_a_part_exactly() -> None:
    text = "a" * 151 + "€" + "b" * 153
    assert count(text) == Segments("gsm7", 306, 2)
    assert split(text) == ["a" * 151 + "€", "b" * 153]


def test_a_surrogate_pair_is_never_split() -> None:
    text = "ê" * 66 + EMOJI + "ê" * 66
    assert count(text) == Segments("ucs2", 134, 3)
    assert split(text) == ["ê" * 66, EMOJI + "ê" * 65, "ê"]
    exact = "ê" * 65 + EMOJI + "ê" * 67
    assert split(exact) == ["ê" * 65 + EMOJI, "ê" * 67]


def test_a_text_that_fits_one_part_is_not_split() -> None:
    assert split("a" * 160) == ["a" * 160]
    assert split("ê" * 70) == ["ê" * 70]


def test_check_length_allows_1600_characters() -> None:
    assert check_length("a" * MAX_CHARACTERS) == Segments("gsm7", 1600, 11)
    assert check_length("€" * MAX_CHARACTERS).units == 3200


def test_check_length_refuses_1601_characters() -> None:
    with pytest.raises(TextTooLong, match="1601 characters; a text message has at most 1600"):
        check_length("a" * (MAX_CHARACTERS + 1))


def test_gsm7_bytes_are_unpacked_septets() -> None:
    assert gsm7_bytes(BASIC) == bytes(code for code in range(128) if code != 0x1B)
    assert gsm7_bytes("A€^{}\\[~]|\f") == bytes.fromhex(
        "41 1b65 1b14 1b28 1b29 1b2f 1b3c 1b3d 1b3e 1b40 1b0a"
    )


def test_gsm7_bytes_refuses_other_characters() -> None:
    with pytest.raises(ValueError, match=r"not GSM 03\.38 characters: 'çê'"):
        gsm7_bytes("ça et ê")


GSM_TEXT = st.text(alphabet=BASIC + EXTENSION, max_size=MAX_CHARACTERS)
ANY_TEXT = st.text(
    alphabet=st.sampled_from(
        [*"aé€{ê", "\N{RIGHT SINGLE QUOTATION MARK}", EMOJI, "\N{PILE OF POO}"]
    )
    | st.characters(),
    max_size=MAX_CHARACTERS,
)


LIMITS = {"gsm7": 153, "ucs2": 67}


def units(part: str, encoding: str) -> int:
    """A part's length in the whole message's encoding, counted apart from count()."""
    if encoding == "gsm7":
        return len(gsm7_bytes(part))
    return len(part.encode("utf-16-le", "surrogatepass")) // 2


@given(st.one_of(GSM_TEXT, ANY_TEXT))
def test_split_rejoins_and_each_part_fits(text: str) -> None:
    parts = split(text)
    segments = count(text)
    assert "".join(parts) == text
    assert len(parts) == segments.parts
    if len(parts) > 1:
        assert all(units(part, segments.encoding) <= LIMITS[segments.encoding] for part in parts)


@given(GSM_TEXT)
def test_gsm7_units_are_the_septets_sent(text: str) -> None:
    assert count(text).units == len(gsm7_bytes(text))
