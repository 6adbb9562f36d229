"""Start every dev sink at once: what ``clarion dev`` points the providers at.

Default ports (all on 127.0.0.1):

==============  =====  ===========================================
sink            port   provider variables (see ``provider_env``)
==============  =====  ===========================================
SMTP            1025   ``CLARION_SMTP_HOST``, ``CLARION_SMTP_PORT``
SMTP control    8024   (HTTP: ``/_control/messages``, ``/fail``, ``/reset``)
Twilio          8025   ``CLARION_TWILIO_BASE_URL``, ``_ACCOUNT_SID``, ``_AUTH_TOKEN``
FCM             8026   ``CLARION_FCM_BASE_URL``, ``_PROJECT_ID``, ``_TOKEN``
webhooks        8027   ``CLARION_WEBHOOK_SECRET``, ``CLARION_WEBHOOK_ALLOWED_HOSTS``
==============  =====  ===========================================

Run alone with ``python -m pipeline.devsinks.run``; every message received is printed
as one line, e.g. ``[email] to=alice@example.com subject="Welcome" id=ntf_…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass

from pipeline.devsinks.fcm import FcmSink
from pipeline.devsinks.http import Echo
from pipeline.devsinks.smtp import SmtpSink
from pipeline.devsinks.twilio import TwilioSink
from pipeline.devsinks.webhook import WebhookSink


@dataclass(frozen=True, slots=True)
class DevSinkPorts:
    smtp: int = 1025
    smtp_control: int = 8024
    twilio: int = 8025
    fcm: int = 8026
    webhook: int = 8027

    @classmethod
    def ephemeral(cls) -> DevSinkPorts:
        """Any free ports: for tests running beside a developer's ``clarion dev``."""
        return cls(smtp=0, smtp_control=0, twilio=0, fcm=0, webhook=0)


def echo_to_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


@dataclass(frozen=True, slots=True)
class DevSinks:
    host: str
    smtp: SmtpSink
    twilio: TwilioSink
    fcm: FcmSink
    webhook: WebhookSink

    def addresses(self) -> dict[str, str]:
        found = {
            "smtp": f"smtp://{self.host}:{self.smtp.port}",
            "twilio": self.twilio.url,
            "fcm": self.fcm.url,
            "webhook": self.webhook.hook_url(),
        }
        if self.smtp.control_url is not None:
            found["smtp_control"] = self.smtp.control_url
        return found

    def provider_env(self) -> dict[str, str]:
        """Variables that make a worker's providers deliver to these sinks."""
        return {
            "CLARION_SMTP_HOST": self.host,
            "CLARION_SMTP_PORT": str(self.smtp.port),
            "CLARION_SMTP_STARTTLS": "false",
            "CLARION_TWILIO_BASE_URL": self.twilio.url,
            "CLARION_TWILIO_ACCOUNT_SID": self.twilio.account_sid,
            "CLARION_TWILIO_AUTH_TOKEN": self.twilio.auth_token,
            "CLARION_FCM_BASE_URL": self.fcm.url,
            "CLARION_FCM_PROJECT_ID": self.fcm.project_id,
            "CLARION_FCM_TOKEN": self.fcm.token,
            "CLARION_WEBHOOK_SECRET": self.webhook.secret,
            # The receiver is on a loopback address, which the SSRF guard refuses.
            "CLARION_WEBHOOK_ALLOWED_HOSTS": self.host,
        }

    async def stop(self) -> None:
        await asyncio.gather(
            self.smtp.stop(), self.twilio.stop(), self.fcm.stop(), self.webhook.stop()
        )


async def start_dev_sinks(
    *,
    host: str = "127.0.0.1",
    ports: DevSinkPorts | None = None,
    echo: Echo | None = echo_to_stdout,
) -> DevSinks:
    """Start all sinks; if one cannot (port taken), stop the others and raise ``OSError``."""
    ports = ports or DevSinkPorts()
    smtp = SmtpSink(host=host, port=ports.smtp, control_port=ports.smtp_control, echo=echo)
    twilio = TwilioSink(host=host, port=ports.twilio, echo=echo)
    fcm = FcmSink(host=host, port=ports.fcm, echo=echo)
    webhook = WebhookSink(host=host, port=ports.webhook, echo=echo)
    sinks = DevSinks(host=host, smtp=smtp, twilio=twilio, fcm=fcm, webhook=webhook)
    try:
        await smtp.start()
        for sink in (twilio, fcm, webhook):
            await sink.start()
    except BaseException:
        await sinks.stop()
        raise
    return sinks


async def _serve() -> None:
    sinks = await start_dev_sinks()
    try:
        for name, address in sinks.addresses().items():
            echo_to_stdout(f"{name:>13}: {address}")
        for name, value in sinks.provider_env().items():
            echo_to_stdout(f"export {name}={value}")
        await asyncio.Event().wait()  # until Ctrl-C cancels us
    finally:
        await sinks.stop()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve())


if __name__ == "__main__":
    main()
