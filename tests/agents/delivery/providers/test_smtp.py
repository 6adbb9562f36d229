from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agents.delivery.providers.base import (
    InvalidAddressError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from agents.delivery.providers.config import SmtpConfig
from agents.delivery.providers.smtp import SmtpProvider
from pipeline.devsinks.smtp import SmtpSink
from tests.agents.delivery.providers.conftest import TEST_TIMEOUT

Delivery = Callable[..., dict[str, Any]]


def provider_for(sink: SmtpSink, **overrides: Any) -> SmtpProvider:
    fields: dict[str, Any] = {"host": sink.host, "port": sink.port, "timeout": TEST_TIMEOUT}
    fields.update(overrides)
    return SmtpProvider(SmtpConfig(**fields))


async def test_delivers_one_multipart_message(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    result = await provider_for(smtp_sink).send(delivery())

    [mail] = await smtp_sink.messages.wait_for(1)
    message = mail.message
    assert mail.rcpt_tos == ("alice@example.com",)
    assert mail.envelope_from == "notifications@clarion.localhost"
    assert message["From"] == "Clarion <notifications@clarion.localhost>"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == "Your invoice is ready"
    assert message["Message-ID"] == "<ntf_0123456789abcdef0123456789abcdef@clarion.localhost>"
    assert message["X-Clarion-Notification-Id"] == "ntf_0123456789abcdef0123456789abcdef"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"]
    assert message.get_content_type() == "multipart/alternative"
    assert mail.part("plain") == "Invoice #42 is ready.\nThanks!\n"
    assert mail.part("html") == "<p>Invoice <b>#42</b> is ready.</p>\n"
    assert result.provider_message_id == message["Message-ID"]
    assert len(smtp_sink.messages) == 1


async def test_text_only_when_there_is_no_html(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    await provider_for(smtp_sink).send(delivery(html=None, subject=None))

    [mail] = await smtp_sink.messages.wait_for(1)
    assert mail.message.get_content_type() == "text/plain"
    assert mail.message["Subject"] == ""
    assert mail.part("html") is None


async def test_message_id_domain_follows_the_sender(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    provider = provider_for(smtp_sink, sender="Acme <noreply@mail.acme.example>")
    await provider.send(delivery(notification_id="ntf_1"))

    [mail] = await smtp_sink.messages.wait_for(1)
    assert mail.message["Message-ID"] == "<ntf_1@mail.acme.example>"
    assert mail.envelope_from == "noreply@mail.acme.example"


async def test_line_breaks_in_subject_cannot_inject_headers(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    await provider_for(smtp_sink).send(delivery(subject="Hi\r\nBcc: eve@example.com"))

    [mail] = await smtp_sink.messages.wait_for(1)
    assert mail.message["Bcc"] is None
    assert mail.message["Subject"] == "Hi Bcc: eve@example.com"


@pytest.mark.parametrize(
    "address",
    ["alice", "alice@", "@example.com", "a@b.c, eve@d.e", "", "a\x00@b.c", '"a\x1b"@b.c'],
)
async def test_malformed_address_is_refused_without_connecting(
    address: str, delivery: Delivery
) -> None:
    # Port 1 on loopback: a connection attempt would fail with a transient error.
    provider = SmtpProvider(SmtpConfig(host="127.0.0.1", port=1, timeout=TEST_TIMEOUT))
    with pytest.raises(InvalidAddressError) as caught:
        await provider.send(delivery(address=address))
    assert caught.value.address == address


async def test_4xx_to_data_is_transient(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    smtp_sink.fail_next(code=451)
    provider = provider_for(smtp_sink)

    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send(delivery())
    assert caught.value.status == 451

    await provider.send(delivery())  # the fault was for one message only
    assert len(await smtp_sink.messages.wait_for(1)) == 1


async def test_4xx_to_rcpt_is_transient(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    smtp_sink.fail_next(code=450, stage="rcpt")
    with pytest.raises(TransientDeliveryError):
        await provider_for(smtp_sink).send(delivery())
    assert len(smtp_sink.messages) == 0


@pytest.mark.parametrize("code", [550, 553])
async def test_refused_recipient_is_an_invalid_address(
    smtp_sink: SmtpSink, delivery: Delivery, code: int
) -> None:
    smtp_sink.fail_next(code=code, stage="rcpt")
    with pytest.raises(InvalidAddressError) as caught:
        await provider_for(smtp_sink).send(delivery())
    assert caught.value.address == "alice@example.com"
    assert caught.value.status == code


async def test_5xx_to_data_is_permanent_but_not_the_address(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    smtp_sink.fail_next(code=554)
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider_for(smtp_sink).send(delivery())
    assert not isinstance(caught.value, InvalidAddressError)
    assert caught.value.status == 554


async def test_slow_server_times_out_as_transient(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    smtp_sink.fail_next(delay=30)
    with pytest.raises(TransientDeliveryError):
        await provider_for(smtp_sink, timeout=0.3).send(delivery())


async def test_hang_up_is_transient(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    smtp_sink.fail_next(drop=True)
    with pytest.raises(TransientDeliveryError):
        await provider_for(smtp_sink).send(delivery())


async def test_refused_connection_is_transient(smtp_sink: SmtpSink, delivery: Delivery) -> None:
    provider = provider_for(smtp_sink)
    await smtp_sink.pause()
    with pytest.raises(TransientDeliveryError):
        await provider.send(delivery())

    await smtp_sink.resume()
    await provider.send(delivery())
    assert len(await smtp_sink.messages.wait_for(1)) == 1


async def test_authenticates_when_credentials_are_configured(delivery: Delivery) -> None:
    async with SmtpSink(credentials=("mailer", "s3cret")) as sink:
        await provider_for(sink, username="mailer", password="s3cret").send(delivery())
        assert len(await sink.messages.wait_for(1)) == 1

        with pytest.raises(PermanentDeliveryError) as caught:
            await provider_for(sink, username="mailer", password="wrong").send(delivery())
        assert caught.value.status == 535


async def test_starttls_required_but_not_offered_is_permanent(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
        await provider_for(smtp_sink, starttls=True).send(delivery())
    assert len(smtp_sink.messages) == 0


async def test_messages_share_one_session_while_it_stays_open(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    provider = provider_for(smtp_sink)
    for n in range(3):
        await provider.send(delivery(notification_id=f"ntf_{n}"))

    assert len(await smtp_sink.messages.wait_for(3)) == 3
    assert smtp_sink.sessions_opened == 1
    await provider.close()


async def test_a_session_the_relay_hung_up_on_is_replaced_without_failing_the_message(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    provider = provider_for(smtp_sink)
    await provider.send(delivery(notification_id="ntf_before"))
    smtp_sink.hang_up()

    await provider.send(delivery(notification_id="ntf_after"))

    received = await smtp_sink.messages.wait_for(2)
    assert [m.message["X-Clarion-Notification-Id"] for m in received] == [
        "ntf_before",
        "ntf_after",
    ]
    assert smtp_sink.sessions_opened == 2
    await provider.close()


async def test_sessions_idle_past_the_timeout_are_not_reused(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    provider = provider_for(smtp_sink, idle_timeout=1e-9)
    await provider.send(delivery(notification_id="ntf_1"))
    await provider.send(delivery(notification_id="ntf_2"))

    assert len(await smtp_sink.messages.wait_for(2)) == 2
    assert smtp_sink.sessions_opened == 2
    await provider.close()


async def test_concurrent_sends_open_no_more_sessions_than_the_pool_size(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    provider = provider_for(smtp_sink, pool_size=2)
    await asyncio.gather(*(provider.send(delivery(notification_id=f"ntf_{n}")) for n in range(10)))

    assert len(await smtp_sink.messages.wait_for(10)) == 10
    assert smtp_sink.sessions_opened <= 2
    await provider.close()


async def test_a_failed_message_does_not_leave_its_session_in_the_pool(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    provider = provider_for(smtp_sink)
    smtp_sink.fail_next(code=451)
    with pytest.raises(TransientDeliveryError):
        await provider.send(delivery(notification_id="ntf_refused"))
    await provider.send(delivery(notification_id="ntf_ok"))

    [mail] = await smtp_sink.messages.wait_for(1)
    assert mail.message["X-Clarion-Notification-Id"] == "ntf_ok"
    assert smtp_sink.sessions_opened == 2
    await provider.close()


async def test_non_ascii_subject_and_dot_lines_reach_the_relay_intact(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    body = ".\n.leading dot\n..two\nend"
    html = "<p>Ça coûte 42 € 🎉</p>\n.\n"
    await provider_for(smtp_sink).send(
        delivery(subject="Ça coûte 42 € 🎉 日本語", body=body, html=html)
    )

    [mail] = await smtp_sink.messages.wait_for(1)
    assert mail.message["Subject"] == "Ça coûte 42 € 🎉 日本語"
    # The sink reads CRLF as LF; SMTP dot-stuffing was undone by the relay.
    assert mail.part("plain") == body + "\n"
    assert mail.part("html") == html
    assert mail.raw.isascii()


async def test_a_non_ascii_recipient_is_sent_with_smtputf8(
    smtp_sink: SmtpSink, delivery: Delivery
) -> None:
    await provider_for(smtp_sink).send(delivery(address="jörg@exämple.de"))

    [mail] = await smtp_sink.messages.wait_for(1)
    assert mail.rcpt_tos == ("jörg@exämple.de",)
    assert "To: jörg@exämple.de\r\n".encode() in mail.raw


async def test_an_address_longer_than_an_smtp_path_is_refused(delivery: Delivery) -> None:
    provider = SmtpProvider(SmtpConfig(host="127.0.0.1", port=1, timeout=TEST_TIMEOUT))
    address = "a" * 64 + "@" + "b" * 200 + ".example"
    with pytest.raises(InvalidAddressError):
        await provider.send(delivery(address=address))
