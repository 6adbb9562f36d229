"""``clarion upgrade-state``: what the Faust tables of an earlier version held is served by the
new version's transactional tables, through a real broker and worker process.

The old changelogs are written here as the Faust tables of a99d9c3 wrote them: the status
table (``key_type=str``) through Faust's serializer registry with the ``json`` codec for key
and value, the inbox table (``key_type=bytes, value_type=bytes``) raw, with the rows that
tables.inbox_rows writes and a tombstone for every row it deletes. The first test pins this
to bytes a worker of a99d9c3 wrote to a real broker.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.serializers import codecs
from faust.serializers.registry import Registry

from pipeline.app import topic_specs
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.local import free_port
from pipeline.settings import Settings
from pipeline.upgrade import COMPLETE, COPIED, UPGRADE_HEADER, legacy_tables
from schemas.partitioner import partition_for_key
from tables.inbox import item_from_delivery
from tables.inbox_rows import UserInbox, legacy_key
from tables.status_history import StatusHistory, append_status, current_status
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.web import getter, poll
from tests.helpers.worker import WorkerProcess

# The serializers of Faust's tables: a table without a model type gets the "json" codec for
# its keys and values (Collection._serializer_from_type), which bytes skip.
FAUST = Registry()
Record = tuple[bytes | None, bytes | None]


def faust_status_record(history: StatusHistory) -> Record:
    key = FAUST.dumps_key(str, history["notification_id"], serializer="json")
    return key, FAUST.dumps_value(None, history, serializer="json")


@dataclass
class FaustInboxRows:
    """tables.rows.Rows as the old TableRows gave them: each write a changelog record of
    the Faust table, raw bytes, a tombstone for each delete."""

    rows: dict[bytes, bytes] = field(default_factory=dict)
    changelog: list[Record] = field(default_factory=list)

    def get(self, key: bytes) -> bytes | None:
        return self.rows.get(key)

    def iterate(self, start: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(
            (k for k in self.rows if (k <= start if backwards else k >= start)), reverse=backwards
        )
        for key in keys:
            yield key, self.rows[key]

    def put(self, key: bytes, value: bytes) -> None:
        self.rows[key] = value
        self.changelog.append(
            (
                FAUST.dumps_key(bytes, key, serializer="json"),
                FAUST.dumps_value(bytes, value, serializer="json"),
            )
        )

    def delete(self, key: bytes) -> None:
        del self.rows[key]
        self.changelog.append((FAUST.dumps_key(bytes, key, serializer="json"), None))


def status_change(notification_id: str, status: str, at: str, **fields: Any) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "event_ids": [notification_id],
        "user_id": None,
        "channel": None,
        "status": status,
        "reason": None,
        "at": at,
        **fields,
    }


def delivery(notification_id: str, event_id: str, subject: str, created_at: str) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "subject": subject,
        "body": "Your invoice is ready.",
        "category": "billing",
        "priority": "high",
        "created_at": created_at,
        "event_ids": [event_id],
    }


# -- what a worker of a99d9c3 wrote (its status and inbox changelogs, on a real broker) ------

WRITTEN_BY_A99D9C3_STATUS = (
    b'"\xc3\xa9mile-0"',
    (
        b'{"notification_id":"\xc3\xa9mile-0","user_id":"\xc3\xa9mile","channel":null,'
        b'"event_ids":["\xc3\xa9mile-0"],"entries":[{"status":"accepted","reason":null,'
        b'"at":"2026-12-02T16:24:27.256Z"}]}'
    ),
)
WRITTEN_BY_A99D9C3_INBOX = [
    (
        b"i\x00\x06\xc3\xa9mile\x7f\xff\xff\xff\xff\xff\xff\xff",
        (
            b'{"notification_id":"ntf_fc686d95c41ab52a5b8d068ad38da825","subject":"Invoice 0 for '
            b'\xc3\xa9mile \xe2\x9c\x93","body":"Your invoice is ready.","category":"billing",'
            b'"priority":"high","created_at":"2026-12-02T16:24:27.256Z",'
            b'"delivered_at":"2026-12-02T16:24:27.562Z","event_ids":["\xc3\xa9mile-0"],"seq":1}'
        ),
    ),
    (
        b"n\x00\x06\xc3\xa9mile\x00$ntf_fc686d95c41ab52a5b8d068ad38da825",
        b'{"seq":1,"read_at":null}',
    ),
    (b"s\x00\x06\xc3\xa9mile", b'{"next_seq":2,"oldest_seq":1}'),
]


def test_records_written_here_are_what_the_old_tables_wrote() -> None:
    history = append_status(
        None,
        status_change("émile-0", "accepted", "2026-12-02T16:24:27.256Z", user_id="émile"),
    )
    assert faust_status_record(history) == WRITTEN_BY_A99D9C3_STATUS
    rows = FaustInboxRows()
    item = item_from_delivery(
        delivery(
            "ntf_fc686d95c41ab52a5b8d068ad38da825",
            "émile-0",
            "Invoice 0 for émile ✓",
            "2026-12-02T16:24:27.256Z",
        ),
        delivered_at="2026-12-02T16:24:27.562Z",
    )
    UserInbox(rows, "émile").add(item, max_items=200)
    assert rows.changelog == WRITTEN_BY_A99D9C3_INBOX


# -- the earlier version's state --------------------------------------------------------------


@dataclass
class OldState:
    """The old tables' changelogs, and what the views must answer from them."""

    status: list[tuple[int, Record]]
    inbox: list[tuple[int, Record]]
    histories: dict[str, StatusHistory]
    gone: list[str]
    inboxes: dict[str, dict[str, Any]]


