"""Lua script calls made at the same time go to Redis together: the calls of one script as
one script call, all of them in one pipeline."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from gateway.lua import lua_source

# A script call's argument: text, as Redis takes a command's (str, or bytes in UTF-8 where
# the caller has them so), or a number for the script's own arithmetic (see BULK).
Arg = str | bytes | int

# Runs calls of one script in one EVALSHA (gateway/lua/bulk.lua): the calls as one
# argument in MessagePack, which redis-py packs far faster than the calls' many small
# ones, and which Lua unpacks as fast as Redis reads them; flat, so that each call's KEYS
# and ARGV are made at their size at once (a table Lua grows one value at a time is
# copied at each doubling). The arguments are text, as a command's are: callers write
# their numbers (converting each one here would cost more than the rest of the packing,
# and a number passed as such to redis.call costs Redis a conversion of its own), but
# for those a script only counts with, which arrive as Lua numbers (tonumber() costs
# Lua a strtod). KEYS declares the first call's keys, which Redis Cluster routes by: every
# key the gateway names shares one slot there (the prefix's hash tag), and declaring the
# others too would cost each call more arguments to send for nothing.
BULK = lua_source("bulk")


@dataclass(frozen=True, slots=True, eq=False)
class Script:
    """A Lua script known by its SHA1, as EVALSHA calls it. `helpers` are local functions
    of its own: run as one of a batch of calls (see BULK), it defines them once for the
    batch, not once per call (each definition is an allocation, and garbage, for Lua).
    `finish` runs once after the batch's calls: it makes the writes they left to it,
    those that one command makes for all of them at less cost than one each (the calls
    must not read what they leave to it)."""

    source: str
    helpers: str = ""
    finish: str = ""
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        text = self.helpers + self.source + self.finish
        object.__setattr__(self, "sha", hashlib.sha1(text.encode()).hexdigest())  # noqa: S324


@cache
def bulk(script: Script) -> Script:
    """The script that runs calls of `script` (see BULK)."""
    parts = {"helpers": script.helpers, "call": script.source, "finish": script.finish}
    return Script(
        re.sub(r"^-- \{(helpers|call|finish)\}$", lambda m: parts[m[1]], BULK, flags=re.M)
    )


@dataclass(slots=True)
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]
    result: asyncio.Future[Any]


@dataclass(slots=True)
class _Request:
    """The calls of one script in a batch: one EVALSHA of its bulk form."""

    script: Script
    calls: list[_Call]

    def command(self) -> tuple[str, int, list[str | bytes]]:
        """EVALSHA's script and number of keys, then the keys and the one argument."""
        keys: list[str | bytes] = list(self.calls[0].keys)
        calls: list[Arg] = []
        for call in self.calls:
            calls += (len(call.keys), len(call.args))
            calls += call.keys
            calls += call.args
        # As raw strings, bytes too: Redis's cmsgpack knows no bin type.
        return self.script.sha, len(keys), [*keys, msgpack.packb(calls, use_bin_type=False)]

    def deliver(self, reply: Any) -> None:
        """Hand each call its reply, or the error that stopped them all."""
        replies = [reply] * len(self.calls) if isinstance(reply, BaseException) else reply
        for call, result in zip(self.calls, replies, strict=True):
            if call.result.done():
                continue
            if isinstance(result, BaseException):
                call.result.set_exception(result)
            else:
                call.result.set_result(result)


class ScriptBatcher:
    """Runs script calls in batches: the calls made while the batches before are on the
    wire leave together in the next, each script's calls as one script call, so a busy
    worker pays one round trip, and one script call per script, for many job moves.

    A batch holds at most `batch_size` calls, and up to `pipelines` batches are on the
    wire at once: while Redis runs one, the callers of the one before prepare the next.
    Each call stays atomic on its own; a batch is not a transaction, and the calls in
    it succeed or fail one by one. Calls on the wire together are concurrent: their
    callers cannot depend on their order."""

    def __init__(self, redis: Redis, batch_size: int = 100, pipelines: int = 2) -> None:
        self.redis = redis
        self.batch_size = batch_size
        self._waiting: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._wire = asyncio.Semaphore(pipelines)
        self._sending: set[asyncio.Task[None]] = set()

    def run(self, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> asyncio.Future[Any]:
        """The call's reply, when it comes: a future, not a coroutine, so that awaiting it
        costs its caller one step less (many jobs a second make calls)."""
        loop = asyncio.get_running_loop()
        call = _Call(script, keys, args, loop.create_future())
        self._waiting.append(call)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return call.result

    async def _flush(self) -> None:
        try:
            while self._waiting:
                await self._wire.acquire()
                batch = self._waiting[: self.batch_size]
                del self._waiting[: self.batch_size]
                sending = asyncio.get_running_loop().create_task(self._send(batch))
                self._sending.add(sending)
                sending.add_done_callback(self._sent)
        finally:
            self._flusher = None

    def _sent(self, sending: asyncio.Task[None]) -> None:
        self._sending.discard(sending)
        self._wire.release()

    async def _send(self, batch: list[_Call]) -> None:
        by_script: dict[Script, list[_Call]] = {}
        for call in batch:
            by_script.setdefault(call.script, []).append(call)
        requests = [_Request(bulk(script), calls) for script, calls in by_script.items()]
        try:
            replies = await self._execute(requests)
            unknown = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if unknown:
                # The server lost its script cache (restart, failover, SCRIPT FLUSH).
                for i in unknown:
                    await self.redis.script_load(requests[i].script.source)
                again = await self._execute([requests[i] for i in unknown])
                for i, reply in zip(unknown, again, strict=True):
                    replies[i] = reply
            for request, reply in zip(requests, replies, strict=True):
                request.deliver(reply)
        except BaseException as exc:  # every caller must hear of it, cancellation included
            failure = exc if isinstance(exc, Exception) else asyncio.CancelledError()
            for request in requests:
                request.deliver(failure)
            if not isinstance(exc, Exception):
                raise

    async def _execute(self, requests: list[_Request]) -> list[Any]:
        """Each request's reply, or the exception it raised."""
        commands = [request.command() for request in requests]
        if isinstance(self.redis, RedisCluster):
            # redis-py refuses scripts in cluster pipelines; with the keys in one
            # slot (the hash-tagged prefix) they all go to one node anyway.
            return await asyncio.gather(
                *(self.redis.evalsha(sha, count, *rest) for sha, count, rest in commands),
                return_exceptions=True,
            )
        async with self.redis.pipeline(transaction=False) as pipe:
            for sha, count, rest in commands:
                pipe.evalsha(sha, count, *rest)
            return await pipe.execute(raise_on_error=False)
