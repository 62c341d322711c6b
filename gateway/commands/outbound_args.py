"""The outbound side's `mailgw` commands as the parser knows them (kept light: the
commands themselves, in gateway.commands.outbound, are imported only when run)."""

from __future__ import annotations

from typing import Any

from gateway.bounce_classes import BOUNCE_CLASSES
from gateway.notification_kinds import NOTIFICATION_KINDS

# outbound.suppression_csv.COLUMNS, which this light module does not import.
SUPPRESSION_COLUMNS = (
    "address", "reason", "class", "account", "detail",
    "first_seen", "last_seen", "count", "expires_at",
)  # fmt: skip

COMMANDS = ("suppression", "render", "dkim")


def add_parsers(command: Any) -> None:
    """Add this side's commands through the CLI's `command(name, summary)` factory."""
    suppression = command("suppression", "addresses not sent to, with the reason")
    suppression.add_argument(
        "action",
        choices=("list", "show", "add", "remove", "export", "import"),
        help="show: every entry of ADDRESS; export: CSV to FILE (default: standard output);"
        " import: CSV from FILE, columns " + ",".join(SUPPRESSION_COLUMNS) + " (address only"
        " is enough), nothing imported if a row is refused",
    )
    suppression.add_argument(
        "address",
        nargs="?",
        metavar="ADDRESS|+NUMBER|FILE",
        help="the address (show, add, remove), a phone number in E.164 (+33612345678) for the"
        " SMS opt-outs, which stop every text to it, or the CSV file (export, import)",
    )
    suppression.add_argument(
        "--account",
        help="an account's opt-outs, which stop its reminders and follow-ups, instead of the"
        " list that stops all mail",
    )
    suppression.add_argument(
        "--class",
        dest="bounce_class",
        choices=BOUNCE_CLASSES,
        metavar="CLASS",
        help="only the entries of that bounce class (list, export): " + ", ".join(BOUNCE_CLASSES),
    )
    suppression.add_argument(
        "--reason",
        choices=("manual", "hard_bounce", "unsubscribe", "complaint"),
        default="manual",
        help="why (add); unsubscribe and complaint need --account",
    )
    suppression.add_argument("--detail", default="", help="free text kept with it (add)")

    render = command("render", "print a notification composed and signed, without sending it")
    render.add_argument("--account", required=True, help="the account id")
    render.add_argument("--kind", required=True, choices=NOTIFICATION_KINDS)
    render.add_argument("--locale", help="default: the account's")
    render.add_argument(
        "--data", metavar="FILE", help="the job's context as JSON (default: a sample)"
    )
    render.add_argument("--to", help="recipient (default: the context's first client)")
    render.add_argument(
        "--channel",
        choices=("email", "sms"),
        default="email",
        help="sms: print the text message (kind reminder) and its length in parts",
    )

    dkim = command("dkim", "DKIM keys")
    dkim.add_argument("action", choices=("keygen",))
    dkim.add_argument("--domain", required=True)
    dkim.add_argument("--selector", required=True)
    dkim.add_argument("--algorithm", choices=("rsa", "ed25519"), default="rsa")
