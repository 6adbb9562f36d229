"""External providers of the delivery agents, one module per wire format.

Typical wiring in a delivery agent::

    providers = build_providers(ProvidersConfig.from_env(os.environ))
    try:
        result = await providers[delivery["channel"]].send(delivery)
    except TransientDeliveryError as exc:   # retry, after exc.retry_after if set
        ...
    except UnregisteredTokenError as exc:   # drop exc.address from the user's tokens
        ...
    except PermanentDeliveryError as exc:   # dead-letter with exc.reason
        ...
    await close_providers(providers)        # on worker shutdown

``in_app`` has no external provider: the agent stores those in a table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from agents.delivery.providers.base import (
    DeliveryError,
    InvalidAddressError,
    PermanentDeliveryError,
    Provider,
    SendResult,
    TransientDeliveryError,
    UnregisteredTokenError,
    classify_http_status,
    parse_retry_after,
)
from agents.delivery.providers.config import ProviderConfigError, ProvidersConfig
from agents.delivery.providers.fcm import FcmProvider
from agents.delivery.providers.smtp import SmtpProvider
from agents.delivery.providers.twilio import TwilioProvider
from agents.delivery.providers.webhook import WebhookProvider

__all__ = [
    "DeliveryError",
    "FcmProvider",
    "InvalidAddressError",
    "PermanentDeliveryError",
    "Provider",
    "ProviderConfigError",
    "ProvidersConfig",
    "SendResult",
    "SmtpProvider",
    "TransientDeliveryError",
    "TwilioProvider",
    "UnregisteredTokenError",
    "WebhookProvider",
    "build_providers",
    "classify_http_status",
    "close_providers",
    "parse_retry_after",
]


def build_providers(config: ProvidersConfig) -> dict[str, Provider]:
    """One provider per external channel, keyed by channel name."""
    return {
        "email": SmtpProvider(config.smtp),
        "sms": TwilioProvider(config.twilio),
        "push": FcmProvider(config.fcm),
        "webhook": WebhookProvider(config.webhook),
    }


async def close_providers(providers: Mapping[str, Provider]) -> None:
    await asyncio.gather(*(provider.close() for provider in providers.values()))
