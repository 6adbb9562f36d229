"""What ``CLARION_BENCH_KEEP=<folder>`` keeps of a faults bench run, to look into it afterwards.

* every worker's log and the broker's;
* ``observed.json``: the changes and every progress time of every partition, seconds into
  the stream;
* ``missing.json``, when accepted events have no Delivery on a channel topic: for each, where
  it is on the events topic, the statuses written for it (committed, and also those only a
  ``read_uncommitted`` reader sees: aborted or still open) and any Delivery of it in an
  aborted transaction; with the route group's committed offsets. Read while the broker is
  still up.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.fault_figures import progress
from bench.fault_plan import Scenario
from bench.fault_report import Observed
from bench.harness import PARTITIONS, BenchBroker

_READ_ALLOWANCE_S = 60.0  # a failure bound for reading a topic to its end


def keep(folder: Path, broker: BenchBroker, scenario: Scenario, observed: Observed | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for log in broker.workdir.glob("*.log"):
        shutil.copy(log, folder / log.name)
    if broker.kafka is not None and broker.kafka.log_file.exists():
        shutil.copy(broker.kafka.log_file, folder / "broker.log")
    print(f"logs kept in {folder}")
    if observed is None:
        return
    start = scenario.stream.started
    email = broker.topics.deliver("email")
    lanes = progress(observed.records, scenario.stream.partition_of, observed.accepted, email)
    document = {
        "changes": [{"label": d.step.label, "at": d.at - start} for d in scenario.done],
        "lanes": {f"{kind}:{p}": [t - start for t in times] for (kind, p), times in lanes.items()},
    }
    (folder / "observed.json").write_bytes(orjson.dumps(document))
    delivered: defaultdict[str, set[str]] = defaultdict(set)
    for record in observed.records:
        delivered[record.topic].add(record.event_id)
    channels = [email, broker.topics.deliver("in_app")]
    missing = {
        event
        for event in scenario.stream.partition_of
        if any(event not in delivered[topic] for topic in channels)
    }
    if missing:
        found = asyncio.run(_trace(broker, missing, channels))
        (folder / "missing.json").write_bytes(orjson.dumps(found, option=orjson.OPT_INDENT_2))


async def _trace(broker: BenchBroker, missing: set[str], channels: list[str]) -> dict[str, Any]:
    topics = broker.topics
    trace: dict[str, dict[str, list[Any]]] = {
        event: {"events": [], "statuses": [], "uncommitted_statuses": [], "aborted": []}
        for event in missing
    }
    for record in await _read(broker.bootstrap, topics.events, "read_uncommitted"):
        event = orjson.loads(record.value).get("event_id")
        if event in trace:
            trace[event]["events"].append([record.partition, record.offset, record.timestamp])
    committed = {
        (r.partition, r.offset)
        for r in await _read(broker.bootstrap, topics.status, "read_committed")
    }
    for record in await _read(broker.bootstrap, topics.status, "read_uncommitted"):
        status = orjson.loads(record.value)
        for event in set(status.get("event_ids") or ()) & missing:
            kind = (
                "statuses"
                if (record.partition, record.offset) in committed
                else ("uncommitted_statuses")
            )
            trace[event][kind].append(
                [status.get("status"), status.get("reason"), record.timestamp]
            )
    for topic in channels:
        for record in await _read(broker.bootstrap, topic, "read_uncommitted"):
            delivery = orjson.loads(record.value)
            for event in set(delivery.get("event_ids") or ()) & missing:
                trace[event]["aborted"].append([topic, record.partition, record.offset])
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(broker.settings.route_group_id)
    finally:
        await admin.close()
    route_committed = {
        f"{tp.topic}:{tp.partition}": meta.offset
        for tp, meta in offsets.items()
        if tp.topic == topics.events
    }
    return {"route_committed": route_committed, "missing": trace}


async def _read(bootstrap: str, topic: str, isolation: str) -> list[Any]:
    """Every record of ``topic`` up to its end offsets when the read began."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level=isolation,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(_READ_ALLOWANCE_S):
            for tp in partitions:
                while await consumer.position(tp) < ends[tp]:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
                    records.extend(batch.get(tp, []))
        return records
    finally:
        await consumer.stop()
