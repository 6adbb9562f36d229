"""How hard each provider may be pushed: rate limits, breakers, concurrency, fallbacks.

Read from ``CLARION_*`` variables; rates are per second and unset means unlimited. Limits are
per worker: N workers send up to N times the rate to a provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agents.delivery.providers.config import ProviderConfigError, SmtpConfig

# Provider name in variable names -> channel it serves.
PROVIDER_CHANNELS = {"SMTP": "email", "TWILIO": "sms", "FCM": "push", "WEBHOOK": "webhook"}


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    rate: float | None = None
    burst: int = 10


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryTuning:
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    # Deliveries in flight per channel and worker; the agents write no tables, so they may.
    # 64: a delivery mostly waits (provider round trip, broker acknowledgement), and the bench
    # measured 77/s at 1, 558/s at 64 through a local webhook sink.
    concurrency: int = 64
    # A second SMTP relay used while the first one's breaker is open.
    smtp_fallback: SmtpConfig | None = None
    inbox_size: int = 200

    def rate_limit(self, channel: str) -> RateLimit:
        return self.rate_limits.get(channel, RateLimit())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DeliveryTuning:
        limits = {
            channel: RateLimit(
                rate=_number(env, f"CLARION_{provider}_RATE"),
                burst=int(_number(env, f"CLARION_{provider}_BURST") or 10),
            )
            for provider, channel in PROVIDER_CHANNELS.items()
        }
        fallback = None
        if env.get("CLARION_SMTP_FALLBACK_HOST"):
            prefix = "CLARION_SMTP_FALLBACK_"
            renamed = {
                f"CLARION_SMTP_{name.removeprefix(prefix)}": value
                for name, value in env.items()
                if name.startswith(prefix)
            }
            fallback = SmtpConfig.from_env({**env, **renamed})
        return cls(
            rate_limits=limits,
            breaker_failures=int(_number(env, "CLARION_BREAKER_FAILURES") or 5),
            breaker_cooldown=_number(env, "CLARION_BREAKER_COOLDOWN") or 30.0,
            concurrency=int(_number(env, "CLARION_DELIVERY_CONCURRENCY") or 64),
            smtp_fallback=fallback,
            inbox_size=int(_number(env, "CLARION_INBOX_SIZE") or 200),
        )


def _number(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ProviderConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ProviderConfigError(f"{name} must be positive, got {raw!r}")
    return value
