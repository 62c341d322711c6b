"""Text that reaches a mail header (names, subjects): one line, no control characters."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Final

from pydantic import AfterValidator

# Control characters (C0 with TAB, CR and LF; DEL; C1 with NEL U+0085) and the line and
# paragraph separators: in a header each either ends the line, which lets a crafted value
# add a header, or is shown as a break or not at all. Such text is refused where it comes
# in, with its field named, rather than altered on the way out.
_REFUSED: Final = frozenset({"Cc", "Zl", "Zp"})
_NAMES: Final = {"\t": "TAB", "\n": "LF", "\r": "CR", "\0": "NUL", "\x85": "NEL"}


def header_text_problem(text: str) -> str | None:
    """Why `text` may not reach a header, or None when it may."""
    # isprintable() is False for every refused character (and for some others, such as
    # U+00A0): the usual name or subject is answered without looking at each character.
    if text.isprintable():
        return None
    bad = sorted({char for char in text if unicodedata.category(char) in _REFUSED})
    if not bad:
        return None
    shown = ", ".join(_NAMES.get(char, f"U+{ord(char):04X}") for char in bad)
    return f"must be on one line: control characters are not allowed ({shown})"


def one_line(text: str) -> str:
    """`text` with each character header_text_problem refuses made a space: for text the
    gateway cannot refuse, such as the name in a client's reply it forwards."""
    if text.isprintable():
        return text
    return "".join(" " if unicodedata.category(char) in _REFUSED else char for char in text)


def _checked(text: str) -> str:
    problem = header_text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text


HeaderText = Annotated[str, AfterValidator(_checked)]
"""A string that may reach a header: refused, with its field named, if it is not one line."""
