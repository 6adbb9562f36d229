"""API keys of the web API (``CLARION_API_KEYS``) and the check every protected view runs.

``CLARION_API_KEYS`` is a comma list of ``key:scope`` entries. A scope is ``read``, ``write``
or ``read+write``; the same key may appear more than once (``k1:read,k1:write``) and then
holds the union of its scopes. A key can be kept hashed at rest: ``sha256=<64 hex digits>``
stands for the key whose SHA-256 digest that is (``printf %s "$KEY" | sha256sum``).

Unset or empty, there are no keys and the API answers loopback clients only (127.0.0.0/8,
::1): a worker reachable from the network is never open by accident. With keys, every
request needs ``Authorization: Bearer <key>``, loopback ones too.

Presented keys are hashed and their digest compared with every configured digest in
constant time, without stopping at the first match, so timing tells nothing about the keys.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.settings import SettingsError

if TYPE_CHECKING:
    from pipeline.app import Clarion

__all__ = [
    "SCOPES",
    "ApiKeyConfigError",
    "ApiKeys",
    "AuthFailure",
    "api_keys_for",
    "authorize",
    "is_loopback",
]

SCOPES = ("read", "write")
_HASHED_PREFIX = "sha256="
_REALM = 'Bearer realm="clarion"'
# Where api_keys_for keeps the parsed keys: on the worker's Faust app.
_APP_ATTRIBUTE = "clarion_api_keys"


class ApiKeyConfigError(SettingsError):
    """``CLARION_API_KEYS`` cannot be parsed; the message never repeats a key."""


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request is refused: ``status`` 401 or 403, and the body's error and detail."""

    status: int
    error: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The configured keys as (SHA-256 digest, scopes) pairs; build it with :meth:`parse`."""

    entries: tuple[tuple[bytes, frozenset[str]], ...] = ()

    def __repr__(self) -> str:
        # No digests: the digest of a weak key is as good as the key to whoever reads logs.
        return f"ApiKeys({len(self.entries)} keys)"

    @classmethod
    def parse(cls, raw: str) -> ApiKeys:
        scopes_by_digest: dict[bytes, set[str]] = {}
        for number, entry in enumerate(raw.split(","), start=1):
            entry = entry.strip()  # noqa: PLW2901 - the stripped entry is the entry
            if not entry:
                continue
            key, colon, scope_text = entry.rpartition(":")
            key = key.strip()
            if not colon or not key:
                raise ApiKeyConfigError(
                    f"CLARION_API_KEYS entry {number} must look like 'key:scope' with scope "
                    "read, write or read+write"
                )
            scopes = _parse_scopes(scope_text, number)
            digest = _digest_of(key, number)
            scopes_by_digest.setdefault(digest, set()).update(scopes)
        return cls(
            entries=tuple(
                (digest, frozenset(scopes)) for digest, scopes in scopes_by_digest.items()
            )
        )

    @property
    def enabled(self) -> bool:
        """True when keys are configured; False means loopback clients only."""
        return bool(self.entries)

    def scopes_of(self, key: str) -> frozenset[str]:
        """The scopes ``key`` holds (empty if it is not a configured key), in constant time."""
        presented = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: frozenset[str] = frozenset()
        for digest, scopes in self.entries:
            # Every digest is compared: no early exit on a match.
            if hmac.compare_digest(digest, presented):
                found = scopes
        return found

    def check(
        self, authorization: str | None, remote: str | None, scope: str
    ) -> AuthFailure | None:
        """None when a request with this ``Authorization`` header from peer address ``remote``
        may use ``scope``; otherwise why not."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; expected one of {', '.join(SCOPES)}")
        if not self.enabled:
            if is_loopback(remote):
                return None
            return AuthFailure(
                status=403,
                error="forbidden",
                detail=(
                    "this worker has no API keys and answers loopback clients only; "
                    "configure CLARION_API_KEYS to allow other clients"
                ),
            )
        key = _bearer_token(authorization)
        if key is None:
            if authorization is None or not authorization.strip():
                detail = "missing 'Authorization: Bearer <key>' header"
            else:
                detail = "the Authorization header must be 'Bearer <key>'"
            return AuthFailure(
                status=401,
                error="unauthorized",
                detail=detail,
                headers={"WWW-Authenticate": _REALM},
            )
        scopes = self.scopes_of(key)
        if not scopes:
            return AuthFailure(
                status=401,
                error="unauthorized",
                detail="unknown API key",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            )
        if scope not in scopes:
            return AuthFailure(
                status=403,
                error="forbidden",
                detail=f"this API key lacks the {scope!r} scope",
                headers={
                    "WWW-Authenticate": f'{_REALM}, error="insufficient_scope", scope="{scope}"'
                },
            )
        return None


def api_keys_for(clarion: Clarion) -> ApiKeys:
    """The worker's keys, parsed from ``clarion.settings.api_keys`` once and kept on its Faust
    app (``clarion.app.clarion_api_keys``)."""
    keys = getattr(clarion.app, _APP_ATTRIBUTE, None)
    if not isinstance(keys, ApiKeys):
        keys = ApiKeys.parse(clarion.settings.api_keys)
        setattr(clarion.app, _APP_ATTRIBUTE, keys)
    return keys


async def authorize(keys: ApiKeys | Clarion, web: Any, request: Any, scope: str) -> Any | None:
    """The error response for a request that may not use ``scope``, or None when it may.

    ``web`` is the Faust view (the first argument of a page function, ``self`` in a class
    view); ``request`` is Faust's aiohttp request. Use it first thing in a handler::

        if (refused := await authorize(keys, web, request, "read")) is not None:
            return refused
    """
    if not isinstance(keys, ApiKeys):
        keys = api_keys_for(keys)
    failure = keys.check(request.headers.get("Authorization"), request.remote, scope)
    if failure is None:
        return None
    return web.bytes(
        orjson.dumps({"error": failure.error, "detail": failure.detail}),
        content_type="application/json",
        status=failure.status,
        headers=dict(failure.headers),
    )


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is a loopback one; anything unparsable is not."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _parse_scopes(text: str, number: int) -> set[str]:
    scopes = {part.strip() for part in text.split("+")}
    if not scopes or not scopes <= set(SCOPES):
        raise ApiKeyConfigError(
            f"CLARION_API_KEYS entry {number} has scope {text.strip()!r}; "
            "expected read, write or read+write"
        )
    return scopes


def _digest_of(key: str, number: int) -> bytes:
    if key.lower().startswith(_HASHED_PREFIX):
        hex_digest = key[len(_HASHED_PREFIX) :]
        try:
            digest = bytes.fromhex(hex_digest)
        except ValueError:
            digest = b""
        if len(digest) != 32 or len(hex_digest) != 64:
            raise ApiKeyConfigError(
                f"CLARION_API_KEYS entry {number} starts with 'sha256=' but is not followed by "
                "the 64 hex digits of a SHA-256 digest"
            )
        return digest
    if any(char.isspace() or not char.isprintable() for char in key):
        raise ApiKeyConfigError(
            f"CLARION_API_KEYS entry {number}: a key cannot contain spaces or control characters"
        )
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token
