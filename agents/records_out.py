"""Turning decisions into the bytes that go to Kafka: statuses, invalid records, deliveries."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.telemetry import Telemetry
from schemas.partitioner import partition_for_key
from schemas.records import InvalidRecord
from schemas.structs import OutRecord
from schemas.topics import TopicNames


def encode_records(value: Any) -> Any:
    """orjson ``default`` for faust Records, which a Record's ``asdict()`` leaves nested."""
    if hasattr(value, "asdict"):
        return value.asdict()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


# What an invalid record keeps of the original: a bounded prefix of the value, the key when it is
# short (else its digest) and a bounded reason, so the copy fits any broker's 1 MB record limit
# whatever the input (escaped text can take six bytes per input byte, base64 four per three).
INVALID_RAW_KEPT_BYTES = 16 * 1024
INVALID_KEY_KEPT_BYTES = 1024
INVALID_ERROR_KEPT_CHARS = 4096


# An event's records all carry the moment it was routed: formatted once, not once per record.
@functools.lru_cache(maxsize=256)
def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True, slots=True)
class OutputWriter:
    """Encodes StatusChange and Delivery values (schemas/records.py) as JSON.

    The hot path builds the dicts directly: constructing a faust Record costs more than the
    rest of the routing decision. tests/agents/test_event_router.py checks the field names.

    Every status, retry and dead letter is built here, so this is where ``metrics`` counts
    them: when the record is built, before the transaction publishing it commits. A batch that
    is aborted and processed again is counted twice (see :class:`pipeline.metrics.Metrics`).
    """

    topics: TopicNames
    partitions: int
    metrics: Telemetry | None = None

    def status(
        self,
        *,
        notification_id: str,
        status: str,
        at: str,
        event_ids: list[str],
        user_id: str | None,
        channel: str | None = None,
        reason: str | None = None,
    ) -> OutRecord:
        change = {
            "notification_id": notification_id,
            "event_ids": event_ids,
            "user_id": user_id,
            "channel": channel,
            "status": status,
            "reason": reason,
            "at": at,
        }
        if self.metrics is not None:
            self.metrics.status(status, channel, reason)
        key = notification_id.encode()
        return OutRecord(
            self.topics.status, partition_for_key(key, self.partitions), key, orjson.dumps(change)
        )

    def invalid(
        self,
        *,
        raw: bytes | None,
        key: bytes | None,
        error: str,
        topic: str,
        partition: int,
        offset: int | None,
        at: str,
    ) -> OutRecord:
        raw = raw or b""
        kept = raw[:INVALID_RAW_KEPT_BYTES]
        digest = hashlib.sha256(raw).hexdigest()
        if len(kept) < len(raw):
            error = (
                f"{error} (the value was {len(raw)} bytes; only its first {len(kept)} are kept "
                f"here, sha256 {digest})"
            )
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        else:
            # A cut in the middle of a character leaves at most three bytes to drop.
            text, encoding = kept.decode("utf-8", "ignore"), "utf-8"
        if len(error) > INVALID_ERROR_KEPT_CHARS:
            error = error[: INVALID_ERROR_KEPT_CHARS - 1] + "\u2026"
        record = InvalidRecord(
            raw=text,
            raw_encoding=encoding,
            raw_bytes=len(raw),
            raw_sha256=digest,
            raw_truncated=len(kept) < len(raw),
            error=error,
            topic=topic,
            partition=partition,
            offset=offset,
            received_at=at,
        )
        if key is not None and len(key) > INVALID_KEY_KEPT_BYTES:
            # The key counts towards the record's size too; its digest still identifies it.
            key = b"sha256:" + hashlib.sha256(key).hexdigest().encode()
        # Same key, same partition as the original, so the two are easy to line up.
        return OutRecord(self.topics.invalid, partition, key, orjson.dumps(record.asdict()))

    def forward(self, *, topic: str, key: bytes, value: bytes | None, from_topic: str) -> OutRecord:
        """A record read off its user's partition, sent on to that partition of ``topic``."""
        if self.metrics is not None:
            self.metrics.repartitioned(from_topic)
        return OutRecord(topic, partition_for_key(key, self.partitions), key, value)

    def table_change(
        self, changelog_topic: str, partition: int, key: str, value: object
    ) -> OutRecord:
        """A changelog record as Faust's JSON-serialized table writes it."""
        return OutRecord(changelog_topic, partition, orjson.dumps(key), orjson.dumps(value))

    def retry(self, delivery: dict[str, Any], *, partition: int) -> OutRecord:
        """A Delivery to try again once its ``not_before`` has passed."""
        if self.metrics is not None:
            self.metrics.retry(delivery["channel"])
        return OutRecord(
            self.topics.retry, partition, delivery["user_id"].encode(), orjson.dumps(delivery)
        )

    def dead_letter(self, letter: dict[str, Any], *, partition: int) -> OutRecord:
        """A Delivery with ``error``, ``attempts``, ``failed_at`` and the error history."""
        if self.metrics is not None:
            self.metrics.dead_letter(letter["channel"])
        return OutRecord(
            self.topics.dlq, partition, letter["user_id"].encode(), orjson.dumps(letter)
        )

    def delivery(self, delivery: dict[str, Any], *, partition: int) -> OutRecord:
        """A Delivery (every field of the record, in a dict) on its channel's topic."""
        return OutRecord(
            self.topics.deliver(delivery["channel"]),
            partition,
            delivery["user_id"].encode(),
            orjson.dumps(delivery),
        )
