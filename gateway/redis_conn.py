"""Connecting to Redis from one URL: a plain server, a Sentinel set or a Cluster."""

from __future__ import annotations

from typing import cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"


def _hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for part in netloc.rpartition("@")[2].split(","):
        host, _, port = part.rpartition(":") if part.count(":") == 1 else (part, "", "")
        hosts.append((host or part, int(port) if port else default_port))
    return hosts


def connect(url: str, max_connections: int = 64) -> Redis:
    """A client for `url`, decoding replies as UTF-8 text, holding at most
    `max_connections` connections (a caller waits for a free one beyond that).

    `redis://`, `rediss://` and `unix://` go straight to redis-py;
    `redis+sentinel://[:password@]host:port[,host:port...]/service[/db]` asks the
    sentinels for the current master; `redis+cluster://host:port[,...]` talks to a
    Cluster (the key prefix then carries a hash tag: see gateway.keys).
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme == SENTINEL_SCHEME:
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a Sentinel URL names the service: redis+sentinel://host:port/service")
        db = int(path[1]) if len(path) > 1 else 0
        sentinel = Sentinel(
            _hosts(parts.netloc, 26379),
            sentinel_kwargs={"password": password} if password else None,
            password=password,
            username=username,
            db=db,
            decode_responses=True,
            max_connections=max_connections,
        )
        return sentinel.master_for(path[0])
    if parts.scheme == CLUSTER_SCHEME:
        nodes = [ClusterNode(h, p) for h, p in _hosts(parts.netloc, 6379)]
        cluster = RedisCluster(
            startup_nodes=nodes,
            password=password,
            username=username,
            decode_responses=True,
            max_connections=max_connections,
        )
        # The cluster client answers the same commands the gateway uses; its
        # class is separate in redis-py only because it routes them by slot.
        return cast(Redis, cluster)
    pool = BlockingConnectionPool.from_url(
        url, decode_responses=True, max_connections=max_connections
    )
    return Redis.from_pool(pool)
