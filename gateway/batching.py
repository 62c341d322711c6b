"""Lua script calls made at the same time go to Redis together, in one pipeline."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

Arg = str | int | float


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script known by its SHA1, as EVALSHA calls it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324


@dataclass(slots=True)
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    result: asyncio.Future[Any]


class ScriptBatcher:
    """Runs script calls in pipelines: the calls made while one pipeline is on the
    wire leave together in the next, so a busy worker pays one round trip for
    many job moves. Each script stays atomic on its own; a pipeline is not a
    transaction, and the calls in it succeed or fail one by one."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._waiting: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        self._waiting.append(call)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return await call.result

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Call], reloaded: bool = False) -> None:
        try:
            results = await self._execute(batch)
        except BaseException as exc:  # every caller must hear of it, cancellation included
            for call in batch:
                if not call.result.done():
                    call.result.set_exception(
                        exc if isinstance(exc, Exception) else asyncio.CancelledError()
                    )
            if not isinstance(exc, Exception):
                raise
            return
        unknown = [c for c, r in zip(batch, results, strict=True) if isinstance(r, NoScriptError)]
        if unknown and not reloaded:
            # The server lost its script cache (restart, failover, SCRIPT FLUSH).
            for source in {c.script.source for c in unknown}:
                await self.redis.script_load(source)
            await self._send(unknown, reloaded=True)
        for call, result in zip(batch, results, strict=True):
            if call.result.done():
                continue
            if isinstance(result, Exception):
                call.result.set_exception(result)
            else:
                call.result.set_result(result)

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        """Each call's reply, or the exception it raised."""
        if isinstance(self.redis, RedisCluster):
            # redis-py refuses scripts in cluster pipelines; with the keys in one
            # slot (the hash-tagged prefix) they all go to one node anyway.
            return await asyncio.gather(
                *(self.redis.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args) for c in batch),
                return_exceptions=True,
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in batch:
                pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
            return await pipe.execute(raise_on_error=False)
