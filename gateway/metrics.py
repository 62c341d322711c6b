"""Prometheus metrics: the gateway's metric families, their one registry, and the endpoint."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

from gateway.bounce_classes import Action, BounceClass
from gateway.errors import ConfigError, ConfigProblem
from gateway.jobs import KNOWN_KINDS
from gateway.mailbox_providers import provider

if TYPE_CHECKING:
    from gateway.events import Event
    from gateway.settings import Settings

log = logging.getLogger(__name__)

JobOutcome = Literal["done", "retried", "dead_lettered", "deferred", "skipped"]
"""What became of a job a worker took: done; retried later; dead-lettered; deferred or
skipped by the queue's claim (not yet due, or already dealt with)."""
JOB_OUTCOMES: tuple[JobOutcome, ...] = ("done", "retried", "dead_lettered", "deferred", "skipped")

InboundStage = Literal["connect", "rcpt", "data"]

# From a local maildir write to an SMTP exchange that waits out a slow server's replies.
RELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Where Prometheus conventionally finds them: http://<metrics.listen>/metrics.
PATH = b"metrics"

# A *_created series per counter would double the series for a figure nobody graphs.
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry()
# The process's CPU, memory, open files and Python's garbage collector, as every exporter has.
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Labels hold only values from small fixed sets (kinds, states, codes, configured names):
# never an address, a number, a job id or an account, which would make a series each.
JOBS = Counter(
    "mailgw_jobs_total",
    "Jobs taken by the workers, by job kind and outcome.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "mailgw_queue_depth",
    "Jobs on the queue by state: ready, in_flight, scheduled, retrying, dead_letters.",
    ["state"],
    registry=REGISTRY,
)
RELAY_SECONDS = Histogram(
    "mailgw_relay_seconds",
    "Time to hand one message to the relay transport, by transport and recipient status.",
    ["transport", "status"],
    buckets=RELAY_BUCKETS,
    registry=REGISTRY,
)
SMS_SENT = Counter(
    "mailgw_sms_sent_total",
    "Text messages the SMS provider accepted, by provider and encoding.",
    ["provider", "encoding"],
    registry=REGISTRY,
)
SMS_SEGMENTS = Counter(
    "mailgw_sms_segments_total",
    "Segments (billed parts) of the text messages the provider accepted.",
    ["provider", "encoding"],
    registry=REGISTRY,
)
INBOUND_REPLIES = Counter(
    "mailgw_inbound_replies_total",
    "Replies of the inbound SMTP server by stage (connect, rcpt, data) and reply code.",
    ["stage", "code"],
    registry=REGISTRY,
)
EVENTS = Counter(
    "mailgw_events_total",
    "Delivery events recorded, by channel (email, sms, none) and status.",
    ["channel", "status"],
    registry=REGISTRY,
)
BOUNCES = Counter(
    "mailgw_bounces_total",
    "Negative delivery outcomes (refusals, bounces, delivery reports), by bounce class, the"
    " recipient's mailbox provider (gateway/mailbox_providers.py) and what the gateway did:"
    " suppress, retry or fail.",
    ["class", "provider", "action"],
    registry=REGISTRY,
)

for _kind in (*KNOWN_KINDS, "unknown"):
    for _outcome in JOB_OUTCOMES:
        # Series that exist from the start read as 0, not as missing, in rate() and alerts.
        JOBS.labels(_kind, _outcome)


def record_job(kind: str, outcome: JobOutcome) -> None:
    """Count one job's outcome; a kind the gateway does not know counts as "unknown"."""
    JOBS.labels(kind if kind in KNOWN_KINDS else "unknown", outcome).inc()


def record_events(events: Iterable[Event]) -> None:
    """Count recorded delivery events."""
    for event in events:
        EVENTS.labels(event.channel or "none", event.status).inc()


