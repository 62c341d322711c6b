"""Every reply the inbound SMTP server gives, named once; tests compare against these names."""

from __future__ import annotations

# --- ours: the handler and the connection gate answer these ---

# The greeting is "220 <hostname> <GREETING_IDENT>": no software name or version for scanners.
GREETING_IDENT = "ESMTP"

ACCEPTED_RCPT = "250 2.1.5 Ok"
QUEUED = "250 2.0.0 Ok: queued as {id}"

REJECT_UNKNOWN_RCPT = "550 5.1.1 No such recipient: unknown, forged or expired address"
REJECT_RELAY = "550 5.7.1 Relaying denied: this server accepts mail for its own addresses only"
REJECT_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"
# RFC 5321 4.2: a 421 names the server; sent instead of the greeting, then the server hangs up.
REJECT_TOO_MANY_CONNECTIONS = (
    "421 4.7.0 {hostname} Too many connections from your address, try again later"
)

TEMPFAIL_QUEUE = "451 4.3.0 Cannot queue the message now, try again later"
TEMPFAIL_LOCAL = "451 4.3.0 Local error, try again later"

# --- the limits of one session (inbound/smtp_limits.py): the server hangs up after these ---

# a line longer than inbound.line_length_limit, in a command or in a message
LINE_TOO_LONG = "500 5.5.2 Line too long"
# a message that goes past inbound.max_message_size as it is read
MESSAGE_TOO_BIG = "552 5.3.4 Message too big"
# inbound.hard_error_limit replies of 4xx or 5xx in one session
TOO_MANY_ERRORS = "421 4.7.0 {hostname} Too many errors, closing the connection"
# no command for inbound.command_timeout (Postfix's words)
TIMEOUT = "421 4.4.2 {hostname} Error: timeout exceeded"

# --- aiosmtpd's own: the protocol class answers these before the handler is asked ---
# aiosmtpd puts no enhanced status code on most of them; the server does not advertise
# ENHANCEDSTATUSCODES, so RFC 2034 does not require one. Those of DATA keep aiosmtpd's words
# in smtp_limits.py, which reads the message in its stead.

HELLO = "250 {hostname}"
OK = "250 OK"
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
READY_FOR_TLS = "220 Ready to start TLS"
BYE = "221 Bye"
HELO_FIRST = "503 Error: send HELO first"
NEED_MAIL = "503 Error: need MAIL command"
NEED_RCPT = "503 Error: need RCPT command"
NESTED_MAIL = "503 Error: nested MAIL command"
UNKNOWN_COMMAND = '500 Error: command "{command}" not recognized'
TOO_MANY_UNKNOWN_COMMANDS = "502 5.5.1 Too many unrecognized commands, goodbye."
TOO_MANY_COMMANDS = "421 4.7.0 {command} sent too many times"
COMMAND_TOO_LONG = "500 Command line too long"
MAIL_SYNTAX = "501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]"
MALFORMED_ADDRESS = "553 5.1.3 Error: malformed address"
MESSAGE_TOO_BIG_AT_MAIL = "552 Error: message size exceeds fixed maximum message size"
DATA_SYNTAX = "501 Syntax: DATA"
