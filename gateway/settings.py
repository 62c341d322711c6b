"""The main configuration file's schema: every key, its default and what it means."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway.cpus import usable_cpus
from gateway.durations import Duration, PositiveDuration, between

# TOML values are typed, so a string where a number or boolean belongs is a mistake to
# report, not something to coerce; tuples come from TOML arrays, hence strict=False there.
MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)

Loc = tuple[str | int, ...]


def invalid(title: str, errors: Sequence[tuple[Loc, str]]) -> ValidationError:
    """A ValidationError of plain-words messages at given locations, for cross-field checks."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError("config", "{message}", {"message": message}),
                loc=loc,
                input=None,
            )
            for loc, message in errors
        ],
    )


def _custom(kind: str, message: str) -> PydanticCustomError:
    # user text goes through the context, never the template, so braces in it stay literal
    return PydanticCustomError(kind, "{message}", {"message": message})


# --- paths: the one place where a path written in a file becomes absolute ---


def default_state_dir() -> Path:
    """$STATE_DIRECTORY (set by systemd's StateDirectory=), else ~/.local/state/mailgw."""
    # systemd lists several directories separated by colons when several are configured
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) if state else Path("~/.local/state/mailgw").expanduser()


def _to_path(value: Any) -> Any:
    if isinstance(value, str):
        if not value:
            raise _custom("path_empty", "must not be empty")
        return Path(value)
    if isinstance(value, PurePath):
        return Path(value)
    raise _custom("path_type", "must be a path (a string)")


def _absolute(value: Path, info: ValidationInfo) -> Path:
    value = value.expanduser()
    if value.is_absolute():
        return value
    # relative to the config file's folder; without a file (embedded defaults), to the cwd
    base = (info.context or {}).get("base_dir")
    return Path(base if base is not None else Path.cwd(), value)


def _readable(value: Path) -> Path:
    if not value.is_file():
        raise _custom("file_missing", f"file not found: {value}")
    if not os.access(value, os.R_OK):
        raise _custom("file_unreadable", f"file is not readable by this user: {value}")
    return value


SECRET_MIN_BYTES = 32


def read_secret(path: Path) -> bytes:
    """A secret file's bytes, without the trailing line break an editor adds."""
    return path.read_bytes().rstrip(b"\r\n")


def _long_enough_secret(value: Path) -> Path:
    if len(read_secret(value)) < SECRET_MIN_BYTES:
        raise _custom(
            "secret_short",
            f"{value} must hold at least {SECRET_MIN_BYTES} bytes of secret "
            "(for example: head -c 48 /dev/urandom | base64 > FILE)",
        )
    return value


_path_str = PlainSerializer(str, return_type=str)
ConfigPath = Annotated[Path, BeforeValidator(_to_path), AfterValidator(_absolute), _path_str]
"""A path; relative ones are relative to the configuration file's folder, ~ is expanded."""
ReadableFile = Annotated[ConfigPath, AfterValidator(_readable)]
"""A ConfigPath that must name an existing, readable file."""
SecretFile = Annotated[ReadableFile, AfterValidator(_long_enough_secret)]
"""A ReadableFile holding at least 32 bytes of secret."""


# --- names and addresses ---

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _dns_name(value: str) -> str:
    name = value.lower().rstrip(".")
    if not name.isascii():
        raise _custom("dns_name", f"{value!r}: write an international name in its xn-- form")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise _custom("dns_name", f"{value!r} is not a valid DNS name")
    return name


DnsName = Annotated[str, AfterValidator(_dns_name)]
"""A DNS name (lower-cased, trailing dot removed)."""


