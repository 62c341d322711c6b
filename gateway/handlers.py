"""Job handlers: the contract each job kind implements, and the directory's own kinds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Protocol

from gateway.clock import Clock, rfc3339
from gateway.config import validate_account
from gateway.directory import AccountDirectory
from gateway.errors import ConfigError, PermanentFailure
from gateway.events import Event
from gateway.jobs import KNOWN_KINDS, AccountDeleteJob, AccountUpsertJob, Job
from gateway.settings import Settings

# Where the job a handler runs first reached the gateway (the stream entry id it came as),
# for the jobs whose order of arrival counts (Job.ordered: the events of an appointment,
# gateway/ordering.py): set by the worker for the length of the run, from what the queue
# recorded when it claimed the job; None outside a worker. A context variable rather than
# an argument of `handle`: only the planner reads it.
ARRIVAL: ContextVar[str | None] = ContextVar("arrival", default=None)


class Handler(Protocol):
    """Does one job and returns its outcome as events.

    `attempt` counts from 1. Raise TemporaryFailure to have the job retried,
    PermanentFailure to send it to the dead letters; the worker records and
    acknowledges the rest.
    """

    async def handle(self, job: Job, attempt: int) -> list[Event]: ...


class DirectoryHandler:
    """`account.upsert` and `account.delete`: keep the Redis account directory current."""

    def __init__(
        self, directory: AccountDirectory, settings: Callable[[], Settings], clock: Clock
    ) -> None:
        self.directory = directory
        self.settings = settings
        self.clock = clock

    async def handle(self, job: Job, attempt: int) -> list[Event]:
        if isinstance(job, AccountUpsertJob):
            try:
                account = validate_account(
                    job.data,
                    account_id=job.account,
                    source=f"job {job.id}",
                    settings=self.settings(),
                )
            except ConfigError as exc:
                raise PermanentFailure(
                    "invalid account: " + "; ".join(str(p) for p in exc.problems)
                ) from exc
            await self.directory.store(job.account, account)
            reason = None
            if job.account in self.directory.file_accounts:
                reason = "stored, but the account file of the same id takes precedence"
            return [self._event(job, reason)]
        if isinstance(job, AccountDeleteJob):
            removed = await self.directory.remove(job.account)
            return [self._event(job, None if removed else "no such account in Redis")]
        raise PermanentFailure(f"the directory handler does not do '{job.kind}' jobs")

    def _event(self, job: Job, reason: str | None) -> Event:
        return Event(
            job=job.id,
            kind=job.kind,
            status="applied",
            at=rfc3339(self.clock.now()),
            account=job.account,
            reason=reason,
        )


def builtin_handlers(
    directory: AccountDirectory,
    settings: Callable[[], Settings],
    clock: Clock,
    email: Handler,
    sms: Handler,
    planner: Handler,
) -> Mapping[str, Handler]:
    """The handler of every known job kind."""
    directory_handler = DirectoryHandler(directory, settings, clock)
    handlers: dict[str, Handler] = {
        "account.upsert": directory_handler,
        "account.delete": directory_handler,
        "email.send": email,
        "sms.send": sms,
    }
    for kind in KNOWN_KINDS:
        if kind.startswith(("appointment.", "order.", "subscription.")):
            handlers[kind] = planner
    assert handlers.keys() == set(KNOWN_KINDS)
    return handlers
