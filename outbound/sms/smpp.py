"""The `smpp` SMS provider: one SMPP 3.4 transmitter session to an SMSC, on the daemon's loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import zlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from gateway.durations import PositiveDuration
from gateway.settings import ReadableFile, read_secret
from gateway.sms_provider import (
    Accepted,
    CallbackRefused,
    DeliveryReceipt,
    IncomingText,
    ProviderContext,
    ProviderError,
    ProviderPlugin,
    TextMessage,
    WebhookAnswer,
    WebhookRequest,
)
from gateway.validation_errors import Loc, invalid
from outbound.sms.segments import gsm7_bytes, split
from outbound.sms.smpp_pdu import (
    HEADER,
    Address,
    Command,
    Pdu,
    SmppProtocolError,
    bind_transmitter,
    body_length,
    concatenation_udh,
    describe_status,
    first_c_octet_string,
    status_name,
    submit_sm,
)

log = logging.getLogger(__name__)

NO_CALLBACKS = "the smpp provider takes no HTTP callbacks"

# Refusals that no retry can change. Every other status is temporary: the SMSC busy or
# failing (ESME_RSYSERR, RMSGQFUL, RTHROTTLED, RX_T_APPN, RUNKNOWNERR), our account
# misconfigured, which the operator fixes while texts wait (ESME_RINVPASWD, RINVSYSID,
# RBINDFAIL), ESME_RSUBMITFAIL, which SMSCs send for any failure they do not name, and
# vendor codes, as often "no credit left" as anything final.
PERMANENT_STATUSES = frozenset(
    {
        0x01,  # ESME_RINVMSGLEN
        0x02,  # ESME_RINVCMDLEN
        0x03,  # ESME_RINVCMDID
        0x06,  # ESME_RINVPRTFLG
        0x07,  # ESME_RINVREGDLVFLG
        0x0A,  # ESME_RINVSRCADR
        0x0B,  # ESME_RINVDSTADR
        0x15,  # ESME_RINVSERTYP
        0x43,  # ESME_RINVESMCLASS
        0x48,  # ESME_RINVSRCTON
        0x49,  # ESME_RINVSRCNPI
        0x50,  # ESME_RINVDSTTON
        0x51,  # ESME_RINVDSTNPI
        0x61,  # ESME_RINVSCHED
        0x62,  # ESME_RINVEXPIRY
        0x63,  # ESME_RINVDFTMSGID
        0x65,  # ESME_RX_P_APPN
        0x66,  # ESME_RX_R_APPN
        0xC0,  # ESME_RINVOPTPARSTREAM
        0xC1,  # ESME_ROPTPARNOTALLWD
        0xC2,  # ESME_RINVPARLEN
        0xC3,  # ESME_RMISSINGOPTPARAM
        0xC4,  # ESME_RINVOPTPARAMVAL
        0xFE,  # ESME_RDELIVERYFAILURE
    }
)

# Waits before binding again after failed binds: doubling from BACKOFF_FIRST to BACKOFF_MAX.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0

MAX_PASSWORD = 8
# GSM 03.40: an alphanumeric sender is at most 11 characters, a number at most 15 digits.
MAX_ALPHANUMERIC_SENDER = 11
_INTERNATIONAL = re.compile(r"\+\d{1,15}")
_DIGITS = re.compile(r"\d{1,15}")
TON_UNKNOWN, TON_INTERNATIONAL, TON_ALPHANUMERIC = 0, 1, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1

DATA_CODING = {"gsm7": 0x00, "ucs2": 0x08}
ESM_CLASS_UDHI = 0x40

ESME_RINVBNDSTS = 0x04
ESME_RINVCMDID = 0x03


class SmppOptions(BaseModel):
    """[sms.smpp]: the SMSC, the transmitter account on it, and the sender of the texts."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    host: str = Field(min_length=1, description="The SMSC's host name or IP address.")
    port: int = Field(2775, gt=0, lt=65536, description="The SMSC's port (2775: SMPP's own).")
    system_id: str = Field(
        min_length=1, max_length=15, description="The account (system_id) the SMSC gave us."
    )
    password_file: ReadableFile | None = Field(
        None,
        description="File holding the account's password (SMPP: at most 8 characters); "
        "none: an empty password.",
    )
    system_type: str = Field(
        "", max_length=12, description="system_type sent when binding, if the SMSC asks for one."
    )
    source_addr: str = Field(
        "",
        max_length=16,
        description="Sender: an international number (+33...), a short code, or a name of at "
        "most 11 characters; empty: the SMSC's default sender.",
    )
    source_ton: int | None = Field(
        None,
        ge=0,
        le=6,
        description="Type of number of source_addr; default: 1 (international) for +digits, "
        "0 (unknown) for other digits, 5 (alphanumeric) for a name.",
    )
    source_npi: int | None = Field(
        None,
        ge=0,
        le=18,
        description="Numbering plan of source_addr; default: 1 (E.164) for digits, "
        "0 (unknown) for a name.",
    )
    max_per_second: float = Field(
        10.0, gt=0, description="submit_sm per second at most (one per text part)."
    )
    enquire_link_interval: PositiveDuration = Field(
        timedelta(seconds=30),
        description="An idle session is checked with enquire_link this often.",
    )
    response_timeout: PositiveDuration = Field(
        timedelta(seconds=10),
        description="Time allowed to connect and for each answer of the SMSC.",
    )
    registered_delivery: int = Field(
        1,
        ge=0,
        le=0x1F,
        description="registered_delivery of each submit_sm: 1 asks for delivery receipts "
        "(to a receiver session of the account), 0 for none.",
    )
    tls: bool = Field(False, description="Connect with TLS (SMPP over TLS), verified.")
    tls_ca_file: ReadableFile | None = Field(
        None,
        description="CA certificates (PEM) that verify the SMSC's TLS certificate; "
        "default: the system's.",
    )

    @field_validator("system_id", "system_type", "source_addr")
    @classmethod
    def _ascii(cls, value: str) -> str:
        if not value.isascii():
            raise PydanticCustomError("ascii", "SMPP takes only ASCII characters here")
        return value

    @field_validator("password_file")
    @classmethod
    def _short_password(cls, value: Path | None) -> Path | None:
        if value is not None:
            password = read_secret(value)
            if len(password) > MAX_PASSWORD or not password.isascii():
                raise PydanticCustomError(
                    "smpp_password",
                    "{path} must hold an ASCII password of at most {most} characters (SMPP 3.4)",
                    {"path": str(value), "most": MAX_PASSWORD},
                )
        return value

    @field_validator("tls_ca_file")
    @classmethod
    def _certificates(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=value)
            except ssl.SSLError as exc:
                raise PydanticCustomError(
                    "tls_ca_file",
                    "{path} holds no PEM certificates: {reason}",
                    {"path": str(value), "reason": exc.reason or str(exc)},
                ) from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SmppOptions:
        problems: list[tuple[Loc, str]] = []
        name = self.source_addr
        is_number = _INTERNATIONAL.fullmatch(name) or _DIGITS.fullmatch(name)
        if name and not is_number and len(name) > MAX_ALPHANUMERIC_SENDER:
            message = f"a sender name has at most {MAX_ALPHANUMERIC_SENDER} characters"
            problems.append((("source_addr",), message))
        if self.tls_ca_file is not None and not self.tls:
            problems.append((("tls_ca_file",), "is used only with tls = true"))
        if problems:
            raise invalid("SmppOptions", problems)
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """What verifies the SMSC's certificate, if the session is to use TLS."""
        return ssl.create_default_context(cafile=self.tls_ca_file) if self.tls else None

    def source(self) -> Address:
        """source_addr with its type of number and numbering plan, given or derived."""
        name = self.source_addr
        if _INTERNATIONAL.fullmatch(name):
            derived = Address(TON_INTERNATIONAL, NPI_ISDN, name[1:])
        elif _DIGITS.fullmatch(name):
            derived = Address(TON_UNKNOWN, NPI_ISDN, name)
        elif name:
            derived = Address(TON_ALPHANUMERIC, NPI_UNKNOWN, name)
        else:
            derived = Address(TON_UNKNOWN, NPI_UNKNOWN, "")
        return Address(
            derived.ton if self.source_ton is None else self.source_ton,
            derived.npi if self.source_npi is None else self.source_npi,
            derived.address,
        )


