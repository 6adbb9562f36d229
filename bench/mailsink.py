"""The SMTP sink of the pipeline bench: the dev sink, counting what it accepts, in this process.

The dev sink parses every message with the ``email`` package (about 1.3 ms each here): at a
few thousand emails a second the bench would measure its own sink. This one speaks the same
SMTP (it is the dev sink, aiosmtpd and all) but only finds the ``X-Clarion-Notification-Id``
header in the raw bytes, and notes when each id was first accepted and how often it came.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from agents.delivery.providers.smtp import NOTIFICATION_ID_HEADER
from bench.sinks import LoopThread
from pipeline.devsinks.smtp import SmtpSink

ACCEPTED = "250 2.0.0 Message accepted for delivery"
_HEADER = b"\r\n" + NOTIFICATION_ID_HEADER.encode() + b":"


def notification_id(raw: bytes) -> str | None:
    """The id in the message's header block, or None if it has none."""
    end_of_headers = raw.find(b"\r\n\r\n")
    start = raw.find(_HEADER, 0, end_of_headers if end_of_headers >= 0 else len(raw))
    if start < 0:
        return None
    start += len(_HEADER)
    end = raw.find(b"\r\n", start)
    return raw[start : end if end >= 0 else len(raw)].strip().decode("ascii", "replace")


@dataclass
class Acceptances:
    """Every message the sink accepted, by notification id; written on the sink's loop only.

    Another thread may read the counts (an int, a list's length) at any time; anything more
    is read on the sink's loop (:meth:`MailSinkThread.snapshot`).
    """

    first_at: dict[str, float] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)  # first acceptances, in arrival order
    messages: int = 0
    without_id: int = 0

    def add(self, notification: str | None, at: float) -> None:
        self.messages += 1
        if notification is None:
            self.without_id += 1
        elif notification not in self.first_at:
            self.first_at[notification] = at
            self.times.append(at)

    @property
    def duplicates(self) -> int:
        """Messages beyond the first for their notification id."""
        return self.messages - self.without_id - len(self.first_at)


class CountingSmtpSink(SmtpSink):
    def __init__(self) -> None:
        super().__init__()
        self.accepted = Acceptances()

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, _server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        self.accepted.add(notification_id(envelope.original_content or b""), time.perf_counter())
        return ACCEPTED


@dataclass(frozen=True, slots=True)
class Snapshot:
    first_at: dict[str, float]
    times: list[float]
    messages: int
    duplicates: int
    without_id: int


class MailSinkThread(LoopThread):
    """A :class:`CountingSmtpSink` on a free port, on a loop in a daemon thread."""

    def __init__(self) -> None:
        super().__init__()
        self.sink = CountingSmtpSink()

    def start(self) -> CountingSmtpSink:
        super().start()
        self.call(self.sink.start())
        return self.sink

    def stop(self) -> None:
        self.call(self.sink.stop())
        super().stop()

    def provider_env(self) -> dict[str, str]:
        """What makes a worker's SMTP provider deliver here."""
        return {
            "CLARION_SMTP_HOST": self.sink.host,
            "CLARION_SMTP_PORT": str(self.sink.port),
            "CLARION_SMTP_STARTTLS": "false",
        }

    @property
    def accepted_ids(self) -> int:
        """Distinct notification ids accepted so far (readable from any thread)."""
        return len(self.sink.accepted.times)

    @property
    def messages(self) -> int:
        return self.sink.accepted.messages

    def snapshot(self) -> Snapshot:
        async def copy() -> Snapshot:
            seen = self.sink.accepted
            return Snapshot(
                first_at=dict(seen.first_at),
                times=list(seen.times),
                messages=seen.messages,
                duplicates=seen.duplicates,
                without_id=seen.without_id,
            )

        return self.call(copy())
