"""Email channel over SMTP (aiosmtplib), on a pool of open sessions to the relay.

Messages are written as bytes by :mod:`agents.delivery.providers.mime` (no ``email``
package per message: it cost 1-2 ms each) and sent with ``sendmail`` on the envelope
the old ``send_message`` derived from the headers: the From address and the recipient.

The Message-ID is derived from the notification id (``<ntf_…@from-domain>``), so a
retried send carries the same id and mail systems or readers can spot the duplicate.
SMTP replies map to outcomes by class: 4xx transient, 5xx permanent, and a 5xx to
RCPT TO (the recipient refused) is an :class:`InvalidAddressError`.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
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
from agents.delivery.providers.mime import (
    boundary_for,
    email_message,
    has_control_character,
    one_line,
    structured_header,
    unstructured_header,
)
from agents.delivery.providers.smtp_pool import SmtpSessionPool

NOTIFICATION_ID_HEADER = "X-Clarion-Notification-Id"
# Characters allowed in the left part of a Message-ID (RFC 5322 dot-atom-text).
_NOT_ATOM = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
# RFC 5321 4.5.3.1.3: a path is at most 256 octets with its angle brackets. A longer
# "address" cannot be delivered, and could not be written on one header line either.
_MAX_ADDRESS_OCTETS = 254


def message_id(notification_id: str, domain: str) -> str:
    return f"<{_NOT_ATOM.sub('-', notification_id)}@{domain}>"


def _looks_like_address(address: str) -> bool:
    _, parsed = email.utils.parseaddr(address)
    local, at, domain = parsed.partition("@")
    return (
        bool(local and at and domain)
        and parsed == address.strip()
        and len(parsed.encode("utf-8")) <= _MAX_ADDRESS_OCTETS
        # parseaddr lets them through; no relay accepts them, and no header may carry them.
        and not has_control_character(parsed)
    )


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """A message as it goes on the wire, with its envelope."""

    sender: str
    recipient: str
    message_id: str
    data: bytes

    @property
    def needs_smtputf8(self) -> bool:
        """A non-ASCII address can only be sent with the SMTPUTF8 extension (RFC 6531);
        ``send_message`` asked for it in that case too."""
        return not (self.sender.isascii() and self.recipient.isascii())


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
        self._from_header, self._envelope_sender = _sender_header_and_address(config.sender)
        self._message_id_domain = config.message_id_domain

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

    def build_message(self, delivery: Mapping[str, Any]) -> OutgoingEmail:
        notification_id = str(delivery["notification_id"])
        # Validated by send(): a bare addr-spec, written as it is (with SMTPUTF8 if need be).
        recipient = str(delivery["address"]).strip()
        msg_id = message_id(notification_id, self._message_id_domain)
        headers = "".join(
            (
                self._from_header,
                structured_header("To", recipient),
                # Rendered subjects are one line; a stray newline must not start a header.
                unstructured_header("Subject", one_line(str(delivery.get("subject") or ""))),
                structured_header("Date", email.utils.formatdate(usegmt=True)),
                structured_header("Message-ID", msg_id),
                unstructured_header(NOTIFICATION_ID_HEADER, notification_id),
                # RFC 3834: tells auto-responders (vacation replies) not to answer.
                "Auto-Submitted: auto-generated\r\n",
            )
        )
        html = delivery.get("html")
        data = email_message(
            headers,
            text=str(delivery["body"]),
            html=str(html) if html else None,
            boundary=boundary_for(notification_id),
        )
        return OutgoingEmail(
            sender=self._envelope_sender, recipient=recipient, message_id=msg_id, data=data
        )

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        address = str(delivery["address"])
        if not _looks_like_address(address):
            raise InvalidAddressError(address, f"{address!r} is not an email address")
        outgoing = self.build_message(delivery)
        try:
            await self._send_on_a_live_session(outgoing)
        except aiosmtplib.SMTPException as exc:
            raise classify_smtp_error(address, exc) from exc
        except (OSError, TimeoutError) as exc:
            raise TransientDeliveryError(f"SMTP connection failed: {exc}") from exc
        return SendResult(provider_message_id=outgoing.message_id)

    async def _send_on_a_live_session(self, outgoing: OutgoingEmail) -> None:
        sent = False
        while not sent:
            session, reused = await self._pool.acquire()
            try:
                await session.sendmail(
                    outgoing.sender,
                    [outgoing.recipient],
                    outgoing.data,
                    mail_options=_mail_options(session, outgoing),
                )
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


def _sender_header_and_address(sender: str) -> tuple[str, str]:
    """The From header line and the envelope sender for the configured ``sender``.

    Built once per provider, so the ``email`` package's address parsing and RFC 2047
    encoding of a display name cost nothing per message."""
    if "\r" in sender or "\n" in sender:
        raise ValueError(f"the SMTP sender {sender!r} contains a line break")
    _, address = email.utils.parseaddr(sender)
    # An SMTPUTF8 address is written in UTF-8, as send_message did; otherwise all ASCII.
    policy = email.policy.SMTP if address.isascii() else email.policy.SMTPUTF8
    header = policy.header_factory("From", sender)
    return header.fold(policy=policy), header.addresses[0].addr_spec


def _mail_options(session: aiosmtplib.SMTP, outgoing: OutgoingEmail) -> list[str]:
    if not outgoing.needs_smtputf8:
        # Every body is quoted-printable or base64: 7-bit, no BODY=8BITMIME needed.
        return []
    # sendmail() refuses with SMTPNotSupported if the relay does not offer SMTPUTF8.
    options = ["SMTPUTF8"]
    if session.supports_extension("8bitmime"):
        options.append("BODY=8BITMIME")
    return options


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
