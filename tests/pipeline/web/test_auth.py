"""CLARION_API_KEYS: parsing, hashed keys, scopes, the loopback rule and the view helper."""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from pipeline.settings import SettingsError
from pipeline.web.auth import (
    ApiKeyConfigError,
    ApiKeys,
    AuthFailure,
    api_keys_for,
    authorize,
    is_loopback,
)

LOOPBACK = "127.0.0.1"
REMOTE = "192.0.2.10"


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> str:
    return f"Bearer {key}"


# -- parsing ---------------------------------------------------------------------------------


def test_plain_keys_with_each_scope() -> None:
    keys = ApiKeys.parse("r0:read, w0:write ,rw0:read+write")
    assert keys.enabled
    assert keys.scopes_of("r0") == {"read"}
    assert keys.scopes_of("w0") == {"write"}
    assert keys.scopes_of("rw0") == {"read", "write"}
    assert keys.scopes_of("nope") == frozenset()


def test_the_same_key_twice_holds_both_scopes() -> None:
    keys = ApiKeys.parse("k1:read,k1:write")
    assert keys.scopes_of("k1") == {"read", "write"}
    assert len(keys.entries) == 1


def test_scope_order_and_spaces_do_not_matter() -> None:
    assert ApiKeys.parse("k: write + read ").scopes_of("k") == {"read", "write"}


def test_hashed_key_stands_for_the_key_it_is_the_digest_of() -> None:
    keys = ApiKeys.parse(f"sha256={sha256_hex('s3cret-key')}:write")
    assert keys.scopes_of("s3cret-key") == {"write"}
    # The digest itself is not a key.
    assert keys.scopes_of(sha256_hex("s3cret-key")) == frozenset()
    assert keys.scopes_of(f"sha256={sha256_hex('s3cret-key')}") == frozenset()


def test_hashed_digest_is_case_insensitive_and_merges_with_the_plain_key() -> None:
    keys = ApiKeys.parse(f"SHA256={sha256_hex('k').upper()}:read,k:write")
    assert keys.scopes_of("k") == {"read", "write"}
    assert len(keys.entries) == 1


def test_key_may_contain_colons_the_scope_is_after_the_last_one() -> None:
    assert ApiKeys.parse("a:b:c:read").scopes_of("a:b:c") == {"read"}


@pytest.mark.parametrize("raw", ["", "   ", ",", " , ,"])
def test_empty_means_no_keys(raw: str) -> None:
    keys = ApiKeys.parse(raw)
    assert not keys.enabled
    assert keys.scopes_of("") == frozenset()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("justakey", "entry 1 must look like 'key:scope'"),
        ("ok:read,:write", "entry 2 must look like 'key:scope'"),
        ("k:admin", "entry 1 has scope 'admin'"),
        ("k:", "entry 1 has scope ''"),
        ("k:read+", "entry 1 has scope 'read+'"),
        ("k:read+admin", "entry 1 has scope 'read+admin'"),
        ("sha256=abc:read", "64 hex digits"),
        (f"sha256={'z' * 64}:read", "64 hex digits"),
        (f"sha256={'a' * 62}:read", "64 hex digits"),
        (f"sha256={'ab ' * 21}a:read", "64 hex digits"),
        ("my key:read", "cannot contain spaces"),
        ("k\x00ey:read", "control characters"),
    ],
)
def test_malformed_configuration_is_a_settings_error(raw: str, message: str) -> None:
    with pytest.raises(ApiKeyConfigError, match=re.escape(message)) as raised:
        ApiKeys.parse(raw)
    assert isinstance(raised.value, SettingsError)


def test_repr_shows_no_key_material() -> None:
    keys = ApiKeys.parse(f"plainkey:read,sha256={sha256_hex('k')}:write")
    assert repr(keys) == "ApiKeys(2 keys)"
    assert sha256_hex("plainkey") not in repr(keys) + str(keys)


def test_error_messages_do_not_repeat_the_keys() -> None:
    with pytest.raises(ApiKeyConfigError) as raised:
        ApiKeys.parse("topsecretvalue:write,othersecret:admin")
    assert "topsecretvalue" not in str(raised.value)
    assert "othersecret" not in str(raised.value)


# -- checking --------------------------------------------------------------------------------


KEYS = ApiKeys.parse(
    f"reader:read,writer:write,both:read+write,sha256={sha256_hex('hashed')}:write"
)


@pytest.mark.parametrize(
    ("key", "scope"),
    [
        ("reader", "read"),
        ("writer", "write"),
        ("both", "read"),
        ("both", "write"),
        ("hashed", "write"),
    ],
)
def test_a_key_with_the_scope_passes_from_anywhere(key: str, scope: str) -> None:
    assert KEYS.check(bearer(key), REMOTE, scope) is None
    assert KEYS.check(bearer(key), LOOPBACK, scope) is None


@pytest.mark.parametrize(("key", "scope"), [("reader", "write"), ("writer", "read")])
def test_a_key_without_the_scope_is_forbidden(key: str, scope: str) -> None:
    failure = KEYS.check(bearer(key), REMOTE, scope)
    assert failure is not None
    assert failure.status == 403
    assert failure.error == "forbidden"
    assert repr(scope) in failure.detail
    assert failure.headers["WWW-Authenticate"] == (
        f'Bearer realm="clarion", error="insufficient_scope", scope="{scope}"'
    )


