"""The jobs upstream applications put on the queue: their schema and a strict, fast parser."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from gateway.errors import MalformedJob
from gateway.fields import (
    AccountId,
    Amount,
    BareEmailAddress,
    Currency,
    ListedTimeZone,
    LocaleTag,
    UpstreamId,
    Url,
)
from gateway.header_text import HeaderText
from gateway.notification_kinds import NotificationKind
from gateway.validation_errors import JOB_WORDING, dotted

KNOWN_KINDS: tuple[str, ...] = (
    "appointment.booked",
    "appointment.rescheduled",
    "appointment.cancelled",
    "appointment.confirmation.resend",
    "order.placed",
    "subscription.paid",
    "subscription.renewal_upcoming",
    "subscription.cancelled",
    "email.send",
    "sms.send",
    "account.upsert",
    "account.delete",
)

DIRECTORY_KINDS: frozenset[str] = frozenset({"account.upsert", "account.delete"})
"""The job kinds that change the account directory rather than notify a client."""

_MAX_REASON = 1000


class _Model(BaseModel):
    # Strict: a number is not a string nor "true" a boolean; upstream bugs surface here.
    # Extra fields are ignored so that upstream may send newer fields before we read them.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class Client(_Model):
    """Who booked or bought: every notification goes to each of `emails`."""

    name: HeaderText
    emails: Annotated[list[BareEmailAddress], Field(min_length=1)]
    phone: str | None = None


class Appointment(_Model):
    """One appointment as the scheduling service describes it."""

    id: UpstreamId
    calendar: UpstreamId
    type: UpstreamId
    start: AwareDatetime
    end: AwareDatetime
    timezone: ListedTimeZone
    clients: Annotated[list[Client], Field(min_length=1)]
    location: str = ""
    cancel_url: Url | None = None
    reschedule_url: Url | None = None
    notify: bool = True
    booked_at: AwareDatetime | None = None
    previous_start: AwareDatetime | None = None
    # The iCalendar SEQUENCE: the scheduling service raises it on each change of the event.
    sequence: Annotated[int, Field(ge=0)] = 0

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError("must be after 'start'")
        return end

    @property
    def zone(self) -> ZoneInfo:
        """The client's time zone, in which dates and times are shown."""
        return ZoneInfo(self.timezone)


class Order(_Model):
    """A purchase: a package, a gift certificate or a subscription."""

    id: UpstreamId
    name: HeaderText
    client: Client
    amount: Amount | None = None
    currency: Currency | None = None
    details: dict[str, Any] | None = None


class Subscription(_Model):
    """A subscription with automatic renewal charges."""

    id: UpstreamId
    name: HeaderText
    client: Client
    renews_at: AwareDatetime | None = None
    amount: Amount | None = None
    currency: Currency | None = None


class JobBase(_Model):
    """What every job has."""

    # An int limited to 1 rather than Literal[1]: pydantic lets `true` and `1.0` pass a Literal.
    v: Annotated[int, Field(ge=1, le=1)]
    id: UpstreamId
    account: AccountId
    send_at: AwareDatetime | None = None

    @property
    def appointment_id(self) -> str | None:
        """The appointment the job is about, for its events and history."""
        return None

    @property
    def ordered(self) -> bool:
        """Whether the order in which the job reached the gateway counts (the events of an
        appointment: gateway/ordering.py), so the queue records where it arrived."""
        return False

    @property
    def pending_appointment(self) -> str | None:
        """The appointment whose cancellation or move drops this job while it waits:
        only notifications (e-mail, SMS), never the scheduling service's own jobs."""
        return None


class AppointmentJob(JobBase):
    """An appointment booked, moved, cancelled, or whose confirmation is to be sent again."""

    kind: Literal[
        "appointment.booked",
        "appointment.rescheduled",
        "appointment.cancelled",
        "appointment.confirmation.resend",
    ]
    appointment: Appointment

    @property
    def appointment_id(self) -> str | None:
        return self.appointment.id

    @property
    def ordered(self) -> bool:
        return True


class OrderJob(JobBase):
    """A package, gift certificate or subscription purchased."""

    kind: Literal["order.placed"]
    product: Literal["package", "gift_certificate", "subscription"]
    order: Order


class SubscriptionPaidJob(JobBase):
    """A subscription charged; nothing is sent for the first charge (the purchase itself)."""

    kind: Literal["subscription.paid"]
    subscription: Subscription
    first_charge: bool = False


class SubscriptionRenewalUpcomingJob(JobBase):
    """A subscription about to be charged again."""

    kind: Literal["subscription.renewal_upcoming"]
    subscription: Subscription


class SubscriptionCancelledJob(JobBase):
    """A subscription ended; `by` says who or what ended it."""

    kind: Literal["subscription.cancelled"]
    subscription: Subscription
    by: Literal["client", "owner", "payment_failure"]


