"""aiosmtpd's SMTP protocol held to the limits Postfix's smtpd puts on one client's session."""

from __future__ import annotations

import asyncio
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, syntax

from gateway.settings import InboundSettings
from inbound import smtp_replies as replies

# How long a client that reads nothing may hold a connection closed on it, our last reply
# unsent, before it is dropped.
LAST_REPLY_GRACE = 5.0

# Replies after which the session ends (RFC 5321 3.8: 421 is the server closing; aiosmtpd's
# own 502 for unknown commands closes too).
_LAST_REPLIES = frozenset(
    (replies.LINE_TOO_LONG, replies.MESSAGE_TOO_BIG, replies.TOO_MANY_UNKNOWN_COMMANDS)
)


class LimitedSMTP(SMTP):
    """One SMTP session, cut off at inbound.line_length_limit, max_message_size and
    hard_error_limit, and slowed down past soft_error_limit, as Postfix's smtpd does.

    A subclass, against the rule that keeps the protocol apart from behaviour, because
    aiosmtpd has no knob or hook for these. It reads a line without end, or a message past
    data_size_limit, to its end before it answers, keeping the message meanwhile as a list
    of its lines (some 70 bytes of memory for each line of two); and it answers syntax
    errors, commands out of sequence and unknown commands itself, which no handler hook
    sees, so a handler cannot count a session's errors. Every byte the client sends, in
    clear or through TLS, and every reply pass through this class: data_received() stops
    reading at a line that grows past the limit, push() counts the errors, smtp_DATA()
    reads the message into one buffer and stops at the limit. What the session decides
    stays the handler's (inbound/smtp_server.py).
    """

    def __init__(self, handler: Any, settings: InboundSettings, **options: Any) -> None:
        # SMTP.__init__ sizes its StreamReader with this: readuntil() refuses longer lines.
        self.line_length_limit = settings.line_length_limit
        super().__init__(
            handler,
            data_size_limit=settings.max_message_size,
            timeout=settings.command_timeout.total_seconds(),
            **options,
        )
        self.max_message_size = settings.max_message_size
        self.soft_error_limit = settings.soft_error_limit
        self.hard_error_limit = settings.hard_error_limit
        self.error_sleep_time = settings.error_sleep_time.total_seconds()
        self.errors = 0
        # bytes received since the last line feed, and whether a line went past the limit
        self._line = 0
        self._line_too_long = False

    def data_received(self, data: bytes) -> None:
        if self._line_too_long:
            return
        end = data.rfind(b"\n")
        line = self._line + len(data) if end < 0 else len(data) - end - 1
        # + 1: the CR of a line whose LF has not come yet
        if line > self.line_length_limit + 1:
            # The lines before it are still answered, in order; then aiosmtpd reads the end
            # of the stream, and handle_exception() answers that the line was too long.
            self._line_too_long = True
            super().data_received(data[: end + 1])
            self._reader.feed_eof()
            assert isinstance(self.transport, asyncio.Transport)
            self.transport.pause_reading()
            return
        self._line = line
        super().data_received(data)

    async def handle_exception(self, error: Exception) -> str:
        if self._line_too_long:  # the end of the stream that data_received() made
            return replies.LINE_TOO_LONG
        return await super().handle_exception(error)

    async def push(self, status: AnyStr) -> None:
        # aiosmtpd and the handler give str; bytes only if a handler chose to
        reply = status if isinstance(status, str) else status.decode("ascii", "replace")
        if self.errors >= self.soft_error_limit:
            await asyncio.sleep(self.error_sleep_time)
        if reply.startswith("421") or reply in _LAST_REPLIES:
            await self._hang_up(reply)
            return
        await super().push(status)
        # Postfix does not count the recipients past its limit: a client that sends them
        # is right to, and will send them again in another transaction.
        if reply[:1] in ("4", "5") and reply != replies.REJECT_TOO_MANY_RCPTS:
            self.errors += 1
            if self.errors >= self.hard_error_limit:
                await self._hang_up(replies.TOO_MANY_ERRORS.format(hostname=self.hostname))

    async def _hang_up(self, reply: str) -> None:
        """Answer `reply` and close the connection; aiosmtpd's task for the session waits
        here, reading nothing more, until connection_lost() cancels it."""
        transport = self.transport
        assert isinstance(transport, asyncio.Transport)
        transport.write(reply.encode("ascii") + b"\r\n")
        transport.close()
        asyncio.get_running_loop().call_later(LAST_REPLY_GRACE, self._drop)
        await asyncio.Event().wait()

    def _timeout_cb(self) -> None:
        # aiosmtpd closes without a word, and a close waits for the replies the client has
        # not read: one that reads nothing would keep its connection for ever. As Postfix,
        # the client is told, and it is dropped if it has not read that within the grace.
        transport = self.transport
        if isinstance(transport, asyncio.Transport) and not transport.is_closing():
            reply = replies.TIMEOUT.format(hostname=self.hostname)
            transport.write(reply.encode("ascii") + b"\r\n")
            asyncio.get_running_loop().call_later(LAST_REPLY_GRACE, self._drop)
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _drop(self) -> None:
        # still there: the client has not read our last reply (connection_lost() unsets it)
        if isinstance(self.transport, asyncio.Transport):
            self.transport.abort()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # As aiosmtpd's (with decode_data and SMTPUTF8 off, as the server has them), but
        # the message is read into one buffer, and the session ends as soon as the message
        # or one of its lines goes past its limit.
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(replies.NEED_RCPT)
            return
        if arg:
            await self.push(replies.DATA_SYNTAX)
            return
        await self.push(replies.START_DATA)
        message = await self._message()
        if isinstance(message, str):
            await self._hang_up(message)
            return
        self.envelope.content = self.envelope.original_content = message
        status = await self._call_handler_hook("DATA")
        self.envelope = self._create_envelope()
        if status.startswith("2"):
            # as Postfix: a message taken forgives the client's errors before it
            self.errors = 0
        await self.push(status)

    async def _message(self) -> bytes | str:
        """The message after DATA, or the reply that refuses it: a line or the whole too
        long (its buffer is freed on return)."""
        content = bytearray()
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except (asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                return replies.LINE_TOO_LONG
            if line == b".\r\n":
                return bytes(content)
            # RFC 5321 4.5.2: a leading dot was doubled by the client
            content += memoryview(line)[1:] if line.startswith(b".") else line
            if len(content) > self.max_message_size:
                return replies.MESSAGE_TOO_BIG
