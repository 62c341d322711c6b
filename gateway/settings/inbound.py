"""[inbound]: the SMTP server of replies and bounces, and the unsubscribe page."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, PlainValidator, model_validator

from gateway.cpus import usable_cpus
from gateway.durations import Duration, PositiveDuration, between
from gateway.settings.files import ReadableFile
from gateway.settings.restart import RestartOnly
from gateway.settings.types import MODEL_CONFIG, DnsName, Endpoint, ListenAddress
from gateway.validation_errors import custom_error, invalid


def _process_count(value: Any) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise custom_error("process_count", 'must be "auto" or a whole number greater than 0')


ProcessCount = Annotated[int | Literal["auto"], PlainValidator(_process_count)]


class InboundSettings(BaseModel):
    """The SMTP server that receives clients' replies and bounces."""

    model_config = MODEL_CONFIG

    # Restart-only: the SMTP server and the unsubscribe page listen once, with their TLS
    # files; the SMTP server's processes and sessions are set up once.
    listen: Annotated[ListenAddress, RestartOnly] = Field(
        Endpoint("127.0.0.1", 2525), description='Address and port to listen on, "host:port".'
    )
    hostname: Annotated[str, RestartOnly] = Field(
        "", description="Name in the SMTP greeting; empty: this machine's fully qualified name."
    )
    reply_domain: DnsName = Field(
        "localhost",
        description="Domain of the reply addresses given to clients (MX to this server).",
    )
    tls_cert: Annotated[ReadableFile | None, RestartOnly] = Field(
        None, description="TLS certificate chain (PEM), for STARTTLS."
    )
    tls_key: Annotated[ReadableFile | None, RestartOnly] = Field(
        None, description="TLS private key (PEM); with tls_cert."
    )
    max_message_size: Annotated[int, RestartOnly] = Field(
        26_214_400,
        gt=0,
        description=(
            "Largest message accepted, in bytes (advertised as SIZE); one that goes past it"
            " is answered 552 5.3.4 and the connection closed as soon as it does."
        ),
    )
    max_recipients: Annotated[int, RestartOnly] = Field(
        50, gt=0, description="Most recipients accepted in one message."
    )
    max_connections_per_client: Annotated[int, RestartOnly] = Field(
        10, gt=0, description="Simultaneous connections accepted from one IP address."
    )
    # The limits of one session, Postfix's smtpd_* of the same meaning and default.
    line_length_limit: Annotated[int, RestartOnly] = Field(
        2048,
        # RFC 5321 4.5.3.1.6: a line of text may have 998 bytes, 999 once dot-stuffed.
        ge=1000,
        description=(
            "Longest line read from a client, command or message, in bytes without its CRLF;"
            " a longer one is answered 500 5.5.2 and the connection closed, without reading"
            " it to its end (Postfix's line_length_limit)."
        ),
    )
    soft_error_limit: Annotated[int, RestartOnly] = Field(
        10,
        gt=0,
        description=(
            "Errors (4xx and 5xx replies) in one session after which every reply waits"
            " error_sleep_time (Postfix's smtpd_soft_error_limit)."
        ),
    )
    hard_error_limit: Annotated[int, RestartOnly] = Field(
        20,
        gt=0,
        description=(
            "Errors in one session at which the client is answered 421 4.7.0 and"
            " disconnected; a message queued forgives the errors before it"
            " (Postfix's smtpd_hard_error_limit)."
        ),
    )
    error_sleep_time: Annotated[Duration, between(), RestartOnly] = Field(
        timedelta(seconds=1),
        description="The wait before each reply past soft_error_limit (smtpd_error_sleep_time).",
    )
    command_timeout: Annotated[PositiveDuration, RestartOnly] = Field(
        timedelta(minutes=5),
        description=(
            "How long the server waits for a client's next command, and after DATA for the"
            " whole message, before it closes the connection (Postfix's smtpd_timeout)."
        ),
    )
    processes: Annotated[ProcessCount, RestartOnly] = Field(
        "auto",
        description=(
            'Processes serving SMTP, all on the same listening socket: "auto" for one per CPU'
            " the daemon may use (those it may run on, no more than its CPU quota, such as"
            " systemd's CPUQuota=, rounded up), or a number (1: the daemon's own process alone)."
        ),
    )
    message_id_ttl: PositiveDuration = Field(
        timedelta(days=90),
        description="How long sent Message-IDs are remembered to route replies and bounces.",
    )
    web_listen: Annotated[ListenAddress, RestartOnly] = Field(
        Endpoint("127.0.0.1", 8025),
        description=(
            'Where the one-click unsubscribe page listens, "host:port" (behind the https'
            " proxy that public_url names)."
        ),
    )
    public_url: str = Field(
        "https://localhost",
        # RFC 8058: one-click unsubscribe links must be https.
        pattern=r"^https://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "Base https URL at which clients reach the gateway's web endpoints (one-click"
            " unsubscribe links in List-Unsubscribe)."
        ),
    )

    def process_count(self) -> int:
        """How many processes serve SMTP: `processes`, or the CPUs this process may use."""
        if self.processes == "auto":
            return usable_cpus()
        return self.processes

    @model_validator(mode="after")
    def _tls_pair(self) -> InboundSettings:
        if self.tls_cert is not None and self.tls_key is None:
            raise invalid("InboundSettings", [(("tls_key",), "required when tls_cert is set")])
        if self.tls_key is not None and self.tls_cert is None:
            raise invalid("InboundSettings", [(("tls_cert",), "required when tls_key is set")])
        return self
