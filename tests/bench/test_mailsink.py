"""The pipeline bench's SMTP sink counts what Clarion's SMTP provider sends, by notification id."""

from __future__ import annotations

from agents.delivery.providers.config import SmtpConfig
from agents.delivery.providers.smtp import SmtpProvider
from bench.mailsink import MailSinkThread, notification_id
from bench.sinks import running
from tests.agents.delivery.providers.conftest import make_delivery


async def test_counts_each_notification_once_and_every_repeat_as_a_duplicate() -> None:
    with running(MailSinkThread()) as sink:
        env = sink.provider_env()
        provider = SmtpProvider(
            SmtpConfig(host=env["CLARION_SMTP_HOST"], port=int(env["CLARION_SMTP_PORT"]))
        )
        try:
            # The sink notes a message before it answers 250: once send returns, it is counted.
            for notification in ("ntf_a", "ntf_b", "ntf_a", "ntf_c", "ntf_a"):
                await provider.send(make_delivery(notification_id=notification))
        finally:
            await provider.close()
        seen = sink.snapshot()

    assert list(seen.first_at) == ["ntf_a", "ntf_b", "ntf_c"]
    assert len(seen.times) == 3
    assert seen.times == sorted(seen.times)
    assert (seen.messages, seen.duplicates, seen.without_id) == (5, 2, 0)


def test_the_id_is_read_from_the_header_block_only() -> None:
    raw = (
        b"From: a@example.com\r\nX-Clarion-Notification-Id: ntf_1\r\nSubject: s\r\n\r\n"
        b"X-Clarion-Notification-Id: ntf_body\r\n"
    )
    assert notification_id(raw) == "ntf_1"
    assert notification_id(b"From: a@example.com\r\n\r\nX-Clarion-Notification-Id: x\r\n") is None