@dataclass(frozen=True, slots=True)
class Encoded:
    """A text as submit_sm carries it: one short_message per part."""

    data_coding: int
    esm_class: int
    short_messages: list[bytes]


def encode_text(message: TextMessage) -> Encoded:
    """The text in GSM-7 (unpacked septets) or UCS-2, split with concatenation headers."""
    if message.encoding == "gsm7":
        to_bytes = gsm7_bytes
    else:

        def to_bytes(text: str) -> bytes:
            return text.encode("utf-16-be", "surrogatepass")

    parts = split(message.text)
    if len(parts) <= 1:
        return Encoded(DATA_CODING[message.encoding], 0, [to_bytes(message.text)])
    # From the message's own reference, so that a retry reuses it and a handset that got
    # some parts the first time can still put the text together.
    reference = zlib.crc32(message.reference.encode())
    return Encoded(
        DATA_CODING[message.encoding],
        ESM_CLASS_UDHI,
        [
            concatenation_udh(reference, len(parts), number) + to_bytes(part)
            for number, part in enumerate(parts, 1)
        ],
    )


def refusal(answer: Pdu, request: Command, part: str = "") -> ProviderError:
    """The ProviderError for an SMSC's answer with a non-zero command_status."""
    kind = "generic_nack" if answer.command_id == Command.GENERIC_NACK else "an error"
    return ProviderError(
        status_name(answer.status),
        f"the SMSC answered {request.name.lower()}{part} with {kind}: "
        f"{describe_status(answer.status)}",
        temporary=answer.status not in PERMANENT_STATUSES,
    )