@pytest.mark.parametrize("authorization", [None, "", "   "])
def test_missing_key_is_unauthorized_even_from_loopback(authorization: str | None) -> None:
    failure = KEYS.check(authorization, LOOPBACK, "read")
    assert failure == AuthFailure(
        status=401,
        error="unauthorized",
        detail="missing 'Authorization: Bearer <key>' header",
        headers={"WWW-Authenticate": 'Bearer realm="clarion"'},
    )


@pytest.mark.parametrize(
    "authorization", ["Basic d3JpdGVyOg==", "writer", "Bearer", "Bearer ", "Bearer writer extra"]
)
def test_malformed_authorization_is_unauthorized(authorization: str) -> None:
    failure = KEYS.check(authorization, REMOTE, "write")
    assert failure is not None
    assert failure.status == 401
    assert "Bearer <key>" in failure.detail
    assert failure.headers["WWW-Authenticate"] == 'Bearer realm="clarion"'


@pytest.mark.parametrize("authorization", ["bearer writer", "BEARER  writer", " Bearer writer "])
def test_the_scheme_is_case_insensitive(authorization: str) -> None:
    assert KEYS.check(authorization, REMOTE, "write") is None


@pytest.mark.parametrize("authorization", ["Bearer nope", "Bearer WRITER", "Bearer writer2"])
def test_unknown_key_is_unauthorized(authorization: str) -> None:
    failure = KEYS.check(authorization, REMOTE, "write")
    assert failure is not None
    assert failure.status == 401
    assert failure.detail == "unknown API key"
    assert 'error="invalid_token"' in failure.headers["WWW-Authenticate"]


def test_the_digest_of_a_hashed_key_is_not_accepted_as_a_bearer_token() -> None:
    failure = KEYS.check(bearer(sha256_hex("hashed")), REMOTE, "write")
    assert failure is not None
    assert failure.status == 401


def test_every_configured_digest_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: a match on the first entry still compares against all the others."""
    compared: list[bytes] = []
    real = __import__("hmac").compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return bool(real(a, b))

    monkeypatch.setattr("pipeline.web.auth.hmac.compare_digest", spy)
    keys = ApiKeys.parse("first:write,second:read,third:read")
    assert keys.check(bearer("first"), REMOTE, "write") is None
    assert len(compared) == 3
    compared.clear()
    assert keys.check(bearer("unknown"), REMOTE, "write") is not None
    assert len(compared) == 3


def test_unknown_scope_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        KEYS.check(bearer("writer"), REMOTE, "admin")


# -- no keys: loopback only ------------------------------------------------------------------


NO_KEYS = ApiKeys.parse("")


@pytest.mark.parametrize("remote", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_without_keys_loopback_peers_pass_whatever_they_send(remote: str) -> None:
    assert NO_KEYS.check(None, remote, "write") is None
    assert NO_KEYS.check("Bearer anything", remote, "read") is None


@pytest.mark.parametrize(
    "remote", ["192.0.2.10", "10.0.0.1", "::ffff:192.0.2.10", "fd00::2", "", None, "localhost"]
)
def test_without_keys_other_peers_are_told_to_configure_keys(remote: str | None) -> None:
    failure = NO_KEYS.check("Bearer anything", remote, "read")
    assert failure is not None
    assert failure.status == 403
    assert "CLARION_API_KEYS" in failure.detail


@pytest.mark.parametrize(
    ("remote", "loopback"),
    [("127.0.0.1", True), ("::1", True), ("fe80::1%eth0", False), ("::1%lo", True), ("x", False)],
)
def test_is_loopback(remote: str, loopback: bool) -> None:
    assert is_loopback(remote) is loopback


# -- the helper views call -------------------------------------------------------------------


class FakeWeb:
    def bytes(
        self, value: bytes, *, content_type: str, status: int, headers: dict[str, str]
    ) -> dict[str, Any]:
        return {
            "body": orjson.loads(value),
            "content_type": content_type,
            "status": status,
            "headers": headers,
        }


def request(authorization: str | None = None, remote: str = REMOTE) -> Any:
    headers = {} if authorization is None else {"Authorization": authorization}
    return SimpleNamespace(headers=headers, remote=remote)


async def test_authorize_returns_none_or_the_error_response() -> None:
    assert await authorize(KEYS, FakeWeb(), request(bearer("reader")), "read") is None
    refused = await authorize(KEYS, FakeWeb(), request(bearer("reader")), "write")
    assert refused["status"] == 403
    assert refused["content_type"] == "application/json"
    assert refused["body"] == {
        "error": "forbidden",
        "detail": "this API key lacks the 'write' scope",
    }
    assert "insufficient_scope" in refused["headers"]["WWW-Authenticate"]
    missing = await authorize(KEYS, FakeWeb(), request(), "read")
    assert missing["status"] == 401
    assert missing["headers"] == {"WWW-Authenticate": 'Bearer realm="clarion"'}


async def test_authorize_accepts_the_clarion_and_caches_the_keys_on_its_app() -> None:
    clarion: Any = SimpleNamespace(
        app=SimpleNamespace(), settings=SimpleNamespace(api_keys="w:write")
    )
    keys = api_keys_for(clarion)
    assert keys.scopes_of("w") == {"write"}
    assert api_keys_for(clarion) is keys
    assert clarion.app.clarion_api_keys is keys
    clarion.settings.api_keys = "changed:write"  # read once: later changes are not seen
    assert await authorize(clarion, FakeWeb(), request(bearer("w")), "write") is None


def test_api_keys_for_raises_on_malformed_configuration() -> None:
    clarion: Any = SimpleNamespace(app=SimpleNamespace(), settings=SimpleNamespace(api_keys="k"))
    with pytest.raises(SettingsError):
        api_keys_for(clarion)