class Endpoint(NamedTuple):
    """A host (name or IP address) and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int | None = None) -> Endpoint:
    """Parse "host:port", "[v6]:port", or a bare host/IP when a default port is given."""
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host:port")
        port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not port:
        if default_port is None:
            raise ValueError(f"{text!r} is not host:port (the port is missing)")
        port = str(default_port)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port with a port from 1 to 65535")
    return Endpoint(host, int(port))


def _listen(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return parse_endpoint(value)
        except ValueError as exc:
            raise _custom("endpoint", str(exc)) from None
    return value


def _resolver(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        endpoint = parse_endpoint(value, default_port=53)
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        raise _custom("resolver", f'{value!r} is not "ip" or "ip:port"') from None
    return endpoint


_endpoint_str = PlainSerializer(str, return_type=str)
ListenAddress = Annotated[Endpoint, BeforeValidator(_listen), _endpoint_str]
Resolver = Annotated[Endpoint, BeforeValidator(_resolver), _endpoint_str]


def _not_empty(value: tuple[Any, ...]) -> tuple[Any, ...]:
    # a length check that runs only once the items are valid (min_length would also count
    # the invalid items as missing)
    if not value:
        raise _custom("empty", "must list at least one entry")
    return value


# --- [log] ---


class LogSettings(BaseModel):
    """How much the daemon logs."""

    model_config = MODEL_CONFIG

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe level written to the log: debug, info, warning, error."
    )


# --- [metrics] ---


class MetricsSettings(BaseModel):
    """The Prometheus endpoint."""

    model_config = MODEL_CONFIG

    enabled: bool = Field(True, description="Serve Prometheus metrics at http://<listen>/metrics.")
    listen: ListenAddress = Field(
        Endpoint("127.0.0.1", 9108),
        description=(
            'Address and port of the metrics endpoint, "host:port"; each daemon process'
            " (role) on one machine needs its own."
        ),
    )


# --- [redis] ---

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
_REDIS_FORMS = (
    "redis://, rediss://, unix://, redis+sentinel://host:port[,host:port...]/service_name[/db] "
    "or redis+cluster://host:port[,host:port...]"
)


@dataclass(frozen=True, slots=True)
class RedisNodes:
    """The parts of a redis+sentinel:// or redis+cluster:// URL."""

    nodes: tuple[Endpoint, ...]
    service_name: str | None
    db: int
    username: str | None
    password: str | None


