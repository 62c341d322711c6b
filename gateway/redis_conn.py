"""Connecting to Redis from one URL: a plain server, a Sentinel set or a Cluster."""

from __future__ import annotations

from typing import cast
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from gateway.settings import parse_multi_node_url

# Anyone can write any bytes to a stream the gateway reads: a byte that is not UTF-8
# becomes a lone surrogate (U+DC80 to U+DCFF) instead of failing the whole reply, and
# goes back to Redis as the same byte. Readers of untrusted entries check for them
# (gateway.entries).
ENCODING_ERRORS = "surrogateescape"


def connect(url: str, max_connections: int = 64) -> Redis:
    """A client for `url`, decoding replies as UTF-8 text (see ENCODING_ERRORS), holding
    at most `max_connections` connections (a caller waits for a free one beyond that).

    `redis://`, `rediss://` and `unix://` go straight to redis-py;
    `redis+sentinel://[:password@]host:port[,host:port...]/service[/db]` asks the
    sentinels for the current master; `redis+cluster://host:port[,...]` talks to a
    Cluster (the key prefix then carries a hash tag: see gateway.keys).
    """
    if url.startswith(("redis+sentinel://", "redis+cluster://")):
        parts = parse_multi_node_url(url)
        password = unquote(parts.password) if parts.password else None
        username = unquote(parts.username) if parts.username else None
        hosts = [(node.host, node.port) for node in parts.nodes]
        if parts.service_name is not None:
            sentinel = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
                hosts,
                sentinel_kwargs={"password": password} if password else None,
                password=password,
                username=username,
                db=parts.db,
                decode_responses=True,
                encoding_errors=ENCODING_ERRORS,
                max_connections=max_connections,
            )
            master: Redis = sentinel.master_for(parts.service_name)
            return master
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],
            password=password,
            username=username,
            decode_responses=True,
            encoding_errors=ENCODING_ERRORS,
            max_connections=max_connections,
        )
        # The cluster client answers the commands the gateway uses; redis-py keeps
        # it a separate class only because it routes each command by slot.
        return cast(Redis, cluster)
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        encoding_errors=ENCODING_ERRORS,
        max_connections=max_connections,
    )
    return Redis.from_pool(pool)
