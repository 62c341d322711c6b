"""A private Postfix instance for the benchmarks' reference runs, and the tools around it
(Debian's postfix: smtp-source, smtp-sink, and a master started as root)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# What `postfix set-permissions` makes, which needs the files of an installed instance.
QUEUE_DIRECTORIES = (
    "active",
    "bounce",
    "corrupt",
    "defer",
    "deferred",
    "flush",
    "hold",
    "incoming",
    "private",
    "saved",
    "trace",
)


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/postfix/sbin")
    if path is None:
        sys.exit(f"{name} is missing: install Debian's postfix")
    return path


def wait_port(
    port: int,
    process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    timeout: float = 30,
) -> None:
    """Until something listens on 127.0.0.1:`port`; exits if `process` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if (process is not None and process.poll() is not None) or (
                time.monotonic() > deadline
            ):
                shown = f"; {log}:\n{log.read_text()}" if log is not None else ""
                sys.exit(f"nothing listens on 127.0.0.1:{port}{shown}")
            time.sleep(0.05)


def postfix_instance(directory: Path, port: int, main_cf: str) -> Path:
    """A private Postfix in `directory` whose smtpd listens on 127.0.0.1:`port`, with the
    lines `main_cf` added to what every instance needs; returns its config folder."""
    directory.chmod(0o755)  # Postfix's own processes run as the postfix user
    etc, spool, data = directory / "etc", directory / "spool", directory / "data"
    for path in (etc, spool, data):
        path.mkdir()
    master = Path("/usr/share/postfix/master.cf.dist").read_text()
    (etc / "master.cf").write_text(
        re.sub(r"(?m)^smtp\s+inet\s.*$", f"127.0.0.1:{port} inet n - n - - smtpd", master)
    )
    (etc / "main.cf").write_text(
        f"""compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
# Postfix logs to syslog by default; this machine may have none.
maillog_file = /dev/stdout
smtpd_tls_security_level = none
{main_cf}"""
    )
    for name in QUEUE_DIRECTORIES:
        (spool / name).mkdir(mode=0o700)
        shutil.chown(spool / name, "postfix")
    (spool / "pid").mkdir(mode=0o755)
    for name, mode in (("maildrop", 0o730), ("public", 0o710)):
        (spool / name).mkdir()
        (spool / name).chmod(mode)
        shutil.chown(spool / name, "postfix", "postdrop")
    shutil.chown(data, "postfix")
    return etc


@contextmanager
def running_postfix(directory: Path, port: int, main_cf: str) -> Iterator[subprocess.Popen[bytes]]:
    """The instance's master, in the foreground, until the block ends; its smtpd answers."""
    if os.geteuid() != 0:
        sys.exit("the Postfix reference needs root (Postfix's master runs as root)")
    etc = postfix_instance(directory, port, main_cf)
    command = tool("postfix")
    log = directory / "postfix.log"
    master = subprocess.Popen(
        [command, "-c", str(etc), "start-fg"], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        wait_port(port, master, log)
        yield master
    finally:
        subprocess.run([command, "-c", str(etc), "stop"], capture_output=True)
        master.wait(60)
