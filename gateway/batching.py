"""Lua script calls made at the same time go to Redis together, in one pipeline, and the
calls of one script in one script call."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

Arg = str | int | float

# Runs several calls of one script in one EVALSHA. ARGV[1] holds each call's number of
# keys and of arguments ("k a k a ..."); the calls' keys follow one another in KEYS, and
# their arguments in ARGV from ARGV[2] on. Each call is protected on its own: one that
# fails does not stop the others, and its reply is its error. A call that returns
# nothing replies false (nil), as it would alone, so the replies stay in step.
BULK = """
local function call(KEYS, ARGV)
%s
end
local replies, k, a = {}, 0, 1
for keys, args in string.gmatch(ARGV[1], '(%%d+) (%%d+)') do
  keys, args = tonumber(keys), tonumber(args)
  local ok, reply = pcall(call, {unpack(KEYS, k + 1, k + keys)}, {unpack(ARGV, a + 1, a + args)})
  if not ok and type(reply) ~= 'table' then
    reply = {err = tostring(reply)}  -- redis.call's own errors are {err = ...} already
  elseif reply == nil then
    reply = false
  end
  replies[#replies + 1] = reply
  k, a = k + keys, a + args
end
return replies
"""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script known by its SHA1, as EVALSHA calls it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())  # noqa: S324


@cache
def bulk(script: Script) -> Script:
    """The script that runs several calls of `script` at once (see BULK)."""
    return Script(BULK % script.source)


@dataclass(slots=True)
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    result: asyncio.Future[Any]


@dataclass(frozen=True, slots=True)
class _Request:
    """One EVALSHA: a call alone, or several calls of one script in its bulk form."""

    calls: list[_Call]

    @property
    def script(self) -> Script:
        script = self.calls[0].script
        return script if len(self.calls) == 1 else bulk(script)

    def command(self) -> tuple[Arg, ...]:
        if len(self.calls) == 1:
            [call] = self.calls
            return (call.script.sha, len(call.keys), *call.keys, *call.args)
        shapes = " ".join(f"{len(c.keys)} {len(c.args)}" for c in self.calls)
        keys = [key for c in self.calls for key in c.keys]
        args = [arg for c in self.calls for arg in c.args]
        return (self.script.sha, len(keys), *keys, shapes, *args)

    def deliver(self, reply: Any) -> None:
        """Hand each call its reply, or the error that stopped it."""
        if len(self.calls) == 1 or isinstance(reply, Exception):
            replies = [reply] * len(self.calls)
        else:
            replies = reply
        for call, result in zip(self.calls, replies, strict=True):
            if call.result.done():
                continue
            if isinstance(result, Exception):
                call.result.set_exception(result)
            else:
                call.result.set_result(result)


class ScriptBatcher:
    """Runs script calls in pipelines: the calls made while one pipeline is on the
    wire leave together in the next (at most `batch_size` of them, so that the next
    calls are prepared while Redis runs these), so a busy worker pays one round trip
    for many job moves; the calls of one script in a pipeline go as one script call.
    Each call stays atomic on its own; a pipeline is not a transaction, and the calls
    in it succeed or fail one by one."""

    def __init__(self, redis: Redis, batch_size: int = 100) -> None:
        self.redis = redis
        self.batch_size = batch_size
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
                batch = self._waiting[: self.batch_size]
                del self._waiting[: self.batch_size]
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Call]) -> None:
        by_script: dict[Script, list[_Call]] = {}
        for call in batch:
            by_script.setdefault(call.script, []).append(call)
        requests = [_Request(calls) for calls in by_script.values()]
        try:
            replies = await self._execute(requests)
            unknown = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if unknown:
                # The server lost its script cache (restart, failover, SCRIPT FLUSH).
                for source in {requests[i].script.source for i in unknown}:
                    await self.redis.script_load(source)
                again = await self._execute([requests[i] for i in unknown])
                for i, reply in zip(unknown, again, strict=True):
                    replies[i] = reply
        except BaseException as exc:  # every caller must hear of it, cancellation included
            failure = exc if isinstance(exc, Exception) else asyncio.CancelledError()
            for request in requests:
                request.deliver(failure)
            if not isinstance(exc, Exception):
                raise
            return
        for request, reply in zip(requests, replies, strict=True):
            request.deliver(reply)

    async def _execute(self, requests: list[_Request]) -> list[Any]:
        """Each request's reply, or the exception it raised."""
        if isinstance(self.redis, RedisCluster):
            # redis-py refuses scripts in cluster pipelines; with the keys in one
            # slot (the hash-tagged prefix) they all go to one node anyway.
            return await asyncio.gather(
                *(self.redis.evalsha(*r.command()) for r in requests), return_exceptions=True
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for request in requests:
                pipe.evalsha(*request.command())
            return await pipe.execute(raise_on_error=False)
