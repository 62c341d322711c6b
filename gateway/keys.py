"""Names of every Redis key the gateway uses, derived from one configurable prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under `prefix` (for Redis Cluster the prefix holds a hash tag,
    such as `{mailgw}:`, so that every key lives in one slot and Lua scripts may
    touch several at once)."""

    prefix: str = "mailgw:"

    @property
    def jobs(self) -> str:
        """Stream of ready jobs, read by the workers' consumer group."""
        return self.prefix + "jobs"

    @property
    def events(self) -> str:
        """Stream of delivery events for the scheduling service."""
        return self.prefix + "events"

    @property
    def dead(self) -> str:
        """Stream of dead letters: failed or malformed jobs with their reason."""
        return self.prefix + "dead"

    @property
    def scheduled(self) -> str:
        """Sorted set of job ids waiting for their `send_at`, scored in epoch ms."""
        return self.prefix + "scheduled"

    @property
    def retry(self) -> str:
        """Sorted set of job ids waiting for their next attempt, scored in epoch ms."""
        return self.prefix + "retry"

    @property
    def payloads(self) -> str:
        """Hash of job id to job JSON for the jobs in `scheduled` and `retry`."""
        return self.prefix + "payloads"

    @property
    def attempts(self) -> str:
        """Hash of job id to the number of failed attempts so far."""
        return self.prefix + "attempts"

    @property
    def accounts(self) -> str:
        """Hash of account id to account JSON, kept by `account.upsert` jobs."""
        return self.prefix + "accounts"

    @property
    def accounts_channel(self) -> str:
        """Pub/sub channel announcing changed account ids to the workers' caches."""
        return self.prefix + "accounts:changed"

    @property
    def suppressed(self) -> str:
        """Hash of address to why no mail at all goes to it (hard bounce, by hand)."""
        return self.prefix + "suppressed"

    def opted_out(self, account: str) -> str:
        """Hash of address to why one account's reminders and follow-ups stop for it."""
        return self.prefix + "optout:" + account

    def message(self, token: str) -> str:
        """Hash describing one sent message (job, account, appointment, recipient),
        found again from its Message-ID or bounce address."""
        return self.prefix + "msg:" + token

    def in_flight(self, job_id: str) -> str:
        """Hash of the recipients a run of a job began sending to and has not settled (to
        the message token), so that the run after one that died, hung or timed out knows
        a message may be out already, and sends it again only with the same Message-ID."""
        return self.prefix + "inflight:" + job_id

    def delivered(self, job_id: str) -> str:
        """Hash of the recipients a job has reached (to the Message-ID sent, or the final
        status), so that a retry or a reclaimed job does not send to them again."""
        return self.prefix + "delivered:" + job_id

    @property
    def notifications(self) -> str:
        """Sorted set of the appointments with notifications waiting, each scored by the
        first one's time (epoch ms); their jobs are made when they fall due."""
        return self.prefix + "notifications"

    @property
    def waiting_count(self) -> str:
        """Integer: how many notifications wait in all the appointments' data."""
        return self.prefix + "waiting"

    @property
    def appointment_data_prefix(self) -> str:
        return self.prefix + "apptdata:"

    def appointment_data(self, appointment_id: str) -> str:
        """String of what an appointment's waiting notifications need: account, planning
        job, context, and the notifications themselves (gateway/notifications.py)."""
        return self.appointment_data_prefix + appointment_id

    @property
    def bookings_prefix(self) -> str:
        return self.prefix + "bookings:"

    def sequence(self, appointment_id: str) -> str:
        """Hash of the calendar SEQUENCE given by each job that changed an appointment."""
        return self.prefix + "seq:" + appointment_id

    def bookings(self, account: str, address: str) -> str:
        """Sorted set of a client's appointments with one account, by start time."""
        return f"{self.bookings_prefix}{account}:{address}"

    @property
    def history_prefix(self) -> str:
        return self.prefix + "history:"

    def history(self, appointment_id: str) -> str:
        """Stream of everything planned, sent, skipped or dropped for one appointment."""
        return self.history_prefix + appointment_id

    @property
    def job_state_prefix(self) -> str:
        return self.prefix + "job:"

    def job_state(self, job_id: str) -> str:
        """String holding where a job id stands, for idempotency (expires)."""
        return self.job_state_prefix + job_id

    def arrival(self, job_id: str) -> str:
        """String holding the stream entry id an appointment job first came as: its place in
        the order of its appointment's events (gateway/ordering.py); expires as its state."""
        return self.prefix + "arrival:" + job_id

    def appointment(self, appointment_id: str) -> str:
        """Set of pending job ids enqueued for one appointment, so they can be cancelled at
        once (the planner's own are listed in the appointment's data)."""
        return self.prefix + "appt:" + appointment_id

    @property
    def sms_opted_out(self) -> str:
        """Hash of E.164 number to why it gets no text at all (it answered STOP)."""
        return self.prefix + "smsoptout"

    def sms_waiting(self, number: str) -> str:
        """Set of the appointments whose SMS reminder waits to text one number (dropped if
        it opts out); written by PLAN_NOTIFICATIONS."""
        return self.prefix + "smswait:" + number

    def sms_message(self, provider_id: str) -> str:
        """Hash describing one text sent (job, account, appointment, number, kind), found
        again from the provider's id when its delivery report comes."""
        return self.prefix + "smsmsg:" + provider_id

    def sms_in_flight(self, job_id: str) -> str:
        """Hash of the numbers an `sms.send` job's text went to without an answer yet (the
        request made, its outcome unknown) to when the first such request was made (epoch
        s): a retry asks the provider before sending again."""
        return self.prefix + "smsflight:" + job_id

    def sms_report(self, provider_id: str) -> str:
        """A final delivery report (JSON) for a text not known yet by that id: kept until the
        text whose answer was lost is found under it."""
        return self.prefix + "smsreport:" + provider_id

    def sms_last_account(self, number: str) -> str:
        """The account that last texted a number: the automatic answer speaks for it."""
        return self.prefix + "smslast:" + number

    def sms_answered(self, number: str) -> str:
        """When a number last got the automatic answer (epoch s; expires after answer_interval)."""
        return self.prefix + "smsanswered:" + number

    @property
    def inbound(self) -> str:
        """Stream of messages the SMTP server accepted, waiting to be routed."""
        return self.prefix + "inbound"
