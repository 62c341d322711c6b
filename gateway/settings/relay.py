"""[relay]: how outgoing mail leaves (smarthost, MX or Maildir) and its limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from gateway.durations import PositiveDuration
from gateway.settings.files import ConfigPath, ReadableFile, default_state_dir
from gateway.settings.restart import RestartOnly
from gateway.settings.types import MODEL_CONFIG, Resolver
from gateway.validation_errors import invalid

StartTls = Literal["required", "opportunistic", "none"]


class SmarthostRelay(BaseModel):
    """Relay through one server (the provider's or the company's)."""

    model_config = MODEL_CONFIG

    host: str = Field(
        "", description='Smarthost name or IP; required when transport = "smarthost".'
    )
    port: int = Field(587, gt=0, lt=65536, description="Smarthost port (587: submission).")
    starttls: StartTls = Field(
        "required", description="required, opportunistic (use if offered) or none."
    )
    username: str = Field("", description="SMTP AUTH user name; empty: no authentication.")
    password_file: ReadableFile | None = Field(
        None, description="File holding the SMTP AUTH password; required with username."
    )

    @model_validator(mode="after")
    def _auth_pair(self) -> SmarthostRelay:
        if self.username and self.password_file is None:
            raise invalid("SmarthostRelay", [(("password_file",), "required when username is set")])
        if self.password_file is not None and not self.username:
            raise invalid("SmarthostRelay", [(("username",), "required when password_file is set")])
        return self


class MxRelay(BaseModel):
    """Deliver straight to each recipient domain's MX hosts."""

    model_config = MODEL_CONFIG

    resolvers: tuple[Resolver, ...] = Field(
        (), strict=False, description='DNS servers, "ip" or "ip:port"; empty: the system\'s.'
    )
    port: int = Field(25, gt=0, lt=65536, description="Port of the MX hosts.")
    starttls: StartTls = Field(
        "opportunistic", description="required, opportunistic (use if offered) or none."
    )


class MaildirRelay(BaseModel):
    """Write each message into a Maildir instead of sending it (trials and demos)."""

    model_config = MODEL_CONFIG

    path: ConfigPath = Field(
        default_factory=lambda: default_state_dir() / "maildir",
        description="The Maildir (default: <state_dir>/maildir).",
    )


class RelaySettings(BaseModel):
    """How outgoing mail leaves."""

    model_config = MODEL_CONFIG

    # Restart-only: the relay's connections are made once; its retry schedule applies at once.
    transport: Annotated[Literal["maildir", "smarthost", "mx"], RestartOnly] = Field(
        "maildir",
        description=(
            "maildir (nothing leaves: messages are written to relay.maildir.path), smarthost "
            "(relay.smarthost) or mx (direct delivery)."
        ),
    )
    smarthost: Annotated[SmarthostRelay, RestartOnly] = Field(default_factory=SmarthostRelay)
    mx: Annotated[MxRelay, RestartOnly] = Field(default_factory=MxRelay)
    maildir: Annotated[MaildirRelay, RestartOnly] = Field(default_factory=MaildirRelay)
    connect_timeout: Annotated[PositiveDuration, RestartOnly] = Field(
        timedelta(seconds=30), description="Time allowed to open a connection to a server."
    )
    command_timeout: Annotated[PositiveDuration, RestartOnly] = Field(
        timedelta(minutes=5), description="Time allowed for each SMTP reply."
    )
    max_connections_per_destination: Annotated[int, RestartOnly] = Field(
        20, gt=0, description="Simultaneous connections to one smarthost or one recipient domain."
    )
    messages_per_connection: Annotated[int, RestartOnly] = Field(
        100, gt=0, description="Messages sent over one connection before it is closed."
    )
    retry_initial: PositiveDuration = Field(
        timedelta(minutes=5), description="First wait after a temporary failure; then it doubles."
    )
    retry_max: PositiveDuration = Field(
        timedelta(seconds=4000), description="Longest wait between two delivery attempts."
    )
    max_lifetime: PositiveDuration = Field(
        timedelta(days=5), description="A message not delivered after this long bounces."
    )
    connection_idle_timeout: Annotated[PositiveDuration, RestartOnly] = Field(
        timedelta(seconds=5),
        description="An open connection with no message to send is closed after this long.",
    )
    tls_ca_file: Annotated[ReadableFile | None, RestartOnly] = Field(
        None,
        description=(
            "CA certificates (PEM) that verify the servers' TLS certificates; default: the "
            'system\'s. Verified TLS is what starttls = "required" and hipaa accounts demand.'
        ),
    )
    helo_name: Annotated[str, RestartOnly] = Field(
        "", description="Name given in EHLO; empty: this machine's fully qualified name."
    )

    @model_validator(mode="after")
    def _smarthost_host(self) -> RelaySettings:
        if self.transport == "smarthost" and not self.smarthost.host:
            raise invalid(
                "RelaySettings", [(("smarthost", "host"), 'required when transport = "smarthost"')]
            )
        return self
