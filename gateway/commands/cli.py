"""The `mailgw` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TextIO

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway import __version__, logs
from gateway.clock import SystemClock, rfc3339
from gateway.commands import outbound_args
from gateway.commands.daemon import ROLES, queue_options
from gateway.commands.support import CommandError, load_checked_config, redis_for_cli
from gateway.config import Config, config_path, load_config
from gateway.dead_letters import NOT_REPLAYABLE
from gateway.directory import AccountDirectory
from gateway.errors import ConfigError, GatewayError, MalformedJob
from gateway.history import read_history
from gateway.jobs import DIRECTORY_KINDS, Job, parse_job
from gateway.keys import Keys
from gateway.queue import JobQueue


def _queue(config: Config, redis: Redis) -> JobQueue:
    return JobQueue(redis, queue_options(config.settings), SystemClock())


def _print_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False) + "\n")


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


async def cmd_queue(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    try:
        depths = await _queue(config, redis).depths()
    finally:
        await redis.aclose()
    rows = {
        "ready": depths.ready,
        "in_flight": depths.in_flight,
        "scheduled": depths.scheduled,
        "retrying": depths.retrying,
        "dead_letters": depths.dead_letters,
    }
    if args.json:
        _print_json(rows, out)
    else:
        for name, count in rows.items():
            out.write(f"{name.replace('_', ' '):<13}{count:>10}\n")
    return 0


# A long replay reports its progress after each chunk of this many dead letters.
REPLAY_CHUNK = 500


async def cmd_dead_letters(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    queue = _queue(config, redis)
    try:
        if args.action == "list":
            for letter in await queue.dead_letters.read(count=args.limit):
                _print_json(letter.summary(), out)
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
        _print_json(entry, out)
    for notification in waiting:
        waiting_entry = {
            "status": "waiting",
            **notification.fields(),
            "send_at": rfc3339(notification.due_ms / 1000),
        }
        _print_json(waiting_entry, out)
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
                _print_json({"entry": entry_id, **value}, out)
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


def cmd_check_config(path: Path | None, out: TextIO) -> int:
    try:
        config = load_checked_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    # Checked here only: a template that cannot render fails its own jobs, and must not
    # stop the daemon from starting or reloading for every other account.
    from outbound.template_files import override_problems

    problems = override_problems(config.settings.templates.directory)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    where = config.path or "embedded defaults (no configuration file)"
    out.write(f"{where}: OK, {len(config.accounts)} account file(s)\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailgw", description="E-mail and SMS gateway for an appointment-scheduling service."
    )
    parser.add_argument("--version", action="version", version=f"mailgw {__version__}")
    config_help = (
        "configuration file (default: $MAILGW_CONFIG, else /etc/mailgw/mailgw.toml;"
        " without either, the embedded defaults)"
    )
    parser.add_argument("--config", metavar="PATH", help=config_help)
    # Every command takes --config after its name too; SUPPRESS keeps one given
    # before the command from being reset by the command's own default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, help=summary, parents=[common])

    run = command("run", "run the daemon")
    run.add_argument("--role", choices=ROLES, default="all", help="what this process does")
    run.add_argument(
        "--demo",
        action="store_true",
        help="once running, book an appointment for an example business and say where its"
        " confirmation and SMS landed (role all)",
    )

    command("check-config", "validate every configuration file")

    enqueue = command("enqueue", "put jobs on the queue; prints each job id")
    enqueue.add_argument(
        "file", metavar="FILE", help="JSON object, JSON array or JSON lines; - for stdin"
    )

    queue = command("queue", "queue depths")
    queue.add_argument("--json", action="store_true", help="one JSON object")

    dead = command("dead-letters", "inspect and replay failed jobs")
    dead.add_argument("action", choices=("list", "show", "replay", "purge"))
    dead.add_argument("ids", nargs="*", metavar="ID", help="dead-letter ids (default: all)")
    dead.add_argument("--limit", type=int, default=100, help="at most this many (list)")

    events = command("events", "delivery events as JSON lines")
    events.add_argument("--follow", "-f", action="store_true", help="wait for new events")
    events.add_argument("--since", metavar="ENTRY", help="events after this entry id (0: all)")
    events.add_argument(
        "--count",
        type=int,
        default=100,
        help="without --since: the last COUNT events (default 100); with it: read COUNT at a time",
    )
    history = command("history", "everything planned, sent, skipped or dropped for one appointment")
    history.add_argument("appointment", metavar="APPOINTMENT_ID")
    outbound_args.add_parsers(command)
    return parser


AsyncCommand = Callable[[Config, argparse.Namespace, TextIO], Coroutine[Any, Any, int]]
ASYNC_COMMANDS: dict[str, AsyncCommand] = {
    "enqueue": cmd_enqueue,
    "queue": cmd_queue,
    "dead-letters": cmd_dead_letters,
    "events": cmd_events,
    "history": cmd_history,
}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    # At INFO until `run` applies the configuration's log.level.
    logs.setup()
    path = config_path(args.config)
    if args.command == "run":
        from gateway.commands.daemon import run

        if args.demo and args.role != "all":
            print("mailgw: --demo needs --role all", file=sys.stderr)
            return 2
        return run(path, args.role, args.demo)
    if args.command == "check-config":
        return cmd_check_config(path, out)
    if args.command == "dead-letters" and args.action == "show" and len(args.ids) != 1:
        print("mailgw: dead-letters show takes one ID", file=sys.stderr)
        return 2
    try:
        if args.command == "enqueue":
            args.text, args.source = read_input(args.file)
        config = load_config(path)
        if args.command in outbound_args.COMMANDS:
            from gateway.commands import outbound

            if args.command == "dkim":
                return outbound.cmd_dkim(config, args, out)
            if args.command == "suppression":
                from gateway.commands.suppression import cmd_suppression

                return asyncio.run(cmd_suppression(config, args, out))
            return asyncio.run(outbound.cmd_render(config, args, out))
        return asyncio.run(ASYNC_COMMANDS[args.command](config, args, out))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except GatewayError as exc:
        print(f"mailgw: {exc}", file=sys.stderr)
        return 1
    except (RedisError, OSError) as exc:
        print(f"mailgw: Redis: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
