"""The Java client's partitioner (murmur2), fast enough to run for every status record.

aiokafka's pure-Python murmur2 walks the key byte by byte; this one reads it four bytes at
a time, which makes it several times faster on ids of a few dozen bytes.
"""

from __future__ import annotations

import functools
import struct

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF
_SEED = 0x9747B28C


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of ``data`` as an unsigned 32-bit integer."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length // 4
    for (word,) in struct.iter_unpack("<I", data[: words * 4]):
        k = (word * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = data[words * 4 :]
    extra = len(tail)
    if extra == 3:
        h ^= tail[2] << 16
    if extra >= 2:
        h ^= tail[1] << 8
    if extra >= 1:
        h ^= tail[0]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


# User ids repeat across a user's events, preferences and outputs: hashed once each.
@functools.lru_cache(maxsize=1 << 16)
def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition the Java client, aiokafka and Faust choose for ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
