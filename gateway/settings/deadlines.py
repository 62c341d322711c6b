"""[deadlines]: how late a notification may still go out (PRODUCT.md "Delivery deadlines")."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field

from gateway.durations import PositiveDuration
from gateway.settings.types import MODEL_CONFIG


class DeadlinesSettings(BaseModel):
    """The latest useful delivery time of each notification the planner makes."""

    model_config = MODEL_CONFIG

    follow_up_grace: PositiveDuration = Field(
        timedelta(days=7), description="How long after it fell due a follow-up may still go out."
    )
    purchase_grace: PositiveDuration = Field(
        timedelta(days=3),
        description=(
            "How long after the purchase or charge an order or subscription notice may still"
            " go out."
        ),
    )
    after_start: bool = Field(
        False,
        description=(
            "Whether reminders, confirmations, reschedule and cancellation notices may still go"
            " out after the appointment's start (then they have no deadline)."
        ),
    )
