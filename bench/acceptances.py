"""The dev SMTP sink noting every message it accepts, by ``X-Clarion-Notification-Id``.

For a bench counting duplicate sends and when they came: each acceptance is kept with its
time, not only the first (bench/mailsink.py keeps the first and a count). Like that sink it
finds the header in the raw bytes instead of parsing the message.
"""

from __future__ import annotations

import time
from collections import defaultdict

from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.mailsink import ACCEPTED, notification_id
from bench.sinks import LoopThread
from pipeline.devsinks.smtp import SmtpSink


class EveryAcceptanceSink(SmtpSink):
    """Accepts everything; ``accepted`` maps each notification id to every acceptance time
    (``perf_counter``), written on the sink's loop only."""

    def __init__(self) -> None:
        super().__init__()
        self.accepted: defaultdict[str, list[float]] = defaultdict(list)
        self.without_id = 0

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, _server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        found = notification_id(envelope.original_content or b"")
        if found is None:
            self.without_id += 1
        else:
            self.accepted[found].append(time.perf_counter())
        return ACCEPTED


class AcceptanceSinkThread(LoopThread):
    """An :class:`EveryAcceptanceSink` on a free port, on a loop in a daemon thread."""

    def __init__(self) -> None:
        super().__init__()
        self.smtp = EveryAcceptanceSink()

    def start(self) -> EveryAcceptanceSink:
        super().start()
        self.call(self.smtp.start())
        return self.smtp

    def stop(self) -> None:
        self.call(self.smtp.stop())
        super().stop()

    def provider_env(self) -> dict[str, str]:
        """What makes a worker's SMTP provider deliver here."""
        return {
            "CLARION_SMTP_HOST": self.smtp.host,
            "CLARION_SMTP_PORT": str(self.smtp.port),
            "CLARION_SMTP_STARTTLS": "false",
        }

    def snapshot(self) -> dict[str, list[float]]:
        """A copy of every acceptance so far, taken on the sink's loop."""

        async def copy() -> dict[str, list[float]]:
            return {key: list(times) for key, times in self.smtp.accepted.items()}

        return self.call(copy())