def old_state() -> OldState:
    status: list[tuple[int, Record]] = []
    histories: dict[str, StatusHistory] = {}

    def record_status(change: dict[str, Any]) -> None:
        notification_id = change["notification_id"]
        updated = append_status(histories.get(notification_id), change)
        histories[notification_id] = updated
        partition = partition_for_key(notification_id.encode(), PARTITIONS)
        status.append((partition, faust_status_record(updated)))

    routed = {"user_id": "alice", "channel": "in_app", "event_ids": ["evt-1"]}
    record_status(status_change("evt-1", "accepted", "2026-11-30T10:00:00.000Z", user_id="alice"))
    for n, step in enumerate(["queued", "sending", "sent"]):
        record_status(status_change("ntf_kept", step, f"2026-11-30T10:00:0{n + 1}.000Z", **routed))
    record_status(status_change("émile-0", "accepted", "2026-11-30T10:01:00.000Z", user_id="émile"))
    record_status(status_change("ntf_gone", "queued", "2026-11-30T10:02:00.000Z", **routed))
    # Deleted from the table: the key's tombstone ends its partition's history of it.
    gone = "ntf_gone"
    status.append(
        (partition_for_key(gone.encode(), PARTITIONS), (codecs.dumps("json", gone), None))
    )
    del histories[gone]

    inbox: list[tuple[int, Record]] = []
    expected: dict[str, dict[str, Any]] = {}
    for user, count, max_items, read in [
        ("alice", 4, 3, ["ntf_alice_2"]),  # the oldest dropped, one marked read
        ("bob", 2, 200, None),  # everything marked read
        ("émile", 1, 200, []),
    ]:
        rows = FaustInboxRows()
        user_inbox = UserInbox(rows, user)
        for n in range(count):
            created = f"2026-11-30T11:0{n}:00.000Z"
            item = item_from_delivery(
                delivery(f"ntf_{user}_{n}", f"{user}-{n}", f"Invoice {n} ✓", created),
                delivered_at=created,
            )
            user_inbox.add(item, max_items=max_items)
        user_inbox.mark_read(read, at="2026-11-30T12:00:00.000Z")
        partition = partition_for_key(user.encode(), PARTITIONS)
        inbox.extend((partition, record) for record in rows.changelog)
        items, _ = user_inbox.page(100)
        expected[user] = {"unread": user_inbox.unread(), "items": items}
    # An inbox of before rows: one value under Faust's JSON of the user id.
    veteran = "carol"
    old_items = [
        {**old_item("ntf_carol_2"), "seq": 2, "read_at": None},
        {**old_item("ntf_carol_1"), "seq": 1, "read_at": "2026-11-01T00:00:00.000Z"},
    ]
    inbox.append(
        (
            partition_for_key(veteran.encode(), PARTITIONS),
            (legacy_key(veteran), codecs.dumps("json", {"next_seq": 3, "items": old_items})),
        )
    )
    expected[veteran] = {
        "unread": 1,
        "items": [{k: v for k, v in i.items() if k != "seq"} for i in old_items],
    }
    return OldState(status=status, inbox=inbox, histories=histories, gone=[gone], inboxes=expected)


