"""The main configuration file (mailgw.toml) as a whole: its sections, checks across them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field, model_validator

from gateway.settings.accounts import AccountsSettings
from gateway.settings.bounces import BouncesSettings
from gateway.settings.deadlines import DeadlinesSettings
from gateway.settings.files import ConfigPath, default_state_dir
from gateway.settings.inbound import InboundSettings
from gateway.settings.log import LogSettings
from gateway.settings.metrics import MetricsSettings
from gateway.settings.queue import QueueSettings
from gateway.settings.redis import RedisSettings
from gateway.settings.relay import RelaySettings
from gateway.settings.reply_tokens import ReplyTokensSettings
from gateway.settings.restart import RestartOnly
from gateway.settings.sender_domains import DkimKey, SenderDomain, embedded_sender_domains
from gateway.settings.sms import SmsSettings
from gateway.settings.suppression import SuppressionSettings
from gateway.settings.templates import TemplatesSettings
from gateway.settings.types import MODEL_CONFIG, not_empty
from gateway.validation_errors import Loc, invalid


def _with_default(section: Any, table: str, key: str, value: str) -> Any:
    if section is None:
        return {table: {key: value}}
    if not isinstance(section, Mapping):
        return section
    inner = section.get(table)
    if inner is None:
        return {**section, table: {key: value}}
    if isinstance(inner, Mapping) and key not in inner:
        return {**section, table: {**inner, key: value}}
    return section


class Settings(BaseModel):
    """The main configuration file (mailgw.toml)."""

    model_config = MODEL_CONFIG

    state_dir: Annotated[ConfigPath, RestartOnly] = Field(
        default_factory=default_state_dir,
        validate_default=True,
        description=(
            "Where the gateway keeps its data (embedded Redis, generated DKIM keys, maildir). "
            "Default: $STATE_DIRECTORY (set by systemd), else ~/.local/state/mailgw."
        ),
    )
    log: LogSettings = Field(default_factory=LogSettings)
    # Restart-only: the metrics endpoint listens once; Redis is connected and the queue's
    # workers are started once; the SMS provider is made once, with its options and the
    # webhook's URL, and listens once.
    metrics: Annotated[MetricsSettings, RestartOnly] = Field(default_factory=MetricsSettings)
    redis: Annotated[RedisSettings, RestartOnly] = Field(default_factory=RedisSettings)
    queue: Annotated[QueueSettings, RestartOnly] = Field(default_factory=QueueSettings)
    accounts: AccountsSettings = Field(default_factory=AccountsSettings)
    templates: TemplatesSettings = Field(default_factory=TemplatesSettings)
    sender_domains: Annotated[tuple[SenderDomain, ...], AfterValidator(not_empty)] = Field(
        default_factory=embedded_sender_domains,
        strict=False,
        description='Domains mail is sent from. Default: "localhost" with two generated keys.',
    )
    relay: RelaySettings = Field(default_factory=RelaySettings)
    deadlines: DeadlinesSettings = Field(default_factory=DeadlinesSettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    reply_tokens: ReplyTokensSettings = Field(default_factory=ReplyTokensSettings)
    bounces: BouncesSettings = Field(default_factory=BouncesSettings)
    suppression: SuppressionSettings = Field(default_factory=SuppressionSettings)
    sms: Annotated[SmsSettings, RestartOnly] = Field(default_factory=SmsSettings)

    @model_validator(mode="before")
    @classmethod
    def _path_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        # absent sections that hold paths are still validated, so that their default paths
        # are made absolute against the configuration file's folder
        data = {"accounts": {}, "templates": {}, **data}
        # paths whose default lies under a state_dir given in the file: joined to it as written,
        # so that a relative state_dir and its derived paths are made absolute the same way
        state_dir = data.get("state_dir")
        if not isinstance(state_dir, str | PurePath) or not str(state_dir):
            return data
        return {
            **data,
            "relay": _with_default(data.get("relay"), "maildir", "path", f"{state_dir}/maildir"),
            "sms": _with_default(data.get("sms"), "file", "path", f"{state_dir}/sms-outbox.jsonl"),
        }

    @model_validator(mode="after")
    def _domains(self) -> Settings:
        errors: list[tuple[Loc, str]] = []
        seen: dict[str, int] = {}
        default: int | None = None
        for index, domain in enumerate(self.sender_domains):
            if domain.domain in seen:
                errors.append(
                    (
                        ("sender_domains", index, "domain"),
                        f"duplicate of sender_domains[{seen[domain.domain]}]",
                    )
                )
            seen.setdefault(domain.domain, index)
            if domain.default and default is not None:
                errors.append(
                    (
                        ("sender_domains", index, "default"),
                        f"only one sender domain may be the default (sender_domains[{default}] is)",
                    )
                )
            elif domain.default:
                default = index
        if errors:
            raise invalid("Settings", errors)
        return self

    @property
    def default_sender_domain(self) -> SenderDomain:
        """The domain marked default, else the first one."""
        return next((d for d in self.sender_domains if d.default), self.sender_domains[0])

    def sender_domain(self, name: str) -> SenderDomain | None:
        """The configured sender domain of that name, if any."""
        name = name.lower().rstrip(".")
        return next((d for d in self.sender_domains if d.domain == name), None)

    @property
    def dkim_keys(self) -> tuple[DkimKey, ...]:
        """Every DKIM key with its file; keys at the default place may be generated."""
        return tuple(
            DkimKey(
                domain=domain.domain,
                selector=key.selector,
                algorithm=key.algorithm,
                path=key.key_file
                or self.state_dir / "dkim" / domain.domain / f"{key.selector}.key",
                generate=key.key_file is None,
            )
            for domain in self.sender_domains
            for key in domain.dkim
        )
