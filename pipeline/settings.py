"""Configuration read once from ``CLARION_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agents.delivery.providers.config import ProvidersConfig
from agents.delivery.tuning import DeliveryTuning
from pipeline.roles import ALL_ROLES, RolesError, parse_roles
from schemas.hold_horizon import DEFAULT_MAX_HOLD
from schemas.records import CHANNELS
from schemas.structs import DEFAULT_MAX_RECORD_BYTES

DEFAULT_BROKER = "kafka://127.0.0.1:9092"


class SettingsError(ValueError):
    """A ``CLARION_*`` variable holds a value Clarion cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {value}")
    return value


def _caps(env: Mapping[str, str], name: str) -> dict[str, int]:
    """``email:10,sms:3``: at most that many individual notifications per hour and channel."""
    caps: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in env.get(name, "").split(","))):
        channel, _, count = entry.partition(":")
        if channel.strip() not in CHANNELS or not count.strip().isdigit():
            raise SettingsError(
                f"{name} must look like 'email:10,sms:3' with channels from "
                f"{', '.join(CHANNELS)}; got {entry!r}"
            )
        caps[channel.strip()] = int(count)
    return caps


# CLARION_KAFKA_* variables that are Clarion's own settings, not Kafka client options.
_OWN_KAFKA_SETTINGS = frozenset({"CLARION_KAFKA_CACHE"})


def _roles(env: Mapping[str, str]) -> frozenset[str]:
    try:
        return parse_roles(env.get("CLARION_ROLES"))
    except RolesError as exc:
        raise SettingsError(f"CLARION_ROLES: {exc}") from None


def _kafka_options(env: Mapping[str, str]) -> dict[str, str]:
    """``CLARION_KAFKA_SECURITY_PROTOCOL=SSL`` → ``security_protocol="SSL"`` for the clients."""
    return {
        name.removeprefix("CLARION_KAFKA_").lower(): value
        for name, value in env.items()
        if name.startswith("CLARION_KAFKA_") and name not in _OWN_KAFKA_SETTINGS
    }


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a Clarion process needs to know; build it with :meth:`from_env`."""

    broker: str = DEFAULT_BROKER
    topic_prefix: str = "clarion."
    partitions: int = 8
    data_dir: Path = Path(".clarion")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    dev_kafka_port: int = 9092
    dedupe_window: float = 86400.0
    digest_window: float = 3600.0
    max_attempts: int = 5
    retry_backoff: float = 10.0
    max_event_bytes: int = 64 * 1024
    # No record Clarion writes is larger (key + value): under the broker's message.max.bytes.
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # Largest request body the web server reads; beyond it the answer is 413.
    max_request_bytes: int = 8 * 1024 * 1024
    # How far ahead an event's send_at and expires_at may point; beyond it, it is invalid.
    max_hold: float = DEFAULT_MAX_HOLD
    template_dir: Path | None = None
    app_id: str = "clarion"
    log_level: str = "info"
    # The most records the route runtime fetches and commits in one batch.
    commit_batch: int = 2000
    # How long the runtimes' groups (route, store, deliver) wait for a silent worker before
    # giving its partitions to others.
    runtime_session_timeout: float = 10.0
    # How often each worker looks for held notifications and digest windows that are due.
    sweep_interval: float = 1.0
    # Hourly cap per channel for users whose preferences name none; absent means no cap.
    default_caps: Mapping[str, int] = field(default_factory=dict)
    # A file holding the current time (RFC 3339) instead of the system clock: for tests and
    # demos that need to move through quiet hours and digest windows in seconds.
    clock_file: Path | None = None
    # CLARION_API_KEYS as given: ``key:scope`` entries (see pipeline/web/auth.py); empty means
    # no keys, and then the web API answers loopback clients only.
    api_keys: str = ""
    # The URL other workers use to reach this one's web server (owner routing of the views);
    # defaults to http://<CLARION_WEB_HOST>:<CLARION_WEB_PORT>.
    advertised_url: str | None = None
    providers: ProvidersConfig = field(default_factory=ProvidersConfig)
    delivery: DeliveryTuning = field(default_factory=DeliveryTuning)
    kafka_options: Mapping[str, str] = field(default_factory=dict)
    roles: frozenset[str] = frozenset(ALL_ROLES)

    @property
    def group_id(self) -> str:
        """Consumer group, Faust app id and transactional-id prefix: under the topic prefix,
        so that two deployments with different prefixes never share one."""
        return f"{self.topic_prefix}{self.app_id}"

    @property
    def route_group_id(self) -> str:
        """The route runtime's consumer group (events, preferences, retries)."""
        return f"{self.group_id}.route"

    @property
    def store_group_id(self) -> str:
        """The store runtime's consumer group (status history, in-app inbox)."""
        return f"{self.group_id}.store"

    @property
    def bootstrap_servers(self) -> str:
        """The broker list without faust's ``kafka://`` scheme, as aiokafka wants it."""
        return ",".join(url.strip().removeprefix("kafka://") for url in self.broker.split(","))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        template_dir = env.get("CLARION_TEMPLATE_DIR")
        clock_file = env.get("CLARION_CLOCK_FILE")
        return cls(
            broker=env.get("CLARION_BROKER") or DEFAULT_BROKER,
            topic_prefix=env.get("CLARION_TOPIC_PREFIX", "clarion."),
            partitions=_int(env, "CLARION_PARTITIONS", 8),
            data_dir=Path(env.get("CLARION_DATA_DIR") or ".clarion"),
            web_port=_int(env, "CLARION_WEB_PORT", 6066),
            web_host=env.get("CLARION_WEB_HOST") or "127.0.0.1",
            dev_kafka_port=_int(env, "CLARION_DEV_KAFKA_PORT", 9092),
            dedupe_window=_float(env, "CLARION_DEDUPE_WINDOW", 86400.0),
            digest_window=_float(env, "CLARION_DIGEST_WINDOW", 3600.0),
            max_attempts=_int(env, "CLARION_MAX_ATTEMPTS", 5),
            retry_backoff=_float(env, "CLARION_RETRY_BACKOFF", 10.0),
            max_event_bytes=_int(env, "CLARION_MAX_EVENT_BYTES", 64 * 1024),
            max_record_bytes=_int(
                env, "CLARION_MAX_RECORD_BYTES", DEFAULT_MAX_RECORD_BYTES, minimum=65_536
            ),
            max_request_bytes=_int(env, "CLARION_MAX_REQUEST_BYTES", 8 * 1024 * 1024),
            max_hold=_float(env, "CLARION_MAX_HOLD", DEFAULT_MAX_HOLD),
            template_dir=Path(template_dir) if template_dir else None,
            app_id=env.get("CLARION_APP_ID") or "clarion",
            log_level=env.get("CLARION_LOG_LEVEL") or "info",
            commit_batch=_int(env, "CLARION_COMMIT_BATCH", 2000),
            runtime_session_timeout=_float(env, "CLARION_RUNTIME_SESSION_TIMEOUT", 10.0),
            sweep_interval=_float(env, "CLARION_SWEEP_INTERVAL", 1.0),
            default_caps=_caps(env, "CLARION_DEFAULT_CAPS"),
            clock_file=Path(clock_file) if clock_file else None,
            api_keys=env.get("CLARION_API_KEYS", ""),
            advertised_url=env.get("CLARION_ADVERTISED_URL") or None,
            providers=ProvidersConfig.from_env(env),
            delivery=DeliveryTuning.from_env(env),
            kafka_options=_kafka_options(env),
            roles=_roles(env),
        )