def old_item(notification_id: str) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "subject": "Old news",
        "body": "From before rows.",
        "category": "social",
        "priority": "normal",
        "created_at": "2026-11-01T00:00:00.000Z",
        "delivered_at": "2026-11-01T00:00:00.000Z",
        "event_ids": [notification_id],
    }


def settings_of(pipeline: Pipeline) -> Settings:
    return Settings.from_env(command_env(pipeline))


def command_env(pipeline: Pipeline, **extra: str) -> dict[str, str]:
    """The environment of the deployment's workers (tests/helpers/worker.py)."""
    return WorkerProcess(
        bootstrap=pipeline.bootstrap,
        data_dir=pipeline.data_dir / "upgrade",
        prefix=pipeline.prefix,
        partitions=PARTITIONS,
        extra_env=extra,
    ).env


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


async def upgrade(pipeline: Pipeline, **extra: str) -> Run:
    def run() -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "upgrade-state"],
            env=command_env(pipeline, **extra),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return await asyncio.to_thread(run)


async def write_old_changelogs(pipeline: Pipeline, state: OldState) -> None:
    """Topics and records as the earlier version's workers left them."""
    status, inbox = legacy_tables(settings_of(pipeline))
    compacted = {"cleanup.policy": "compact"}  # as Faust declared its changelogs
    await ensure_topics(
        pipeline.bootstrap,
        [
            TopicSpec(name=table.source, partitions=PARTITIONS, config=compacted)
            for table in (status, inbox)
        ],
    )
    await produce_to(pipeline, status.source, state.status)
    await produce_to(pipeline, inbox.source, state.inbox)


