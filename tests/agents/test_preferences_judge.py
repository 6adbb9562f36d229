"""What the preferences agent does with one record, without Kafka."""

from __future__ import annotations

import orjson

from agents.preferences import Forward, Reject, Store, judge
from schemas.partitioner import partition_for_key
from schemas.structs import SourceMessage
from tests.helpers.timers import TOPICS

HOME = partition_for_key(b"ann", 8)
ELSEWHERE = (HOME + 1) % 8
ANN = orjson.dumps({"user_id": "ann", "timezone": "UTC"})


def verdict(
    value: bytes | None,
    *,
    key: bytes = b"ann",
    partition: int = HOME,
    topic: str = TOPICS.preferences,
) -> Store | Forward | Reject:
    message = SourceMessage(topic=topic, partition=partition, offset=0, key=key, value=value)
    return judge(
        message, max_bytes=4096, partitions=8, repartition_topic=TOPICS.preferences_repartition
    )


def test_a_record_on_its_users_partition_is_stored() -> None:
    stored = verdict(ANN)
    assert isinstance(stored, Store)
    assert stored.user_id == "ann"
    assert stored.preferences is not None


def test_a_record_or_a_tombstone_off_its_users_partition_is_forwarded() -> None:
    assert isinstance(verdict(ANN, partition=ELSEWHERE), Forward)
    assert isinstance(verdict(None, partition=ELSEWHERE), Forward)


def test_a_forwarded_record_is_stored_and_never_forwarded_again() -> None:
    # Even off its partition (partition counts changed): forwarding again could loop.
    assert verdict(None, topic=TOPICS.preferences_repartition) == Store("ann", None)
    stored = verdict(ANN, partition=ELSEWHERE, topic=TOPICS.preferences_repartition)
    assert isinstance(stored, Store)


def test_an_invalid_record_off_its_users_partition_is_rejected_where_it_was_found() -> None:
    rejected = verdict(b"{", partition=ELSEWHERE)
    assert isinstance(rejected, Reject)
    assert rejected.user_id == "ann"


def test_a_key_that_is_not_utf8_is_rejected_and_names_no_user() -> None:
    rejected = verdict(ANN, key=b"\xffann")
    assert isinstance(rejected, Reject)
    assert rejected.user_id is None
    assert "not valid UTF-8" in rejected.reason
