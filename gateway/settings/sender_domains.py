"""[[sender_domains]]: the domains mail is sent from, and their DKIM keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from gateway.settings.files import ReadableFile
from gateway.settings.types import MODEL_CONFIG, DnsName, not_empty
from gateway.validation_errors import invalid, repeats


class DkimSelector(BaseModel):
    """One DKIM key of a sender domain."""

    model_config = MODEL_CONFIG

    selector: DnsName = Field(
        description="Selector: the DNS record is <selector>._domainkey.<domain>."
    )
    algorithm: Literal["rsa", "ed25519"] = Field("rsa", description="Key type: rsa or ed25519.")
    key_file: ReadableFile | None = Field(
        None,
        description=(
            "Private key (PEM). Omitted: <state_dir>/dkim/<domain>/<selector>.key, generated on "
            "first run. When given, the file must exist and be readable."
        ),
    )


class SenderDomain(BaseModel):
    """A domain mail is sent from (scheduling@<domain>), DKIM-signed with its own keys."""

    model_config = MODEL_CONFIG

    domain: DnsName = Field(description="The domain, e.g. acuityscheduling.com.")
    default: bool = Field(
        False,
        description="Domain of accounts that name none; at most one (none marked: the first).",
    )
    dkim: Annotated[tuple[DkimSelector, ...], AfterValidator(not_empty)] = Field(
        strict=False, description="DKIM keys; every message is signed with each."
    )

    @model_validator(mode="after")
    def _unique_selectors(self) -> SenderDomain:
        errors = repeats("dkim", "selector", (key.selector for key in self.dkim))
        if errors:
            raise invalid("SenderDomain", errors)
        return self


def embedded_sender_domains() -> tuple[SenderDomain, ...]:
    """The default: "localhost", with an RSA and an Ed25519 key generated on first run."""
    return (
        SenderDomain(
            domain="localhost",
            dkim=(
                DkimSelector(selector="mailgw-rsa", algorithm="rsa"),
                DkimSelector(selector="mailgw-ed25519", algorithm="ed25519"),
            ),
        ),
    )


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM key with its location resolved; `generate` when the gateway may create it."""

    domain: str
    selector: str
    algorithm: Literal["rsa", "ed25519"]
    path: Path
    generate: bool
