"""What a bench prints when a worker stops making progress: enough to tell where it is stuck.

Each consumer group's committed offsets against the partitions' end offsets (is the work
still there to do, and who has not done it?), and a py-spy dump of the worker's threads when
py-spy is installed (what the event loop is waiting on).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.harness import PARTITIONS

PY_SPY_TIMEOUT_S = 60


async def group_offsets(bootstrap: str, group: str, topics: Iterable[str]) -> list[str]:
    """One line per topic: ``topic: committed/end`` for each partition (markers included)."""
    partitions = [TopicPartition(topic, p) for topic in topics for p in range(PARTITIONS)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    try:
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            return [f"group {group}: offsets unavailable ({exc!r})"]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    lines = []
    for topic in sorted({tp.topic for tp in partitions}):
        cells = []
        for tp in (tp for tp in partitions if tp.topic == topic):
            meta = committed.get(tp)
            done = "-" if meta is None or meta.offset < 0 else str(meta.offset)
            cells.append(f"{tp.partition}:{done}/{ends[tp]}")
        lines.append(f"group {group}, {topic} (partition:committed/end): {' '.join(cells)}")
    return lines


def py_spy_dump(pid: int) -> str:
    """The worker's Python stacks, or why there are none."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return "(py-spy is not installed: no stack dump)"
    try:
        dumped = subprocess.run(
            [py_spy, "dump", "--pid", str(pid)],
            capture_output=True,
            text=True,
            timeout=PY_SPY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "(py-spy dump timed out)"
    return dumped.stdout + dumped.stderr
