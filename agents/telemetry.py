"""What the pure cores count, as a Protocol: the worker's registry is wired in from above.

The cores call these methods where things happen; :class:`pipeline.metrics.Metrics` implements
them (structurally, no inheritance), so agents never import the pipeline layer.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

# Outcomes of one delivery attempt (label ``outcome`` of clarion_deliveries_total).
SENT = "sent"
TRANSIENT_ERROR = "transient_error"
PERMANENT_ERROR = "permanent_error"
CIRCUIT_OPEN = "circuit_open"
NO_PROVIDER = "none"


class Telemetry(Protocol):
    """The counters and histograms the agents feed (see :class:`pipeline.metrics.Metrics`)."""

    def status(self, status: str, channel: str | None, reason: str | None = None) -> None: ...

    def repartitioned(self, topic: str) -> None: ...

    def released(self, kind: str) -> None: ...

    def digest(self, channel: str, size: int) -> None: ...

    def delivery(self, channel: str, provider: str, outcome: str) -> None: ...

    def retry(self, channel: str) -> None: ...

    def dead_letter(self, channel: str) -> None: ...

    def sent(
        self, channel: str, priority: str | None, created_at: str | None, now: datetime
    ) -> None: ...