def record_bounce(bounce_class: BounceClass, recipient: str, action: Action) -> None:
    """Count one negative outcome: its class, the recipient's provider (never the address)
    and the action taken."""
    BOUNCES.labels(bounce_class, provider(recipient), action).inc()


def observe_relay(transport: str, status: str, seconds: float) -> None:
    """One message handed to the relay transport, and what became of its recipient."""
    RELAY_SECONDS.labels(transport, status).observe(seconds)


def record_sms(provider: str, encoding: str, parts: int) -> None:
    """One text the provider accepted, of `parts` segments."""
    SMS_SENT.labels(provider, encoding).inc()
    SMS_SEGMENTS.labels(provider, encoding).inc(parts)


def record_inbound_reply(stage: InboundStage, reply: str) -> None:
    """One reply of the inbound SMTP server (its text, or just its code)."""
    INBOUND_REPLIES.labels(stage, reply[:3]).inc()


class _AllProcesses:
    """What the endpoint serves: REGISTRY's metrics, plus the counts of the processes that
    serve SMTP beside the daemon (inbound/smtp_children.py). Those run prometheus_client's
    multiprocess mode: each writes its values to files of its own in a directory of the
    daemon's, which stay after it exits, so that its counts outlive it. Their counters and
    histograms are added to the daemon's; they set no gauges."""

    def __init__(self) -> None:
        self.directories: list[Path] = []

    def collect(self) -> Iterator[Metric]:
        files = [str(path) for directory in self.directories for path in directory.glob("*.db")]
        if not files:
            yield from REGISTRY.collect()
            return
        merged = MultiProcessCollector.merge(files)  # type: ignore[no-untyped-call]
        theirs = {family.name: family for family in merged}
        for family in REGISTRY.collect():
            other = theirs.get(family.name)
            if other is None or family.type not in ("counter", "histogram", "summary"):
                yield family
                continue
            values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
            for sample in (*family.samples, *other.samples):
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[key] = values.get(key, 0.0) + sample.value
            total = Metric(family.name, family.documentation, family.type, family.unit)
            total.samples = [
                Sample(name, dict(labels), value) for (name, labels), value in values.items()
            ]
            yield total


_ALL_PROCESSES = _AllProcesses()
_EXPOSED = CollectorRegistry()
_EXPOSED.register(_ALL_PROCESSES)


def add_process_files(directory: Path) -> None:
    """Serve the counts that other processes write to `directory` (prometheus_client's
    PROMETHEUS_MULTIPROC_DIR) along with this process's."""
    _ALL_PROCESSES.directories.append(directory)


def remove_process_files(directory: Path) -> None:
    _ALL_PROCESSES.directories.remove(directory)


def serve_metrics(settings: Settings, config_file: str = "(defaults)", port_offset: int = 0) -> Any:
    """Serve /metrics on metrics.listen (its port plus `port_offset`, so that the role
    processes of one host each have theirs) with the installed reactor; returns the
    listening port (stopListening() ends it), or None when metrics.enabled is false.
    ConfigError (naming `config_file`) when the address cannot be listened on."""
    if not settings.metrics.enabled:
        return None
    # Imported here: it binds the reactor at import, which must be installed by then.
    from prometheus_client.twisted import MetricsResource
    from twisted.internet.error import CannotListenError
    from twisted.web.resource import Resource

    from gateway.http_listener import listen

    # A WSGI resource (run in the reactor's thread pool); mypy does not see that it
    # provides IResource.
    exposition: Any = MetricsResource(_EXPOSED)  # type: ignore[no-untyped-call]
    root = Resource()  # type: ignore[no-untyped-call]
    root.putChild(PATH, exposition)
    where = settings.metrics.listen._replace(port=settings.metrics.listen.port + port_offset)
    try:
        port = listen(root, where)
    except CannotListenError as exc:
        problem = ConfigProblem(config_file, "metrics.listen", str(exc.socketError))
        raise ConfigError([problem]) from exc
    log.info("metrics served on http://%s/%s", where, PATH.decode())
    return port
