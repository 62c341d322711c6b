"""`mailgw run`: the daemon, its roles, its signals and its embedded Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from gateway import systemd
from gateway.clock import SystemClock
from gateway.commands.queue_options import queue_options
from gateway.commands.roles import Role
from gateway.commands.support import load_checked_config
from gateway.config import Config
from gateway.directory import AccountDirectory
from gateway.embedded_redis import EmbeddedRedis
from gateway.errors import ConfigError, ConfigProblem
from gateway.handlers import builtin_handlers
from gateway.keys import Keys
from gateway.outage import PROCESS, backoff, is_outage
from gateway.planner import Planner
from gateway.queue import JobQueue
from gateway.redis_conn import connect
from gateway.scheduler import Scheduler
from gateway.settings import Settings, changed_restart_only
from gateway.worker import Worker, WorkerOptions

if TYPE_CHECKING:
    from inbound.router import InboundRouter
    from inbound.service import InboundService
    from outbound.dkim import Signer
    from outbound.owner_templates import OwnerTemplates
    from outbound.service import OutboundService
    from outbound.sms.service import SmsService

log = logging.getLogger(__name__)

# How often systemd's STATUS= (the queue depths in `systemctl status`) is refreshed.
STATUS_INTERVAL = 10.0


def worker_options(settings: Settings) -> WorkerOptions:
    q = settings.queue
    visibility = q.visibility_timeout.total_seconds()
    return WorkerOptions(
        concurrency=q.concurrency,
        block_ms=int(q.block_timeout.total_seconds() * 1000),
        max_attempts=q.max_attempts,
        backoff_initial=q.backoff_initial.total_seconds(),
        backoff_max=q.backoff_max.total_seconds(),
        # A job must give up before another worker may take it over.
        job_timeout=visibility * 0.9,
        reclaim_interval=max(1.0, visibility / 4),
    )


async def open_redis(settings: Settings) -> tuple[Redis, EmbeddedRedis | None]:
    """A client for the configured Redis, starting the embedded server when no URL is set."""
    # Each job in hand may hold a connection, besides the blocking read, the
    # scheduler and the account-change subscription.
    connections = settings.queue.concurrency + 8
    if settings.redis.url:
        return connect(settings.redis.url, connections), None
    embedded = EmbeddedRedis(settings.state_dir)
    url = await embedded.start()
    return connect(url, connections), embedded


# Each role's metrics port is metrics.listen's plus this, so that the processes of
# the per-role units on one host do not clash.
METRICS_PORT_OFFSETS: dict[Role, int] = {"all": 0, "outbound": 1, "inbound": 2, "scheduler": 3}


class Daemon:
    """One process running the given role on one asyncio loop."""

    def __init__(self, config: Config, role: Role, demo: bool = False) -> None:
        self.config = config
        # The settings the process started with: its restart-only keys stay in force.
        self.started_with = config.settings
        self.role = role
        self.demo = demo
        self.clock = SystemClock()
        self._stopping = False
        self._done = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._essential: list[asyncio.Task[Any]] = []
        self._stoppables: list[Worker | Scheduler | InboundRouter | InboundService] = []
        # Redis out of reach, as every part of this process finds it.
        self.outage = PROCESS
        self.outbound: OutboundService | None = None
        # The one DKIM signer of the roles that send (all, outbound): their e-mail and the
        # replies they forward; a reload makes a new one.
        self.signer: Signer | None = None
        self.sms: SmsService | None = None
        self.inbound: InboundService | None = None
        # The SMS webhook's listening port (roles all and inbound).
        self.webhook: Any = None
        self.metrics_port: Any = None
        # Where the SMTP processes find Redis: [redis] url, or the embedded server's.
        self.redis_url = ""

    async def serve(self) -> int:
        settings = self.config.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        redis, embedded = await open_redis(settings)
        self.redis_url = settings.redis.url or (embedded.url if embedded else "")
        try:
            await self._reach(redis)
            keys = Keys(settings.redis.prefix)
            queue = JobQueue(redis, queue_options(settings), self.clock)
            self.directory = AccountDirectory.cached_as(
                settings.accounts, redis, keys, self.config.accounts, self.clock.now
            )
            if self.role in ("all", "outbound"):
                # Imported here: the other commands need none of the outbound side.
                from outbound.dkim import Signer
                from outbound.service import OutboundService

                try:
                    self.signer = Signer.from_settings(settings)
                    self.outbound = OutboundService(
                        lambda: self.config.settings,
                        self._signer,
                        redis,
                        keys,
                        self.directory,
                        self.clock,
                        lambda: self.config.bounce_rules,
                    )
                except ConfigError as exc:
                    for problem in exc.problems:
                        log.error("%s", problem)
                    return 2
            if self.role != "scheduler":
                from outbound.sms.service import SmsService

                self.sms = SmsService(
                    self.config,
                    redis,
                    keys,
                    self.directory,
                    lambda: self.config.settings,
                    self.clock,
                    self._owner_templates,
                )
            if self.role != "scheduler":
                from inbound.service import InboundService

                self.inbound = InboundService(
                    lambda: self.config.settings, redis, keys, self.directory, queue, self.clock
                )
            try:
                await self._start_role(queue, settings)
            except ConfigError as exc:
                for problem in exc.problems:
                    log.error("%s", problem)
                return 2
            if embedded is not None and embedded.running:
                # Only the process that started the embedded server depends on it alone.
                self._spawn(self._watch_embedded(embedded))
            self._install_signals()
            systemd.notify("READY=1", f"STATUS=running role {self.role}")
            self._spawn(systemd.ping_watchdog())
            self._spawn(systemd.report_status(lambda: self._status(queue), STATUS_INTERVAL))
            if self.demo:
                from gateway.commands.demo import run_demo

                self._spawn(run_demo(queue, settings, self.clock, sys.stdout))
            log.info(
                "mailgw running (role %s, config %s)",
                self.role,
                self.config.path or "embedded defaults",
            )
            return await self._wait()
        finally:
            systemd.notify("STOPPING=1")
            if self.outbound is not None:
                await self.outbound.close()
            for port in (self.metrics_port, self.webhook):
                if port is not None:
                    from twisted.internet.defer import maybeDeferred

                    stopped = maybeDeferred(port.stopListening)
                    await stopped.asFuture(asyncio.get_running_loop())
            if self.sms is not None:
                await self.sms.close()
            if self.inbound is not None:
                await self.inbound.close()
            await redis.aclose()
            if embedded is not None:
                await embedded.stop()
            log.info("mailgw stopped")

    async def _start_role(self, queue: JobQueue, settings: Settings) -> None:
        from gateway import metrics
        from gateway.depth_metrics import watch_queue_depths

        self.metrics_port = metrics.serve_metrics(
            settings, str(self.config.path or "(defaults)"), METRICS_PORT_OFFSETS[self.role]
        )
        self._spawn(watch_queue_depths(queue))
        if self.sms is not None and self.role in ("all", "inbound"):
            self._listen_webhook(queue, self.sms, settings)
        if self.inbound is not None and self.role in ("all", "inbound"):
            source = str(self.config.path or "(defaults)")
            await self.inbound.serve(source, self.config.path, self.redis_url)
            self._stoppables.append(self.inbound)
            self._spawn_part("the SMTP server", self.inbound.run)
        if self.outbound is not None:
            assert self.sms is not None and self.inbound is not None
            router = self.inbound.router(
                self.outbound.transport, self._signer, lambda: self.config.bounce_rules, self.outage
            )
            self._stoppables.append(router)
            consumer = f"{socket.gethostname()}-{os.getpid()}"
            self._spawn_part("the inbound router", partial(router.run, consumer))
            worker = Worker(
                queue,
                self.directory,
                builtin_handlers(
                    self.directory,
                    lambda: self.config.settings,
                    self.clock,
                    self.outbound.email,
                    self.sms.handler,
                    Planner(
                        queue.redis,
                        queue.keys,
                        queue,
                        self.directory,
                        self.clock,
                        lambda: int(self.config.settings.queue.history_ttl.total_seconds()),
                        lambda: self.config.settings.deadlines,
                    ),
                ),
                consumer=f"{socket.gethostname()}-{os.getpid()}",
                options=worker_options(settings),
                outage=self.outage,
            )
            self._stoppables.append(worker)
            self._spawn_part("the worker", worker.run)
            self._spawn(self.directory.follow_changes(outage=self.outage))
        if self.role in ("all", "scheduler"):
            scheduler = Scheduler(
                queue,
                settings.queue.scheduler_interval.total_seconds(),
                settings.queue.scheduler_batch,
                self.outage,
            )
            self._stoppables.append(scheduler)
            self._spawn_part("the scheduler", scheduler.run)

    def _signer(self) -> Signer:
        assert self.signer is not None, "only the roles that send sign"
        return self.signer

    def _owner_templates(self) -> OwnerTemplates:
        # Only the roles with an outbound side send texts (the others' SmsService serves the
        # webhook).
        assert self.outbound is not None, "texts are sent by the outbound side only"
        return self.outbound.templates

    def _listen_webhook(self, queue: JobQueue, sms: SmsService, settings: Settings) -> None:
        from gateway.http_listener import listen
        from inbound.sms_inbox import SmsInbox
        from inbound.sms_webhook import SmsWebhook

        def current() -> Settings:
            return self.config.settings

        inbox = SmsInbox(
            queue.redis,
            queue.keys,
            queue,
            self.directory,
            current,
            lambda: sms.provider,
            self.clock,
        )
        webhook = SmsWebhook(
            settings.sms.provider, lambda: sms.provider, lambda: current().sms.webhook_url, inbox
        )
        from twisted.internet.error import CannotListenError

        try:
            self.webhook = listen(webhook, settings.sms.webhook_listen)
        except CannotListenError as exc:
            raise ConfigError(
                [
                    ConfigProblem(
                        str(self.config.path or "(defaults)"),
                        "sms.webhook_listen",
                        str(exc.socketError),
                    )
                ]
            ) from exc
        log.info("SMS webhook listening on %s", settings.sms.webhook_listen)

    async def _reach(self, redis: Redis) -> None:
        """Wait for Redis to answer: a daemon started while it is away waits for it."""
        failures = 0
        while True:
            try:
                await redis.ping()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                failures += 1
                self.outage.failed("startup", exc)
                await asyncio.sleep(backoff(failures))
                continue
            self.outage.ended()
            return

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._tasks.append(asyncio.create_task(coro))

    def _spawn_part(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run one part of the role (worker, router, scheduler, SMTP server) until it
        returns; once all have, after a warm stop, the daemon stops."""
        task = asyncio.create_task(self._supervised(name, run))
        self._tasks.append(task)
        self._essential.append(task)
        task.add_done_callback(self._part_done)

    async def _supervised(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        """`run` until it returns; if it fails, it is logged and started again with
        backoff, so that no part's failure stops the others."""
        failures = 0
        while True:
            try:
                await run()
                return
            except Exception:
                failures += 1
                log.exception("%s failed; starting it again", name)
            if self._stopping:
                return
            await asyncio.sleep(backoff(failures))

    def _part_done(self, task: asyncio.Task[Any]) -> None:
        if all(t.done() for t in self._essential):
            self._done.set()

    async def _wait(self) -> int:
        await self._done.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return 0

    async def _watch_embedded(self, embedded: EmbeddedRedis) -> None:
        """Start the embedded Redis again if it stops: its data is in its append-only
        file, and the parts wait it out as any Redis outage."""
        failures = 0
        while not self._stopping:
            if embedded.running:
                failures = 0
                await asyncio.sleep(1.0)
                continue
            log.error("the embedded Redis server stopped; starting it again")
            try:
                await embedded.start()
            except (RuntimeError, OSError) as exc:
                failures += 1
                log.error("cannot start the embedded Redis server again: %s", exc)
                await asyncio.sleep(backoff(failures))

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    def _on_stop_signal(self, name: str) -> None:
        if self._stopping:
            log.warning("%s again: stopping now; jobs in hand will be reclaimed", name)
            self._cold_stop()
            return
        grace = self.started_with.queue.shutdown_grace.total_seconds()
        log.info("%s: finishing the jobs in hand (up to %gs), then stopping", name, grace)
        self._stopping = True
        systemd.notify("STOPPING=1", "STATUS=stopping: finishing the jobs in hand")
        for part in self._stoppables:
            part.stop()
        if all(t.done() for t in self._essential):
            self._done.set()
        asyncio.get_running_loop().call_later(grace, self._cold_stop)

    async def _status(self, queue: JobQueue) -> str:
        """systemd's STATUS= line: the role and the queue's depths."""
        if self._stopping:
            return "stopping: finishing the jobs in hand"
        try:
            d = await queue.depths()
        except Exception as exc:
            if not is_outage(exc):
                return f"role {self.role}: queue depths unavailable ({exc})"
            self.outage.failed("status", exc)
            return self.outage.status()
        self.outage.ended()
        return (
            f"role {self.role}: ready {d.ready}, in flight {d.in_flight},"
            f" scheduled {d.scheduled}, retrying {d.retrying}, dead letters {d.dead_letters}"
        )

    def _cold_stop(self) -> None:
        self._stopping = True
        self._done.set()

    def reload(self) -> None:
        """Load the configuration again; a new one with errors is refused whole."""
        systemd.notify("RELOADING=1", systemd.monotonic_usec())
        try:
            new = load_checked_config(self.config.path)
            signer = self.signer
            if signer is not None:
                from outbound.dkim import Signer

                # The new keys for the e-mail and the forwarded replies alike.
                signer = Signer.from_settings(new.settings)
            if self.outbound is not None:
                self.outbound.reload(new.settings)
            if self.inbound is not None:
                self.inbound.reload(new.settings)
        except ConfigError as exc:
            log.error(
                "reload refused, the configuration in force is kept:\n%s",
                "\n".join(str(p) for p in exc.problems),
            )
        else:
            changed = changed_restart_only(self.started_with, new.settings)
            if changed:
                log.warning("reloaded; changes to %s apply after a restart", ", ".join(changed))
            logging.getLogger().setLevel(new.settings.log.level.upper())
            self.config = new
            self.signer = signer
            self.directory.replace_files(new.accounts)
            log.info("configuration reloaded: %d account file(s)", len(new.accounts))
        systemd.notify("READY=1")


def run(config_path: Path | None, role: Role, demo: bool = False) -> int:
    """Run the daemon until stopped; returns the exit status."""
    try:
        config = load_checked_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        return 2
    logging.getLogger().setLevel(config.settings.log.level.upper())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from gateway.reactor import install_reactor, stop_reactor_threads

    reactor = install_reactor(loop)
    try:
        return loop.run_until_complete(Daemon(config, role, demo).serve())
    finally:
        stop_reactor_threads(reactor)
        loop.close()
