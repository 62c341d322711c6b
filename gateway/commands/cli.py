"""The `mailgw` command line: its parser, light, and each command imported when it runs
(so that `mailgw --version`, `--help` and `queue` answer at once)."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from gateway import __version__
from gateway.commands import outbound_args
from gateway.commands.roles import ROLES
from gateway.config_location import config_path


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


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    from gateway import logs

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
        from gateway.commands.check_config import cmd_check_config

        return cmd_check_config(path, out)
    if args.command == "dead-letters" and args.action == "show" and len(args.ids) != 1:
        print("mailgw: dead-letters show takes one ID", file=sys.stderr)
        return 2
    from gateway.commands.configured import run_configured

    return run_configured(args, path, out)


if __name__ == "__main__":
    sys.exit(main())
