"""Settings from the environment: Clarion's own variables stay out of the Kafka client options."""

from __future__ import annotations

import pytest

from pipeline.settings import Settings, SettingsError


def test_kafka_client_options_pass_through_but_clarions_own_kafka_settings_do_not() -> None:
    settings = Settings.from_env(
        {
            "CLARION_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CLARION_KAFKA_SASL_MECHANISM": "PLAIN",
            "CLARION_KAFKA_CACHE": "/tmp/kafka-jars",
        }
    )
    assert settings.kafka_options == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
    }


def test_every_consumer_group_and_internal_topic_name_is_under_the_topic_prefix() -> None:
    settings = Settings.from_env({"CLARION_TOPIC_PREFIX": "acme.", "CLARION_APP_ID": "notify"})
    assert settings.group_id == "acme.notify"


def test_the_record_limit_cannot_be_set_below_an_event() -> None:
    with pytest.raises(SettingsError, match="CLARION_MAX_RECORD_BYTES must be at least 65536"):
        Settings.from_env({"CLARION_MAX_RECORD_BYTES": "1000"})


def test_the_delivery_runtime_session_timeout_is_short_by_default_and_settable() -> None:
    assert Settings.from_env({}).runtime_session_timeout == 10.0
    assert Settings.from_env({"CLARION_RUNTIME_SESSION_TIMEOUT": "6"}).runtime_session_timeout == 6
    with pytest.raises(SettingsError, match="CLARION_RUNTIME_SESSION_TIMEOUT must be positive"):
        Settings.from_env({"CLARION_RUNTIME_SESSION_TIMEOUT": "0"})
