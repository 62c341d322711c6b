"""The `mailgw` commands that open the job queue: enqueue, dead-letters, events, history."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TextIO

from redis.asyncio import Redis

from gateway.clock import SystemClock, rfc3339
from gateway.commands.queue_options import queue_options
from gateway.commands.support import CommandError, print_json, redis_for_cli
from gateway.config import Config
from gateway.dead_letters import NOT_REPLAYABLE
from gateway.directory import AccountDirectory
from gateway.errors import MalformedJob
from gateway.history import read_history
from gateway.jobs import DIRECTORY_KINDS, Job, parse_job
from gateway.keys import Keys
from gateway.queue import JobQueue


def _queue(config: Config, redis: Redis) -> JobQueue:
    return JobQueue(redis, queue_options(config.settings), SystemClock())


# Reading jobs for `enqueue`

_JSON_WHITE_SPACE = " \t\r\n"


def read_jobs(text: str, source: str) -> Iterator[tuple[str, Any]]:
    """(where, value) for each job in `text`: one JSON object, a JSON array of
    them, or JSON lines."""
    try:
        document = json.loads(text)
    except ValueError:
        # JSON lines end at LF (CRLF tolerated), not where str.splitlines() would break:
        # U+2028, U+0085 and the like may stand as they are inside a JSON string.
        for number, line in enumerate(text.split("\n"), 1):
            line = line.removesuffix("\r")
            if line.strip(_JSON_WHITE_SPACE):
                try:
                    yield f"{source}:{number}", json.loads(line)
                except ValueError as exc:
                    yield f"{source}:{number}", MalformedJob(f"not JSON: {exc}")
        return
    if isinstance(document, list):
        for index, item in enumerate(document):
            yield f"{source}[{index}]", item
    else:
        yield source, document


async def _validate_jobs(config: Config, redis: Redis, text: str, source: str) -> list[Job]:
    directory = AccountDirectory(
        redis,
        Keys(config.settings.redis.prefix),
        config.accounts,
        cache_size=1000,
        cache_ttl=60,
        timer=SystemClock().now,
    )
    jobs: list[Job] = []
    problems: list[str] = []
    for where, value in read_jobs(text, source):
        try:
            if isinstance(value, MalformedJob):
                raise value
            job = parse_job(json.dumps(value, ensure_ascii=False))
        except MalformedJob as exc:
            problems.append(f"{where}: {exc.reason}")
            continue
        if job.kind not in DIRECTORY_KINDS and (await directory.get(job.account) is None):
            problems.append(f"{where}: unknown account '{job.account}'")
            continue
        jobs.append(job)
    if problems:
        raise CommandError("nothing was enqueued:\n" + "\n".join(problems))
    if not jobs:
        raise CommandError(f"{source}: no job found")
    return jobs


def read_input(name: str) -> tuple[str, str]:
    """The text of FILE, or of standard input for `-`, and how to name it in messages."""
    # Bytes, decoded here: text-mode reading would turn a lone CR into a line end.
    source = "<stdin>" if name == "-" else name
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise CommandError(f"{name}: {exc.strerror}") from exc
    try:
        return data.decode("utf-8"), source
    except UnicodeDecodeError as exc:
        raise CommandError(f"{source}: not UTF-8 (byte {exc.start})") from None


# Commands


async def cmd_enqueue(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    try:
        jobs = await _validate_jobs(config, redis, args.text, args.source)
        queue = _queue(config, redis)
        for job in jobs:
            result = await queue.enqueue(job)
            out.write(job.id + "\n")
            if not result.queued:
                print(f"{job.id}: not queued again: a job with this id exists", file=sys.stderr)
    finally:
        await redis.aclose()
    return 0


# A long replay reports its progress after each chunk of this many dead letters.
REPLAY_CHUNK = 500


async def cmd_dead_letters(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    queue = _queue(config, redis)
    try:
        if args.action == "list":
            for letter in await queue.dead_letters.read(count=args.limit):
                print_json(letter.summary(), out)
        elif args.action == "show":
            found = await queue.dead_letters.entry(args.ids[0])
            if found is None:
                raise CommandError(f"no dead letter {args.ids[0]}")
            shown = found.summary()
            try:
                shown["payload"] = json.loads(found.job)
            except ValueError:
                shown["payload"] = found.job
            out.write(json.dumps(shown, ensure_ascii=False, indent=2) + "\n")
        elif args.action == "replay":
            ids = args.ids or await queue.dead_letters.all_ids()
            problems = []
            for done in range(0, len(ids), REPLAY_CHUNK):
                chunk = ids[done : done + REPLAY_CHUNK]
                for entry_id, new_entry in (await queue.dead_letters.replay(chunk)).items():
                    if new_entry is None:
                        problems.append(f"{entry_id}: no such dead letter")
                    elif new_entry == NOT_REPLAYABLE:
                        problems.append(
                            f"{entry_id}: the entry had no 'job' field; nothing to replay"
                        )
                    else:
                        out.write(f"{entry_id} -> {new_entry}\n")
                if len(ids) > REPLAY_CHUNK:
                    # On stderr, so that stdout stays one line per replayed entry.
                    print(f"replayed {done + len(chunk)} of {len(ids)}", file=sys.stderr)
            if problems:
                raise CommandError("\n".join(problems))
        else:
            purged = await queue.dead_letters.purge(args.ids or None)
            out.write(f"purged {purged} dead letter(s)\n")
    finally:
        await redis.aclose()
    return 0


async def cmd_history(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    """What happened to an appointment's notifications, then those still waiting."""
    redis = redis_for_cli(config)
    queue = _queue(config, redis)
    try:
        entries = await read_history(redis, queue.keys, args.appointment)
        waiting = await queue.waiting_notifications(args.appointment)
    finally:
        await redis.aclose()
    if not entries and not waiting:
        raise CommandError(f"no history for appointment '{args.appointment}'")
    for entry in entries:
        print_json(entry, out)
    for notification in waiting:
        waiting_entry = {
            "status": "waiting",
            **notification.fields(),
            "send_at": rfc3339(notification.due_ms / 1000),
        }
        print_json(waiting_entry, out)
    return 0


async def cmd_events(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    queue = _queue(config, redis)
    try:
        after = args.since
        if after is None:
            # By default the last --count events, like `tail`.
            latest: Any = await redis.xrevrange(queue.keys.events, count=args.count)
            after = _before(latest[-1][0]) if latest else "$"
        while True:
            batch = await queue.events(
                after, count=args.count, block_ms=5000 if args.follow else None
            )
            for entry_id, event in batch:
                try:
                    value = json.loads(event)
                except ValueError:
                    value = {"event": event}
                print_json({"entry": entry_id, **value}, out)
                after = entry_id
            out.flush()
            if not args.follow and len(batch) < args.count:
                return 0
    finally:
        await redis.aclose()


def _before(entry_id: str) -> str:
    """The stream id just before `entry_id`, so that XREAD includes it."""
    millis, _, seq = entry_id.partition("-")
    if int(seq) > 0:
        return f"{millis}-{int(seq) - 1}"
    return f"{int(millis) - 1}-18446744073709551615" if int(millis) > 0 else "0"


AsyncCommand = Callable[[Config, argparse.Namespace, TextIO], Coroutine[Any, Any, int]]
COMMANDS: dict[str, AsyncCommand] = {
    "enqueue": cmd_enqueue,
    "dead-letters": cmd_dead_letters,
    "events": cmd_events,
    "history": cmd_history,
}
