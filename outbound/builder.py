"""One notification e-mail built for one recipient: rendered, composed and DKIM-signed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from gateway.account import Account
from gateway.addresses import MessageIdentity, sender_address
from gateway.clock import Clock
from gateway.jobs import Appointment, EmailJob
from gateway.message_tokens import new_token
from gateway.notification_kinds import APPOINTMENT_KINDS, CATALOGUE, CalendarMethod
from gateway.reply_tokens import MessageReference, ReplyTarget, make_local_part, reply_secrets
from gateway.settings import Settings
from outbound.compose import MailSpec, compose, feedback_id
from outbound.context import build_context, context_model
from outbound.dkim import Signer
from outbound.ics import invitation
from outbound.owner_templates import OwnerTemplates
from outbound.rendering import Rendered
from outbound.suppression import normalise

CUSTOM = "custom"


def job_kind(job: EmailJob) -> str:
    """The notification kind of an e-mail job ("custom" when it gives its own text)."""
    return job.template or CUSTOM


def template_name(job: EmailJob, kind: str, account: Account) -> str:
    """The templates a job of template `kind` renders: its kind's, but for one of the
    account's follow-ups (the planner gives its place in the list as the context's
    `follow_up`) the template that follow-up names, if any."""
    index = job.context.get("follow_up")
    follow_ups = account.notifications.follow_ups
    if kind != "follow_up" or type(index) is not int or not 0 <= index < len(follow_ups):
        return kind
    return follow_ups[index].template or kind


def job_appointment(job: EmailJob) -> Appointment | None:
    """The appointment an e-mail job's context describes, checked once per job."""
    kind = job_kind(job)
    if kind not in APPOINTMENT_KINDS:
        return None
    return context_model(kind, job.context, "appointment", Appointment)


class MessageBuilder:
    """Builds the signed bytes of one message; CPU only, except that an account's own
    templates are awaited from the render pool."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        templates: Callable[[], OwnerTemplates],
        signer: Callable[[], Signer],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.signer = signer
        self.clock = clock
        self._reply_key: tuple[Settings, bytes] | None = None

    def sender_domain(self, account: Account) -> str:
        return account.sender_domain or self.settings().default_sender_domain.domain

    def identity(self, account: Account, token: str | None = None) -> MessageIdentity:
        """The identity (Message-ID, bounce address, unsubscribe links) of a message: a
        fresh one, or that of `token`, a message being sent again."""
        inbound = self.settings().inbound
        return MessageIdentity(
            token or new_token(),
            self.sender_domain(account),
            inbound.reply_domain,
            inbound.public_url,
        )

    def reply_key(self) -> bytes:
        """The key signing reply addresses, read once per configuration (a reload brings
        a new Settings object)."""
        settings = self.settings()
        if self._reply_key is None or self._reply_key[0] is not settings:
            self._reply_key = (settings, reply_secrets(settings)[0])
        return self._reply_key[1]

    def reply_to(
        self, account: Account, appointment: Appointment | None, identity: MessageIdentity
    ) -> str:
        """The reply address: a token naming the account, calendar and appointment, so
        that the gateway routes replies to wherever they go when they come."""
        settings = self.settings()
        now = int(self.clock.now())
        target = ReplyTarget(
            account.id,
            appointment.calendar if appointment else None,
            appointment.id if appointment else None,
        )
        local = make_local_part(
            target,
            self.reply_key(),
            now + int(settings.reply_tokens.token_lifetime.total_seconds()),
            reference=MessageReference(
                identity.token, now + int(settings.inbound.message_id_ttl.total_seconds())
            ),
        )
        return identity.reply_address(local)

    async def build(
        self,
        job: EmailJob,
        account: Account,
        appointment: Appointment | None,
        address: str,
        identity: MessageIdentity,
    ) -> bytes | None:
        """The signed message to `address`, or None when its template renders empty."""
        spec = await self.spec(job, account, appointment, address, identity)
        if spec is None:
            return None
        return self.signed(spec, identity)

    def signed(self, spec: MailSpec, identity: MessageIdentity) -> bytes:
        """The message `spec` says, composed and DKIM-signed for its sender domain."""
        return self.signer().sign(compose(spec), identity.sender_domain)

    async def spec(
        self,
        job: EmailJob,
        account: Account,
        appointment: Appointment | None,
        address: str,
        identity: MessageIdentity,
    ) -> MailSpec | None:
        """What the message to `address` says, or None when its template renders empty."""
        kind = job_kind(job)
        domain = identity.sender_domain
        rules = CATALOGUE.get(kind)
        unsubscribe = identity if rules is not None and rules.list_unsubscribe else None
        rendered, to_name = await self.render(job, account, appointment, address, unsubscribe)
        if rendered.empty:
            return None
        method = rules.calendar_method if rules is not None else None
        return MailSpec(
            from_name=account.business_name,
            from_address=identity.sender_address,
            to=address,
            to_name=to_name,
            reply_to=self.reply_to(account, appointment, identity),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=identity.message_id,
            date=datetime.fromtimestamp(self.clock.now(), UTC),
            ics=self.invitation(account, appointment, method, address, domain),
            ics_method=method or "REQUEST",
            feedback_id=feedback_id(kind, account.id, domain),
            list_unsubscribe=(
                (unsubscribe.unsubscribe_url, unsubscribe.unsubscribe_mailto)
                if unsubscribe
                else None
            ),
        )

    def invitation(
        self,
        account: Account,
        appointment: Appointment | None,
        method: CalendarMethod | None,
        address: str,
        domain: str,
    ) -> bytes | None:
        """The calendar invitation the message carries, if its kind and account want one."""
        if method is None or appointment is None or not account.attach_ics:
            return None
        return invitation(
            appointment,
            account,
            organizer=sender_address(domain),
            attendee=address,
            method=method,
            sequence=appointment.sequence,
            domain=domain,
        )

    async def render(
        self,
        job: EmailJob,
        account: Account,
        appointment: Appointment | None,
        address: str,
        unsubscribe: MessageIdentity | None,
    ) -> tuple[Rendered, str | None]:
        """The message's text, and the recipient's name for its To header."""
        if job.template is None:
            return Rendered(job.subject or "", job.text or "", job.html), None
        recipient = None
        if appointment is not None:
            recipient = next(
                (c for c in appointment.clients if address in map(normalise, c.emails)), None
            )
        context = build_context(
            job.template,
            account,
            {**job.context, "appointment": appointment} if appointment else job.context,
            recipient,
            unsubscribe_url=unsubscribe.unsubscribe_url if unsubscribe else None,
        )
        rendered = await self.templates().render(
            template_name(job, job.template, account),
            job.locale or account.locale,
            context,
            account.id,
        )
        return rendered, str(context["client"]["name"]) or None