class Pace:
    """Spaces calls 1/rate seconds apart on the loop's clock: never more than `rate` a second."""

    def __init__(self, rate: float) -> None:
        self.gap = 1 / rate
        self.next = float("-inf")

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next)
        self.next = slot + self.gap
        if slot > now:
            await asyncio.sleep(slot - now)


class Session:
    """One connection to the SMSC: requests matched to answers by sequence number, the
    SMSC's requests answered, enquire_link sent when idle."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: str,
        timeout: float,
        interval: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.endpoint = endpoint
        self.timeout = timeout
        self.interval = interval
        self.loop = asyncio.get_running_loop()
        self.open = True
        self.closing = False
        self.pending: dict[int, asyncio.Future[Pdu]] = {}
        self.sequence = 0
        # When the SMSC last sent anything: what we send proves nothing about the link, and a
        # session whose texts go unanswered gets checked, and dropped, like an idle one.
        self.last_heard = self.loop.time()
        self.reading = asyncio.create_task(self.read())
        self.keeping_alive: asyncio.Task[None] | None = None

    async def request(self, command: Command, body: bytes = b"") -> Pdu:
        """The SMSC's answer to `command`; ProviderError if none comes or the link drops."""
        if not self.open:
            raise self.lost("the connection is closed")
        # SMPP 3.4 section 5.1.4: 1 to 0x7FFFFFFF, then around again
        self.sequence = sequence = self.sequence % 0x7FFFFFFF + 1
        answer: asyncio.Future[Pdu] = self.loop.create_future()
        self.pending[sequence] = answer
        # Once written, a submit_sm may have reached the SMSC: without its answer, whether
        # the SMSC took the text is unknown.
        posted = command == Command.SUBMIT_SM
        try:
            self.post(Pdu(command, 0, sequence, body))
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
                return await answer
        except TimeoutError:
            raise ProviderError(
                "timeout",
                f"no answer to {command.name.lower()} from SMSC {self.endpoint} "
                f"within {self.timeout:g} s",
                temporary=True,
                maybe_sent=posted,
            ) from None
        except OSError as exc:
            self.drop(f"cannot write: {exc}")
            raise self.lost(f"cannot write: {exc}", maybe_sent=posted) from exc
        except ProviderError as exc:
            # the session ended while the answer was awaited (drop())
            raise ProviderError(exc.code, exc.detail, temporary=True, maybe_sent=posted) from None
        finally:
            self.pending.pop(sequence, None)

    def post(self, pdu: Pdu) -> None:
        self.writer.write(pdu.encode())

    def lost(self, reason: str, *, maybe_sent: bool = False) -> ProviderError:
        return ProviderError(
            "connection_lost",
            f"SMPP session with {self.endpoint} ended: {reason}",
            temporary=True,
            maybe_sent=maybe_sent,
        )

    async def read(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(HEADER.size)
                body = await self.reader.readexactly(body_length(header))
                self.last_heard = self.loop.time()
                self.answer(Pdu.decode(header + body))
        except asyncio.IncompleteReadError:
            self.drop("the SMSC closed the connection")
        except (OSError, SmppProtocolError) as exc:
            self.drop(str(exc))

    def answer(self, pdu: Pdu) -> None:
        if pdu.is_response:
            waiting = self.pending.get(pdu.sequence)
            if waiting is not None and not waiting.done():
                waiting.set_result(pdu)
            elif pdu.command_id == Command.GENERIC_NACK:
                log.warning("SMSC %s: generic_nack %s", self.endpoint, describe_status(pdu.status))
        elif pdu.command_id == Command.ENQUIRE_LINK:
            self.post(Pdu(Command.ENQUIRE_LINK_RESP, 0, pdu.sequence))
        elif pdu.command_id == Command.UNBIND:
            self.post(Pdu(Command.UNBIND_RESP, 0, pdu.sequence))
            self.drop("the SMSC unbound")
        else:
            # A transmitter is sent nothing else (no deliver_sm): say so rather than hang it.
            self.post(Pdu(Command.GENERIC_NACK, ESME_RINVCMDID, pdu.sequence))

    def keep_alive(self) -> None:
        self.keeping_alive = asyncio.create_task(self.check_when_idle())

    async def check_when_idle(self) -> None:
        while self.open:
            idle = self.loop.time() - self.last_heard
            if idle < self.interval:
                await asyncio.sleep(self.interval - idle)
                continue
            try:
                await self.request(Command.ENQUIRE_LINK)
            except ProviderError as exc:
                self.drop(f"enquire_link failed: {exc.detail}")

    def drop(self, reason: str) -> None:
        """End the session; whatever waits for an answer gets a temporary ProviderError."""
        if not self.open:
            return
        self.open = False
        level = logging.DEBUG if self.closing else logging.WARNING
        log.log(level, "SMPP session with %s ended: %s", self.endpoint, reason)
        for waiting in self.pending.values():
            if not waiting.done():
                waiting.set_exception(self.lost(reason))
        self.writer.close()
        if self.keeping_alive is not None and self.keeping_alive is not asyncio.current_task():
            self.keeping_alive.cancel()

    async def close(self, *, unbind: bool = True) -> None:
        """Unbind (waiting for unbind_resp at most `timeout`) and close the connection."""
        self.closing = True
        if self.open and unbind:
            with contextlib.suppress(ProviderError):
                await self.request(Command.UNBIND)
        self.drop("closed by the gateway")
        self.reading.cancel()
        await asyncio.gather(self.reading, return_exceptions=True)
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


class SmppProvider:
    """Sends texts over one transmitter session, bound on the first send and after a drop;
    binds that fail are retried after a doubling wait."""

    def __init__(self, options: SmppOptions, context: ProviderContext) -> None:
        self.options = options
        self.table = f"[sms.{context.name}]"
        self.endpoint = f"{options.host}:{options.port}"
        password = b"" if options.password_file is None else read_secret(options.password_file)
        self.password = password.decode("ascii")
        self.source = options.source()
        self.tls = options.tls_context()
        self.pace = Pace(options.max_per_second)
        self.session: Session | None = None
        self.binding = asyncio.Lock()
        self.failed_binds = 0
        self.next_bind = 0.0
        self.last_failure: ProviderError | None = None
        self.closed = False

    async def send(self, message: TextMessage) -> Accepted:
        encoded = encode_text(message)
        destination = Address(TON_INTERNATIONAL, NPI_ISDN, message.to.removeprefix("+"))
        session = await self.bound()
        message_ids: list[str] = []
        for number, short_message in enumerate(encoded.short_messages, 1):
            body = submit_sm(
                self.source,
                destination,
                short_message,
                esm_class=encoded.esm_class,
                data_coding=encoded.data_coding,
                registered_delivery=self.options.registered_delivery,
                valid_for=message.valid_for,
            )
            await self.pace.wait()
            answer = await session.request(Command.SUBMIT_SM, body)
            if answer.status:
                if answer.status == ESME_RINVBNDSTS:
                    session.drop("the SMSC says we are not bound")
                total = len(encoded.short_messages)
                part = f" of part {number}/{total}" if total > 1 else ""
                raise refusal(answer, Command.SUBMIT_SM, part)
            message_ids.append(first_c_octet_string(answer.body))
        # Delivery reports name each part by its own id; the first part's names the text.
        return Accepted(provider_id=message_ids[0])

    async def bound(self) -> Session:
        """The open session, binding a new one if there is none."""
        async with self.binding:
            if self.session is not None and self.session.open:
                return self.session
            if self.closed:
                raise ProviderError("closed", "the smpp provider is closed", temporary=True)
            wait = self.next_bind - asyncio.get_running_loop().time()
            if wait > 0 and self.last_failure is not None:
                raise ProviderError(
                    self.last_failure.code,
                    f"{self.last_failure.detail}; next bind in {wait:.1f} s",
                    temporary=True,
                    retry_after=wait,
                )
            try:
                self.session = await self.bind()
            except ProviderError as exc:
                self.failed_binds += 1
                delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.failed_binds - 1))
                self.next_bind = asyncio.get_running_loop().time() + delay
                self.last_failure = exc
                raise
            self.failed_binds = 0
            return self.session

    async def bind(self) -> Session:
        options = self.options
        timeout = options.response_timeout.total_seconds()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    options.host,
                    options.port,
                    ssl=self.tls,
                )
        except TimeoutError:
            raise ProviderError(
                "connect",
                f"cannot connect to SMSC {self.endpoint} within {timeout:g} s",
                temporary=True,
            ) from None
        except OSError as exc:
            raise ProviderError(
                "connect", f"cannot connect to SMSC {self.endpoint}: {exc}", temporary=True
            ) from exc
        session = Session(
            reader, writer, self.endpoint, timeout, options.enquire_link_interval.total_seconds()
        )
        body = bind_transmitter(options.system_id, self.password, options.system_type)
        try:
            answer = await session.request(Command.BIND_TRANSMITTER, body)
        except ProviderError:
            await session.close(unbind=False)
            raise
        if answer.status:
            await session.close(unbind=False)
            raise ProviderError(
                status_name(answer.status),
                f"SMSC {self.endpoint} refused bind_transmitter as {options.system_id!r}: "
                f"{describe_status(answer.status)}; check {self.table} credentials "
                "(system_id, password_file, system_type)",
                temporary=True,
            )
        log.info("SMPP transmitter bound to %s as %r", self.endpoint, options.system_id)
        session.keep_alive()
        return session

    def receipt(self, request: WebhookRequest) -> DeliveryReceipt:
        raise CallbackRefused(NO_CALLBACKS)

    def incoming(self, request: WebhookRequest) -> IncomingText:
        raise CallbackRefused(NO_CALLBACKS)

    def acknowledgement(self, path: Literal["status", "incoming"]) -> WebhookAnswer:
        # Never called, as no callback is ever accepted; a 404 if one were.
        return WebhookAnswer(404)

    async def close(self) -> None:
        self.closed = True
        async with self.binding:
            if self.session is not None:
                await self.session.close()
                self.session = None


PLUGIN = ProviderPlugin(options=SmppOptions, create=SmppProvider)
