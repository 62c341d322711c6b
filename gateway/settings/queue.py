"""[queue]: how jobs are taken, retried and given up."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from gateway.durations import PositiveDuration
from gateway.settings.types import MODEL_CONFIG


class QueueSettings(BaseModel):
    """How jobs are taken, retried and given up."""

    model_config = MODEL_CONFIG

    concurrency: int = Field(32, gt=0, description="Jobs one worker process handles at once.")
    visibility_timeout: PositiveDuration = Field(
        # Longer than one delivery attempt can last (connect, then a stalled SMTP command
        # up to relay.command_timeout), so that a slow attempt is never run twice at once.
        timedelta(minutes=15),
        description="A job not acknowledged within this time is taken back from its worker.",
    )
    max_attempts: int = Field(
        10, gt=0, description="Attempts at a job that fails temporarily before it is dead-lettered."
    )
    backoff_initial: PositiveDuration = Field(
        timedelta(seconds=30), description="Wait before the first retry; doubles with each attempt."
    )
    backoff_max: PositiveDuration = Field(
        timedelta(hours=1), description="Longest wait between retries."
    )
    max_deliveries: int = Field(
        5,
        gt=0,
        description=(
            "Times a job may be handed to workers that stop or hang before finishing it;"
            " the next delivery sends it to dead letters."
        ),
    )
    idempotency_ttl: PositiveDuration = Field(
        timedelta(days=7),
        description="How long a job id is remembered, so a repeated id is done once.",
    )
    events_max_length: int = Field(
        1_000_000,
        gt=0,
        description="Approximate cap on the number of entries of the events stream.",
    )
    history_ttl: PositiveDuration = Field(
        timedelta(days=400),
        description="How long an appointment's history is kept after its last entry.",
    )
    shutdown_grace: PositiveDuration = Field(
        timedelta(seconds=30), description="On SIGTERM, time given to jobs in flight to finish."
    )
    block_timeout: PositiveDuration = Field(
        timedelta(seconds=1),
        description="How long a worker waits on an empty stream before looping.",
    )
    scheduler_interval: PositiveDuration = Field(
        timedelta(seconds=0.25), description="How often the scheduler moves due jobs to the stream."
    )
    scheduler_batch: int = Field(
        1000, gt=0, description="Most due jobs moved in one scheduler pass."
    )
