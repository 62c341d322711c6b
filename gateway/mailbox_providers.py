"""Which big mailbox provider a recipient's domain belongs to, for the metrics' `provider`
label (pure): a small fixed mapping, everything else "other", so that the label's values
stay few (never a domain, never an address)."""

from __future__ import annotations

import re
from typing import Final

# Exact domains, and patterns for the providers' many country domains (hotmail.fr,
# yahoo.co.uk, gmx.de, ...).
_DOMAINS: Final[dict[str, str]] = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "outlook.com": "microsoft",
    "msn.com": "microsoft",
    "aol.com": "yahoo",
    "ymail.com": "yahoo",
    "icloud.com": "apple",
    "me.com": "apple",
    "mac.com": "apple",
    "orange.fr": "orange",
    "wanadoo.fr": "orange",
    "free.fr": "free",
    "sfr.fr": "sfr",
    "neuf.fr": "sfr",
    "laposte.net": "laposte",
    "web.de": "gmx",
}
_COUNTRY_DOMAINS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"(hotmail|live)(\.[a-z]{2,3}){1,2}"), "microsoft"),
    (re.compile(r"yahoo(\.[a-z]{2,3}){1,2}"), "yahoo"),
    (re.compile(r"gmx(\.[a-z]{2,3}){1,2}"), "gmx"),
)
PROVIDERS: Final[tuple[str, ...]] = (
    "google", "microsoft", "yahoo", "apple", "orange", "free", "sfr", "laposte", "gmx", "other",
)  # fmt: skip


def provider(address: str) -> str:
    """The provider of `address` (or of a bare domain), "other" when it is none of the big ones."""
    domain = address.rpartition("@")[2].strip().lower().rstrip(".")
    if domain in _DOMAINS:
        return _DOMAINS[domain]
    for pattern, name in _COUNTRY_DOMAINS:
        if pattern.fullmatch(domain):
            return name
    return "other"