class _TemplateOrText(JobBase):
    """A message given either as a template kind with its context, or as its text."""

    template: NotificationKind | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None
    appointment: UpstreamId | None = None
    # Its latest useful delivery time: past it, nothing is sent (gateway/deadlines.py).
    expires_at: AwareDatetime | None = None

    def _check_template_or_text(self, text_fields: tuple[str, ...]) -> None:
        # null is the same as leaving the field out, until the form chosen needs the field
        given = [name for name in text_fields if getattr(self, name) is not None]
        wording = " and ".join(f"'{name}'" for name in text_fields)
        if self.template is not None and given:
            raise ValueError(f"give either 'template' or {wording}, not both")
        if self.template is None:
            if "context" in self.model_fields_set:
                raise ValueError("'context' is only used with 'template'")
            if not given:
                raise ValueError(f"give either 'template' (with 'context') or {wording}")
            missing = [name for name in text_fields if name not in given]
            if missing and missing[0] in self.model_fields_set:
                raise ValueError(f"field '{missing[0]}': must be a string")
            if missing:
                raise ValueError(f"missing field '{missing[0]}' (it goes with '{given[0]}')")

    @property
    def appointment_id(self) -> str | None:
        return self.appointment

    @property
    def pending_appointment(self) -> str | None:
        return self.appointment


class EmailJob(_TemplateOrText):
    """One e-mail, from a template kind or with its subject and body given."""

    kind: Literal["email.send"]
    to: Annotated[list[BareEmailAddress], Field(min_length=1)]
    subject: HeaderText | None = None
    html: str | None = None
    locale: LocaleTag | None = None

    @model_validator(mode="after")
    def _template_or_text(self) -> EmailJob:
        self._check_template_or_text(("subject", "text"))
        if self.html is not None and self.template is not None:
            raise ValueError("'html' goes with 'subject' and 'text', not with 'template'")
        return self


class SmsJob(_TemplateOrText):
    """One text message, from a template kind or with its text given."""

    kind: Literal["sms.send"]
    to: Annotated[str, Field(min_length=1)]
    text: Annotated[str, Field(min_length=1, max_length=1600)] | None = None

    @model_validator(mode="after")
    def _template_or_text(self) -> SmsJob:
        self._check_template_or_text(("text",))
        return self


class AccountUpsertJob(JobBase):
    """An account created or changed; `data` is checked against the settings elsewhere."""

    kind: Literal["account.upsert"]
    data: dict[str, Any]


class AccountDeleteJob(JobBase):
    """An account removed from the directory."""

    kind: Literal["account.delete"]


Job: TypeAlias = Annotated[
    AppointmentJob
    | OrderJob
    | SubscriptionPaidJob
    | SubscriptionRenewalUpcomingJob
    | SubscriptionCancelledJob
    | EmailJob
    | SmsJob
    | AccountUpsertJob
    | AccountDeleteJob,
    Field(discriminator="kind"),
]

_ADAPTER: TypeAdapter[Job] = TypeAdapter(Job)


def channel_of(job: Job) -> Literal["email", "sms"] | None:
    """How a job that sends one message or text reaches its client; None for the others."""
    if isinstance(job, EmailJob):
        return "email"
    if isinstance(job, SmsJob):
        return "sms"
    return None


def event_kind(job: Job) -> str:
    """The kind a job's events carry: the template's, for a message sent from one."""
    if isinstance(job, EmailJob | SmsJob) and job.template is not None:
        return job.template
    return job.kind


def parse_job(raw: str | bytes) -> Job:
    """Validate one job's JSON; raise MalformedJob with every problem found, briefly."""
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise MalformedJob(_explain(raw, exc)) from None
    except Exception as exc:
        # Whatever else an entry can make a parser raise, it is still the entry's fault.
        raise MalformedJob(f"cannot be read: {type(exc).__name__}: {exc}"[:_MAX_REASON]) from None


def job_to_json(job: Job) -> str:
    """Compact JSON of a job, as it goes on the queue."""
    return _ADAPTER.dump_json(job, by_alias=True, exclude_unset=True).decode()


def _explain(raw: str | bytes, exc: ValidationError) -> str:
    # Only refused jobs come here, so reading the JSON a second time costs nothing that
    # matters; it lets the envelope be judged first, in the order a reader would check it.
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        return f"not JSON: {err.msg} at line {err.lineno} column {err.colno} (char {err.pos})"
    except UnicodeDecodeError as err:
        return f"not JSON: not valid UTF-8 at byte {err.start}"
    except ValueError:
        # Python refuses integers of more than sys.get_int_max_str_digits() digits.
        return "not JSON: a number too long"
    except RecursionError:
        return "not JSON: nested too deeply"
    if not isinstance(data, dict):
        return "not a JSON object"
    if "v" not in data:
        return "missing field 'v'"
    version = data["v"]
    if type(version) is not int or version != 1:
        return f"unsupported job version {_show(version)} (supported: 1)"
    if "kind" not in data:
        return "missing field 'kind'"
    kind = data["kind"]
    if not isinstance(kind, str):
        return "field 'kind': must be a string"
    if kind not in KNOWN_KINDS:
        return f"unknown kind {_show(kind)} (known: {', '.join(KNOWN_KINDS)})"
    return _join([_describe(error) for error in exc.errors(include_url=False)])


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _join(reasons: list[str]) -> str:
    unique = list(dict.fromkeys(reasons))
    text = unique[0]
    for shown, reason in enumerate(unique[1:], start=1):
        if len(text) + len(reason) + 2 > _MAX_REASON - 20:
            return f"{text}; and {len(unique) - shown} more"
        text = f"{text}; {reason}"
    return text


def _describe(error: ErrorDetails) -> str:
    if error["type"] == "json_invalid":
        return JOB_WORDING.problem(error)
    # The first location item is the union's tag (the job kind); fields are named without it.
    where = dotted(error["loc"][1:])
    if error["type"] == "missing":
        return f"missing field '{where}'"
    problem = JOB_WORDING.problem(error)
    return f"field '{where}': {problem}" if where else problem
