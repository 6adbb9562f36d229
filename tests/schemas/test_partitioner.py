from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from schemas.partitioner import murmur2, partition_for_key


def test_murmur2_matches_aiokafka_for_every_tail_length() -> None:
    rng = random.Random(5)
    for length in range(64):
        data = bytes(rng.randrange(256) for _ in range(length))
        assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF, length


def test_partition_matches_the_default_partitioner() -> None:
    partitions = list(range(8))
    for n in range(500):
        key = f"ntf_{n:032x}".encode()
        assert partition_for_key(key, 8) == DefaultPartitioner()(key, partitions, partitions)


def test_known_java_client_values() -> None:
    # Values from Kafka's own Utils.murmur2 tests (as unsigned 32-bit integers).
    assert murmur2(b"21") & 0xFFFFFFFF == (-973932308) & 0xFFFFFFFF
    assert murmur2(b"foobar") & 0xFFFFFFFF == (-790332482) & 0xFFFFFFFF
