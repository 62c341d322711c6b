"""[redis]: where the queue lives, and the multi-node URLs (sentinel, cluster) read apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator

from gateway.settings.types import MODEL_CONFIG, Endpoint, parse_endpoint
from gateway.validation_errors import custom_error

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
        raise custom_error("redis_url", f"{problem}; use {_REDIS_FORMS}")
    if scheme in ("redis+sentinel", "redis+cluster"):
        try:
            parse_multi_node_url(url)
        except ValueError as exc:
            raise custom_error("redis_url", f"bad {scheme}:// URL: {exc}") from None
    elif not rest.strip("/"):
        raise custom_error("redis_url", f"{scheme}:// URL without a host or socket path")
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
            raise custom_error(
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
