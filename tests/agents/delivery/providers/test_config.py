from __future__ import annotations

import base64
from ipaddress import ip_network

import pytest

from agents.delivery.providers import (
    Provider,
    ProvidersConfig,
    build_providers,
    close_providers,
)
from agents.delivery.providers.config import (
    DEFAULT_TIMEOUT,
    DEV_WEBHOOK_SECRET,
    ProviderConfigError,
    SmtpConfig,
    TwilioConfig,
    WebhookConfig,
    decode_webhook_secret,
)

PROD_SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()


def test_defaults_point_at_the_dev_sinks() -> None:
    config = ProvidersConfig.from_env({})
    assert (config.smtp.host, config.smtp.port, config.smtp.starttls) == ("127.0.0.1", 1025, False)
    assert config.smtp.username is None
    assert config.twilio.base_url == "http://127.0.0.1:8025"
    assert config.twilio.account_sid == "AC" + "0" * 32
    assert config.fcm.base_url == "http://127.0.0.1:8026"
    assert config.webhook.secret == DEV_WEBHOOK_SECRET
    assert config.webhook.allowlist.hosts == frozenset()
    assert config.smtp.timeout == config.twilio.timeout == DEFAULT_TIMEOUT == 10.0
    assert config == ProvidersConfig()


def test_every_contract_variable_is_read() -> None:
    env = {
        "CLARION_SMTP_HOST": "smtp.example.com",
        "CLARION_SMTP_PORT": "587",
        "CLARION_SMTP_USERNAME": "mailer",
        "CLARION_SMTP_PASSWORD": "hunter2",
        "CLARION_SMTP_FROM": "Acme <noreply@acme.example>",
        "CLARION_SMTP_STARTTLS": "true",
        "CLARION_TWILIO_BASE_URL": "https://api.twilio.com/",
        "CLARION_TWILIO_ACCOUNT_SID": "AC" + "ab" * 16,
        "CLARION_TWILIO_AUTH_TOKEN": "tw-token",
        "CLARION_TWILIO_FROM": "+14155550100",
        "CLARION_FCM_BASE_URL": "https://fcm.googleapis.com",
        "CLARION_FCM_PROJECT_ID": "acme-prod",
        "CLARION_FCM_TOKEN": "ya29.token",
        "CLARION_WEBHOOK_SECRET": PROD_SECRET,
        "CLARION_WEBHOOK_ALLOWED_HOSTS": "hooks.internal, 10.0.0.0/8 ,127.0.0.1",
        "CLARION_PROVIDER_TIMEOUT": "2.5",
    }
    config = ProvidersConfig.from_env(env)
    smtp = config.smtp
    assert (smtp.host, smtp.port, smtp.username, smtp.password) == (
        "smtp.example.com",
        587,
        "mailer",
        "hunter2",
    )
    assert smtp.starttls is True
    assert smtp.message_id_domain == "acme.example"
    assert config.twilio.base_url == "https://api.twilio.com"  # no double slash in paths
    assert config.twilio.sender == "+14155550100"
    assert config.fcm.project_id == "acme-prod"
    assert config.fcm.token == "ya29.token"
    assert config.webhook.secret == PROD_SECRET
    assert config.webhook.allowlist.hosts == frozenset({"hooks.internal"})
    assert config.webhook.allowlist.networks == (
        ip_network("10.0.0.0/8"),
        ip_network("127.0.0.1/32"),
    )
    assert {smtp.timeout, config.twilio.timeout, config.fcm.timeout, config.webhook.timeout} == {
        2.5
    }


def test_empty_variables_mean_unset() -> None:
    assert ProvidersConfig.from_env({"CLARION_SMTP_PORT": "", "CLARION_FCM_TOKEN": " "}) == (
        ProvidersConfig()
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLARION_SMTP_PORT", "smtp"),
        ("CLARION_SMTP_PORT", "70000"),
        ("CLARION_SMTP_STARTTLS", "maybe"),
        ("CLARION_SMTP_FROM", "nobody"),
        ("CLARION_TWILIO_ACCOUNT_SID", "AC123"),
        ("CLARION_TWILIO_BASE_URL", "api.twilio.com"),
        ("CLARION_FCM_BASE_URL", "ftp://fcm"),
        ("CLARION_FCM_PROJECT_ID", "a/b"),
        ("CLARION_PROVIDER_TIMEOUT", "0"),
        ("CLARION_PROVIDER_TIMEOUT", "nan"),
        ("CLARION_PROVIDER_TIMEOUT", "soon"),
        ("CLARION_SMTP_POOL_SIZE", "0"),
        ("CLARION_SMTP_IDLE_TIMEOUT", "-1"),
        ("CLARION_WEBHOOK_SECRET", "plain-secret"),
        ("CLARION_WEBHOOK_SECRET", "whsec_!!!notbase64"),
        ("CLARION_WEBHOOK_SECRET", "whsec_" + base64.b64encode(b"short").decode()),
        ("CLARION_WEBHOOK_ALLOWED_HOSTS", "http://hooks.internal/"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ProviderConfigError, match=name):
        ProvidersConfig.from_env({name: value})
    assert issubclass(ProviderConfigError, ValueError)


def test_smtp_session_pool_is_configurable() -> None:
    config = SmtpConfig.from_env({"CLARION_SMTP_POOL_SIZE": "3", "CLARION_SMTP_IDLE_TIMEOUT": "5"})
    assert (config.pool_size, config.idle_timeout) == (3, 5.0)
    assert (SmtpConfig.from_env({}).pool_size, SmtpConfig.from_env({}).idle_timeout) == (8, 30.0)


def test_smtp_credentials_come_in_pairs() -> None:
    with pytest.raises(ProviderConfigError, match="CLARION_SMTP_PASSWORD"):
        SmtpConfig.from_env({"CLARION_SMTP_USERNAME": "mailer"})


def test_secrets_stay_out_of_errors_and_reprs() -> None:
    leaked = "whsec_c2VjcmV0"  # decodes to 6 bytes: too short
    with pytest.raises(ProviderConfigError) as caught:
        WebhookConfig.from_env({"CLARION_WEBHOOK_SECRET": leaked})
    assert leaked not in str(caught.value)
    config = ProvidersConfig.from_env(
        {
            "CLARION_SMTP_USERNAME": "u",
            "CLARION_SMTP_PASSWORD": "pw-123",
            "CLARION_FCM_TOKEN": "t0k",
        }
    )
    shown = repr(config)
    assert "pw-123" not in shown
    assert "t0k" not in shown
    assert TwilioConfig().auth_token not in repr(TwilioConfig())
    assert DEV_WEBHOOK_SECRET not in shown


def test_dev_webhook_secret_is_a_valid_standard_webhooks_secret() -> None:
    assert 24 <= len(decode_webhook_secret(DEV_WEBHOOK_SECRET)) <= 64


def test_unpadded_secrets_are_accepted() -> None:
    key = b"k" * 31
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert decode_webhook_secret(unpadded) == key


async def test_build_providers_covers_every_external_channel() -> None:
    providers = build_providers(ProvidersConfig())
    assert set(providers) == {"email", "sms", "push", "webhook"}
    for channel, provider in providers.items():
        assert isinstance(provider, Provider)
        assert provider.channel == channel
    await close_providers(providers)
