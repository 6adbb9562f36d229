"""What every provider promises the delivery agents: one send, one of three outcomes.

A send either returns a :class:`SendResult` or raises a :class:`DeliveryError`:
:class:`TransientDeliveryError` means "try again later" (the agent schedules a
retry, honouring ``retry_after`` when the provider named one) and
:class:`PermanentDeliveryError` means "this delivery can never succeed as is" (the
agent dead-letters it; :class:`InvalidAddressError` and
:class:`UnregisteredTokenError` also tell it which address to forget).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import aiohttp
from yarl import URL

# Error bodies only feed error messages: reading more would let a hostile webhook
# endpoint make us buffer an arbitrarily large answer.
MAX_ERROR_BODY_BYTES = 64 * 1024
_REASON_BODY_CHARS = 300


@dataclass(frozen=True, slots=True)
class SendResult:
    """A provider accepted the message; its id is kept for tracing and status callbacks."""

    provider_message_id: str | None = None


class DeliveryError(Exception):
    """Base of every send failure; ``reason`` is the human-readable cause."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TransientDeliveryError(DeliveryError):
    """Worth retrying: timeouts, connection errors, 408, 429, 5xx, SMTP 4xx."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, status=status)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying the same delivery cannot help: other 4xx, refused destinations, SMTP 5xx."""


class InvalidAddressError(PermanentDeliveryError):
    """The recipient address itself is wrong (malformed, or refused by the provider)."""

    def __init__(self, address: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason, status=status)
        self.address = address


class UnregisteredTokenError(InvalidAddressError):
    """A push token the provider no longer knows: the user's preferences should drop it."""


class RefusedDestinationError(OSError):
    """Raised inside a connection attempt the provider must never make (see ``ssrf``).

    It is an ``OSError`` because aiohttp only passes those through from a resolver; the
    HTTP client turns it back into a :class:`PermanentDeliveryError`.
    """


@runtime_checkable
class Provider(Protocol):
    """One external service for one channel. Implementations are safe to share per worker."""

    name: str
    channel: str

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        """Deliver one Delivery dict (schemas.records.Delivery fields) or raise DeliveryError."""
        ...

    async def close(self) -> None:
        """Release connections; the provider may not be used afterwards."""
        ...


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date.

    Anything unparseable yields ``None`` (the agent falls back to its own backoff);
    a date in the past yields ``0.0``.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; obsolete forms without a zone parse as naive.
        when = when.replace(tzinfo=UTC)
    reference = now or datetime.now(UTC)
    return max(0.0, (when - reference).total_seconds())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that also works on plain dicts (tests, other clients)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def classify_http_status(
    status: int, headers: Mapping[str, str], body_text: str
) -> DeliveryError | None:
    """The generic outcome of an HTTP answer: ``None`` for 2xx, else the error to raise.

    Providers check their own error codes first (e.g. Twilio 21211) and fall back to this.
    """
    if 200 <= status < 300:
        return None
    reason = f"HTTP {status}" + (f": {_shorten(body_text)}" if body_text.strip() else "")
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(header(headers, "Retry-After"))
        return TransientDeliveryError(reason, status=status, retry_after=retry_after)
    if 300 <= status < 400:
        # Redirects are never followed: a redirect could point past the SSRF guard.
        location = header(headers, "Location")
        reason += f" (redirect to {location!r} not followed)" if location else ""
    return PermanentDeliveryError(reason, status=status)


def _shorten(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _REASON_BODY_CHARS else flat[:_REASON_BODY_CHARS] + "…"


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset name Python does not know
        return raw.decode("utf-8", errors="replace")


@dataclass(frozen=True, slots=True)
class HttpReply:
    """An HTTP answer read to the end (bounded), detached from its connection."""

    status: int
    headers: Mapping[str, str]
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON (error pages, proxies)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


class HttpClient:
    """One aiohttp session per provider, created on first use (it needs a running loop).

    Every network failure comes out as a :class:`DeliveryError`, so providers only
    have to interpret status codes and bodies.
    """

    def __init__(
        self,
        *,
        timeout: float,
        connector_factory: Callable[[], aiohttp.BaseConnector] | None = None,
        user_agent: str = "Clarion/0.1",
    ) -> None:
        self._timeout = timeout
        self._connector_factory = connector_factory
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = self._connector_factory() if self._connector_factory else None
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"User-Agent": self._user_agent},
                # Proxy variables would send requests around the SSRF-vetted resolver.
                trust_env=False,
            )
        return self._session

    async def post(
        self,
        url: str | URL,
        *,
        headers: Mapping[str, str] | None = None,
        data: bytes | Mapping[str, str] | None = None,
    ) -> HttpReply:
        session = self._get_session()
        try:
            async with session.post(
                url, headers=headers, data=data, allow_redirects=False
            ) as response:
                raw = await response.content.read(MAX_ERROR_BODY_BYTES)
                text = _decode(raw, response.charset)
                return HttpReply(status=response.status, headers=response.headers, text=text)
        except aiohttp.InvalidURL as exc:
            raise PermanentDeliveryError(f"invalid URL {str(exc)!r}") from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedDestinationError):
                raise PermanentDeliveryError(str(exc.os_error)) from exc
            raise TransientDeliveryError(f"cannot connect: {exc}") from exc
        except TimeoutError as exc:
            raise TransientDeliveryError(f"no answer within {self._timeout:g}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientDeliveryError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
