"""A fake of Twilio's Messages endpoint, close enough for the SMS provider's wire format."""

from __future__ import annotations

import re
import secrets
from email.utils import formatdate
from typing import Any

from aiohttp import BasicAuth, web

from agents.delivery.providers.config import DEV_TWILIO_ACCOUNT_SID, DEV_TWILIO_AUTH_TOKEN
from pipeline.devsinks.http import Echo, HttpSink, quoted, recorded
from pipeline.devsinks.recording import Recorder

API_VERSION = "2010-04-01"
MESSAGES_PATH = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class TwilioSink(HttpSink):
    """Accepts messages for one account; ``landlines`` get Twilio's error 21614."""

    label = "sms"

    def __init__(
        self,
        *,
        account_sid: str = DEV_TWILIO_ACCOUNT_SID,
        auth_token: str = DEV_TWILIO_AUTH_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        echo: Echo | None = None,
    ) -> None:
        super().__init__(host=host, port=port, echo=echo)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.landlines: set[str] = set()
        self.messages: Recorder[dict[str, Any]] = Recorder()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_control/landlines", self._control_landlines)
        app.router.add_post(MESSAGES_PATH, self._create_message)

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        # Twilio's REST error codes for HTTP errors are 20000 + status (20429, 20500…).
        return self._error_body(20000 + status, message, status)

    def reset_state(self) -> None:
        self.landlines.clear()
        self.messages.clear()

    @staticmethod
    def _error_body(code: int, message: str, status: int) -> dict[str, Any]:
        return {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def _error(self, code: int, message: str, status: int) -> web.Response:
        return web.json_response(self._error_body(code, message, status), status=status)

    async def _create_message(self, request: web.Request) -> web.Response:
        form = recorded(request).form()
        refusal = self._refusal(request, form)
        if refusal is not None:
            return refusal
        to, body = form["To"], form["Body"]
        resource = self._resource(to=to, sender=form["From"], body=body)
        self.messages.append(resource)
        idempotency = request.headers.get(IDEMPOTENCY_HEADER, "-")
        self.say(f"to={to} body={quoted(body)} id={idempotency}")
        return web.json_response(resource, status=201)

    def _refusal(self, request: web.Request, form: dict[str, str]) -> web.Response | None:
        """Twilio's answer to a request it would not accept, checked in Twilio's order."""
        try:
            auth = BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            auth = None
        if auth is None or (auth.login, auth.password) != (self.account_sid, self.auth_token):
            return self._error(20003, "Authenticate", 401)
        if request.match_info["account_sid"] != self.account_sid:
            return self._error(20404, "The requested resource was not found", 404)
        to = form.get("To", "")
        for field, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
            if not form.get(field):
                return self._error(code, f"A '{field}' parameter is required.", 400)
        if not _E164.fullmatch(to):
            return self._error(21211, f"Invalid 'To' Phone Number: {to}", 400)
        if to in self.landlines:
            return self._error(21614, f"'To' number {to} is not a valid mobile number", 400)
        return None

    def _resource(self, *, to: str, sender: str, body: str) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        now = formatdate(usegmt=True)
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }

    async def _control_landlines(self, request: web.Request) -> web.Response:
        document = await request.json()
        self.landlines.update(str(number) for number in document.get("numbers", []))
        return web.json_response({"landlines": sorted(self.landlines)})
