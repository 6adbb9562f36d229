from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import pytest

from agents.delivery.providers.base import (
    InvalidAddressError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from agents.delivery.providers.config import DEV_WEBHOOK_SECRET, WebhookConfig
from agents.delivery.providers.ssrf import Allowlist
from agents.delivery.providers.webhook import PUBLIC_FIELDS, WebhookProvider, verify
from pipeline.devsinks.webhook import WebhookSink
from tests.agents.delivery.providers.conftest import FIXED_NOW, TEST_TIMEOUT, StaticResolver

Delivery = Callable[..., dict[str, Any]]
LOOPBACK = Allowlist.parse("127.0.0.1")


def make_provider(
    allowlist: Allowlist = LOOPBACK, *, timeout: float = TEST_TIMEOUT, **kwargs: Any
) -> WebhookProvider:
    config = WebhookConfig(allowlist=allowlist, timeout=timeout)
    return WebhookProvider(config, clock=lambda: FIXED_NOW, **kwargs)


@pytest.fixture
async def provider() -> AsyncIterator[WebhookProvider]:
    provider = make_provider()
    yield provider
    await provider.close()


@pytest.fixture
def hook(delivery: Delivery, webhook_sink: WebhookSink) -> Delivery:
    def make(**fields: Any) -> dict[str, Any]:
        address = webhook_sink.hook_url("/hooks/alice")
        return delivery(**{"channel": "webhook", "address": address, **fields})

    return make


async def test_posts_one_signed_json_payload(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    sent = hook()
    result = await provider.send(sent)

    [request] = webhook_sink.requests.items
    assert request.path == "/hooks/alice"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["webhook-id"] == sent["notification_id"]
    assert request.headers["webhook-timestamp"] == str(FIXED_NOW)
    assert request.json() == {name: sent[name] for name in PUBLIC_FIELDS}
    assert "address" not in request.json()
    assert "html" not in request.json()
    signature = request.headers["webhook-signature"]
    assert signature.startswith("v1,")
    assert verify(
        DEV_WEBHOOK_SECRET,
        request.headers["webhook-id"],
        request.headers["webhook-timestamp"],
        request.body,
        signature,
        now=FIXED_NOW,
    )
    assert result.provider_message_id == sent["notification_id"]


async def test_tampered_body_fails_verification(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    await provider.send(hook())
    [request] = webhook_sink.requests.items
    tampered = request.body.replace(b"Invoice #42", b"Invoice #43")
    assert tampered != request.body
    headers = request.headers
    assert not verify(
        DEV_WEBHOOK_SECRET,
        headers["webhook-id"],
        headers["webhook-timestamp"],
        tampered,
        headers["webhook-signature"],
        now=FIXED_NOW,
    )


async def test_receiver_with_another_secret_refuses_it_permanently(
    provider: WebhookProvider, hook: Delivery
) -> None:
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    async with WebhookSink(secret=other, clock=lambda: FIXED_NOW) as sink:
        with pytest.raises(PermanentDeliveryError) as caught:
            await provider.send(hook(address=sink.hook_url()))
    assert caught.value.status == 401


async def test_retries_keep_the_id_and_take_a_new_timestamp(
    webhook_sink: WebhookSink, hook: Delivery
) -> None:
    now = [FIXED_NOW]
    provider = WebhookProvider(WebhookConfig(allowlist=LOOPBACK), clock=lambda: now[0])
    try:
        webhook_sink.fail_next(status=503)
        with pytest.raises(TransientDeliveryError):
            await provider.send(hook())
        now[0] += 60
        await provider.send(hook())
    finally:
        await provider.close()
    first, second = webhook_sink.requests.items
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert int(second.headers["webhook-timestamp"]) == FIXED_NOW + 60


async def test_429_with_http_date_retry_after(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    webhook_sink.fail_next(status=429, retry_after=formatdate(2_000_000_000, usegmt=True))
    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send(hook())
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 0


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery, status: int
) -> None:
    webhook_sink.fail_next(status=status)
    with pytest.raises(TransientDeliveryError):
        await provider.send(hook())


async def test_400_is_permanent(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    webhook_sink.fail_next(status=400)
    with pytest.raises(PermanentDeliveryError):
        await provider.send(hook())


async def test_redirects_are_not_followed(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    webhook_sink.fail_next(status=307)
    with pytest.raises(PermanentDeliveryError, match="HTTP 307"):
        await provider.send(hook())
    assert len(webhook_sink.requests) == 1


async def test_slow_receiver_is_transient(webhook_sink: WebhookSink, hook: Delivery) -> None:
    webhook_sink.fail_next(delay=30)
    provider = make_provider(timeout=0.3)
    try:
        with pytest.raises(TransientDeliveryError):
            await provider.send(hook())
    finally:
        await provider.close()


async def test_refused_connection_is_transient(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    await webhook_sink.pause()
    with pytest.raises(TransientDeliveryError):
        await provider.send(hook())


async def test_dropped_connection_is_transient(
    provider: WebhookProvider, webhook_sink: WebhookSink, hook: Delivery
) -> None:
    webhook_sink.fail_next(refuse=True)
    with pytest.raises(TransientDeliveryError):
        await provider.send(hook())


# --- SSRF guard -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8027/hooks", "loopback"),
        ("http://10.1.2.3/hooks", "private"),
        ("http://192.168.0.10/hooks", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]:8027/hooks", "loopback"),
        ("http://[::ffff:127.0.0.1]/hooks", "loopback"),
        ("http://[fe80::1]/hooks", "link-local"),
        ("http://[fd00::1]/hooks", "private"),
        ("http://0.0.0.0/hooks", "unspecified"),
        ("http://224.0.0.1/hooks", "multicast"),
        ("http://240.0.0.1/hooks", "reserved"),
        ("http://100.64.0.1/hooks", "non-global"),
    ],
)
async def test_internal_ip_literals_are_refused(url: str, kind: str, hook: Delivery) -> None:
    provider = make_provider(Allowlist())
    try:
        with pytest.raises(PermanentDeliveryError, match=kind) as caught:
            await provider.send(hook(address=url))
    finally:
        await provider.close()
    assert "CLARION_WEBHOOK_ALLOWED_HOSTS" in caught.value.reason


@pytest.mark.parametrize(
    ("answers", "kind"),
    [
        (["10.0.0.7"], "private"),
        (["169.254.169.254"], "link-local"),
        (["::1"], "loopback"),
        (["::ffff:127.0.0.1"], "loopback"),
        # One bad answer among good ones: likely rebinding bait, refuse the host.
        (["93.184.216.34", "127.0.0.1"], "loopback"),
    ],
)
async def test_host_names_resolving_inside_are_refused(
    answers: list[str], kind: str, hook: Delivery
) -> None:
    resolver = StaticResolver({"hooks.example": answers})
    provider = make_provider(Allowlist(), resolver=resolver)
    try:
        with pytest.raises(PermanentDeliveryError, match=f"'hooks.example' resolves to {kind}"):
            await provider.send(hook(address="http://hooks.example/alice"))
    finally:
        await provider.close()
    assert resolver.asked == ["hooks.example"]


async def test_localhost_is_refused_through_real_dns(hook: Delivery) -> None:
    provider = make_provider(Allowlist())
    try:
        with pytest.raises(PermanentDeliveryError, match="loopback"):
            await provider.send(hook(address="http://localhost:1/hooks"))
    finally:
        await provider.close()


async def test_unknown_host_is_transient(hook: Delivery) -> None:
    provider = make_provider(Allowlist(), resolver=StaticResolver({}))
    try:
        with pytest.raises(TransientDeliveryError):
            await provider.send(hook(address="http://nowhere.example/"))
    finally:
        await provider.close()


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example/x", "file:///etc/passwd", "http:///nohost", "hooks.example/x"]
)
async def test_non_http_urls_are_invalid_addresses(url: str, hook: Delivery) -> None:
    provider = make_provider(Allowlist())
    try:
        with pytest.raises(InvalidAddressError) as caught:
            await provider.send(hook(address=url))
    finally:
        await provider.close()
    assert caught.value.address == url


async def test_allowlisted_cidr_lets_a_loopback_literal_through(
    webhook_sink: WebhookSink, hook: Delivery
) -> None:
    provider = make_provider(Allowlist.parse("127.0.0.0/8"))
    try:
        await provider.send(hook())
    finally:
        await provider.close()
    assert len(webhook_sink.requests) == 1


async def test_allowlisted_host_name_connects_to_the_address_it_resolved(
    webhook_sink: WebhookSink, hook: Delivery
) -> None:
    resolver = StaticResolver({"hooks.internal": ["127.0.0.1"]})
    provider = make_provider(Allowlist.parse("hooks.internal"), resolver=resolver)
    try:
        await provider.send(hook(address=f"http://hooks.internal:{webhook_sink.port}/alice"))
    finally:
        await provider.close()
    [request] = webhook_sink.requests.items
    assert request.path == "/alice"
    assert request.headers["Host"] == f"hooks.internal:{webhook_sink.port}"


async def test_allowlisted_cidr_covers_resolved_addresses(
    webhook_sink: WebhookSink, hook: Delivery
) -> None:
    resolver = StaticResolver({"hooks.internal": ["127.0.0.1"]})
    provider = make_provider(Allowlist.parse("127.0.0.0/8"), resolver=resolver)
    try:
        await provider.send(hook(address=f"http://hooks.internal:{webhook_sink.port}/"))
    finally:
        await provider.close()
    assert len(webhook_sink.requests) == 1


async def test_allowlisted_localhost_through_real_dns(
    webhook_sink: WebhookSink, hook: Delivery
) -> None:
    provider = make_provider(Allowlist.parse("localhost"))
    try:
        await provider.send(hook(address=f"http://localhost:{webhook_sink.port}/x"))
    finally:
        await provider.close()
    assert len(webhook_sink.requests) == 1


async def test_allowlisting_one_host_does_not_open_another(
    webhook_sink: WebhookSink, hook: Delivery
) -> None:
    resolver = StaticResolver({"evil.example": ["127.0.0.1"]})
    provider = make_provider(Allowlist.parse("hooks.internal"), resolver=resolver)
    try:
        with pytest.raises(PermanentDeliveryError):
            await provider.send(hook(address=f"http://evil.example:{webhook_sink.port}/"))
    finally:
        await provider.close()
    assert len(webhook_sink.requests) == 0
