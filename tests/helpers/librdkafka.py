"""Producers on librdkafka's default partitioner (consistent_random: crc32 of the key).

Go, Node and confluent-kafka clients use it unless told otherwise, so their records often land
on another partition than the Java client's murmur2 would choose for the same key.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, Message, Producer

from schemas.partitioner import partition_for_key

Messages = Sequence[tuple[bytes, bytes | None]]


def _produce_blocking(bootstrap: str, topic: str, messages: Messages) -> list[int]:
    # No "partitioner" setting: librdkafka's default is the point of these tests.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    # Delivery reports come partition by partition, not in the order of ``messages``.
    partitions: list[int | None] = [None] * len(messages)
    errors: list[KafkaError] = []

    def delivered_as(index: int) -> Callable[[KafkaError | None, Message], None]:
        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(error)
            else:
                partitions[index] = message.partition()

        return delivered

    for index, (key, value) in enumerate(messages):
        producer.produce(topic, key=key, value=value, on_delivery=delivered_as(index))
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} records still unsent after 30 s"
    assert not errors, errors
    return [p for p in partitions if p is not None]


async def produce_with_librdkafka(bootstrap: str, topic: str, messages: Messages) -> list[int]:
    """Publish with confluent-kafka's defaults; the partition each record landed on."""
    return await asyncio.to_thread(_produce_blocking, bootstrap, topic, messages)


def misplaced(keys: Sequence[bytes], landed: Sequence[int], partitions: int) -> int:
    """How many records landed on another partition than murmur2 of their key."""
    return sum(
        partition_for_key(key, partitions) != where for key, where in zip(keys, landed, strict=True)
    )


KCAT = shutil.which("kcat")


def produce_with_kcat(bootstrap: str, topic: str, messages: Messages) -> None:
    """Publish ``key|value`` lines with kcat on its default partitioner."""
    assert KCAT is not None
    lines = b"".join(key + b"|" + (value or b"") + b"\n" for key, value in messages)
    subprocess.run(
        [KCAT, "-P", "-b", bootstrap, "-t", topic, "-K", "|", "-X", "acks=all"],
        input=lines,
        check=True,
        timeout=60,
    )
