"""Email channel over SMTP (aiosmtplib), on a pool of open sessions to the relay.

The Message-ID is derived from the notification id (``<ntf_…@from-domain>``), so a
retried send carries the same id and mail systems or readers can spot the duplicate.
SMTP replies map to outcomes by class: 4xx transient, 5xx permanent, and a 5xx to
RCPT TO (the recipient refused) is an :class:`InvalidAddressError`.
"""

from __future__ import annotations

import email.utils
import re
import socket
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from agents.delivery.providers.base import (
    DeliveryError,
    InvalidAddressError,
    PermanentDeliveryError,
    SendResult,
    TransientDeliveryError,
)
from agents.delivery.providers.config import SmtpConfig
from agents.delivery.providers.smtp_pool import SmtpSessionPool

NOTIFICATION_ID_HEADER = "X-Clarion-Notification-Id"
# Characters allowed in the left part of a Message-ID (RFC 5322 dot-atom-text).
_NOT_ATOM = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_LINE_BREAKS = re.compile(r"[\r\n]+")


def message_id(notification_id: str, domain: str) -> str:
    return f"<{_NOT_ATOM.sub('-', notification_id)}@{domain}>"


def _looks_like_address(address: str) -> bool:
    _, parsed = email.utils.parseaddr(address)
    local, at, domain = parsed.partition("@")
    return bool(local and at and domain) and parsed == address.strip()


class SmtpProvider:
    name = "smtp"
    channel = "email"

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config
        # aiosmtplib would otherwise resolve it (socket.getfqdn) for every connection.
        self._local_hostname = socket.getfqdn()
        self._pool = SmtpSessionPool(
            self._connect, size=config.pool_size, idle_timeout=config.idle_timeout
        )

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self._config
        session = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            # False, not None: None would upgrade whenever the server offers it.
            start_tls=config.starttls,
            timeout=config.timeout,
            local_hostname=self._local_hostname,
        )
        # Greeting, EHLO, STARTTLS and AUTH as configured.
        await session.connect()
        return session

    def build_message(self, delivery: Mapping[str, Any]) -> EmailMessage:
        notification_id = str(delivery["notification_id"])
        message = EmailMessage()
        message["From"] = self._config.sender
        message["To"] = str(delivery["address"])
        # Rendered subjects are one line; a stray newline must not start a new header.
        message["Subject"] = _LINE_BREAKS.sub(" ", str(delivery.get("subject") or ""))
        message["Date"] = email.utils.formatdate(usegmt=True)
        message["Message-ID"] = message_id(notification_id, self._config.message_id_domain)
        message[NOTIFICATION_ID_HEADER] = notification_id
        # RFC 3834: tells auto-responders (vacation replies) not to answer a notification.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(str(delivery["body"]))
        if delivery.get("html"):
            message.add_alternative(str(delivery["html"]), subtype="html")
        return message

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        address = str(delivery["address"])
        if not _looks_like_address(address):
            raise InvalidAddressError(address, f"{address!r} is not an email address")
        message = self.build_message(delivery)
        try:
            await self._send_on_a_live_session(message)
        except aiosmtplib.SMTPException as exc:
            raise classify_smtp_error(address, exc) from exc
        except (OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"SMTP connection failed: {exc}") from exc
        return SendResult(provider_message_id=message["Message-ID"])

    async def _send_on_a_live_session(self, message: EmailMessage) -> None:
        sent = False
        while not sent:
            session, reused = await self._pool.acquire()
            try:
                await session.send_message(message)
                sent = True
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # A relay may hang up on a session while it sits idle: that says nothing
                # about this message, so it goes out on the next session, a fresh one at
                # worst. A fresh session failing the same way is a real failure.
                if not reused:
                    raise
            finally:
                await self._pool.release(session, reusable=sent)

    async def close(self) -> None:
        await self._pool.close()


def classify_smtp_error(address: str, exc: aiosmtplib.SMTPException) -> DeliveryError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        reason = f"SMTP {refused.code} for RCPT {address}: {refused.message}"
        if 500 <= refused.code < 600:
            return InvalidAddressError(address, reason, status=refused.code)
        return TransientDeliveryError(reason, status=refused.code)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        reason = f"SMTP {exc.code} ({type(exc).__name__}): {exc.message}"
        if 500 <= exc.code < 600:
            return PermanentDeliveryError(reason, status=exc.code)
        return TransientDeliveryError(reason, status=exc.code)
    if isinstance(
        exc,
        aiosmtplib.SMTPTimeoutError
        | aiosmtplib.SMTPServerDisconnected
        | aiosmtplib.SMTPConnectError,
    ):
        return TransientDeliveryError(f"SMTP: {type(exc).__name__}: {exc.message}")
    # What is left is a mismatch between our settings and the server (STARTTLS or AUTH
    # not offered, SMTPUTF8 missing): retrying cannot help, and falling back to sending
    # in clear or unauthenticated would go against the operator's settings.
    return PermanentDeliveryError(f"SMTP: {exc.message}")
