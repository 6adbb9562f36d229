"""A local SMTP server (aiosmtpd) that keeps what it receives and fails on demand.

It runs in the caller's event loop (not aiosmtpd's threaded ``Controller``), so tests
can await arrivals without locks. Its optional control server answers:

* ``GET  /_control/messages`` -> ``{"messages": [...]}`` (see ``ReceivedMail.to_json``)
* ``POST /_control/fail`` ``{"code": 451, "count": 2, "stage": "data"}``; ``stage`` is
  ``"rcpt"`` or ``"data"``, ``{"delay": 30}`` answers slowly, ``{"drop": true}``
  hangs up instead of answering
* ``POST /_control/reset``
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
import warnings
import weakref
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal, Self

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from pipeline.devsinks.http import Echo, quoted
from pipeline.devsinks.recording import FaultQueue, Recorder, delay_unless

Stage = Literal["rcpt", "data"]
_REPLY_TEXT = {
    421: "4.3.2 Service not available, closing channel",
    450: "4.2.1 Mailbox temporarily unavailable",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message size exceeds fixed limit",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}


@dataclass(frozen=True, slots=True)
class SmtpFault:
    """How the sink answers one message: ``code`` at ``stage``, after ``delay`` seconds,
    or by hanging up (``drop``)."""

    code: int | None = None
    stage: Stage = "data"
    delay: float = 0.0
    drop: bool = False

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> SmtpFault:
        code = document.get("code")
        stage = document.get("stage", "data")
        if stage not in ("rcpt", "data"):
            raise ValueError(f"stage must be 'rcpt' or 'data', not {stage!r}")
        fault = cls(
            code=None if code is None else int(code),
            stage=stage,
            delay=float(document.get("delay", 0.0)),
            drop=bool(document.get("drop", False)),
        )
        if fault.code is not None and not 400 <= fault.code < 600:
            raise ValueError(f"an SMTP failure code is 4xx or 5xx, not {fault.code}")
        if fault.code is None and not fault.drop and fault.delay <= 0:
            raise ValueError("a fault needs a code, a delay or drop")
        return fault

    def reply(self) -> str:
        assert self.code is not None
        return f"{self.code} {_REPLY_TEXT.get(self.code, 'Injected failure')}"


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    envelope_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    received_at: float

    def part(self, subtype: str) -> str | None:
        """The text of the ``text/<subtype>`` body part, if any, with LF line breaks.

        A base64 part carries MIME's CRLF line breaks inside its encoding, where reading
        the wire's CRLF as LF does not reach them; a quoted-printable part does not."""
        body = self.message.get_body(preferencelist=(subtype,))
        return None if body is None else str(body.get_content()).replace("\r\n", "\n")

    def to_json(self) -> dict[str, Any]:
        return {
            "envelope_from": self.envelope_from,
            "rcpt_tos": list(self.rcpt_tos),
            "headers": {name: str(value) for name, value in self.message.items()},
            "text": self.part("plain"),
            "html": self.part("html"),
            "raw": self.raw.decode("utf-8", errors="replace"),
            "received_at": self.received_at,
        }


