from __future__ import annotations

from email.message import EmailMessage

import aiohttp
import aiosmtplib
import pytest

from pipeline.devsinks.smtp import SmtpFault, SmtpSink


def message(subject: str = "Hello") -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "app@example.com"
    mail["To"] = "bob@example.com"
    mail["Subject"] = subject
    mail["X-Clarion-Notification-Id"] = "ntf_9"
    mail.set_content("Hi Bob")
    return mail


async def test_records_messages_and_echoes_one_line_each() -> None:
    lines: list[str] = []
    async with SmtpSink(echo=lines.append) as sink:
        await aiosmtplib.send(message('Say "hi"'), hostname=sink.host, port=sink.port)
        [mail] = await sink.messages.wait_for(1)
    assert mail.rcpt_tos == ("bob@example.com",)
    assert mail.part("plain") == "Hi Bob\n"
    assert lines == ['[email] to=bob@example.com subject="Say \\"hi\\"" id=ntf_9']


async def test_control_server_steers_failures_and_lists_messages() -> None:
    async with (
        SmtpSink(control_port=0) as sink,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
    ):
        assert sink.control_url is not None
        async with http.post(
            sink.control_url + "/_control/fail", json={"code": 451, "count": 1}
        ) as response:
            assert await response.json() == {"pending": 1}
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await aiosmtplib.send(message(), hostname=sink.host, port=sink.port)
        assert caught.value.code == 451

        await aiosmtplib.send(message(), hostname=sink.host, port=sink.port)
        async with http.get(sink.control_url + "/_control/messages") as response:
            [listed] = (await response.json())["messages"]
        assert listed["headers"]["Subject"] == "Hello"
        assert listed["text"] == "Hi Bob\n"
        assert listed["html"] is None

        async with http.post(sink.control_url + "/_control/fail", json={"code": 250}) as response:
            assert response.status == 400
        async with http.post(sink.control_url + "/_control/reset") as response:
            assert response.status == 200
        assert len(sink.messages) == 0


def test_fault_validation() -> None:
    assert SmtpFault.from_json({"code": 550, "stage": "rcpt"}).reply().startswith("550 5.1.1")
    with pytest.raises(ValueError, match="stage"):
        SmtpFault.from_json({"code": 550, "stage": "helo"})
    with pytest.raises(ValueError, match="needs"):
        SmtpFault.from_json({})