def parse_multi_node_url(url: str) -> RedisNodes:
    """Split a sentinel or cluster URL (several hosts: urllib cannot); ValueError if malformed."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = 26379 if scheme == "redis+sentinel" else 6379
    nodes = tuple(parse_endpoint(h, default_port) for h in hosts.split(",")) if hosts else ()
    if not nodes:
        raise ValueError("at least one host:port is needed")
    parts = [p for p in path.split("/") if p]
    service_name: str | None = None
    if scheme == "redis+sentinel":
        if not parts:
            raise ValueError("the sentinel service name is missing (…/service_name[/db])")
        service_name, parts = parts[0], parts[1:]
    if len(parts) > 1 or (parts and not parts[0].isdigit()):
        raise ValueError(f"unexpected path {'/' + path!r}")
    db = int(parts[0]) if parts else 0
    if scheme == "redis+cluster" and db != 0:
        raise ValueError("Redis Cluster has only database 0")
    return RedisNodes(nodes, service_name, db, username or None, password or None)


def _redis_url(url: str) -> str:
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    # the URL may hold a password: messages name the scheme, never the whole URL
    if not sep or scheme not in _REDIS_SCHEMES:
        problem = f"unsupported Redis URL scheme {scheme}://" if sep else "not a Redis URL"
        raise _custom("redis_url", f"{problem}; use {_REDIS_FORMS}")
    if scheme in ("redis+sentinel", "redis+cluster"):
        try:
            parse_multi_node_url(url)
        except ValueError as exc:
            raise _custom("redis_url", f"bad {scheme}:// URL: {exc}") from None
    elif not rest.strip("/"):
        raise _custom("redis_url", f"{scheme}:// URL without a host or socket path")
    return url


def has_hash_tag(prefix: str) -> bool:
    """True if Redis Cluster would hash every key starting with `prefix` to one slot."""
    start = prefix.find("{")
    return start >= 0 and prefix.find("}", start + 1) > start + 1


class RedisSettings(BaseModel):
    """Where the queue, schedules and events live."""

    model_config = MODEL_CONFIG

    url: Annotated[str, AfterValidator(_redis_url)] = Field(
        "",
        description=(
            "Redis to use: redis://, rediss:// (TLS), unix:///path/to/socket, "
            "redis+sentinel://host:port[,host:port...]/service_name[/db] or "
            "redis+cluster://host:port[,host:port...]. Empty: the daemon starts its own "
            "embedded Redis server, with its data under state_dir."
        ),
    )
    prefix: str = Field(
        "mailgw:",
        min_length=1,
        validate_default=True,
        description=(
            "Prepended to every Redis key (jobs stream: <prefix>jobs). With Redis Cluster it "
            'must hold a hash tag, like "{mailgw}:".'
        ),
    )
    group: str = Field(
        "workers",
        min_length=1,
        description="Consumer group name of the workers on the jobs stream.",
    )

    @field_validator("prefix")
    @classmethod
    def _cluster_needs_hash_tag(cls, prefix: str, info: ValidationInfo) -> str:
        if info.data.get("url", "").startswith("redis+cluster://") and not has_hash_tag(prefix):
            raise _custom(
                "hash_tag",
                "with a redis+cluster:// URL the prefix must contain a hash tag, like "
                f'"{{mailgw}}:" (got {prefix!r}): the gateway\'s Lua scripts touch several keys '
                "at once, and Redis Cluster allows that only when all of them hash to one slot",
            )
        return prefix

    @property
    def embedded(self) -> bool:
        """True when the daemon runs its own Redis server (no url configured)."""
        return not self.url


# --- [queue] ---


class QueueSettings(BaseModel):
    """How jobs are taken, retried and given up."""

    model_config = MODEL_CONFIG

    concurrency: int = Field(32, gt=0, description="Jobs one worker process handles at once.")
    visibility_timeout: PositiveDuration = Field(
        # Longer than one delivery attempt can last (connect, then a stalled SMTP command
        # up to relay.command_timeout), so that a slow attempt is never run twice at once.
        timedelta(minutes=15),
        description="A job not acknowledged within this time is taken back from its worker.",
    )
    max_attempts: int = Field(
        10, gt=0, description="Attempts at a job that fails temporarily before it is dead-lettered."
    )
    backoff_initial: PositiveDuration = Field(
        timedelta(seconds=30), description="Wait before the first retry; doubles with each attempt."
    )
    backoff_max: PositiveDuration = Field(
        timedelta(hours=1), description="Longest wait between retries."
    )
    max_deliveries: int = Field(
        5,
        gt=0,
        description=(
            "Times a job may be handed to workers that stop or hang before finishing it;"
            " the next delivery sends it to dead letters."
        ),
    )
    idempotency_ttl: PositiveDuration = Field(
        timedelta(days=7),
        description="How long a job id is remembered, so a repeated id is done once.",
    )
    events_max_length: int = Field(
        1_000_000,
        gt=0,
        description="Approximate cap on the number of entries of the events stream.",
    )
    history_ttl: PositiveDuration = Field(
        timedelta(days=400),
        description="How long an appointment's history is kept after its last entry.",
    )
    shutdown_grace: PositiveDuration = Field(
        timedelta(seconds=30), description="On SIGTERM, time given to jobs in flight to finish."
    )
    block_timeout: PositiveDuration = Field(
        timedelta(seconds=1),
        description="How long a worker waits on an empty stream before looping.",
    )
    scheduler_interval: PositiveDuration = Field(
        timedelta(seconds=0.25), description="How often the scheduler moves due jobs to the stream."
    )
    scheduler_batch: int = Field(
        1000, gt=0, description="Most due jobs moved in one scheduler pass."
    )


# --- [accounts], [templates] ---


class AccountsSettings(BaseModel):
    """Where account files are and how long they are cached."""

    model_config = MODEL_CONFIG

    directory: ConfigPath = Field(
        Path("accounts"),
        validate_default=True,
        description="Account files, one <account id>.toml each; default: next to this file.",
    )
    cache_size: int = Field(10_000, gt=0, description="Accounts kept in each process's memory.")
    cache_ttl: PositiveDuration = Field(
        timedelta(seconds=60), description="How long a cached account is used before it is re-read."
    )


class TemplatesSettings(BaseModel):
    """Where the template overrides are, and the limits of those the accounts' owners write."""

    model_config = MODEL_CONFIG

    directory: ConfigPath = Field(
        Path("templates"),
        validate_default=True,
        description="Templates replacing the built-in ones; default: next to this file.",
    )
    render_time: PositiveDuration = Field(
        timedelta(seconds=2),
        description=(
            "Longest one file of an account's own templates (with what it includes), or its"
            " SMS text, may take to render; its process is then killed and replaced."
        ),
    )
    render_memory: int = Field(
        256_000_000,
        ge=16_000_000,
        description=(
            "Memory, in bytes, one render of an account's own template or SMS text may take"
            " beyond what its process holds."
        ),
    )
    max_output: int = Field(
        1_000_000,
        gt=0,
        description=(
            "Most bytes one file of an account's own templates, or its SMS text, may render."
        ),
    )
    render_processes: int = Field(
        2,
        gt=0,
        description=(
            "Processes that render the accounts' own templates and SMS texts; an account"
            " uses one at a time."
        ),
    )