class SmtpSink:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = None,
        credentials: tuple[str, str] | None = None,
        echo: Echo | None = None,
    ) -> None:
        """``credentials`` makes AUTH (PLAIN/LOGIN, allowed without TLS) mandatory;
        ``control_port`` (0 for any) starts the HTTP control server."""
        self.host = host
        self._port = port
        self._control_port = control_port
        self._credentials = credentials
        self._echo = echo
        self.messages: Recorder[ReceivedMail] = Recorder()
        self.faults: FaultQueue[SmtpFault] = FaultQueue()
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.sessions_opened = 0
        self._control: web.AppRunner | None = None
        self._stopping = asyncio.Event()

    @property
    def port(self) -> int:
        return self._port

    @property
    def control_url(self) -> str | None:
        if self._control is None:
            return None
        return f"http://{self.host}:{self._control.addresses[0][1]}"

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> Self:
        self._stopping = asyncio.Event()
        await self._listen()
        if self._control_port is not None:
            self._control = await self._start_control(self._control_port)
        return self

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_session, host=self.host, port=self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    def _new_session(self) -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is the point of a local sink; aiosmtpd warns about it.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            session = self._smtp_session()
        self._sessions.add(session)
        self.sessions_opened += 1
        return session

    def _smtp_session(self) -> SMTP:
        return SMTP(
            self,
            hostname="clarion-dev-smtp",
            enable_SMTPUTF8=True,
            auth_required=self._credentials is not None,
            auth_require_tls=False,
            authenticator=self._authenticate if self._credentials else None,
        )

    async def pause(self) -> None:
        """Stop listening and hang up on open sessions: clients get "connection refused"."""
        if self._server is None:
            return
        self._server.close()
        await self._server.wait_closed()
        self._server = None
        self.hang_up()

    def hang_up(self) -> None:
        """Close every open session, as a relay does to clients idle for too long."""
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()

    async def resume(self) -> None:
        if self._server is None:
            await self._listen()

    async def stop(self) -> None:
        # Hang up first: that cancels handlers still waiting on a delay, whereas waking
        # them first would make them answer on a closing connection.
        await self.pause()
        self._stopping.set()
        if self._control is not None:
            await self._control.cleanup()
            self._control = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # --- steering -------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        code: int | None = None,
        stage: Stage = "data",
        delay: float = 0.0,
        drop: bool = False,
    ) -> None:
        """Answer ``code`` (e.g. 451, 550) to the next ``count`` messages at ``stage``."""
        fault = SmtpFault.from_json({"code": code, "stage": stage, "delay": delay, "drop": drop})
        self.faults.add(fault, count)

    def reset(self) -> None:
        self.messages.clear()
        self.faults.clear()

    # --- aiosmtpd handler hooks -----------------------------------------------------

    def _authenticate(
        self, _server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and (
                data.login.decode(),
                data.password.decode(),
            )
            == self._credentials
        )
        # handled=False: aiosmtpd then answers 535 itself instead of staying silent.
        return AuthResult(success=ok, handled=False)

    async def _misbehave(self, stage: Stage, server: SMTP) -> str | None:
        """The reply of a pending fault for ``stage``, consuming it; None if there is none."""
        pending = self.faults.peek()
        if pending is None or pending.stage != stage:
            return None
        self.faults.take()
        if pending.delay > 0:
            await delay_unless(self._stopping, pending.delay)
        if pending.drop and server.transport is not None:
            server.transport.close()
            # connection_lost() cancels this handler; answering would fail on the dead
            # transport with an exception nobody retrieves.
            await self._stopping.wait()
        return pending.reply() if pending.code is not None else None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self,
        server: SMTP,
        _session: Session,
        envelope: Envelope,
        address: str,
        _rcpt_options: list[str],
    ) -> str:
        refusal = await self._misbehave("rcpt", server)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        refusal = await self._misbehave("data", server)
        if refusal is not None:
            return refusal
        raw = envelope.original_content or b""
        # Wire lines end in CRLF; Python's own line ending keeps parsed parts comparable.
        message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(message, EmailMessage)  # guaranteed by policy.default
        mail = ReceivedMail(
            envelope_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            raw=raw,
            received_at=time.time(),
        )
        self.messages.append(mail)
        if self._echo is not None:
            self._echo(
                f"[email] to={','.join(mail.rcpt_tos)} subject={quoted(message['Subject'] or '')}"
                f" id={message['X-Clarion-Notification-Id'] or '-'}"
            )
        return "250 2.0.0 Message accepted for delivery"

    # --- control server -------------------------------------------------------------

    async def _start_control(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/_control/messages", self._control_messages)
        app.router.add_post("/_control/fail", self._control_fail)
        app.router.add_post("/_control/reset", self._control_reset)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, self.host, port, reuse_address=True).start()
        return runner

    async def _control_messages(self, _request: web.Request) -> web.Response:
        return web.json_response({"messages": [m.to_json() for m in self.messages.items]})

    async def _control_fail(self, request: web.Request) -> web.Response:
        try:
            document = await request.json()
            self.faults.add(SmtpFault.from_json(document), int(document.get("count", 1)))
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": "bad fault", "detail": str(exc)}, status=400)
        return web.json_response({"pending": len(self.faults)})

    async def _control_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})
