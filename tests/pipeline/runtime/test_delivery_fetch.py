"""The delivery runtime's pure helpers: the order records start in, the heartbeat it asks for."""

from __future__ import annotations

from aiokafka import TopicPartition

from pipeline.runtime.consumers import heartbeat_interval
from pipeline.runtime.delivery import interleave

EMAIL = TopicPartition("c.deliver.email", 0)
SMS = TopicPartition("c.deliver.sms", 0)
PUSH = TopicPartition("c.deliver.push", 3)


def test_partitions_take_turns_and_keep_their_own_order() -> None:
    fetched = [(1, EMAIL, ["e0", "e1", "e2", "e3"]), (1, SMS, ["s0"]), (2, PUSH, ["p0", "p1"])]
    assert interleave(fetched) == [
        (1, EMAIL, "e0"),
        (1, SMS, "s0"),
        (2, PUSH, "p0"),
        (1, EMAIL, "e1"),
        (2, PUSH, "p1"),
        (1, EMAIL, "e2"),
        (1, EMAIL, "e3"),
    ]


def test_nothing_fetched_starts_nothing() -> None:
    assert interleave([]) == []
    assert interleave([(0, EMAIL, [])]) == []


def test_the_heartbeat_is_a_quarter_of_the_session_but_at_most_three_seconds() -> None:
    assert heartbeat_interval(10.0) == 2.5
    assert heartbeat_interval(6.0) == 1.5
    assert heartbeat_interval(60.0) == 3.0
