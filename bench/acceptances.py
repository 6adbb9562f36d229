"""The dev SMTP sink noting every message it accepts, by ``X-Clarion-Notification-Id``.

For a bench counting duplicate sends: each acceptance is kept with its time, not only the
first. The message is not parsed (the dev sink's ``email`` parse costs about 1.3 ms, which at
a few hundred emails a second would take a good share of a CPU from the workers measured):
the header is found in the raw bytes.
"""

from __future__ import annotations

import time
from collections import defaultdict

from aiosmtpd.smtp import SMTP, Envelope, Session

from agents.delivery.providers.smtp import NOTIFICATION_ID_HEADER
from bench.sinks import SinkThread
from pipeline.devsinks.run import DevSinks
from pipeline.devsinks.smtp import SmtpSink

ACCEPTED = "250 2.0.0 Message accepted for delivery"
_HEADER = b"\r\n" + NOTIFICATION_ID_HEADER.encode().lower() + b":"


def notification_id(raw: bytes) -> str | None:
    """The id in the message's header block, or None if it has none."""
    end = raw.find(b"\r\n\r\n")
    # A leading CRLF lets the first header line match like the others.
    head = b"\r\n" + (raw if end < 0 else raw[:end])
    start = head.lower().find(_HEADER)
    if start < 0:
        return None
    start += len(_HEADER)
    stop = head.find(b"\r\n", start)
    return head[start : stop if stop >= 0 else len(head)].strip().decode("ascii", "replace")


class CountingSmtpSink(SmtpSink):
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


class AcceptanceSinkThread(SinkThread):
    """The dev sinks on their thread, with a :class:`CountingSmtpSink` for email."""

    def __init__(self) -> None:
        super().__init__()
        self.smtp = CountingSmtpSink()

    def start(self) -> DevSinks:
        sinks = super().start()
        self.call(self.smtp.start())
        return sinks

    def stop(self) -> None:
        self.call(self.smtp.stop())
        super().stop()

    def provider_env(self) -> dict[str, str]:
        """What makes a worker's providers deliver here, email to the counting sink."""
        return {
            **self.sinks.provider_env(),
            "CLARION_SMTP_HOST": self.smtp.host,
            "CLARION_SMTP_PORT": str(self.smtp.port),
        }

    def snapshot(self) -> dict[str, list[float]]:
        """A copy of every acceptance so far, taken on the sink's loop."""

        async def copy() -> dict[str, list[float]]:
            return {key: list(times) for key, times in self.smtp.accepted.items()}

        return self.call(copy())
