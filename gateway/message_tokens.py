"""The random token naming one sent message: its Message-ID, bounce and unsubscribe addresses."""

from __future__ import annotations

import base64
import re
import secrets
from typing import Final

MESSAGE_TOKEN: Final = re.compile(r"[a-z2-7]{26}")


def new_token() -> str:
    """26 lower-case base32 characters (130 random bits): unguessable, fits any local
    part, and survives servers that lower-case addresses."""
    return base64.b32encode(secrets.token_bytes(17)).decode().rstrip("=").lower()[:26]
