"""Owners of the runtime's partitions, read from its consumer group on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from yarl import URL

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.local import LocalKafka
from pipeline.runtime.members import (
    GroupOwners,
    advertised_url,
    member_client_id,
    owners_from_description,
)
from pipeline.web.owners import OwnerSource

PARTITIONS = 4
URL_A = "http://worker-a.clarion.internal:6066"
URL_B = "http://10.1.2.3:6067/"


@pytest.mark.parametrize(
    "url",
    [URL_A, URL_B, "https://[::1]:8443/base_path?x=1", "http://wörker:1", "http://a_5f:2"],
)
def test_the_client_id_round_trips_the_url(url: str) -> None:
    client_id = member_client_id(url)

    assert advertised_url(client_id) == url


def test_the_client_id_uses_only_characters_kafka_treats_as_plain() -> None:
    client_id = member_client_id("https://user@host:8443/a b")

    assert client_id.startswith("clarion.")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in client_id)


@pytest.mark.parametrize("client_id", ["aiokafka-0.14.0", "clarion.bad_zz", "clarion.a_", ""])
def test_other_client_ids_name_no_url(client_id: str) -> None:
    assert advertised_url(client_id) is None


def _member(client_id: str, assignment: list[tuple[str, list[int]]]) -> dict[str, object]:
    raw = ConsumerProtocolMemberAssignment(0, assignment, b"").encode() if assignment else b""
    return {"member_id": client_id, "client_id": client_id, "member_assignment": raw}


def test_owners_come_from_the_assignment_of_the_topic_asked_about() -> None:
    description = {
        "protocol_type": "consumer",
        "members": [
            _member(member_client_id(URL_A), [("events", [0, 1]), ("prefs", [0, 1])]),
            _member(member_client_id(URL_B), [("events", [2, 3]), ("prefs", [2, 3])]),
            _member("someone-else", [("events", [9])]),  # not a runtime member: no URL
        ],
    }

    assert owners_from_description(description, "events") == {
        0: URL(URL_A),
        1: URL(URL_A),
        2: URL(URL_B),
        3: URL(URL_B),
    }


def test_a_rebalancing_group_names_no_owner() -> None:
    # The broker sends assignments only for a stable group.
    description = {"protocol_type": "consumer", "members": [_member(member_client_id(URL_A), [])]}

    assert owners_from_description(description, "events") == {}


def test_local_partitions_are_the_ones_the_runtime_reports() -> None:
    owners = GroupOwners(bootstrap_servers="unused:9092", group_id="g", topic="t")
    source: OwnerSource = owners  # the interface the web views use

    owners.set_local([0, 2])

    assert [source.is_local(p) for p in range(PARTITIONS)] == [True, False, True, False]


@dataclass
class Member:
    url: str
    consumer: AIOKafkaConsumer
    task: asyncio.Task[None] | None = None


async def _poll(consumer: AIOKafkaConsumer) -> None:
    # Polling keeps the member in the group (heartbeats run anyway; rejoining needs this).
    while True:
        await consumer.getmany(timeout_ms=200)


async def wait_until(
    condition: Callable[[], object], *, what: str, deadline_s: float = 60.0
) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)  # the next look, not a wait for an outcome


@pytest.fixture
async def group(kafka: LocalKafka) -> AsyncIterator[tuple[str, str, list[Member]]]:
    run = uuid.uuid4().hex[:8]
    topic, group_id = f"mb{run}.events", f"mb{run}.route"
    await ensure_topics(kafka.bootstrap, [TopicSpec(name=topic, partitions=PARTITIONS)])
    members = [
        Member(
            url,
            AIOKafkaConsumer(
                topic,
                bootstrap_servers=kafka.bootstrap,
                group_id=group_id,
                client_id=member_client_id(url),
                partition_assignment_strategy=(RangePartitionAssignor,),
                enable_auto_commit=False,
                session_timeout_ms=10_000,
                heartbeat_interval_ms=500,
                metadata_max_age_ms=1000,
            ),
        )
        for url in (URL_A, URL_B)
    ]
    try:
        for member in members:
            await member.consumer.start()
            member.task = asyncio.create_task(_poll(member.consumer))
        yield topic, group_id, members
    finally:
        for member in members:
            await stop(member)


async def stop(member: Member) -> None:
    if member.task is not None:
        member.task.cancel()
        await asyncio.gather(member.task, return_exceptions=True)
        member.task = None
    await member.consumer.stop()  # leaves the group: the broker rebalances at once


def held(members: list[Member]) -> dict[int, URL]:
    return {
        tp.partition: URL(member.url) for member in members for tp in member.consumer.assignment()
    }


async def mapped(owners: GroupOwners) -> dict[int, URL | None]:
    return {p: await owners.owner_url(p) for p in range(PARTITIONS)}


@pytest.mark.integration
async def test_every_partition_maps_to_the_member_holding_it(
    kafka: LocalKafka, group: tuple[str, str, list[Member]]
) -> None:
    topic, group_id, members = group
    owners = GroupOwners(bootstrap_servers=kafka.bootstrap, group_id=group_id, topic=topic)
    try:
        await wait_until(
            lambda: (
                all(m.consumer.assignment() for m in members) and len(held(members)) == PARTITIONS
            ),
            what="both members to hold partitions",
        )

        async def agrees() -> bool:
            return await mapped(owners) == held(members)

        await wait_until(agrees, what="the group's owners to match the assignments")
        assert set(held(members).values()) == {URL(URL_A), URL(URL_B)}

        await stop(members[0])

        async def all_on_b() -> bool:
            return await mapped(owners) == dict.fromkeys(range(PARTITIONS), URL(URL_B))

        await wait_until(all_on_b, what="every partition to move to the remaining member")
        assert {tp.partition for tp in members[1].consumer.assignment()} == set(range(PARTITIONS))
    finally:
        await owners.close()


@pytest.mark.integration
async def test_a_group_without_members_names_no_owner(kafka: LocalKafka) -> None:
    owners = GroupOwners(
        bootstrap_servers=kafka.bootstrap, group_id=f"mb{uuid.uuid4().hex[:8]}", topic="t"
    )
    try:
        assert await owners.owner_url(0) is None
    finally:
        await owners.close()