async def produce_to(
    pipeline: Pipeline,
    topic: str,
    records: list[tuple[int, Record]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value, key=key, partition=partition, headers=headers)
            for partition, (key, value) in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


@dataclass(frozen=True)
class Written:
    key: bytes | None
    value: bytes | None
    mark: bytes | None


async def read_changelog(pipeline: Pipeline, topic: str) -> dict[int, list[Written]]:
    """Every committed record of each partition of ``topic``, with the upgrade's header."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: dict[int, list[Written]] = {p: [] for p in range(PARTITIONS)}
        deadline = asyncio.get_running_loop().time() + 30
        while behind := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert asyncio.get_running_loop().time() < deadline, f"stuck reading {behind}"
            for tp, messages in (await consumer.getmany(*behind, timeout_ms=500)).items():
                found[tp.partition].extend(
                    Written(m.key, m.value, dict(m.headers).get(UPGRADE_HEADER)) for m in messages
                )
        return found
    finally:
        await consumer.stop()


def live(records: dict[int, list[Written]]) -> dict[bytes | None, bytes]:
    entries: dict[bytes | None, bytes] = {}
    for partition_records in records.values():
        for record in partition_records:
            if record.value is None:
                entries.pop(record.key, None)
            else:
                entries[record.key] = record.value
    return entries


def expected_inbox_rows(state: OldState) -> dict[bytes | None, bytes]:
    rows: dict[bytes | None, bytes] = {}
    for _, (key, value) in state.inbox:
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = value
    return rows


# -- the upgrade ------------------------------------------------------------------------------


@pytest.mark.integration
async def test_the_new_version_serves_the_histories_and_inboxes_of_the_old(
    pipeline: Pipeline,
) -> None:
    state = old_state()
    await write_old_changelogs(pipeline, state)
    topics = pipeline.topics

    first = await upgrade(pipeline)
    assert first.returncode == 0, first.stderr
    assert f"status: copied {len(state.histories)} entries in " in first.stdout.splitlines()[0], (
        first.stdout
    )
    inbox_line = next(line for line in first.stdout.splitlines() if line.startswith("inbox:"))
    assert f"inbox: copied {len(expected_inbox_rows(state))} entries in " in inbox_line
    status_written = await read_changelog(pipeline, topics.status_state)
    assert live(status_written) == {
        notification_id.encode(): orjson.dumps(history)
        for notification_id, history in state.histories.items()
    }
    for notification_id in state.histories:
        partition = partition_for_key(notification_id.encode(), PARTITIONS)
        assert notification_id.encode() in {r.key for r in status_written[partition]}
    inbox_written = await read_changelog(pipeline, topics.inbox_state)
    assert live(inbox_written) == expected_inbox_rows(state)
    for partition, records in inbox_written.items():
        old_keys = {key for p, (key, _) in state.inbox if p == partition}
        assert {r.key for r in records} <= old_keys
        if records:
            assert [r.mark for r in records] == [COPIED] * (len(records) - 1) + [COMPLETE]

    # Run again: nothing is written twice.
    second = await upgrade(pipeline)
    assert second.returncode == 0, second.stderr
    assert "copied 0 entries" in second.stdout
    assert "were copied by an earlier run" in second.stdout
    assert await read_changelog(pipeline, topics.status_state) == status_written
    assert await read_changelog(pipeline, topics.inbox_state) == inbox_written

    worker = await asyncio.to_thread(pipeline.worker().start)
    async with aiohttp.ClientSession() as session:
        for notification_id, history in state.histories.items():
            served = await poll(
                getter(session, worker, f"/notifications/{notification_id}"),
                lambda status, _: status == 200,
                what=f"the history of {notification_id}",
            )
            assert served == {**history, "status": current_status(history)}
        for gone in state.gone:
            status, _ = await getter(session, worker, f"/notifications/{gone}")()
            assert status == 404
        for user, expected in state.inboxes.items():
            served = await poll(
                getter(session, worker, f"/users/{user}/inbox?limit=100"),
                lambda status, _: status == 200,
                what=f"the inbox of {user}",
            )
            assert served["items"] == expected["items"], user
            assert served["unread"] == expected["unread"], user
    # The read marks, spelled out: alice read one of the three kept, bob everything.
    alice = state.inboxes["alice"]["items"]
    assert [i["notification_id"] for i in alice] == ["ntf_alice_3", "ntf_alice_2", "ntf_alice_1"]
    assert [i["read_at"] is not None for i in alice] == [False, True, False]
    assert all(i["read_at"] is not None for i in state.inboxes["bob"]["items"])


@pytest.mark.integration
async def test_a_copy_cut_short_is_made_whole_by_the_next_run(pipeline: Pipeline) -> None:
    state = old_state()
    await write_old_changelogs(pipeline, state)
    inbox = pipeline.topics.inbox_state
    # What a run that died after its first record of alice's partition left.
    partition = partition_for_key(b"alice", PARTITIONS)
    first_key, first_value = sorted(
        record for p, record in state.inbox if p == partition and record[1] is not None
    )[0]
    settings = settings_of(pipeline)
    await ensure_topics(
        pipeline.bootstrap, [spec for spec in topic_specs(settings) if spec.name == inbox]
    )
    await produce_to(
        pipeline, inbox, [(partition, (first_key, first_value))], [(UPGRADE_HEADER, COPIED)]
    )

    run = await upgrade(pipeline)
    assert run.returncode == 0, run.stderr
    written = await read_changelog(pipeline, inbox)
    assert live(written) == expected_inbox_rows(state)
    assert written[partition][-1].mark == COMPLETE


@pytest.mark.integration
async def test_partitions_the_new_version_wrote_first_are_left_alone(pipeline: Pipeline) -> None:
    state = old_state()
    await write_old_changelogs(pipeline, state)
    status = pipeline.topics.status_state
    # A worker of the new version started before the upgrade and recorded a status.
    newer = append_status(None, status_change("ntf_kept", "sent", "2026-12-03T00:00:00.000Z"))
    partition = partition_for_key(b"ntf_kept", PARTITIONS)
    settings = settings_of(pipeline)
    await ensure_topics(
        pipeline.bootstrap, [spec for spec in topic_specs(settings) if spec.name == status]
    )
    await produce_to(pipeline, status, [(partition, (b"ntf_kept", orjson.dumps(newer)))])

    run = await upgrade(pipeline)
    assert run.returncode == 1
    assert f"status: partition {partition}: " in run.stdout
    assert "NOT copied" in run.stdout
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "left out" in run.stderr
    written = await read_changelog(pipeline, status)
    assert written[partition] == [Written(b"ntf_kept", orjson.dumps(newer), None)]
    # The other partitions are copied all the same.
    assert live(written) == {
        **{
            notification_id.encode(): orjson.dumps(history)
            for notification_id, history in state.histories.items()
            if partition_for_key(notification_id.encode(), PARTITIONS) != partition
        },
        b"ntf_kept": orjson.dumps(newer),
    }


@pytest.mark.integration
async def test_without_old_changelogs_nothing_is_done(pipeline: Pipeline) -> None:
    run = await upgrade(pipeline)
    assert run.returncode == 0, run.stderr
    assert "nothing to copy" in run.stdout
    consumer = AIOKafkaConsumer(bootstrap_servers=pipeline.bootstrap)
    await consumer.start()
    try:
        existing = await consumer.topics()
    finally:
        await consumer.stop()
    assert not {t for t in existing if t.startswith(pipeline.prefix)}


@pytest.mark.integration
@pytest.mark.parametrize("group", ["group_id", "store_group_id"])
async def test_running_workers_stop_the_upgrade(pipeline: Pipeline, group: str) -> None:
    """A member of Faust's group (a worker of either version) or of the store runtime's."""
    await write_old_changelogs(pipeline, old_state())
    settings = settings_of(pipeline)
    group_id = getattr(settings, group)
    status_source = legacy_tables(settings)[0].source
    member = AIOKafkaConsumer(
        status_source, bootstrap_servers=pipeline.bootstrap, group_id=group_id
    )
    await member.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while not member.assignment():  # joined once it is given partitions
            assert asyncio.get_running_loop().time() < deadline, "the member never joined"
            await member.getmany(timeout_ms=500)
        run = await upgrade(pipeline)
    finally:
        await member.stop()
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        (
            f"upgrade-state: workers are running (group {group_id} has 1 member): stop every "
            "worker, old and new, then run the upgrade again"
        )
    ]
    async with AIOKafkaConsumer(bootstrap_servers=pipeline.bootstrap) as consumer:
        assert pipeline.topics.status_state not in await consumer.topics()


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CLARION_BROKER": f"kafka://127.0.0.1:{free_port()}",
        "CLARION_DATA_DIR": str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "upgrade-state"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert run.stderr.startswith("upgrade-state: cannot reach 127.0.0.1:"), run.stderr
