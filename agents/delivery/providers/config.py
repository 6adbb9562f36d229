"""Provider settings from the environment (variables named in shared/CONTRACT.md).

Every default points at the local dev sinks of ``pipeline.devsinks`` so that
``clarion dev`` works with no configuration:

=========  ======================  ==========================================
provider   default endpoint        dev credentials
=========  ======================  ==========================================
email      SMTP 127.0.0.1:1025     none, no STARTTLS
sms        http://127.0.0.1:8025   sid ``AC`` + 32 zeros, token ``clarion-dev-token``
push       http://127.0.0.1:8026   project ``clarion-dev``, token ``clarion-dev-fcm-token``
webhook    (the user's URL)        secret :data:`DEV_WEBHOOK_SECRET`
=========  ======================  ==========================================

A production deployment must set the real values; with the defaults, sends fail with
connection errors (retried, then dead-lettered) rather than going anywhere unexpected.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from yarl import URL

from agents.delivery.providers.ssrf import Allowlist

DEFAULT_TIMEOUT = 10.0

DEV_SMTP_HOST = "127.0.0.1"
DEV_SMTP_PORT = 1025
DEV_SMTP_FROM = "Clarion <notifications@clarion.localhost>"
DEV_TWILIO_BASE_URL = "http://127.0.0.1:8025"
DEV_TWILIO_ACCOUNT_SID = "AC" + "0" * 32
DEV_TWILIO_AUTH_TOKEN = "clarion-dev-token"  # noqa: S105 - a fixed, public dev value
# Twilio's documented "magic" test sender: valid with test credentials, never delivers.
DEV_TWILIO_FROM = "+15005550006"
DEV_FCM_BASE_URL = "http://127.0.0.1:8026"
DEV_FCM_PROJECT_ID = "clarion-dev"
DEV_FCM_TOKEN = "clarion-dev-fcm-token"  # noqa: S105 - a fixed, public dev value
# Fixed and public on purpose: dev receivers can verify signatures with no setup.
# Never use it in production (anyone can forge webhooks signed with it).
DEV_WEBHOOK_SECRET = (
    "whsec_" + base64.b64encode(b"clarion-dev-webhook-secret-not-for-prod").decode()
)

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format marker, not a secret
# Standard Webhooks: secrets are between 24 and 64 bytes.
_SECRET_BYTES = range(24, 65)
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ProviderConfigError(ValueError):
    """A provider variable in the environment is malformed; the message names it."""


def _get(env: Mapping[str, str], name: str) -> str | None:
    # An empty variable means "unset": shells and compose files often export NAME= .
    value = env.get(name, "").strip()
    return value or None


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    return _get(env, name) or default


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ProviderConfigError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ProviderConfigError(f"{name}={value} is outside {low}..{high}")
    return value


def _bool(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = _get(env, name)
    if raw is None:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ProviderConfigError(f"{name}={raw!r} is not a boolean (true/false, 1/0, yes/no)")


def _base_url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _get(env, name) or default
    try:
        url = URL(raw)
    except ValueError:
        raise ProviderConfigError(f"{name}={raw!r} is not a URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ProviderConfigError(f"{name}={raw!r} must be an http(s) URL with a host")
    return raw.rstrip("/")


def _positive_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ProviderConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ProviderConfigError(f"{name}={raw!r} must be positive")
    return value


def provider_timeout(env: Mapping[str, str]) -> float:
    """``CLARION_PROVIDER_TIMEOUT``: seconds for one whole send (connect to last byte)."""
    return _positive_float(env, "CLARION_PROVIDER_TIMEOUT", DEFAULT_TIMEOUT)


def decode_webhook_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ``ValueError`` if it is not one."""
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {WEBHOOK_SECRET_PREFIX!r}")
    encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("the part after 'whsec_' is not base64") from None
    if len(key) not in _SECRET_BYTES:
        raise ValueError(f"a webhook secret decodes to 24..64 bytes, not {len(key)}")
    return key


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpConfig:
    host: str = DEV_SMTP_HOST
    port: int = DEV_SMTP_PORT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = DEV_SMTP_FROM
    starttls: bool = False
    timeout: float = DEFAULT_TIMEOUT
    # Sessions kept open to the relay (per worker), and how long an idle one is trusted.
    pool_size: int = 8
    idle_timeout: float = 30.0

    @property
    def message_id_domain(self) -> str:
        """Right-hand side of Message-IDs: the From domain, so ids stay unique per sender."""
        _, address = email.utils.parseaddr(self.sender)
        return address.rpartition("@")[2] or "clarion"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SmtpConfig:
        sender = _str(env, "CLARION_SMTP_FROM", DEV_SMTP_FROM)
        if "@" not in email.utils.parseaddr(sender)[1]:
            raise ProviderConfigError(f"CLARION_SMTP_FROM={sender!r} has no email address")
        username = _get(env, "CLARION_SMTP_USERNAME")
        password = _get(env, "CLARION_SMTP_PASSWORD")
        if (username is None) != (password is None):
            raise ProviderConfigError(
                "set both CLARION_SMTP_USERNAME and CLARION_SMTP_PASSWORD, or neither"
            )
        return cls(
            host=_str(env, "CLARION_SMTP_HOST", DEV_SMTP_HOST),
            port=_int(env, "CLARION_SMTP_PORT", DEV_SMTP_PORT, low=1, high=65535),
            username=username,
            password=password,
            sender=sender,
            starttls=_bool(env, "CLARION_SMTP_STARTTLS", default=False),
            timeout=provider_timeout(env),
            pool_size=_int(env, "CLARION_SMTP_POOL_SIZE", 8, low=1, high=1000),
            idle_timeout=_positive_float(env, "CLARION_SMTP_IDLE_TIMEOUT", 30.0),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TwilioConfig:
    base_url: str = DEV_TWILIO_BASE_URL
    account_sid: str = DEV_TWILIO_ACCOUNT_SID
    auth_token: str = field(default=DEV_TWILIO_AUTH_TOKEN, repr=False)
    sender: str = DEV_TWILIO_FROM
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TwilioConfig:
        sid = _str(env, "CLARION_TWILIO_ACCOUNT_SID", DEV_TWILIO_ACCOUNT_SID)
        if not _ACCOUNT_SID.fullmatch(sid):
            raise ProviderConfigError(
                f"CLARION_TWILIO_ACCOUNT_SID={sid!r} is not 'AC' followed by 32 hex digits"
            )
        return cls(
            base_url=_base_url(env, "CLARION_TWILIO_BASE_URL", DEV_TWILIO_BASE_URL),
            account_sid=sid,
            auth_token=_str(env, "CLARION_TWILIO_AUTH_TOKEN", DEV_TWILIO_AUTH_TOKEN),
            # Not checked for E.164: Twilio also takes alphanumeric sender ids.
            sender=_str(env, "CLARION_TWILIO_FROM", DEV_TWILIO_FROM),
            timeout=provider_timeout(env),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class FcmConfig:
    base_url: str = DEV_FCM_BASE_URL
    project_id: str = DEV_FCM_PROJECT_ID
    token: str = field(default=DEV_FCM_TOKEN, repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FcmConfig:
        project_id = _str(env, "CLARION_FCM_PROJECT_ID", DEV_FCM_PROJECT_ID)
        if "/" in project_id:
            raise ProviderConfigError(f"CLARION_FCM_PROJECT_ID={project_id!r} contains '/'")
        return cls(
            base_url=_base_url(env, "CLARION_FCM_BASE_URL", DEV_FCM_BASE_URL),
            project_id=project_id,
            token=_str(env, "CLARION_FCM_TOKEN", DEV_FCM_TOKEN),
            timeout=provider_timeout(env),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class WebhookConfig:
    secret: str = field(default=DEV_WEBHOOK_SECRET, repr=False)
    allowlist: Allowlist = field(default_factory=Allowlist)
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebhookConfig:
        secret = _str(env, "CLARION_WEBHOOK_SECRET", DEV_WEBHOOK_SECRET)
        try:
            decode_webhook_secret(secret)
        except ValueError as exc:
            # The secret itself stays out of the message: it ends up in logs.
            raise ProviderConfigError(f"CLARION_WEBHOOK_SECRET is invalid: {exc}") from None
        try:
            allowlist = Allowlist.parse(_get(env, "CLARION_WEBHOOK_ALLOWED_HOSTS") or "")
        except ValueError as exc:
            raise ProviderConfigError(f"CLARION_WEBHOOK_ALLOWED_HOSTS: {exc}") from None
        return cls(secret=secret, allowlist=allowlist, timeout=provider_timeout(env))


@dataclass(frozen=True, kw_only=True, slots=True)
class ProvidersConfig:
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    twilio: TwilioConfig = field(default_factory=TwilioConfig)
    fcm: FcmConfig = field(default_factory=FcmConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProvidersConfig:
        return cls(
            smtp=SmtpConfig.from_env(env),
            twilio=TwilioConfig.from_env(env),
            fcm=FcmConfig.from_env(env),
            webhook=WebhookConfig.from_env(env),
        )
