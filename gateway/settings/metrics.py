"""[metrics]: the Prometheus endpoint."""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.settings.types import MODEL_CONFIG, Endpoint, ListenAddress


class MetricsSettings(BaseModel):
    """The Prometheus endpoint."""

    model_config = MODEL_CONFIG

    enabled: bool = Field(True, description="Serve Prometheus metrics at http://<listen>/metrics.")
    listen: ListenAddress = Field(
        Endpoint("127.0.0.1", 9108),
        description=(
            'Address and port of the metrics endpoint, "host:port"; each daemon process'
            " (role) on one machine needs its own."
        ),
    )
