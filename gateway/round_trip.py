"""One Redis round trip shared by several stores, each reading back its own replies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar

T = TypeVar("T")

ReplyReader: TypeAlias = Callable[[Sequence[Any]], T]
"""What a store queued on a shared pipeline made of, given the pipeline's replies: each
store knows where its commands were queued (len(pipe) before it queued them)."""
