"""Which runtime worker owns a partition, read from the runtime's consumer group itself.

The batch runtime consumes in a group of its own (``f"{group_id}.route"``) with the range
assignor, so partition *p* of every user-keyed topic belongs to one member. Faust's assignor
knows nothing about that group, so the web views cannot ask it who owns *p*. The group can
answer: the broker's DescribeGroups reply names each member's client id and the assignment
its leader handed out. Each runtime consumer therefore starts with a client id that encodes
its worker's advertised web URL (:func:`member_client_id`), and :class:`GroupOwners` maps
partition → URL from the reply.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocol, ConsumerProtocolMemberAssignment
from yarl import URL

logger = logging.getLogger(__name__)

# A client id Kafka treats as harmless everywhere: the broker takes any string in a request
# header, but quota entities, JMX metric names and log lines are only unambiguous for these
# characters, so every other byte of the URL is escaped as ``_xx`` (hex).
_PREFIX = "clarion."
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_ESCAPE = re.compile(r"_([0-9a-f]{2})")
_LEGAL = re.compile(r"[A-Za-z0-9._-]*")

# An owner map this young is trusted as is; older, the next question refreshes it.
_MAX_AGE_S = 2.0
# A partition the map names no owner for (a rebalance) refreshes it on demand, but not more
# often than this, so a burst of requests for a moving partition does not flood the broker.
_MIN_REFRESH_INTERVAL_S = 0.25
# One DescribeGroups round trip, bounded so that a request waiting on it answers in time.
_REFRESH_TIMEOUT_S = 5.0


def member_client_id(advertised_url: str) -> str:
    """The runtime consumer's client id, carrying the worker's advertised web URL."""
    escaped = "".join(
        chr(byte) if byte in _SAFE else f"_{byte:02x}" for byte in advertised_url.encode()
    )
    return _PREFIX + escaped


def advertised_url(client_id: str) -> str | None:
    """The URL :func:`member_client_id` encoded, or ``None`` for any other client id."""
    if not client_id.startswith(_PREFIX) or not _LEGAL.fullmatch(client_id):
        return None
    body = client_id[len(_PREFIX) :]
    if "_" in _ESCAPE.sub("", body):  # an underscore that starts no escape: not ours
        return None
    raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), body).encode("latin-1")
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def owners_from_description(description: Mapping[str, Any], topic: str) -> dict[int, URL]:
    """Partition of ``topic`` → owner's URL, from one group of a DescribeGroups reply.

    Only a stable group carries assignments (during a rebalance the broker leaves them
    empty), so a group that is rebalancing names no owners: its partitions are moving.
    """
    owners: dict[int, URL] = {}
    if description.get("protocol_type") != ConsumerProtocol.PROTOCOL_TYPE:
        return owners
    for member in description.get("members", ()):
        url = advertised_url(member["client_id"])
        raw = member["member_assignment"]
        if url is None or not raw:
            continue
        try:
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
        except Exception:  # noqa: BLE001 - a member that is not an aiokafka/Java consumer
            logger.warning("undecodable assignment of group member %s", member["member_id"])
            continue
        for assigned_topic, partitions in assignment.assignment:
            if assigned_topic == topic:
                owners.update(dict.fromkeys(partitions, URL(url)))
    return owners


@dataclass(kw_only=True, eq=False)
class GroupOwners:
    """Who owns each partition of ``topic`` in consumer group ``group_id``.

    Local ownership comes from the runtime itself (:meth:`set_local`, called from its
    rebalance listener), so it is exact and costs nothing. Remote owners come from the
    broker, cached for a short while: a request never waits on the broker when the map is
    fresh, and waits for at most one bounded DescribeGroups otherwise, shared by every
    request that needs it.
    """

    bootstrap_servers: str
    group_id: str
    topic: str
    # Passed to the admin client as they are (security settings and the like).
    client_options: Mapping[str, Any] = field(default_factory=dict)
    max_age_s: float = _MAX_AGE_S
    min_refresh_interval_s: float = _MIN_REFRESH_INTERVAL_S
    refresh_timeout_s: float = _REFRESH_TIMEOUT_S
    _local: frozenset[int] = frozenset()
    _owners: dict[int, URL] = field(default_factory=dict)
    _fetched_at: float = -math.inf
    _refreshes: int = 0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _admin: AIOKafkaAdminClient | None = None
    _closed: bool = False

    def set_local(self, partitions: Iterable[int]) -> None:
        """The partitions the local runtime consumer holds now (its rebalance listener)."""
        self._local = frozenset(partitions)

    def is_local(self, partition: int) -> bool:
        return partition in self._local

    async def owner_url(self, partition: int) -> URL | None:
        """The owner's URL, ``None`` while no member holds ``partition`` (a rebalance)."""
        age = time.monotonic() - self._fetched_at
        if age > self.max_age_s or (
            partition not in self._owners and age > self.min_refresh_interval_s
        ):
            await self.refresh()
        return self._owners.get(partition)

    async def refresh(self) -> None:
        """Read the group's assignment again; requests that queued meanwhile share it."""
        seen = self._refreshes
        async with self._lock:
            if self._refreshes != seen or self._closed:
                return  # another request refreshed while this one waited
            try:
                async with asyncio.timeout(self.refresh_timeout_s):
                    self._owners = await self._describe()
            except Exception as exc:  # noqa: BLE001 - the old map stays; asked again later
                logger.warning("could not describe consumer group %s: %r", self.group_id, exc)
            # Also on failure: the next attempt waits its turn instead of every request
            # retrying a broker that is not answering.
            self._fetched_at = time.monotonic()
            self._refreshes += 1

    async def _describe(self) -> dict[int, URL]:
        admin = await self._started_admin()
        replies = await admin.describe_consumer_groups([self.group_id])
        owners: dict[int, URL] = {}
        for reply in replies:
            for group in reply.to_object()["groups"]:
                if group["group"] != self.group_id:
                    continue
                if group["error_code"]:
                    raise RuntimeError(f"DescribeGroups error code {group['error_code']}")
                owners.update(owners_from_description(group, self.topic))
        return owners

    async def _started_admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, **dict(self.client_options)
            )
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return self._admin

    async def close(self) -> None:
        """Close the admin client; later questions answer from the last map, no refresh."""
        async with self._lock:
            self._closed = True
            if self._admin is not None:
                await self._admin.close()
                self._admin = None
