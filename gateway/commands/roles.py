"""The roles a `mailgw run` process can take (light: the command line lists them)."""

from __future__ import annotations

from typing import Literal

Role = Literal["all", "outbound", "inbound", "scheduler"]
ROLES: tuple[Role, ...] = ("all", "outbound", "inbound", "scheduler")