# --- [[sender_domains]] ---


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
    dkim: Annotated[tuple[DkimSelector, ...], AfterValidator(_not_empty)] = Field(
        strict=False, description="DKIM keys; every message is signed with each."
    )

    @model_validator(mode="after")
    def _unique_selectors(self) -> SenderDomain:
        seen: dict[str, int] = {}
        errors: list[tuple[Loc, str]] = []
        for index, key in enumerate(self.dkim):
            if key.selector in seen:
                errors.append(
                    (("dkim", index, "selector"), f"duplicate of dkim[{seen[key.selector]}]")
                )
            seen.setdefault(key.selector, index)
        if errors:
            raise invalid("SenderDomain", errors)
        return self


def _embedded_sender_domains() -> tuple[SenderDomain, ...]:
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


# --- [relay] ---

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

    transport: Literal["maildir", "smarthost", "mx"] = Field(
        "maildir",
        description=(
            "maildir (nothing leaves: messages are written to relay.maildir.path), smarthost "
            "(relay.smarthost) or mx (direct delivery)."
        ),
    )
    smarthost: SmarthostRelay = Field(default_factory=SmarthostRelay)
    mx: MxRelay = Field(default_factory=MxRelay)
    maildir: MaildirRelay = Field(default_factory=MaildirRelay)
    connect_timeout: PositiveDuration = Field(
        timedelta(seconds=30), description="Time allowed to open a connection to a server."
    )
    command_timeout: PositiveDuration = Field(
        timedelta(minutes=5), description="Time allowed for each SMTP reply."
    )
    max_connections_per_destination: int = Field(
        20, gt=0, description="Simultaneous connections to one smarthost or one recipient domain."
    )
    messages_per_connection: int = Field(
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
    connection_idle_timeout: PositiveDuration = Field(
        timedelta(seconds=5),
        description="An open connection with no message to send is closed after this long.",
    )
    tls_ca_file: ReadableFile | None = Field(
        None,
        description=(
            "CA certificates (PEM) that verify the servers' TLS certificates; default: the "
            'system\'s. Verified TLS is what starttls = "required" and hipaa accounts demand.'
        ),
    )
    helo_name: str = Field(
        "", description="Name given in EHLO; empty: this machine's fully qualified name."
    )

    @model_validator(mode="after")
    def _smarthost_host(self) -> RelaySettings:
        if self.transport == "smarthost" and not self.smarthost.host:
            raise invalid(
                "RelaySettings", [(("smarthost", "host"), 'required when transport = "smarthost"')]
            )
        return self


# --- [inbound] ---


def _process_count(value: Any) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise _custom("process_count", 'must be "auto" or a whole number greater than 0')


ProcessCount = Annotated[int | Literal["auto"], PlainValidator(_process_count)]


class InboundSettings(BaseModel):
    """The SMTP server that receives clients' replies and bounces."""

    model_config = MODEL_CONFIG

    listen: ListenAddress = Field(
        Endpoint("127.0.0.1", 2525), description='Address and port to listen on, "host:port".'
    )
    hostname: str = Field(
        "", description="Name in the SMTP greeting; empty: this machine's fully qualified name."
    )
    reply_domain: DnsName = Field(
        "localhost",
        description="Domain of the reply addresses given to clients (MX to this server).",
    )
    tls_cert: ReadableFile | None = Field(
        None, description="TLS certificate chain (PEM), for STARTTLS."
    )
    tls_key: ReadableFile | None = Field(None, description="TLS private key (PEM); with tls_cert.")
    max_message_size: int = Field(
        26_214_400,
        gt=0,
        description=(
            "Largest message accepted, in bytes (advertised as SIZE); one that goes past it"
            " is answered 552 5.3.4 and the connection closed as soon as it does."
        ),
    )
    max_recipients: int = Field(50, gt=0, description="Most recipients accepted in one message.")
    max_connections_per_client: int = Field(
        10, gt=0, description="Simultaneous connections accepted from one IP address."
    )
    # The limits of one session, Postfix's smtpd_* of the same meaning and default.
    line_length_limit: int = Field(
        2048,
        # RFC 5321 4.5.3.1.6: a line of text may have 998 bytes, 999 once dot-stuffed.
        ge=1000,
        description=(
            "Longest line read from a client, command or message, in bytes without its CRLF;"
            " a longer one is answered 500 5.5.2 and the connection closed, without reading"
            " it to its end (Postfix's line_length_limit)."
        ),
    )
    soft_error_limit: int = Field(
        10,
        gt=0,
        description=(
            "Errors (4xx and 5xx replies) in one session after which every reply waits"
            " error_sleep_time (Postfix's smtpd_soft_error_limit)."
        ),
    )
    hard_error_limit: int = Field(
        20,
        gt=0,
        description=(
            "Errors in one session at which the client is answered 421 4.7.0 and"
            " disconnected; a message queued forgives the errors before it"
            " (Postfix's smtpd_hard_error_limit)."
        ),
    )
    error_sleep_time: Annotated[Duration, between()] = Field(
        timedelta(seconds=1),
        description="The wait before each reply past soft_error_limit (smtpd_error_sleep_time).",
    )
    command_timeout: PositiveDuration = Field(
        timedelta(minutes=5),
        description=(
            "How long the server waits for a client's next command, and after DATA for the"
            " whole message, before it closes the connection (Postfix's smtpd_timeout)."
        ),
    )
    processes: ProcessCount = Field(
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
    web_listen: ListenAddress = Field(
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


# --- [reply_tokens] ---


class ReplyTokensSettings(BaseModel):
    """Keys that sign the reply addresses given to clients."""

    model_config = MODEL_CONFIG

    secret_files: tuple[SecretFile, ...] = Field(
        (),
        strict=False,
        description=(
            "Files of at least 32 random bytes each. The first signs new reply addresses; all "
            "of them verify, so a new key can be put first while old addresses keep working."
        ),
    )
    token_lifetime: PositiveDuration = Field(
        timedelta(days=180), description="How long a reply address keeps working."
    )

    def secrets(self) -> list[bytes]:
        """The keys, signing key first."""
        return [read_secret(path) for path in self.secret_files]


# --- [sms] ---


class SmsFileOptions(BaseModel):
    """Options of the built-in `file` provider."""

    model_config = MODEL_CONFIG

    path: ConfigPath = Field(
        default_factory=lambda: default_state_dir() / "sms-outbox.jsonl",
        description="JSON-lines file appended to (default: <state_dir>/sms-outbox.jsonl).",
    )


class SmsSettings(BaseModel):
    """Which provider sends text messages, and each provider's options as [sms.<provider>]."""

    # each provider's own table is kept as written: its plugin validates it
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)
    __pydantic_extra__: dict[str, dict[str, Any]] = Field(init=False)

    provider: str = Field(
        "file",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="file, twilio, kannel, smpp, or a plugin (entry points mailgw.sms_providers).",
    )
    webhook_listen: ListenAddress = Field(
        Endpoint("127.0.0.1", 8026),
        description='Where providers post delivery reports and incoming texts, "host:port".',
    )
    webhook_url: str = Field(
        "http://127.0.0.1:8026",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description=(
            "Base URL at which the provider reaches webhook_listen (through a proxy if any):"
            " callbacks go to <webhook_url>/sms/<provider>/status and .../incoming. Twilio"
            " signs the URL it calls, so it must be exactly what the provider is given."
        ),
    )
    answer_interval: PositiveDuration = Field(
        timedelta(hours=24),
        description=(
            "A number that writes anything but STOP or START gets one automatic answer per"
            " interval, saying the number is not read (never more: two robots could loop)."
        ),
    )
    file: SmsFileOptions = Field(default_factory=SmsFileOptions)

    def options(self, provider: str) -> Mapping[str, Any]:
        """The [sms.<provider>] table as written (empty if absent)."""
        if provider == "file":
            return self.file.model_dump()
        return (self.__pydantic_extra__ or {}).get(provider, {})


# --- the whole file ---


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

    state_dir: ConfigPath = Field(
        default_factory=default_state_dir,
        validate_default=True,
        description=(
            "Where the gateway keeps its data (embedded Redis, generated DKIM keys, maildir). "
            "Default: $STATE_DIRECTORY (set by systemd), else ~/.local/state/mailgw."
        ),
    )
    log: LogSettings = Field(default_factory=LogSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    accounts: AccountsSettings = Field(default_factory=AccountsSettings)
    templates: TemplatesSettings = Field(default_factory=TemplatesSettings)
    sender_domains: Annotated[tuple[SenderDomain, ...], AfterValidator(_not_empty)] = Field(
        default_factory=_embedded_sender_domains,
        strict=False,
        description='Domains mail is sent from. Default: "localhost" with two generated keys.',
    )
    relay: RelaySettings = Field(default_factory=RelaySettings)
    inbound: InboundSettings = Field(default_factory=InboundSettings)
    reply_tokens: ReplyTokensSettings = Field(default_factory=ReplyTokensSettings)
    sms: SmsSettings = Field(default_factory=SmsSettings)

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
